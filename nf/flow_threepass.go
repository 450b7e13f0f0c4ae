package nf

import (
	"time"
)

// The three-pass REINFORCE (Trainer side). When a rank's batch is one
// micro-batch, the forward pass keeps its tape, the global baseline is
// reduced, and the gradient of Σ_b log q(φ_b)(s_b − s̄)/nGlobal with φ held
// fixed is computed through the reverse flow from the forward tape
// (Flow.BackwardReverseFromForward): a forward pass and a backward pass
// (worth two) instead of a forward, a reverse and a backward pass, with the
// same tape. With several micro-batches the baseline is known only after
// all of them went forward, so the tapes would have to be kept for all of
// them; Trainer.reinforce then runs the four-pass form.

// reinforceThreePass is the REINFORCE step of a rank whose nLocal samples
// are one micro-batch (nLocal == t.Micro). Its collectives are those of the
// four-pass form (one sum of the signal and a failure flag), so ranks may
// mix the two forms.
func (t *Trainer[T]) reinforceThreePass(ranks Reducer, step, first uint64, nGlobal int) error {
	mb := t.Micro
	SamplePriorWith(t.streams, t.z, mb, t.Seed, DomainTrain, step, first)
	t.forward(t.z, mb, t.tape)
	baseline, err := t.baseline(ranks, mb, nGlobal, t.evaluate(0, false))
	if err != nil {
		return err
	}
	for b := 0; b < mb; b++ {
		t.glogJ[b] = (t.sig[b] - baseline) / float64(nGlobal)
	}
	// z' = f⁻¹(φ) does not enter the loss (the prior is flat).
	clear(t.gz)
	t.backwardReverseFromForward(t.tape, nil, t.gz, t.glogJ)
	return nil
}

// backwardReverseFromForward is t.Flow.BackwardReverseFromForward, timed
// into t.Timings as a backward pass.
func (t *Trainer[T]) backwardReverseFromForward(tape *Tape[T], gx, gz []T, glogJ []float64) {
	t0 := time.Now()
	t.Flow.BackwardReverseFromForward(tape, gx, gz, glogJ)
	t.Timings.backward(t0, 2*t.Flow.ConvFLOPs(tape.B))
}
