package nf

import "math"

// ESS returns the effective sample size per sample of eq. (26) of the
// paper, (Σ w)² / (N Σ w²) with w = exp(logw), computed stably from the log
// weights (shifted by their maximum). It is in (0, 1]; 1 iff all weights are
// equal. NaN log weights give NaN.
func ESS(logw []float64) float64 {
	if len(logw) == 0 {
		return math.NaN()
	}
	m := math.Inf(-1)
	for _, v := range logw {
		if math.IsNaN(v) {
			return math.NaN()
		}
		m = math.Max(m, v)
	}
	s1, s2 := ESSSums(logw, m)
	return s1 * s1 / (float64(len(logw)) * s2)
}

// ESSSums returns Σ exp(logw − shift) and Σ exp(2(logw − shift)), the
// partial sums of ESS that ranks add up before forming the ratio; shift is
// the global maximum of the log weights.
func ESSSums(logw []float64, shift float64) (s1, s2 float64) {
	for _, v := range logw {
		w := math.Exp(v - shift)
		s1 += w
		s2 += w * w
	}
	return s1, s2
}
