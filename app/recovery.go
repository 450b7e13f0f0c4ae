package app

import (
	"fmt"

	nfio "nfschwinger/io"
	"nfschwinger/nf"
)

// snapshotEvery is the number of healthy steps between the snapshots a
// recovery rolls back to.
const snapshotEvery = 10

// recovery is a run's defence against divergence: the guard that detects
// it (rank 0), the last two snapshots of good parameters and Adam state
// (rank 0), and the learning-rate schedule.
type recovery[T nf.Float] struct {
	guard    *nf.DivergenceGuard
	schedule nf.LRSchedule
	// snaps[0] is the older snapshot, the one rolled back to: a
	// divergence may have begun, undetected, after snaps[1] was taken.
	snaps [2]*nf.TrainSnapshot[T]
	buf   [3]float64 // the broadcast of rank 0's decision
}

// newRecovery returns the recovery of a run configured by t.
func newRecovery[T nf.Float](t nfio.TrainConfig) *recovery[T] {
	return &recovery[T]{
		guard: nf.NewDivergenceGuard(t.DivergenceThreshold, t.DivergencePatience),
		schedule: nf.LRSchedule{Kind: t.LRSchedule, Base: t.LearningRate, Warmup: int64(t.LRWarmup),
			Steps: int64(t.Steps), Min: t.LRMin, Every: int64(t.LRStepEvery), Factor: t.LRStepFactor},
	}
}

// learningRate returns the learning rate of step s: the schedule's, times
// the recoveries' reductions.
func (r *run[T]) learningRate(s int64) float64 {
	return r.rec.schedule.At(s) * r.state.LRScale
}

// snapshot keeps the state after the step just done (rank 0) every
// snapshotEvery steps while the guard sees no bad step; at the run's
// first step it keeps the state it starts from.
func (r *run[T]) snapshot(first bool) {
	if r.c.Rank() != 0 || (!first && (r.rec.guard.Bad() > 0 || r.state.Step%snapshotEvery != 0)) {
		return
	}
	s := r.rec.snaps[0] // reused, unless it is also the newer one
	if first || s == r.rec.snaps[1] {
		s = new(nf.TrainSnapshot[T])
	}
	s.Take(r.state.Step, r.flow.Params.Data, r.adam)
	if first {
		r.rec.snaps = [2]*nf.TrainSnapshot[T]{s, s}
		return
	}
	r.rec.snaps = [2]*nf.TrainSnapshot[T]{r.rec.snaps[1], s}
}

// checkDivergence runs the guard on the step just done (rank 0 decides)
// and, on a divergence, rolls every rank back to the older snapshot with
// the learning rate lowered by train.divergence_lr_factor, recorded in the
// state. It reports whether it rolled back. After more than
// train.max_recoveries recoveries it writes a checkpoint of the restored
// state and returns the error that ends the run. Collective.
func (r *run[T]) checkDivergence(res nf.StepResult) (bool, error) {
	cfg := r.cfg.Train
	if cfg.MaxRecoveries == 0 {
		return false, nil
	}
	b := r.rec.buf[:]
	b[0] = 0
	why := ""
	if r.c.Rank() == 0 {
		why = r.rec.guard.Observe(res.LogqMean-res.LogpMean, res.Skipped)
		if why != "" {
			to := r.rec.snaps[0]
			to.Restore(r.flow.Params.Data, r.adam)
			r.state.LRScale *= cfg.DivergenceLRFactor
			r.state.Recoveries++
			b[0], b[1], b[2] = 1, r.state.LRScale, float64(r.state.Recoveries)
			r.rec.snaps[1] = to // never roll back into the state that diverged
			fmt.Fprintf(r.opts.Stderr, "nfschwinger: step %d: divergence (%s); rolled back to the parameters and Adam state of step %d, learning rate ×%g → %.4g (recovery %d of %d)\n",
				r.state.Step, why, to.Step, cfg.DivergenceLRFactor, r.learningRate(r.state.Step), r.state.Recoveries, cfg.MaxRecoveries)
			r.events.emit(Event{Event: "recovery", Step: r.state.Step})
		}
	}
	r.c.Bcast(b, 0)
	if b[0] == 0 {
		return false, nil
	}
	r.rec.guard.Reset()
	r.state.LRScale, r.state.Recoveries = b[1], int64(b[2])
	nf.BcastParams(r.c, r.flow.Params.Data)
	if r.state.Recoveries <= int64(cfg.MaxRecoveries) {
		return true, nil
	}
	if err := r.checkpoint(); err != nil {
		return true, err
	}
	return true, fmt.Errorf("step %d: training diverged %d times, more than train.max_recoveries = %d; %s holds the last good parameters (learning rate now %.4g): lower train.learning_rate or raise max_recoveries to go on",
		r.state.Step, r.state.Recoveries, cfg.MaxRecoveries, r.checkpointPath(), r.learningRate(r.state.Step))
}
