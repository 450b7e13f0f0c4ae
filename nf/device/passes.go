package device

import (
	"nfschwinger/nf"
	"nfschwinger/nf/gpu"
)

// PassFlow adapts a flow on any engine for gpu.RunPasses, the parity
// suite's harness: one tape for micro-batches of up to B configurations;
// Backward plays back what the tape recorded last. The flow's failures
// are panics (nf.DeviceError), as in its own methods.
func PassFlow[T nf.Float](f *nf.Flow[T], B int) gpu.PassFlow[T] {
	return &passFlow[T]{f: f, tape: f.NewTape(B)}
}

type passFlow[T nf.Float] struct {
	f       *nf.Flow[T]
	tape    *nf.Tape[T]
	reverse bool // the tape holds a Reverse call
}

func (p *passFlow[T]) SetParams(d []T) error { copy(p.f.Params.Data, d); return nil }

// tapeIf returns the tape when on, noting the direction it records.
func (p *passFlow[T]) tapeIf(on, reverse bool) *nf.Tape[T] {
	if !on {
		return nil
	}
	p.reverse = reverse
	return p.tape
}

func (p *passFlow[T]) Forward(x, z []T, logJ []float64, B int, tape bool) error {
	p.f.Forward(x, z, logJ, B, p.tapeIf(tape, false))
	return nil
}

func (p *passFlow[T]) Reverse(z, x []T, logJ []float64, B int, tape bool) error {
	p.f.Reverse(z, x, logJ, B, p.tapeIf(tape, true))
	return nil
}

func (p *passFlow[T]) Backward(gin, gout []T, glogJ []float64, fromForward bool) error {
	switch {
	case fromForward:
		p.f.BackwardReverseFromForward(p.tape, gin, gout, glogJ)
	case p.reverse:
		p.f.BackwardReverse(p.tape, gin, gout, glogJ)
	default:
		p.f.BackwardForward(p.tape, gin, gout, glogJ)
	}
	return nil
}

func (p *passFlow[T]) AddGrads(grad, _ []T) error {
	p.f.SyncGrads()
	for i, g := range p.f.Params.Grad {
		grad[i] += g
	}
	clear(p.f.Params.Grad)
	return nil
}
