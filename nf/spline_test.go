package nf

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Tolerances of the float64 spline tests.
const (
	// splineRoundTripTol: g(g⁻¹(u)) = u up to a few tens of ulps of 2π times
	// max(1, g') (the quadratic solve is backward stable, and an error of one
	// ulp in x moves g by g' ulps); g⁻¹(g(x)) = x within that times 1/g'(x),
	// the condition number of the inverse.
	splineRoundTripTol = 1e-13
	// splineMinSlope: below this g' the preimage of g(x) is too ill-conditioned
	// for an x-space round trip in float64 (only the u-space one is checked).
	splineMinSlope = 1e-4
	// splineFDStep is the step of the Richardson-extrapolated central
	// differences: truncation O(h⁴·f⁽⁵⁾) ≈ 1e-20·f⁽⁵⁾ against rounding
	// O(ε/h) ≈ 2e-11 for quantities of order 1.
	splineFDStep = 1e-5
	// splineFDTol is the relative (to max(1, |value|)) agreement of analytic
	// and finite-difference derivatives: a few hundred times the rounding
	// error of the differences.
	splineFDTol = 1e-8
)

// randomRaw returns the raw conditioner outputs of one site (3n+1 values)
// drawn with the given scale: scale ≈ 1 gives typical splines, large scales
// give nearly flat or very steep bins.
func randomRaw(rng *rand.Rand, n int, scale float64) []float64 {
	raw := make([]float64, 3*n+1)
	for i := range raw {
		raw[i] = scale * rng.NormFloat64()
	}
	return raw
}

func loadSite(raw []float64, n int) *splineSite[float64] {
	var sp splineSite[float64]
	sp.load(raw, 1, 0, n)
	return &sp
}

// TestSplineKnots checks the knot construction: monotone, from 0 to exactly
// 2π, δ_0 = δ_n, all derivatives positive.
func TestSplineKnots(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 8, 17} {
		sp := loadSite(randomRaw(rng, n, 2), n)
		if sp.x[0] != 0 || sp.y[0] != 0 || sp.x[n] != 2*math.Pi || sp.y[n] != 2*math.Pi {
			t.Fatalf("n=%d: end knots %v %v %v %v", n, sp.x[0], sp.x[n], sp.y[0], sp.y[n])
		}
		for k := 0; k < n; k++ {
			if !(sp.x[k+1] > sp.x[k]) || !(sp.y[k+1] > sp.y[k]) || !(sp.delta(k) > 0) {
				t.Fatalf("n=%d bin %d: knots not increasing or derivative not positive", n, k)
			}
		}
		if sp.delta(0) != sp.delta(n) {
			t.Fatalf("n=%d: δ_0 = %v ≠ δ_n = %v", n, sp.delta(0), sp.delta(n))
		}
	}
}

// splineCases are raw-output scales and evaluation points covering typical
// splines, nearly flat bins (scale 8: softmax weights down to e⁻³⁰) and the
// ends of the circle.
var splineCases = []struct {
	name  string
	scale float64
}{
	{"typical", 1},
	{"steep", 4},
	{"nearly-flat", 8},
}

func TestSplineRoundTripAndDerivative(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range splineCases {
		for _, n := range []int{1, 3, 8} {
			for trial := 0; trial < 20; trial++ {
				sp := loadSite(randomRaw(rng, n, c.scale), n)
				xs := []float64{0, 1e-14, 2*math.Pi - 1e-12, math.Nextafter(2*math.Pi, 0)}
				for i := 0; i < 20; i++ {
					xs = append(xs, 2*math.Pi*rng.Float64())
				}
				for _, x := range xs {
					g, logd, _ := sp.forward(x)
					if math.IsNaN(g) || math.IsInf(logd, 0) || math.IsNaN(logd) || g < 0 || g > 2*math.Pi {
						t.Fatalf("%s n=%d x=%v: g=%v log g'=%v", c.name, n, x, g, logd)
					}
					xb, logdInv := sp.inverse(g)
					// g(g⁻¹(u)) = u within the rounding of x, amplified by g'.
					if gb, _, _ := sp.forward(xb); math.Abs(gb-g) > splineRoundTripTol*math.Max(1, math.Exp(logdInv)) {
						t.Fatalf("%s n=%d: g(g⁻¹(%v)) = %v", c.name, n, g, gb)
					}
					if logd < math.Log(splineMinSlope) {
						continue
					}
					// Round trip in x, relative to 1/g' (the conditioning of the inverse).
					tol := splineRoundTripTol * math.Max(1, math.Exp(-logd))
					if math.Abs(xb-x) > tol {
						t.Fatalf("%s n=%d: g⁻¹(g(%v)) = %v (|Δ| = %g, tol %g)", c.name, n, x, xb, math.Abs(xb-x), tol)
					}
					// log g' of the inverse is the one at the preimage, and for typical
					// splines (bins much wider than the round-trip error) it is the
					// forward one.
					if _, l, _ := sp.forward(xb); math.Abs(l-logdInv) > 1e-12 {
						t.Fatalf("%s n=%d: inverse log g' %v, forward at the preimage %v", c.name, n, logdInv, l)
					}
					if c.scale == 1 && math.Abs(logdInv-logd) > 1e-8 {
						t.Fatalf("%s n=%d x=%v: log g' forward %v, at the preimage %v", c.name, n, x, logd, logdInv)
					}
				}
				if c.scale > 1 {
					continue // derivative by differences needs bins wider than the step
				}
				for i := 0; i < 10; i++ {
					x := splineFDStep + (2*math.Pi-2*splineFDStep)*rng.Float64()
					_, logd, k := sp.forward(x)
					if x-splineFDStep < sp.x[k] || x+splineFDStep >= sp.x[k+1] {
						continue // a knot is inside the stencil
					}
					num := richardson(func(e float64) float64 { g, _, _ := sp.forward(x + e); return g })
					if d := math.Abs(num - math.Exp(logd)); d > splineFDTol*math.Max(1, num) {
						t.Fatalf("%s n=%d x=%v: g' = %v, differences %v", c.name, n, x, math.Exp(logd), num)
					}
				}
			}
		}
	}
}

// TestSplineIdentity: equal width and height logits give s = 1 on every
// bin, and derivative pre-activations softplus⁻¹(1) = log(e − 1) give δ ≡ 1:
// then g is the identity and log g' = 0.
func TestSplineIdentity(t *testing.T) {
	n := 8
	raw := make([]float64, 3*n+1)
	for j := 0; j < n; j++ {
		raw[2*n+j] = math.Log(math.E - 1) // softplus = 1
	}
	sp := loadSite(raw, n)
	for _, x := range []float64{0, 0.3, 1, 3, 5, 6.28} {
		g, logd, _ := sp.forward(x)
		if math.Abs(g-x) > 1e-14 || math.Abs(logd) > 1e-14 {
			t.Fatalf("identity spline: g(%v) = %v, log g' = %v", x, g, logd)
		}
	}
}

// TestSplineBackward compares the vector–Jacobian products of the forward
// map (g, log g') and of the inverse (g⁻¹, −log g'∘g⁻¹) with central
// differences with respect to x (or u) and all 3n raw inputs.
func TestSplineBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 8} {
		for trial := 0; trial < 30; trial++ {
			raw := randomRaw(rng, n, 1)
			gg, gl := rng.NormFloat64(), rng.NormFloat64()
			sp := loadSite(raw, n)
			x := 2 * math.Pi * rng.Float64()
			_, _, k := sp.forward(x)
			if x-splineFDStep < sp.x[k] || x+splineFDStep >= sp.x[k+1] {
				continue
			}
			// Forward: L = gg·g(x) + gl·log g'(x).
			lossF := func(raw []float64, x float64) float64 {
				g, logd, _ := loadSite(raw, n).forward(x)
				return gg*g + gl*logd
			}
			graw := make([]float64, 3*n+1)
			gx := sp.backwardForward(x, gg, gl, graw, 1, 0)
			checkFD(t, "forward", n, lossF, raw, x, gx, graw[:3*n])

			// Inverse at u = g(x): L = gg·g⁻¹(u) + gl·(−log g'(g⁻¹(u))).
			u, _, _ := sp.forward(x)
			lossI := func(raw []float64, u float64) float64 {
				xb, logd := loadSite(raw, n).inverse(u)
				return gg*xb - gl*logd
			}
			xb, _ := sp.inverse(u)
			gu := sp.backwardInverse(xb, gg, gl, graw, 1, 0)
			_, _, ku := sp.forward(xb)
			if u-splineFDStep < sp.y[ku] || u+splineFDStep >= sp.y[ku+1] {
				continue
			}
			checkFD(t, "inverse", n, lossI, raw, u, gu, graw[:3*n])
		}
	}
}

// checkFD compares gx and graw with central differences of loss,
// Richardson-extrapolated (steps h and h/2, error O(h⁴)) so that the test is
// also sharp where the spline is steep.
func checkFD(t *testing.T, what string, n int, loss func([]float64, float64) float64, raw []float64, x, gx float64, graw []float64) {
	t.Helper()
	num := richardson(func(e float64) float64 { return loss(raw, x+e) })
	if math.Abs(num-gx) > splineFDTol*math.Max(1, math.Abs(num)) {
		t.Fatalf("%s n=%d: ∂L/∂x = %v, differences %v", what, n, gx, num)
	}
	p := append([]float64(nil), raw...)
	for i := range graw {
		num := richardson(func(e float64) float64 {
			p[i] = raw[i] + e
			defer func() { p[i] = raw[i] }()
			return loss(p, x)
		})
		if math.Abs(num-graw[i]) > splineFDTol*math.Max(1, math.Abs(num)) {
			t.Fatalf("%s n=%d: ∂L/∂raw[%d] = %v, differences %v", what, n, i, graw[i], num)
		}
	}
}

// richardson returns the derivative at 0 of f from central differences with
// steps h = splineFDStep and h/2: (4 D(h/2) − D(h)) / 3.
func richardson(f func(float64) float64) float64 {
	h := splineFDStep
	d1 := (f(h) - f(-h)) / (2 * h)
	d2 := (f(h/2) - f(-h/2)) / h
	return (4*d2 - d1) / 3
}

// TestLoadChunk: loading sites through a softmaxChunk (vectorized
// softmaxes of up to 32 sites at once, as the coupling kernels do) gives
// the splines of load, site by site: the same bits for a float64 flow,
// within 16 ulp for a float32 one (libmvec's exp and log against Go's), for
// chunks cut at sites 0, 32, 64 and at the end of a range of 70 sites.
func TestLoadChunk(t *testing.T) {
	testLoadChunk[float32](t, 16*0x1p-52)
	testLoadChunk[float64](t, 0)
}

func testLoadChunk[T Float](t *testing.T, tol float64) {
	const n, sites, end = 8, 80, 70
	rng := rand.New(rand.NewPCG(5, 6))
	raw := make([]T, (3*n+1)*sites)
	for i := range raw {
		raw[i] = T(3 * rng.NormFloat64())
	}
	c := newChunk()
	defer chunks.Put(c)
	var want, got splineSite[T]
	for s := range end {
		want.load(raw, sites, s, n)
		got.loadChunk(c, raw, sites, s, n, end)
		for _, a := range []struct {
			name string
			g, w []float64
		}{
			{"x", got.x[:n+1], want.x[:n+1]}, {"y", got.y[:n+1], want.y[:n+1]}, {"r", got.r[:n+1], want.r[:n+1]},
			{"pw", got.pw[:n], want.pw[:n]}, {"ph", got.ph[:n], want.ph[:n]},
			{"lpw", got.lpw[:n], want.lpw[:n]}, {"lph", got.lph[:n], want.lph[:n]},
		} {
			for j := range a.g {
				if math.Abs(a.g[j]-a.w[j]) > tol*math.Max(1, math.Abs(a.w[j])) {
					t.Fatalf("%T site %d: %s[%d] = %v, want %v", raw[0], s, a.name, j, a.g[j], a.w[j])
				}
			}
		}
	}
	if _, single := any(raw[0]).(float32); single && c.s0+c.cnt != end {
		t.Errorf("%T: the last chunk holds sites %d … %d, want it to end at %d", raw[0], c.s0, c.s0+c.cnt-1, end)
	}
}
