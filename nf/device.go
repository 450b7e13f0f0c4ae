package nf

import (
	"errors"
)

// The flow on a CUDA device: with UseDevice, Forward, Reverse
// and the three backward passes run on the device (package nf/gpu), with
// the same signatures, so the Trainer, Density and sampling use it
// unchanged. What crosses to the device per call: the parameters (every
// Forward and Reverse, so an optimizer step is always seen), the links of
// the micro-batch in, the links and log J out; per backward call the
// upstream gradient in and the link gradient out; the parameter gradients
// stay on the device until SyncGrads (once per training step).
//
// The device keeps one store-everything tape (nf/gpu's Flow): a tape of
// the flow (NewTape) is a handle on it, and only the tape that recorded
// last can be played back.

// Device is a whole flow on a device for micro-batches of up to
// MicroBatch() configurations (nf/gpu's Flow; nf/device attaches one to a
// Flow). Its passes have the semantics of the Flow's methods of the same
// names; Backward is BackwardForward or BackwardReverse of the pass the
// device's tape recorded, or with fromForward BackwardReverseFromForward,
// and adds the parameter gradients on the device, which AddGrads adds
// into grad (ParamSet.Grad's layout, tmp host scratch of its length) and
// zeroes. Errors are the device's failures.
type Device[T Float] interface {
	MicroBatch() int
	SetParams(data []T) error
	Forward(x, z []T, logJ []float64, B int, tape bool) error
	Reverse(z, x []T, logJ []float64, B int, tape bool) error
	Backward(gin, gout []T, glogJ []float64, fromForward bool) error
	AddGrads(grad, tmp []T) error
	Close()
}

// deviceFlow is the device state of a Flow.
type deviceFlow[T Float] struct {
	g     Device[T]
	tmp   []T      // host scratch of AddGrads
	owner *Tape[T] // the tape whose recording the device holds
	dirty bool     // parameter gradients on the device not yet in Params.Grad
}

// DeviceError is a failure of the device in the middle of a pass (a
// kernel launch or copy that the driver refused). The flow's methods have
// no error results (on the CPU they cannot fail), so it is raised as a
// panic with this value; comm.Guard reports it and the run exits 1.
type DeviceError struct{ Err error }

// Error says that the device failed, and how.
func (e *DeviceError) Error() string { return "nf: device: " + e.Err.Error() }

// Unwrap returns the driver's error.
func (e *DeviceError) Unwrap() error { return e.Err }

// UseDevice moves the flow's passes onto d, which must compute this
// flow's architecture (nf/device.Attach builds it). The flow's
// parameters stay in Params and are uploaded at every Forward and
// Reverse; tapes made before (NewTape) cannot be used after.
func (f *Flow[T]) UseDevice(d Device[T]) error {
	if f.dnn != nil {
		return errors.New("nf: UseDevice: the flow computes its convolutions with oneDNN")
	}
	if f.dev != nil {
		return errors.New("nf: UseDevice: the flow is on a device already")
	}
	f.dev = &deviceFlow[T]{g: d, tmp: make([]T, f.Params.Len())}
	return nil
}

// OnDevice reports whether the flow runs on a device (UseDevice).
func (f *Flow[T]) OnDevice() bool { return f.dev != nil }

// CloseDevice frees the device; the flow computes on its Backend again.
func (f *Flow[T]) CloseDevice() {
	if f.dev != nil {
		f.dev.g.Close()
		f.dev = nil
	}
}

// check panics with a DeviceError when err is not nil.
func (d *deviceFlow[T]) check(err error) {
	if err != nil {
		panic(&DeviceError{Err: err})
	}
}

// deviceRun is Forward (reverse false) or Reverse on the device.
func (f *Flow[T]) deviceRun(out, in []T, logJ []float64, B int, tape *Tape[T], reverse bool) {
	d := f.dev // the arguments passed checkCall
	d.check(d.g.SetParams(f.Params.Data))
	// Without a tape the configurations are independent: a batch larger
	// than the device's micro-batch (sampling, acceptance probes) goes in
	// pieces.
	n := 2 * f.Arch.L * f.Arch.L
	for lo := 0; lo < B; lo += d.g.MicroBatch() {
		hi := min(B, lo+d.g.MicroBatch())
		o, i, l := out[lo*n:hi*n], in[lo*n:hi*n], logJ[lo:hi]
		var err error
		if reverse {
			err = d.g.Reverse(o, i, l, hi-lo, tape != nil)
		} else {
			err = d.g.Forward(o, i, l, hi-lo, tape != nil)
		}
		d.check(err)
	}
	if tape != nil {
		if d.owner != nil && d.owner != tape {
			d.owner.dir = tapeEmpty // the device's tape now holds this recording
		}
		d.owner = tape
		tape.B, tape.dir = B, tapeForward
		if reverse {
			tape.dir = tapeReverse
		}
	}
}

// deviceBackward is the device's BackwardForward (fromForward false on a
// forward tape), BackwardReverse and BackwardReverseFromForward, on
// arguments backwardCheck accepted.
func (f *Flow[T]) deviceBackward(name string, tape *Tape[T], gin, gout []T, glogJ []float64, fromForward bool) {
	d := f.dev
	if tape != d.owner {
		panic("nf: Flow." + name + ": the device holds another tape's recording")
	}
	d.check(d.g.Backward(gin, gout, glogJ, fromForward))
	d.dirty = true
}

// SyncGrads adds the parameter gradients that the backward passes on the
// device accumulated there since the last call into Params.Grad (one copy
// to the host) and zeroes them on the device. On a device the backward
// passes' gradients reach Params.Grad only through it; Trainer.Step calls
// it once per step, before the gradients go to MPI and Adam. On the CPU,
// and when nothing was accumulated, it does nothing.
func (f *Flow[T]) SyncGrads() {
	if d := f.dev; d != nil && d.dirty {
		d.check(d.g.AddGrads(f.Params.Grad, d.tmp))
		d.dirty = false
	}
}
