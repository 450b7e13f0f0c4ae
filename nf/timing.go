package nf

import (
	"time"
	"unsafe"
)

// StepTimings accumulates where the time of Trainer.Step goes, for the
// benchmark (`nfschwinger bench`). The Trainer adds to it on every step;
// the caller resets it (Reset) before the steps it wants to measure. The
// clock is read around every flow pass and action call, a few hundred
// nanoseconds per micro-batch, and nothing is allocated.
type StepTimings struct {
	// Flow is the wall time of the Flow.Forward and Flow.Reverse calls:
	// the flow's part of the loss.
	Flow time.Duration
	// Action is the wall time of Target.Action: action and, where the
	// estimator needs it, the force.
	Action time.Duration
	// Backward is the wall time of the Flow.BackwardForward and
	// Flow.BackwardReverse calls.
	Backward time.Duration
	// Passes and BackwardPasses count the flow passes over a micro-batch
	// (Forward or Reverse) and the backward passes.
	Passes, BackwardPasses int
	// ConvFLOPs are the floating-point operations of the conditioner's
	// convolutions in those passes: Flow.ConvFLOPs per Forward or Reverse
	// pass, twice as many per backward pass (the weight and the input
	// gradient of every convolution).
	ConvFLOPs float64
}

// Reset zeroes the accumulated timings.
func (s *StepTimings) Reset() { *s = StepTimings{} }

// ConvFLOPs returns the floating-point operations of the conditioner's
// convolutions in one Forward or Reverse pass over B configurations, all
// layers (Σ Conv2D.FLOPs, the last convolution at the active sites only:
// 2 per multiply–add of the matrix products).
func (f *Flow[T]) ConvFLOPs(B int) float64 {
	var fl float64
	for k := range f.layers {
		cs := f.layers[k].convs
		for j := range cs[:len(cs)-1] {
			fl += cs[j].FLOPs(B, f.Arch.L)
		}
		// The last convolution runs only at the active sites.
		fl += cs[len(cs)-1].FLOPsSites(B, len(f.layers[k].masks.Active))
	}
	return fl
}

// forward is Density.Forward of the micro-batch z into t.x, t.x64 and
// t.lq, timed into t.Timings.
func (t *Trainer[T]) forward(z []T, B int, tape *Tape[T]) {
	t0 := time.Now()
	t.density.Forward(t.x, t.x64, t.lq, z, B, tape)
	t.Timings.pass(t0, t.Flow.ConvFLOPs(B))
}

// reverse is t.Flow.Reverse, timed into t.Timings.
func (t *Trainer[T]) reverse(z, x []T, logJ []float64, B int, tape *Tape[T]) {
	t0 := time.Now()
	t.Flow.Reverse(z, x, logJ, B, tape)
	t.Timings.pass(t0, t.Flow.ConvFLOPs(B))
}

// backwardForward is t.Flow.BackwardForward, timed into t.Timings.
func (t *Trainer[T]) backwardForward(tape *Tape[T], gz, gx []T, glogJ []float64) {
	t0 := time.Now()
	t.Flow.BackwardForward(tape, gz, gx, glogJ)
	t.Timings.backward(t0, 2*t.Flow.ConvFLOPs(tape.B))
}

// backwardReverse is t.Flow.BackwardReverse, timed into t.Timings.
func (t *Trainer[T]) backwardReverse(tape *Tape[T], gx, gz []T, glogJ []float64) {
	t0 := time.Now()
	t.Flow.BackwardReverse(tape, gx, gz, glogJ)
	t.Timings.backward(t0, 2*t.Flow.ConvFLOPs(tape.B))
}

// action is t.Target.Action, timed into t.Timings; with a ResidentTarget
// of the flow, its ActionOfOutput (the force, when wanted, stays with the
// engine).
func (t *Trainer[T]) action(action, force, links []float64) error {
	t0 := time.Now()
	var err error
	if rt, ok := t.resident(); ok {
		err = rt.ActionOfOutput(action, links, force != nil)
	} else {
		err = t.Target.Action(action, force, links)
	}
	t.Timings.Action += time.Since(t0)
	return err
}

func (s *StepTimings) pass(t0 time.Time, flops float64) {
	s.Flow += time.Since(t0)
	s.Passes++
	s.ConvFLOPs += flops
}

func (s *StepTimings) backward(t0 time.Time, flops float64) {
	s.Backward += time.Since(t0)
	s.BackwardPasses++
	s.ConvFLOPs += flops
}

// KeptBytes returns the bytes the trainer keeps for its backward passes:
// the tape's storage (Tape.Bytes) plus, for REINFORCE, the configurations
// φ of the local batch held between the forward and the reverse passes.
// Buffers that live only inside one pass (scratch) are not counted.
func (t *Trainer[T]) KeptBytes() int {
	n := t.tape.Bytes()
	if t.Estimator == REINFORCE {
		n += len(t.phi) * int(unsafe.Sizeof(T(0)))
	}
	return n
}

// KeptBuffers returns the number of separate buffers the trainer's tape
// keeps for the backward pass, or −1 when the tape does not report it.
func (t *Trainer[T]) KeptBuffers() int {
	if b, ok := any(t.tape).(interface{ Buffers() int }); ok {
		return b.Buffers()
	}
	return -1
}
