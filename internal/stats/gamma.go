package stats

import (
	"fmt"
	"math"
)

// DefaultS is Wolff's recommended value of the windowing parameter S, the
// assumed ratio τ_exp/τ_int used to balance the truncation bias of the
// autocorrelation sum against its statistical error (Wolff 2004, sect. 3.3).
const DefaultS = 1.5

// GammaResult is the analysis of one series by the Γ-method.
type GammaResult struct {
	N         int     // length of the series
	Mean      float64 // sample mean
	Err       float64 // statistical error of the mean, √(C_F(W)/N)
	ErrErr    float64 // error of Err, Err·√((W + 1/2)/N)
	Var       float64 // Γ(0) (bias corrected): the variance of one sample
	TauInt    float64 // integrated autocorrelation time τ_int = C_F(W)/(2Γ(0)); 1/2 for uncorrelated data
	TauIntErr float64 // error of TauInt, 2τ_int·√((W − τ_int + 1/2)/N)
	W         int     // summation window chosen by the automatic windowing
	// WindowOK is false when the window criterion was not met before
	// W = N/2: the series is too short for its autocorrelation time and the
	// errors are underestimated.
	WindowOK bool
}

// String formats the result as "mean ± err (τ_int = t ± dt, W = w)".
func (r GammaResult) String() string {
	return fmt.Sprintf("%g ± %g (τ_int = %.3g ± %.2g, W = %d)", r.Mean, r.Err, r.TauInt, r.TauIntErr, r.W)
}

// GammaMethod analyses the series x (one Markov chain, in chain order) by
// the Γ-method of U. Wolff, "Monte Carlo errors with less errors", Comput.
// Phys. Commun. 156 (2004) 143, for a primary observable:
//
//	Γ(t)   = 1/(N−t) Σ_{i<N−t} (x_i − x̄)(x_{i+t} − x̄)
//	τ_int(W) = 1/2 + Σ_{t=1}^{W} Γ(t)/Γ(0)
//
// The window W is the first W at which
//
//	g(W) = exp(−W/τ(W)) − τ(W)/√(W N),  τ(W) = S / ln((2τ_int(W)+1)/(2τ_int(W)−1)),
//
// turns negative (τ(W) → 0 when τ_int(W) ≤ 1/2). The bias of Γ from the
// estimated mean is then corrected, Γ(t) += C_F(W)/N with C_F(W) = Γ(0) +
// 2 Σ_{t=1}^{W} Γ(t), and the error of the mean is √(C_F/N). Errors of
// τ_int and of the error follow eqs. (42) and (43) of the paper, as in his
// UWerr code. S ≤ 0 selects DefaultS.
//
// A constant series has Err = 0 and TauInt = 1/2. Fewer than two samples
// give NaN errors; NaN entries give a NaN mean and errors.
func GammaMethod(x []float64, S float64) GammaResult {
	if S <= 0 {
		S = DefaultS
	}
	n := len(x)
	r := GammaResult{N: n, Mean: math.NaN(), Err: math.NaN(), ErrErr: math.NaN(), Var: math.NaN(),
		TauInt: math.NaN(), TauIntErr: math.NaN()}
	if n == 0 {
		return r
	}
	mean := 0.0
	for _, v := range x {
		mean += v
	}
	mean /= float64(n)
	r.Mean = mean
	if n < 2 || math.IsNaN(mean) || math.IsInf(mean, 0) {
		return r
	}
	d := make([]float64, n)
	for i, v := range x {
		d[i] = v - mean
	}
	gamma := func(t int) float64 {
		s := 0.0
		for i := 0; i+t < n; i++ {
			s += d[i] * d[i+t]
		}
		return s / float64(n-t)
	}
	g0 := gamma(0)
	if g0 == 0 {
		r.Err, r.ErrErr, r.Var, r.TauInt, r.TauIntErr, r.W, r.WindowOK = 0, 0, 0, 0.5, 0, 0, true
		return r
	}
	nf := float64(n)
	wmax := n / 2
	sum := 0.0 // Σ_{t=1}^{W} Γ(t)
	w := 0
	for w = 1; w <= wmax; w++ {
		sum += gamma(w)
		tauW := 0.5 + sum/g0
		tau := 1e-300 // τ_int ≤ 1/2: no correlation left, stop at once
		if tauW > 0.5 {
			tau = S / math.Log((2*tauW+1)/(2*tauW-1))
		}
		if math.Exp(-float64(w)/tau)-tau/math.Sqrt(float64(w)*nf) < 0 {
			r.WindowOK = true
			break
		}
	}
	if w > wmax {
		w = wmax
	}
	r.W = w
	cf := g0 + 2*sum
	// Bias correction of the estimated mean.
	corr := cf / nf
	g0c := g0 + corr
	cfc := cf + (2*float64(r.W)+1)*corr
	if cfc < 0 {
		cfc = 0
	}
	r.Var = g0c
	r.TauInt = cfc / (2 * g0c)
	r.Err = math.Sqrt(cfc / nf)
	r.ErrErr = r.Err * math.Sqrt((float64(r.W)+0.5)/nf)
	r.TauIntErr = 2 * r.TauInt * math.Sqrt(math.Max(float64(r.W)-r.TauInt+0.5, 0)/nf)
	return r
}
