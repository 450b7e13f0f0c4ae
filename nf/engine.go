package nf

import "errors"

// Engine computes the passes of one Flow: Forward, Reverse and the three
// backward passes, with their tapes, the parameters' way to where it
// computes and the gradients' way back. A Flow is made on one engine
// (NewFlowOn) and keeps it; the Flow holds the architecture, the
// parameters and the tapes' bookkeeping, checks the calls' arguments and
// hands the passes to the engine, which does not branch back.
//
// The implementations:
//
//   - OpenBLAS: the host engine with im2col convolutions and the
//     Backend's matrix products (both precisions);
//   - OneDNN: the host engine with the conditioners' convolutions as
//     oneDNN primitives (float32, optionally bf16 inputs);
//   - OnDevice: the whole flow on a CUDA device (nf/gpu's Flow, which
//     nf/device builds).
//
// Every engine computes the same function to the rounding of its
// precision; the parity suite (TestEngineParity in nf/parity_test.go)
// holds each one available on the machine to the float64 OpenBLAS engine.
//
// An engine serves the one flow it was made for; its methods other than
// Name, MicroBatch, Bytes and Close are the Flow's.
type Engine[T Float] interface {
	// Name describes the engine for logs and benchmark tables.
	Name() string
	// MicroBatch is the largest number of configurations of a pass with
	// a tape (0: no limit but memory). Passes without a tape may be
	// larger; the engine splits them.
	MicroBatch() int
	// Bytes is the memory the engine holds for passes of B
	// configurations, tapes excluded (Tape.Bytes): the host's scratch, or
	// the device memory of a device engine (which holds its own tape).
	Bytes(B int) int
	// Close frees what the engine holds (device memory, oneDNN
	// primitives); the flow cannot compute after it.
	Close()

	// bind prepares the engine for flow f; NewFlowOn calls it once.
	bind(f *Flow[T]) error
	// setParams sends Params.Data to where the engine computes (the
	// host engines compute on it in place).
	setParams()
	// newTape returns a tape for micro-batches of up to B configurations.
	newTape(B int) *Tape[T]
	// run is Forward (reverse false) or Reverse on checked arguments.
	run(out, in []T, logJ []float64, B int, tape *Tape[T], reverse bool)
	// backward is the backward pass p of the call the tape recorded, on
	// checked arguments: dst gets the input gradient (nil: not returned),
	// the parameter gradients are added into Params.Grad, on a device at
	// the next syncGrads.
	backward(p pass, tape *Tape[T], dst, src []T, glogJ []float64)
	// syncGrads brings gradients accumulated elsewhere into Params.Grad.
	syncGrads()
	// resident reports whether the engine keeps a pass's output links
	// and a backward pass's link gradients where a ResidentTarget reads
	// and sets them (a device): a backward pass may then be given a nil
	// upstream gradient, the one the target set.
	resident() bool
}

// pass names a backward pass.
type pass int

// The backward passes: of a Forward tape, of a Reverse tape, and the
// reverse flow's from a Forward tape.
const (
	passBackwardForward pass = iota
	passBackwardReverse
	passBackwardReverseFromForward
	// passLinkGradReverseFromForward is passBackwardReverseFromForward
	// leaving the parameter gradients as they were.
	passLinkGradReverseFromForward
)

// String is the Flow method that runs the pass.
func (p pass) String() string {
	return [...]string{"BackwardForward", "BackwardReverse", "BackwardReverseFromForward", "LinkGradReverseFromForward"}[p]
}

// errEngineBound is bind's error for an engine already serving a flow.
var errEngineBound = errors.New("nf: the engine serves another flow already (make one engine per flow)")
