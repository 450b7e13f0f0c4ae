package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

// ar1 returns an AR(1) series x_t = ρ x_{t−1} + √(1−ρ²) ε_t with standard
// normal ε, started in equilibrium: unit variance, mean 0, Γ(t)/Γ(0) = ρ^t,
// hence τ_int = (1+ρ)/(2(1−ρ)).
func ar1(n int, rho float64, rng *rand.Rand) []float64 {
	x := make([]float64, n)
	x[0] = rng.NormFloat64()
	s := math.Sqrt(1 - rho*rho)
	for i := 1; i < n; i++ {
		x[i] = rho*x[i-1] + s*rng.NormFloat64()
	}
	return x
}

// gammaSigmas is the tolerance of the Γ-method tests in units of the
// method's own error estimate: a 3.5σ deviation has probability ~5e-4 per
// comparison for Gaussian errors; with fixed seeds the tests are
// deterministic, and a wrong formula for τ_int or its error (a factor 2, a
// missing bias correction at small N) fails them by far more.
const gammaSigmas = 3.5

func TestGammaMethodAR1(t *testing.T) {
	cases := []struct {
		rho  float64
		n    int
		seed uint64
	}{
		{0, 20000, 1},
		{0.5, 20000, 2},
		{0.8, 40000, 3},
		{0.9, 60000, 4},
		{0.95, 100000, 5},
		{0.9, 60000, 6},
		{-0.5, 20000, 7}, // anticorrelated: τ_int = 1/6 < 1/2
	}
	for _, c := range cases {
		rng := rand.New(rand.NewPCG(c.seed, 99))
		x := ar1(c.n, c.rho, rng)
		r := GammaMethod(x, DefaultS)
		tau := (1 + c.rho) / (2 * (1 - c.rho))
		if c.rho > 0 && !r.WindowOK {
			t.Errorf("ρ = %g: windowing did not converge (W = %d)", c.rho, r.W)
		}
		if c.rho >= 0 && math.Abs(r.TauInt-tau) > gammaSigmas*r.TauIntErr {
			t.Errorf("ρ = %g: τ_int = %.4f ± %.4f, exact %.4f", c.rho, r.TauInt, r.TauIntErr, tau)
		}
		if c.rho < 0 && r.TauInt > 0.5 {
			t.Errorf("ρ = %g: τ_int = %.4f, want < 1/2 (exact %.4f)", c.rho, r.TauInt, tau)
		}
		// Exact error of the mean of an AR(1) series with unit variance:
		// σ² = Γ(0)·2τ_int/N (for N ≫ τ).
		exact := math.Sqrt(2 * tau / float64(c.n))
		if c.rho >= 0 && math.Abs(r.Err-exact) > gammaSigmas*r.ErrErr {
			t.Errorf("ρ = %g: error of the mean %.5f ± %.5f, exact %.5f", c.rho, r.Err, r.ErrErr, exact)
		}
		if math.Abs(r.Mean) > gammaSigmas*exact {
			t.Errorf("ρ = %g: mean %.5f, want 0 within %.5f", c.rho, r.Mean, gammaSigmas*exact)
		}
		if math.Abs(r.Var-1) > 0.1 {
			t.Errorf("ρ = %g: Γ(0) = %.4f, want 1 (unit variance)", c.rho, r.Var)
		}
		t.Logf("ρ = %5.2f: %v, exact τ_int %.3f, exact err %.5f", c.rho, r, tau, exact)
	}
}

// TestGammaMethodCoverage checks that the quoted error of τ_int is a
// standard deviation: over 40 independent AR(1) series the normalized
// deviations (τ̂ − τ)/δτ̂ have a root mean square of about 1 (Wolff's
// formula is an approximation; the bounds allow 0.5..1.6, far from the
// factors of 2 that typical mistakes give).
func TestGammaMethodCoverage(t *testing.T) {
	const rho, n, reps = 0.8, 10000, 40
	tau := (1 + rho) / (2 * (1 - rho))
	rng := rand.New(rand.NewPCG(11, 12))
	ss := 0.0
	for range reps {
		r := GammaMethod(ar1(n, rho, rng), 0)
		z := (r.TauInt - tau) / r.TauIntErr
		ss += z * z
	}
	rms := math.Sqrt(ss / reps)
	if rms < 0.5 || rms > 1.6 {
		t.Errorf("rms of (τ̂ − τ)/δτ̂ over %d series = %.3f, want about 1", reps, rms)
	}
	t.Logf("rms normalized deviation of τ_int: %.3f", rms)
}

func TestGammaMethodEdgeCases(t *testing.T) {
	r := GammaMethod([]float64{3, 3, 3, 3}, 0)
	if r.Mean != 3 || r.Err != 0 || r.TauInt != 0.5 {
		t.Errorf("constant series: %+v, want mean 3, err 0, τ_int 1/2", r)
	}
	if r := GammaMethod(nil, 0); !math.IsNaN(r.Mean) || r.N != 0 {
		t.Errorf("empty series: %+v, want NaN mean", r)
	}
	if r := GammaMethod([]float64{1}, 0); r.Mean != 1 || !math.IsNaN(r.Err) {
		t.Errorf("one sample: %+v, want mean 1 and NaN error", r)
	}
	if r := GammaMethod([]float64{1, math.NaN(), 2}, 0); !math.IsNaN(r.Mean) || !math.IsNaN(r.Err) {
		t.Errorf("series with NaN: %+v, want NaN", r)
	}
	// A long plateau (a chain stuck in rejections) must not give τ_int ≈ 1/2.
	x := make([]float64, 2000)
	for i := range x {
		x[i] = float64(i / 200 % 2)
	}
	if r := GammaMethod(x, 0); r.TauInt < 20 {
		t.Errorf("blocks of 200 equal values: τ_int = %.2f, want ≫ 1", r.TauInt)
	}
}
