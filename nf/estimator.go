package nf

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"nfschwinger/lgt"
)

// Estimator names a gradient estimator of the reverse Kullback–Leibler
// divergence F_q = E_q[log q − log p].
type Estimator string

// The gradient estimators.
const (
	// REINFORCE is g_RE of eq. (18): the gradient of
	// mean[log q(φ)(s − s̄)] with φ = f(z) held fixed, s = log q + S and s̄
	// the mean of s over the whole (global) batch; log q(φ) comes from the
	// reverse flow. The derivative of the action is never needed.
	REINFORCE Estimator = "reinforce"
	// ReparamTrick is g_rt of eq. (12): the gradient of
	// mean[log q(z) + S(f(z))] through the forward flow; needs the force dS/dφ.
	ReparamTrick Estimator = "rt"
	// PathGradient: with G = ∂ log q(φ)/∂φ at φ = f(z) computed through the
	// reverse flow and held constant, the gradient of mean[φ·G + S(φ)]
	// through the forward flow. One forward pass with tape serves both
	// backward passes.
	PathGradient Estimator = "path"
)

// Estimators lists every estimator, in the order of the documentation.
var Estimators = []Estimator{REINFORCE, ReparamTrick, PathGradient}

// ParseEstimator checks an estimator name.
func ParseEstimator(s string) (Estimator, error) {
	if e := Estimator(s); slices.Contains(Estimators, e) {
		return e, nil
	}
	return "", fmt.Errorf("unknown estimator %q (want reinforce, rt or path)", s)
}

// Target is the distribution to learn, p(φ) ∝ exp(−S(φ)): the action of a
// batch of configurations (B·2V angles, float64) and optionally its force
// dS/dφ (nil: not wanted). lgt.Pool implements it.
type Target interface {
	Action(action, force, links []float64) error
}

// ResidentTarget is a Target that evaluates the links of its flow's last
// Forward where the flow's engine holds them (nf/device's Action, with
// the flow on a device), so that they do not cross to it again in
// float64, and that keeps the force there as the upstream gradient of
// the next backward pass. The Trainer of that flow uses it in place of
// Action.
type ResidentTarget[T Float] interface {
	Target
	// Flow is the flow whose engine the target reads.
	Flow() *Flow[T]
	// ActionOfOutput writes into action the action of the len(action)
	// configurations that the flow's last Forward left on its engine;
	// links are the same configurations on the host in float64 (for
	// what is computed there: the gauge action, the checks). With
	// withForce the force is computed and kept on the engine for
	// Upstream. Errors as Action's.
	ActionOfOutput(action, links []float64, withForce bool) error
	// Upstream makes (g + F)·scale the upstream link gradient of the
	// flow's next backward pass given a nil one: F the force of the
	// last ActionOfOutput, g the link gradient that the last backward
	// pass (given a nil gradient to return) left on the engine when add,
	// else 0. Errors are the device's.
	Upstream(scale float64, add bool) error
}

// Reducer sums and maximizes float64 buffers in place over all ranks
// (collective). comm.Comm implements it; a single process uses Local.
type Reducer interface {
	AllreduceSum(buf []float64)
	AllreduceMax(buf []float64)
}

// Local is the Reducer of a single process: it does nothing.
type Local struct{}

// AllreduceSum does nothing: one rank holds the whole sum.
func (Local) AllreduceSum([]float64) {}

// AllreduceMax does nothing: one rank holds the whole maximum.
func (Local) AllreduceMax([]float64) {}

// StepStats are the global statistics of one gradient step (identical on
// every rank).
type StepStats struct {
	N         int     // global batch size
	Loss      float64 // mean of s = log q + S over the batch: F_q up to log Z
	ESS       float64 // effective sample size per sample, eq. (26)
	LogqMean  float64 // mean log q(φ)
	LogpMean  float64 // mean log p(φ) = −S(φ) (unnormalized)
	ThreePass bool    // REINFORCE used the three-pass form
}

// Trainer computes one rank's share of the gradient of a training step.
// It owns the workspaces for its flow and micro-batch size; it is not safe
// for concurrent use.
type Trainer[T Float] struct {
	Flow      *Flow[T]
	Target    Target
	Estimator Estimator
	Micro     int    // configurations per micro-batch
	Seed      uint64 // seed of the prior streams
	// FourPass makes REINFORCE run the four-pass form (forward passes
	// without a tape, the baseline, reverse passes with a tape) even when
	// the local batch is one micro-batch, where it would run the three-pass
	// form; the gradient is the same up to rounding. For benchmarks.
	FourPass bool
	// Timings accumulates the time of the flow passes, the action and
	// the backward passes of every Step (see StepTimings); reset it to
	// measure.
	Timings StepTimings

	nLinks  int       // links per configuration, 2V
	z, x    []T       // one micro-batch
	zr      []T       // reverse image of a micro-batch (path gradient)
	gx      []T       // gradient w.r.t. links of a micro-batch
	gz      []T       // zero upstream gradient w.r.t. z
	x64     []float64 // links of one micro-batch in float64
	lq      []float64 // log q of one micro-batch
	density *Density[T]
	force   []float64 // force of one micro-batch, float64
	logJ    []float64 // log J of one micro-batch
	actions []float64 // action of each configuration of one micro-batch
	glogJ   []float64
	phi     []T       // REINFORCE: φ of every local sample
	sig     []float64 // signal s of every local sample
	logq    []float64 // log q of every local sample
	logp    []float64 // log p of every local sample
	logw    []float64 // log w = log p − log q of every local sample
	tape    *Tape[T]
	streams *Streams   // prior streams, re-keyed per sample
	sums    [4]float64 // the values reduced over the ranks
}

// NewTrainer returns a trainer for micro-batches of micro configurations.
func NewTrainer[T Float](f *Flow[T], target Target, est Estimator, micro int, seed uint64) *Trainer[T] {
	n := 2 * f.Arch.L * f.Arch.L
	return &Trainer[T]{
		Flow: f, Target: target, Estimator: est, Micro: micro, Seed: seed, nLinks: n,
		z: make([]T, micro*n), x: make([]T, micro*n), zr: make([]T, micro*n),
		gx: make([]T, micro*n), gz: make([]T, micro*n),
		x64: make([]float64, micro*n), force: make([]float64, micro*n),
		logJ: make([]float64, micro), lq: make([]float64, micro), density: NewDensity(f), actions: make([]float64, micro), glogJ: make([]float64, micro),
		tape: f.NewTape(micro), streams: NewStreams(),
	}
}

// ErrNonFinite reports a batch that cannot give a gradient: a NaN or
// infinite action, log density or link angle, or a singular Dirac operator.
// The step should be skipped (every rank learns of it through Step).
var ErrNonFinite = errors.New("non-finite action or log density")

// Step adds to t.Flow.Params.Grad this rank's share of the gradient of
// training step `step`: the local samples are those with global indices
// first … first+nLocal−1 of a global batch of nGlobal, drawn from the prior
// streams keyed by (Seed, step, index), processed in micro-batches of
// t.Micro (nLocal must be a multiple). The gradient is normalized by
// nGlobal, so the sum over ranks is the estimator. Collective: every rank
// calls Step with the same step and nGlobal. The caller zeroes the gradient
// before and sums it over ranks after.
func (t *Trainer[T]) Step(ranks Reducer, step uint64, first uint64, nLocal, nGlobal int) (StepStats, error) {
	if nLocal%t.Micro != 0 {
		panic(fmt.Sprintf("nf: Trainer.Step: %d local samples not a multiple of micro-batch %d", nLocal, t.Micro))
	}
	t.ensure(nLocal)
	defer t.Flow.FixParams()() // on a device: the parameters go up once
	var err error
	switch t.Estimator {
	case REINFORCE:
		err = t.reinforce(ranks, step, first, nLocal, nGlobal)
	case ReparamTrick, PathGradient:
		err = t.reparam(step, first, nLocal, nGlobal)
	default:
		panic("nf: Trainer.Step: unknown estimator " + string(t.Estimator))
	}
	// On a device the parameter gradients of the step come to the host
	// now, in one copy (also after a failure: none stays behind there).
	t.Flow.SyncGrads()
	// Agree on failure before any further collective: a rank whose action
	// failed still joins the reductions below.
	bad := 0.0
	if err != nil {
		bad = 1
	}
	st := t.stats(ranks, nLocal, nGlobal, bad)
	st.ThreePass = t.threePass(nLocal)
	if err != nil {
		return st, err
	}
	if math.IsNaN(st.Loss) {
		return st, fmt.Errorf("step %d: %w on another rank", step, ErrNonFinite)
	}
	return st, nil
}

// threePass reports whether REINFORCE runs the three-pass form on a local
// batch of nLocal: one micro-batch, unless FourPass is set.
func (t *Trainer[T]) threePass(nLocal int) bool {
	return t.Estimator == REINFORCE && nLocal == t.Micro && !t.FourPass
}

func (t *Trainer[T]) ensure(nLocal int) {
	if len(t.sig) < nLocal {
		t.sig = make([]float64, nLocal)
		t.logq = make([]float64, nLocal)
		t.logp = make([]float64, nLocal)
		t.logw = make([]float64, nLocal)
	}
	if t.Estimator == REINFORCE && !t.threePass(nLocal) && len(t.phi) < nLocal*t.nLinks { // the three-pass form needs no φ
		t.phi = make([]T, nLocal*t.nLinks)
	}
}

// evaluate computes action (and force if wanted) of the micro-batch that
// forward left in t.x64 and fills signal, log q, log p of samples
// off…off+Micro−1 (log q from t.lq).
func (t *Trainer[T]) evaluate(off int, withForce bool) error {
	var force []float64
	if withForce {
		force = t.force
	}
	if err := t.action(t.actions, force, t.x64); err != nil {
		if errors.Is(err, lgt.ErrNonFinite) || errors.Is(err, lgt.ErrSingular) {
			// A diverging flow produced unusable links: skip the step.
			return fmt.Errorf("%w: %w", ErrNonFinite, err)
		}
		return err
	}
	for b := 0; b < t.Micro; b++ {
		lq, S := t.lq[b], t.actions[b]
		if math.IsNaN(lq+S) || math.IsInf(lq+S, 0) {
			return fmt.Errorf("sample %d: log q = %v, S = %v: %w", off+b, lq, S, ErrNonFinite)
		}
		t.logq[off+b], t.logp[off+b], t.sig[off+b] = lq, -S, lq+S
	}
	return nil
}

// reinforce: forward passes without tape for the signal, one reduction for
// the baseline, then reverse passes with backward; the three-pass form
// (flow_threepass.go) when the local batch is one micro-batch (and
// FourPass is not set).
func (t *Trainer[T]) reinforce(ranks Reducer, step, first uint64, nLocal, nGlobal int) error {
	if t.threePass(nLocal) {
		return t.reinforceThreePass(ranks, step, first, nGlobal)
	}
	mb, n := t.Micro, t.nLinks
	var err error
	for off := 0; off < nLocal && err == nil; off += mb {
		SamplePriorWith(t.streams, t.z, mb, t.Seed, DomainTrain, step, first+uint64(off))
		t.forward(t.z, mb, nil)
		copy(t.phi[off*n:(off+mb)*n], t.x)
		err = t.evaluate(off, false)
	}
	baseline, err := t.baseline(ranks, nLocal, nGlobal, err)
	if err != nil {
		return err
	}
	t.ReinforceGradient(t.phi[:nLocal*n], t.sig[:nLocal], baseline, nGlobal)
	return nil
}

// baseline returns the REINFORCE baseline s̄, the mean of the signal over
// the global batch, from one reduction of the local sum and a failure flag
// (err, this rank's failure of the forward passes). Collective: every rank
// learns of a failure anywhere and returns an error.
func (t *Trainer[T]) baseline(ranks Reducer, nLocal, nGlobal int, err error) (float64, error) {
	var sum, bad float64
	if err != nil {
		bad = 1
	} else {
		for _, s := range t.sig[:nLocal] {
			sum += s
		}
	}
	t.sums[0], t.sums[1] = sum, bad
	ranks.AllreduceSum(t.sums[:2])
	if t.sums[1] != 0 {
		if err == nil {
			err = fmt.Errorf("%w on another rank", ErrNonFinite)
		}
		return 0, err
	}
	return t.sums[0] / float64(nGlobal), nil
}

// ReinforceGradient adds to the parameter gradients the gradient of
// Σ_b log q(φ_b)(s_b − baseline)/nGlobal over the configurations phi
// (len(signal)·2V angles, a multiple of the micro-batch), with φ held fixed
// and log q(φ) = log prior + log J of the reverse flow. On a device the
// gradients reach Params.Grad at Flow.SyncGrads (Step calls it).
func (t *Trainer[T]) ReinforceGradient(phi []T, signal []float64, baseline float64, nGlobal int) {
	mb, n := t.Micro, t.nLinks
	for off := 0; off < len(signal); off += mb {
		copy(t.x, phi[off*n:(off+mb)*n])
		t.reverse(t.z, t.x, t.logJ, mb, t.tape)
		for b := 0; b < mb; b++ {
			t.glogJ[b] = (signal[off+b] - baseline) / float64(nGlobal)
		}
		// z' does not enter the loss (the prior is flat).
		clear(t.gz)
		t.backwardReverse(t.tape, nil, t.gz, t.glogJ)
	}
}

// reparam: the r.t. and path-gradient estimators on the prior samples of
// this rank.
func (t *Trainer[T]) reparam(step, first uint64, nLocal, nGlobal int) error {
	mb := t.Micro
	for off := 0; off < nLocal; off += mb {
		SamplePriorWith(t.streams, t.z, mb, t.Seed, DomainTrain, step, first+uint64(off))
		if err := t.ReparamGradient(t.z, off, nGlobal); err != nil {
			return err
		}
	}
	return nil
}

// ReparamGradient adds to the parameter gradients the r.t. or path
// gradient (t.Estimator) of one micro-batch of prior samples z, normalized
// by nGlobal, and records signal, log q and log p of the samples as local
// samples off … off+Micro−1. On a device the gradients reach Params.Grad
// at Flow.SyncGrads (Step calls it).
func (t *Trainer[T]) ReparamGradient(z []T, off, nGlobal int) error {
	mb := t.Micro
	inv := 1 / float64(nGlobal)
	t.forward(z, mb, t.tape)
	if err := t.evaluate(off, true); err != nil {
		return err
	}
	// The upstream link gradient: (G + F)·inv for the path gradient, F·inv
	// for r.t. (F the force), formed here in t.gx, or where a
	// ResidentTarget keeps the force (g nil).
	rt, resident := t.resident()
	path := t.Estimator == PathGradient
	g := t.gx
	if resident {
		g = nil
	}
	if path {
		t.pathG(g) // G, into g or kept on the engine
		clear(t.glogJ)
	} else {
		for b := range t.glogJ[:mb] {
			t.glogJ[b] = -inv // log q(z) = log prior − log J
		}
	}
	if resident {
		if err := rt.Upstream(inv, path); err != nil {
			return err
		}
	}
	for i := range g {
		v := t.force[i]
		if path {
			v = float64(g[i]) + t.force[i]
		}
		g[i] = T(v * inv)
	}
	t.backwardForward(t.tape, nil, g, t.glogJ)
	return nil
}

// pathG computes the path gradient's G = ∂ log q(φ)/∂φ through the
// reverse flow into g (nil: kept on the engine), from the forward tape
// (the reverse map at φ = f(z) sees the same conditioner inputs),
// without touching the parameter gradients.
func (t *Trainer[T]) pathG(g []T) {
	for b := range t.glogJ[:t.Micro] {
		t.glogJ[b] = 1
	}
	clear(t.gz)
	t0 := time.Now()
	t.Flow.LinkGradReverseFromForward(t.tape, g, t.gz, t.glogJ)
	t.Timings.backward(t0, 2*t.Flow.ConvFLOPs(t.tape.B))
}

// resident returns the Target as a ResidentTarget of the trainer's flow,
// if it is one.
func (t *Trainer[T]) resident() (ResidentTarget[T], bool) {
	rt, ok := t.Target.(ResidentTarget[T])
	return rt, ok && rt.Flow() == t.Flow
}

// stats reduces the step statistics over ranks: sums of s, log q, log p and
// a failure flag, then the ESS through a global maximum of log w = −s.
func (t *Trainer[T]) stats(ranks Reducer, nLocal, nGlobal int, bad float64) StepStats {
	var ss, sq, sp float64
	maxw := math.Inf(-1)
	if bad == 0 {
		for i := 0; i < nLocal; i++ {
			ss += t.sig[i]
			sq += t.logq[i]
			sp += t.logp[i]
			maxw = math.Max(maxw, -t.sig[i])
		}
	}
	t.sums = [4]float64{ss, sq, sp, bad}
	ranks.AllreduceSum(t.sums[:4])
	N := float64(nGlobal)
	st := StepStats{N: nGlobal, Loss: t.sums[0] / N, LogqMean: t.sums[1] / N, LogpMean: t.sums[2] / N}
	if t.sums[3] != 0 {
		st.Loss = math.NaN()
		st.ESS = math.NaN()
		return st
	}
	t.sums[0] = maxw
	ranks.AllreduceMax(t.sums[:1])
	shift := t.sums[0]
	for i := 0; i < nLocal; i++ {
		t.logw[i] = -t.sig[i]
	}
	t.sums[0], t.sums[1] = ESSSums(t.logw[:nLocal], shift)
	ranks.AllreduceSum(t.sums[:2])
	st.ESS = t.sums[0] * t.sums[0] / (N * t.sums[1])
	return st
}
