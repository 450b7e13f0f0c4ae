package nf

// The flow on a CUDA device: on the OnDevice engine, Forward, Reverse
// and the three backward passes run on the device (package nf/gpu), with
// the same signatures, so the Trainer, Density and sampling use it
// unchanged. What crosses to the device per call: the parameters at every
// Forward and Reverse (so that a change is always seen), but only at the
// first while they are fixed (Flow.FixParams: a training step), the links
// of the micro-batch in, the links and log J out; per backward call the
// upstream gradient in and the link gradient out, each unless nil: then
// it stays on the device, where a ResidentTarget (nf/device's FlowAction)
// reads the links and sets the upstream gradient from its force; the
// parameter gradients stay on the device until SyncGrads (once per
// training step).
//
// The device keeps one store-everything tape (nf/gpu's Flow): a tape of
// the flow (NewTape) is a handle on it, and only the tape that recorded
// last can be played back.

// Device is a whole flow on a device for micro-batches of up to
// MicroBatch() configurations (nf/gpu's Flow; nf/device builds one for a
// flow's architecture), holding DeviceBytes() of device memory. Its passes have the semantics of the Flow's methods of the same
// names; Backward is BackwardForward or BackwardReverse of the pass the
// device's tape recorded, or with fromForward BackwardReverseFromForward,
// and adds the parameter gradients on the device, which AddGrads adds
// into grad (ParamSet.Grad's layout, tmp host scratch of its length) and
// zeroes; InputGradient is Backward leaving the parameter gradients as
// they were. A nil gin keeps the input gradient on the device, a nil
// gout uses the one a ResidentTarget set there. Errors are the device's
// failures.
type Device[T Float] interface {
	MicroBatch() int
	DeviceBytes() int
	SetParams(data []T) error
	Forward(x, z []T, logJ []float64, B int, tape bool) error
	Reverse(z, x []T, logJ []float64, B int, tape bool) error
	Backward(gin, gout []T, glogJ []float64, fromForward bool) error
	InputGradient(gin, gout []T, glogJ []float64, fromForward bool) error
	AddGrads(grad, tmp []T) error
	Close()
}

// deviceEngine computes a flow on a Device (OnDevice).
type deviceEngine[T Float] struct {
	f     *Flow[T]
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

// OnDevice returns the engine that runs the whole flow on d, which must
// compute the flow's architecture (nf/device builds it). The flow's
// parameters stay in Params and are uploaded at every Forward and Reverse,
// or while they are fixed (Flow.FixParams) at the first; the parameter
// gradients stay on the device until Flow.SyncGrads.
func OnDevice[T Float](d Device[T]) Engine[T] { return &deviceEngine[T]{g: d} }

// Name says that the flow is on a device.
func (d *deviceEngine[T]) Name() string { return "CUDA device" }

// MicroBatch is the device's: its tape and scratch are allocated for it.
func (d *deviceEngine[T]) MicroBatch() int { return d.g.MicroBatch() }

// Bytes is the device memory the device flow holds (for its micro-batch,
// whatever B).
func (d *deviceEngine[T]) Bytes(int) int { return d.g.DeviceBytes() }

// Close frees the device memory.
func (d *deviceEngine[T]) Close() { d.g.Close() }

func (d *deviceEngine[T]) bind(f *Flow[T]) error {
	if d.f != nil {
		return errEngineBound
	}
	d.f, d.tmp = f, make([]T, f.Params.Len())
	return nil
}

// newTape is a handle on the device's store-everything tape.
func (d *deviceEngine[T]) newTape(B int) *Tape[T] {
	f := d.f
	return &Tape[T]{cap: B, nLayers: f.Arch.NLayers, perCfg: f.recordSize(false), bufs: len(f.ch) + 1}
}

// check panics with a DeviceError when err is not nil.
func (d *deviceEngine[T]) check(err error) {
	if err != nil {
		panic(&DeviceError{Err: err})
	}
}

// setParams uploads the parameters.
func (d *deviceEngine[T]) setParams() { d.check(d.g.SetParams(d.f.Params.Data)) }

func (d *deviceEngine[T]) run(out, in []T, logJ []float64, B int, tape *Tape[T], reverse bool) {
	// Without a tape the configurations are independent: a batch larger
	// than the device's micro-batch (sampling, acceptance probes) goes in
	// pieces.
	n := 2 * d.f.Arch.L * d.f.Arch.L
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
	}
}

func (d *deviceEngine[T]) backward(p pass, tape *Tape[T], gin, gout []T, glogJ []float64) {
	if tape != d.owner {
		panic("nf: Flow." + p.String() + ": the device holds another tape's recording")
	}
	if p == passLinkGradReverseFromForward {
		d.check(d.g.InputGradient(gin, gout, glogJ, true))
		return
	}
	d.check(d.g.Backward(gin, gout, glogJ, p == passBackwardReverseFromForward))
	d.dirty = true
}

// resident is true: the device keeps the links and gradients between
// calls (DeviceOf gives a ResidentTarget the device).
func (d *deviceEngine[T]) resident() bool { return true }

// DeviceOf returns the device of a flow on the OnDevice engine, nil for
// any other engine: for a ResidentTarget (nf/device's Action) that reads
// the device's buffers.
func DeviceOf[T Float](f *Flow[T]) Device[T] {
	if d, ok := f.eng.(*deviceEngine[T]); ok {
		return d.g
	}
	return nil
}

func (d *deviceEngine[T]) syncGrads() {
	if d.dirty {
		d.check(d.g.AddGrads(d.f.Params.Grad, d.tmp))
		d.dirty = false
	}
}
