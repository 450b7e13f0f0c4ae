package nf

import (
	"fmt"
	"math"
	"nfschwinger/internal/stats"
	"slices"
)

// DivergenceGuard decides when training has diverged: Patience bad steps in
// a row, a bad step being one that was skipped (a non-finite batch or
// gradient) or whose variational free energy F_q = mean(log q − log p)
// exploded: F_q lies more than Threshold median absolute deviations (MAD)
// above the median of the last Window healthy steps. Good steps only enter
// the window, and detection by F_q starts once it holds MinWindow of them,
// so the fast descent at the start of training and single outliers never
// trigger it. Threshold 0 detects skipped steps only.
//
// The MAD is floored at 10⁻⁶·(1 + |median|), for windows of (nearly) equal
// values. For Gaussian noise one MAD is 0.67σ: Threshold 20 is 13σ.
type DivergenceGuard struct {
	Threshold float64
	Patience  int
	Window    int // healthy steps kept, 200 by NewDivergenceGuard
	MinWindow int // healthy steps needed before F_q is judged, 20 by NewDivergenceGuard

	recent []float64 // the last healthy F_q values, oldest first
	bad    int       // bad steps in a row
}

// NewDivergenceGuard returns a guard with the given threshold (in MADs)
// and patience and the default windows.
func NewDivergenceGuard(threshold float64, patience int) *DivergenceGuard {
	return &DivergenceGuard{Threshold: threshold, Patience: patience, Window: 200, MinWindow: 20}
}

// Observe takes the outcome of one step: fq its F_q (LogqMean − LogpMean)
// and skipped whether it was skipped. It returns a non-empty reason when
// this step completes a divergence (Patience bad steps in a row), "" else.
func (g *DivergenceGuard) Observe(fq float64, skipped bool) string {
	why := g.judge(fq, skipped)
	if why == "" {
		g.bad = 0
		g.recent = append(g.recent, fq)
		if len(g.recent) > g.Window {
			g.recent = g.recent[len(g.recent)-g.Window:]
		}
		return ""
	}
	g.bad++
	if g.bad < g.Patience {
		return ""
	}
	return fmt.Sprintf("%d bad steps in a row, the last: %s", g.bad, why)
}

// judge returns why one step is bad, "" for a good one.
func (g *DivergenceGuard) judge(fq float64, skipped bool) string {
	switch {
	case skipped:
		return "non-finite gradient, step skipped"
	case math.IsNaN(fq) || math.IsInf(fq, 0):
		return fmt.Sprintf("F_q = %v", fq)
	case g.Threshold <= 0 || len(g.recent) < g.MinWindow:
		return ""
	}
	med, mad := medianMAD(g.recent)
	if limit := med + g.Threshold*mad; fq > limit {
		return fmt.Sprintf("F_q = %.6g exploded: above %.6g (median %.6g + %g MAD of the last %d healthy steps)",
			fq, limit, med, g.Threshold, len(g.recent))
	}
	return ""
}

// Reset forgets the bad steps in a row (after a recovery); the healthy
// window is kept, since it describes the state rolled back to.
func (g *DivergenceGuard) Reset() { g.bad = 0 }

// medianMAD returns the median of x and its median absolute deviation,
// floored at 1e-6·(1 + |median|).
func medianMAD(x []float64) (med, mad float64) {
	s := slices.Clone(x)
	med = stats.Median(s)
	for i, v := range x {
		s[i] = math.Abs(v - med)
	}
	return med, max(stats.Median(s), 1e-6*(1+math.Abs(med)))
}

// TrainSnapshot is a copy of the state that a recovery rolls back to: the
// parameters and Adam's state after step Step (rank 0's).
type TrainSnapshot[T Float] struct {
	Step     int64 // steps completed when it was taken
	Params   []T
	M, V     []float64
	AdamStep int
}

// Take copies params and a's state into s, reusing its memory.
func (s *TrainSnapshot[T]) Take(step int64, params []T, a *Adam) {
	s.Step = step
	s.Params = append(s.Params[:0], params...)
	s.M = append(s.M[:0], a.M...)
	s.V = append(s.V[:0], a.V...)
	s.AdamStep = a.Step
}

// Restore copies the snapshot back into params and a.
func (s *TrainSnapshot[T]) Restore(params []T, a *Adam) {
	copy(params, s.Params)
	copy(a.M, s.M)
	copy(a.V, s.V)
	a.Step = s.AdamStep
}

// Bad returns the number of bad steps in a row so far.
func (g *DivergenceGuard) Bad() int { return g.bad }
