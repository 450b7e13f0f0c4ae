package nf

import "math"

// LRSchedule is the learning rate as a function of the training step:
// a linear warm-up over the first Warmup steps, then one of
//
//	"constant"  Base;
//	"cosine"    Min + (Base − Min)·(1 + cos(π·t/T))/2, t the steps after the
//	            warm-up, T = Steps − Warmup (Min from t = T on);
//	"step"      Base·Factor^⌊t/Every⌋.
//
// It is a pure function of the step, so a restarted run continues it bit
// for bit. Steps count from 0 (the first step of the run is step 0).
type LRSchedule struct {
	Kind   string  // "constant", "cosine" or "step"
	Base   float64 // the peak learning rate (train.learning_rate)
	Warmup int64   // warm-up steps: step s < Warmup uses Base·(s+1)/Warmup
	Steps  int64   // the run's length (train.steps), the cosine's horizon
	Min    float64 // the cosine's final value
	Every  int64   // steps between the step schedule's decays (≥ 1 for "step")
	Factor float64 // the step schedule's factor
}

// At returns the learning rate of step s (≥ 0), before any recovery's
// reduction.
func (l LRSchedule) At(s int64) float64 {
	if s < l.Warmup {
		return l.Base * float64(s+1) / float64(l.Warmup)
	}
	t := s - l.Warmup
	switch l.Kind {
	case "cosine":
		T := max(l.Steps-l.Warmup, 1)
		x := float64(min(t, T)) / float64(T)
		return l.Min + (l.Base-l.Min)*(1+math.Cos(math.Pi*x))/2
	case "step":
		return l.Base * math.Pow(l.Factor, float64(t/l.Every))
	case "constant":
		return l.Base
	}
	panic("nf: LRSchedule of kind " + l.Kind)
}
