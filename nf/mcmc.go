package nf

import "math"

// Metropolis is the state of the Metropolized independence sampler of the
// paper, eq. (3): proposals φ' ~ q are independent of the current state φ,
// and φ' is accepted with probability
//
//	min(1, w(φ')/w(φ)),  w = p/q,
//
// evaluated in logs, log w = log p − log q with the unnormalized log p = −S.
// The first proposal starts the chain and counts as accepted. The zero
// value is a chain before its first step.
//
// Metropolis holds no random generator: every step gets its uniform number
// from the caller (see AcceptUniform), so a chain continued from a saved
// state (Steps, Accepted, Current, LogW) is bit for bit the chain of an
// uninterrupted run.
type Metropolis struct {
	Steps    int64   // chain steps taken (proposals offered), the first included
	Accepted int64   // proposals accepted, the first included
	Current  int64   // index (0-based step) of the proposal that is the current state; −1 before the first step
	LogW     float64 // log weight log p − log q of the current state; meaningless before the first step
}

// NewMetropolis returns a chain before its first step.
func NewMetropolis() Metropolis { return Metropolis{Current: -1} }

// Step offers the proposal of step m.Steps with log weight logw; u is the
// step's uniform number in [0, 1). It reports whether the proposal was
// accepted, in which case it becomes the current state.
func (m *Metropolis) Step(logw, u float64) bool {
	acc := m.Steps == 0 || Accept(m.LogW, logw, u)
	if acc {
		m.Accepted++
		m.Current = m.Steps
		m.LogW = logw
	}
	m.Steps++
	return acc
}

// Rate returns the acceptance rate Accepted/Steps (NaN before the first
// step).
func (m *Metropolis) Rate() float64 {
	if m.Steps == 0 {
		return math.NaN()
	}
	return float64(m.Accepted) / float64(m.Steps)
}

// Accept is the accept/reject decision of eq. (3) for a state of log weight
// cur and a proposal of log weight prop with the uniform u ∈ [0, 1): accept
// iff u < exp(prop − cur), that is, always when prop ≥ cur, else iff
// log u < prop − cur. A NaN proposal is never accepted; a NaN state (a
// chain started on a NaN weight) accepts any non-NaN proposal. A proposal
// with p = 0 (prop = −Inf) is accepted only by a state with weight 0 too.
func Accept(cur, prop, u float64) bool {
	switch {
	case math.IsNaN(prop):
		return false
	case math.IsNaN(cur), prop >= cur:
		return true
	}
	return math.Log(u) < prop-cur
}

// AcceptProb returns the acceptance probability min(1, exp(prop − cur)) of
// eq. (3) (0 for a NaN proposal, 1 for a NaN state).
func AcceptProb(cur, prop float64) float64 {
	switch {
	case math.IsNaN(prop):
		return 0
	case math.IsNaN(cur), prop >= cur:
		return 1
	}
	return math.Exp(prop - cur)
}

// AcceptUniform returns the uniform number in [0, 1) of step i of the
// sampling chain keyed by seed: the first number of Stream(seed,
// DomainAccept, 0, i). The proposals of that chain come from
// SamplePrior(..., seed, DomainSample, 0, first).
func AcceptUniform(seed, i uint64) float64 {
	return Stream(seed, DomainAccept, 0, i).Float64()
}

// probeUniformOffset separates the uniforms of an acceptance probe from its
// proposals, which share DomainProbe and the training step: proposals use
// indices below 2⁶³, uniforms 2⁶³ + i.
const probeUniformOffset = 1 << 63

// ProbeUniform returns the uniform number of step i of the acceptance probe
// taken after training step step (the proposals of the probe come from
// SamplePrior(..., seed, DomainProbe, step, 0)): the first number of
// Stream(seed, DomainProbe, step, 2⁶³ + i).
func ProbeUniform(seed, step, i uint64) float64 {
	return Stream(seed, DomainProbe, step, probeUniformOffset+i).Float64()
}

// ChainAcceptance runs a fresh chain over the proposals with log weights
// logw in order, step i using the uniform u(i), and returns its acceptance
// rate (the first proposal counted as accepted, as in the sampling chain;
// NaN for no proposals).
func ChainAcceptance(logw []float64, u func(i int) float64) float64 {
	m := NewMetropolis()
	for i, lw := range logw {
		m.Step(lw, u(i))
	}
	return m.Rate()
}

// Run is a run of consecutive chain steps.
type Run struct {
	Start int // first step of the run
	Len   int // number of steps
}

// RejectionRuns returns the maximal runs of consecutive rejected steps of a
// chain, accepted[i] telling whether step i was accepted, in chain order.
// During a run the chain repeats the state of the step before it.
func RejectionRuns(accepted []bool) []Run {
	var runs []Run
	start := -1
	for i, a := range accepted {
		switch {
		case !a && start < 0:
			start = i
		case a && start >= 0:
			runs = append(runs, Run{start, i - start})
			start = -1
		}
	}
	if start >= 0 {
		runs = append(runs, Run{start, len(accepted) - start})
	}
	return runs
}
