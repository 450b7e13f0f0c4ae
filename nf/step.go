package nf

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Ranks is what a training step needs of the ranks of a job; comm.Comm
// satisfies it, Single is the one-process implementation. Every method
// is collective (all ranks call it, in the same order).
type Ranks interface {
	Reducer
	// AllreduceSum32 sums float32 buffers in place over all ranks.
	AllreduceSum32(buf []float32)
	// Bcast copies root's buf into buf on every other rank.
	Bcast(buf []float64, root int)
	// Bcast32 is Bcast for float32.
	Bcast32(buf []float32, root int)
	// Rank is this process's rank; rank 0 takes the optimizer step.
	Rank() int
}

// Single is the Ranks of a job of one process: every collective does
// nothing.
type Single struct{ Local }

// AllreduceSum32 does nothing.
func (Single) AllreduceSum32([]float32) {}

// Bcast does nothing.
func (Single) Bcast([]float64, int) {}

// Bcast32 does nothing.
func (Single) Bcast32([]float32, int) {}

// Rank is 0.
func (Single) Rank() int { return 0 }

// Stepper runs whole training steps of a data-parallel job: every rank
// owns a Stepper over the same flow architecture and a shard of each batch.
//
// The collective protocol of Step, the same on every rank and in this
// order:
//
//  1. the trainer's own reductions (Trainer.Step: the REINFORCE baseline,
//     the step statistics and the agreement on a non-finite batch);
//  2. one sum-allreduce of the flattened parameter gradient (float32 or
//     float64, as the flow);
//  3. on rank 0 only, not collective: finiteness check, clipping
//     (ClipGrad), the Adam step;
//  4. one broadcast of the parameters from rank 0;
//  5. one max-allreduce of two flags: a stop request from any rank, and
//     rank 0's decision to skip the step.
//
// So every rank ends the step with rank 0's parameters, and all agree on
// whether it was skipped and whether to stop. The optimizer state lives on
// rank 0 alone.
type Stepper[T Float] struct {
	Trainer *Trainer[T]
	Adam    *Adam // used on rank 0
	// ClipValue and ClipNorm are the clipping bounds (ClipGrad), ≤ 0 off.
	ClipValue, ClipNorm float64
	// Hook, if set, is called on every rank with the local gradient before
	// the allreduce (fault injection); an error it returns ends Step with
	// that error, before any further collective.
	Hook func(step uint64, grad []T) error
	// GradComm accumulates the time spent in the gradient allreduce.
	GradComm time.Duration

	flags [2]float64
}

// StepResult is the outcome of one Step, identical on every rank except
// GradNorm.
type StepResult struct {
	StepStats
	GradNorm float64 // norm of the summed gradient before clipping; rank 0 only (0 elsewhere, and on a skipped step)
	Skipped  bool    // not applied: a non-finite batch or gradient; the parameters are unchanged
	Stop     bool    // some rank's stop function returned true
	// NonFinite, when Skipped because of a non-finite batch, is the
	// trainer's error (for a message); nil otherwise.
	NonFinite error
}

// Step runs training step `step` on this rank's nLocal samples with global
// indices first … first+nLocal−1 of a global batch of nGlobal (see
// Trainer.Step), sums the gradient over the ranks, lets rank 0 clip and
// take the Adam step, broadcasts the parameters and agrees on skip and
// stop (the protocol in Stepper's doc). stop, called on every rank after
// the broadcast (nil: never), is this rank's request to stop after the
// step. Collective. An error other than a non-finite batch (the
// hook's, or the target's) is returned at once; the job should end.
func (s *Stepper[T]) Step(r Ranks, step uint64, first uint64, nLocal, nGlobal int, stop func() bool) (StepResult, error) {
	ps := s.Trainer.Flow.Params
	ps.ZeroGrad()
	st, err := s.Trainer.Step(r, step, first, nLocal, nGlobal)
	res := StepResult{StepStats: st}
	if errors.Is(err, ErrNonFinite) {
		// Every rank got it (Trainer.Step agrees): poison the gradient so
		// that rank 0 skips the step like any non-finite gradient.
		res.NonFinite = err
		Poison(ps.Grad)
	} else if err != nil {
		return res, fmt.Errorf("step %d: %w", step, err)
	}
	if s.Hook != nil {
		if err := s.Hook(step, ps.Grad); err != nil {
			return res, fmt.Errorf("step %d: %w", step, err)
		}
	}
	t0 := time.Now()
	AllreduceParams(r, ps.Grad)
	s.GradComm += time.Since(t0)
	skipped := false
	if r.Rank() == 0 {
		if !AllFinite(ps.Grad) {
			skipped = true
		} else {
			res.GradNorm = ClipGrad(ps.Grad, s.ClipValue, s.ClipNorm)
			Update(s.Adam, ps.Data, ps.Grad)
		}
	}
	BcastParams(r, ps.Data)
	s.flags = [2]float64{0, 0}
	if stop != nil && stop() {
		s.flags[0] = 1
	}
	if skipped {
		s.flags[1] = 1
	}
	r.AllreduceMax(s.flags[:])
	res.Stop, res.Skipped = s.flags[0] != 0, s.flags[1] != 0
	return res, nil
}

// AllreduceParams sums a parameter-shaped buffer (a gradient) over the
// ranks in place, in T's precision. Collective.
func AllreduceParams[T Float](r Ranks, buf []T) {
	switch b := any(buf).(type) {
	case []float32:
		r.AllreduceSum32(b)
	case []float64:
		r.AllreduceSum(b)
	}
}

// BcastParams copies rank 0's parameter-shaped buffer to every rank.
// Collective.
func BcastParams[T Float](r Ranks, buf []T) {
	switch b := any(buf).(type) {
	case []float32:
		r.Bcast32(b, 0)
	case []float64:
		r.Bcast(b, 0)
	}
}

// Poison sets every element of g to NaN: a gradient that the step must
// skip (rank 0 skips any non-finite gradient).
func Poison[T Float](g []T) {
	for i := range g {
		g[i] = T(math.NaN())
	}
}
