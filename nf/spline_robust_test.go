package nf

import (
	"nfschwinger/lgt"

	"math"
	"math/rand/v2"
	"testing"
)

// Tolerances of the extreme-parameter tests.
const (
	// splineRoundTripTol32: a float32 round trip g⁻¹(g(x)) rounds u = g(x)
	// and the preimage to float32 once each (the solve itself is float64).
	// So either x comes back within about two ulps of 2π (2⁻²¹·π ≈ 1.5e-6;
	// where g' ≥ 1 at x), or g of the preimage is within two ulps times
	// max(1, g') at the preimage (where g is flat at x, the preimage may be
	// anywhere on the flat stretch, also next to a steep bin). The bound
	// allows four ulps.
	splineRoundTripTol32 = 4 * 2 * math.Pi * 0x1p-24
	// splineSameMathTol: the float32 spline evaluates in float64 from the
	// same (exactly representable) raw values as the float64 spline, so log
	// g' agrees to float64 rounding and g, g⁻¹ to the float32 rounding of
	// their result (checked as one float32 ulp).
	splineSameMathTol = 1e-12
	// splineSafeTol: log g' and the vector–Jacobian products through the
	// logarithmic and rescaled forms agree with the direct formulas on
	// ordinary bins to a few hundred float64 ulps (different order of
	// operations, logs of numbers of order one).
	splineSafeTol = 1e-11
)

// extremeRaw32 returns raw parameters of one site (3n+1 values, float32)
// whose width, height and derivative channels are ±mag in a pattern, and a
// float64 copy of the same values.
func extremeRaw32(rng *rand.Rand, n int, mag float64, pattern string) ([]float32, []float64) {
	r32 := make([]float32, 3*n+1)
	for i := range r32[:3*n] {
		var v float64
		switch pattern {
		case "random-signs":
			v = mag
			if rng.IntN(2) == 0 {
				v = -mag
			}
		case "uniform": // every value in [−mag, mag]
			v = mag * (2*rng.Float64() - 1)
		case "flat": // derivative channels all −mag: δ ≈ e^−mag
			v = mag * (2*rng.Float64() - 1)
			if i >= 2*n {
				v = -mag
			}
		case "steep": // derivative channels all +mag: δ ≈ mag
			v = mag * (2*rng.Float64() - 1)
			if i >= 2*n {
				v = mag
			}
		}
		r32[i] = float32(v)
	}
	r32[3*n] = float32(rng.NormFloat64())
	r64 := make([]float64, len(r32))
	for i, v := range r32 {
		r64[i] = float64(v)
	}
	return r32, r64
}

// splinePoints32 returns float32 evaluation points in [0, 2π): the ends of
// the circle, every knot and its float32 neighbours, and random points.
func splinePoints32(rng *rand.Rand, knots []float64) []float32 {
	top := math.Nextafter32(float32(2*math.Pi), 0) // the largest float32 below 2π
	for float64(top) >= 2*math.Pi {
		top = math.Nextafter32(top, 0)
	}
	xs := []float32{0, math.SmallestNonzeroFloat32, 1e-30, 1e-7, top, math.Nextafter32(top, 0)}
	for _, k := range knots {
		k32 := float32(k)
		for _, v := range []float32{math.Nextafter32(k32, 0), k32, math.Nextafter32(k32, 7)} {
			if v >= 0 && float64(v) < 2*math.Pi {
				xs = append(xs, v)
			}
		}
	}
	for range 20 {
		xs = append(xs, min(float32(2*math.Pi*rng.Float64()), top))
	}
	return xs
}

// ulp32 is the spacing of float32 numbers at |v|.
func ulp32(v float64) float64 {
	a := float32(math.Abs(v))
	return float64(math.Nextafter32(a, math.MaxFloat32) - a)
}

// TestSplineExtremeFloat32 evaluates float32 splines whose raw width, height
// and derivative inputs are ±60 and ±200 — where float32 softmax weights
// underflow (e⁻¹²⁰ < 2⁻¹⁴⁹), knots coincide and softplus of −200 is 0 in
// float32 — and requires g, g⁻¹ and log g' to be finite, the float32 round
// trip to hold, and every value (including the backward passes) to equal
// the float64 spline of the same raw values rounded to float32.
func TestSplineExtremeFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 41))
	checked, skipped := 0, 0
	defer func() {
		t.Logf("backward passes compared at %d points, %d beyond float64's range", checked, skipped)
		if checked < 10*skipped {
			t.Errorf("too few backward passes compared")
		}
	}()
	for _, mag := range []float64{60, 200} {
		for _, pattern := range []string{"random-signs", "uniform", "flat", "steep"} {
			for _, n := range []int{1, 2, 8} {
				for trial := 0; trial < 8; trial++ {
					r32, r64 := extremeRaw32(rng, n, mag, pattern)
					var sp32 splineSite[float32]
					var sp64 splineSite[float64]
					sp32.load(r32, 1, 0, n)
					sp64.load(r64, 1, 0, n)
					checkExtremeSite(t, &sp32, &sp64, n, splinePoints32(rng, sp64.x[:n+1]),
						func() string { return pattern }, &checked, &skipped)
					if t.Failed() {
						t.Fatalf("mag %v pattern %s n %d raw %v", mag, pattern, n, r32)
					}
				}
			}
		}
	}
}

// checkExtremeSite runs the checks of TestSplineExtremeFloat32 on one site.
func checkExtremeSite(t *testing.T, sp32 *splineSite[float32], sp64 *splineSite[float64], n int, xs []float32, name func() string, checked, skipped *int) {
	t.Helper()
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	graw32 := make([]float32, 3*n+1)
	graw64 := make([]float64, 3*n+1)
	for _, x := range xs {
		g, logd, _ := sp32.forward(x)
		g64, logd64, _ := sp64.forward(float64(x))
		// g and g⁻¹ may round up to float32(2π) (> 2π, the same point of the circle).
		if !finite(float64(g)) || !finite(logd) || g < 0 || g > float32(2*math.Pi) {
			t.Errorf("%s: x = %v: g = %v, log g' = %v", name(), x, g, logd)
			return
		}
		if math.Abs(float64(g)-g64) > ulp32(g64) || math.Abs(logd-logd64) > splineSameMathTol*math.Max(1, math.Abs(logd64)) {
			t.Errorf("%s: x = %v: float32 g, log g' = %v, %v; float64 %v, %v", name(), x, g, logd, g64, logd64)
		}
		xb, logdInv := sp32.inverse(g)
		xb64, logdInv64 := sp64.inverse(float64(g))
		if !finite(float64(xb)) || !finite(logdInv) || xb < 0 || xb > float32(2*math.Pi) {
			t.Errorf("%s: g⁻¹(%v) = %v, log g' = %v", name(), g, xb, logdInv)
			return
		}
		if math.Abs(float64(xb)-xb64) > ulp32(xb64) {
			t.Errorf("%s: float32 g⁻¹(%v) = %v, float64 %v", name(), g, xb, xb64)
		}
		// log g' of the inverse: in the bin the inverse solved in, at the
		// preimage rounded to float32.
		kInv := searchBin(sp64.y[:], n, float64(g))
		bInv := sp64.bin(kInv)
		if _, l := bInv.eval(float64(xb)); math.Abs(logdInv-l) > splineSameMathTol*math.Max(1, math.Abs(l)) {
			t.Errorf("%s: log g' of the inverse %v, float64 at the preimage %v (inverse in float64: %v)", name(), logdInv, l, logdInv64)
		}
		// Round trip: x or g(x) comes back, except in a bin narrower than the
		// tolerance (a jump of g: no float maps into its interior), where the
		// preimage must be its knot.
		// Where g is steep at the preimage, one ulp of it moves g by g' ulps:
		// the image-side criterion is relative to max(1, g').
		gb, lb, _ := sp32.forward(xb)
		dx, dg := lgt.AngleDist(float64(xb), float64(x)), lgt.AngleDist(float64(gb), float64(g))/math.Max(1, math.Exp(lb))
		if bInv.w < splineRoundTripTol32 {
			dx, dg = lgt.AngleDist(float64(xb), bInv.x0), math.Inf(1)
		}
		if math.Min(dx, dg) > splineRoundTripTol32 {
			t.Errorf("%s: round trip x = %v → g = %v → %v → %v (|Δx| = %g, |Δg| = %g)", name(), x, g, xb, gb, dx, dg)
		}
		// Backward passes: float32 equals the float64 result rounded (±Inf
		// where that is beyond float32's range). Where the float64 result
		// itself is not finite, the true gradient is beyond float64's range
		// (∂x/∂u = 1/g' with log g' < −709 in a flat bin): not compared.
		for _, dir := range []string{"forward", "inverse"} {
			*checked++
			var gx32 float32
			var gx64 float64
			if dir == "forward" {
				gx32 = sp32.backwardForward(x, 0.75, -1.25, graw32, 1, 0)
				gx64 = sp64.backwardForward(float64(x), 0.75, -1.25, graw64, 1, 0)
			} else {
				gx32 = sp32.backwardInverse(xb, 0.75, -1.25, graw32, 1, 0)
				gx64 = sp64.backwardInverse(float64(xb), 0.75, -1.25, graw64, 1, 0)
			}
			got := append([]float64{float64(gx32)}, f64s(graw32[:3*n])...)
			want := append([]float64{gx64}, graw64[:3*n]...)
			for i := range got {
				if math.IsNaN(want[i]) || math.IsInf(want[i], 0) {
					*skipped++
					break
				}
				if math.IsNaN(got[i]) {
					t.Errorf("%s: backward %s at x = %v: component %d NaN, float64 %v", name(), dir, x, i, want[i])
					continue
				}
				if float64(float32(want[i])) != got[i] && math.Abs(got[i]-want[i]) > 1e-6*math.Abs(want[i])+1e-30 {
					t.Errorf("%s: backward %s at x = %v: component %d float32 %v, float64 %v", name(), dir, x, i, got[i], want[i])
				}
			}
		}
	}
}

// f64s converts to float64.
func f64s[T Float](x []T) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// TestSplineBeyondFloat64Range drives the float64 spline with raw spreads
// of 1600 and 6000, where the softmax weights, slopes s = h/w and softplus
// derivatives underflow or overflow even in float64: g, g⁻¹ and log g' stay
// finite and the round trip holds as in TestSplineExtremeFloat32. (The
// gradients there are not representable: ∂ log g'/∂x is of order s/(δ w),
// beyond 10³⁰⁸.)
func TestSplineBeyondFloat64Range(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	const tol = 1e-12 // a few ulps of 2π
	for _, mag := range []float64{800, 3000} {
		for _, pattern := range []string{"random-signs", "uniform", "flat", "steep"} {
			for _, n := range []int{1, 2, 8} {
				for trial := 0; trial < 8; trial++ {
					_, raw := extremeRaw32(rng, n, mag, pattern)
					sp := loadSite(raw, n)
					for _, x32 := range splinePoints32(rng, sp.x[:n+1]) {
						x := float64(x32)
						g, logd, _ := sp.forward(x)
						xb, logdInv := sp.inverse(g)
						for i, v := range []float64{g, logd, xb, logdInv} {
							if math.IsNaN(v) || math.IsInf(v, 0) {
								t.Fatalf("mag %v %s n=%d x=%v: value %d = %v (g %v, log g' %v, g⁻¹ %v, %v)", mag, pattern, n, x, i, v, g, logd, xb, logdInv)
							}
						}
						gb, lb, _ := sp.forward(xb)
						dx, dg := lgt.AngleDist(xb, x), lgt.AngleDist(gb, g)/math.Max(1, math.Exp(lb))
						if b := sp.bin(searchBin(sp.y[:], n, g)); b.w < tol {
							dx, dg = lgt.AngleDist(xb, b.x0), math.Inf(1)
						}
						if math.Min(dx, dg) > tol {
							t.Fatalf("mag %v %s n=%d: round trip x = %v → %v → %v → %v", mag, pattern, n, x, g, xb, gb)
						}
					}
				}
			}
		}
	}
}

// TestSplineSafeFormsAgree checks the fallbacks against the direct formulas
// on ordinary bins, where both apply: log g' from logarithms
// (logDerivSafe), ∂ log g'/∂x and the vector–Jacobian product through the
// rescaled slopes and derivatives (vjpScaled). The fallbacks are taken only
// for extreme bins, so without this test an error in them could hide.
func TestSplineSafeFormsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 1))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.IntN(8)
		sp := loadSite(randomRaw(rng, n, 2), n)
		x := 2 * math.Pi * rng.Float64()
		k := searchBin(sp.x[:], n, x)
		b := sp.bin(k)
		_, logd := b.eval(x)
		if safe := b.logDerivSafe(b.xi(x)); math.Abs(safe-logd) > splineSafeTol*math.Max(1, math.Abs(logd)) {
			t.Fatalf("log g': direct %v, from logs %v", logd, safe)
		}
		gg, gl := rng.NormFloat64(), rng.NormFloat64()
		d, s := b.vjp(x, gg, gl), b.vjpScaled(x, gg, gl)
		dv := []float64{d.x, d.x0, d.x1, d.y0, d.y1, d.d0, d.d1}
		sv := []float64{s.x, s.x0, s.x1, s.y0, s.y1, s.d0, s.d1}
		scale := 0.0
		for _, v := range dv {
			scale = math.Max(scale, math.Abs(v))
		}
		for i := range dv {
			if math.Abs(dv[i]-sv[i]) > splineSafeTol*math.Max(1, scale) {
				t.Fatalf("vjp component %d: direct %v, rescaled %v (all: %v vs %v)", i, dv[i], sv[i], dv, sv)
			}
		}
	}
}

// TestFlowExtremeConditionerFloat32 runs a float32 flow whose last
// convolution outputs extreme spline parameters at every site (weights
// zero, biases ±60 or ±200 in the width, height and derivative channels):
// forward and reverse must give finite links and log J, and the forward
// must agree with the float64 flow of the same parameters.
func TestFlowExtremeConditionerFloat32(t *testing.T) {
	const L, B = 4, 3
	a := smallArch(L, 4)
	nOut := a.OutChannels()
	for _, mag := range []float64{60, 200} {
		f32, err := NewFlow[float32](a, CPU(1))
		if err != nil {
			t.Fatal(err)
		}
		f64 := newTestFlow(t, a, 11)
		rng := rand.New(rand.NewPCG(uint64(mag), 3))
		for k := range f64.layers {
			last := &f64.layers[k].convs[len(f64.layers[k].convs)-1]
			clear(last.Weight)
			for c := range nOut - 1 {
				last.Bias[c] = float64(float32(mag * (2*rng.Float64() - 1)))
			}
		}
		for i, v := range f64.Params.Data {
			f32.Params.Data[i] = float32(v)
			f64.Params.Data[i] = float64(float32(v)) // the same parameters in both
		}
		z32 := make([]float32, B*2*L*L)
		SamplePrior(z32, B, 5, DomainTrain, 0, 0)
		z64 := f64s(z32)
		x32, zb32 := make([]float32, len(z32)), make([]float32, len(z32))
		x64 := make([]float64, len(z32))
		lf32, lr32, lf64 := make([]float64, B), make([]float64, B), make([]float64, B)
		f32.Forward(x32, z32, lf32, B, nil)
		f64.Forward(x64, z64, lf64, B, nil)
		f32.Reverse(zb32, x32, lr32, B, nil)
		for b := range B {
			if math.IsNaN(lf32[b]) || math.IsInf(lf32[b], 0) || math.IsNaN(lr32[b]) || math.IsInf(lr32[b], 0) {
				t.Fatalf("mag %v cfg %d: log J forward %v, reverse %v", mag, b, lf32[b], lr32[b])
			}
		}
		for i := range x32 {
			if v := float64(x32[i]); math.IsNaN(v) || v < 0 || v >= 2*math.Pi {
				t.Fatalf("mag %v: link %d = %v", mag, i, v)
			}
		}
		// Neither f⁻¹(f(z)) = z nor f(f⁻¹(x)) = x can hold in float32 here:
		// where a spline is as flat as e⁻⁶⁰ the rounding of its output loses
		// the input, and where it is as steep as e⁶⁰ one ulp of the
		// preimage moves the image by e⁶⁰ ulps (the site test checks the
		// two-sided round trip). The forward map is compared with float64.
		dx := compareLinks(x32, x64)
		t.Logf("mag %v: float32 vs float64 forward max |Δx| %.2e, log J %v vs %v", mag, dx, lf32, lf64)
		if dx > extremeFlowTol32 {
			t.Errorf("mag %v: float32 forward differs from float64 by %g", mag, dx)
		}
		for b := range B {
			if d := math.Abs(lf32[b] - lf64[b]); d > extremeLogJTol32*math.Abs(lf64[b]) {
				t.Errorf("mag %v cfg %d: log J float32 %v, float64 %v", mag, b, lf32[b], lf64[b])
			}
		}
	}
}

// Tolerances of the float32 flow with extreme conditioner outputs against
// float64 (measured: 1.0e-6 rad and 2e-10 relative). The conditioner is
// constant (zero weights), so the only float32 errors are the rounding of
// the prior angles and of each layer's output, amplified by the slopes of
// the later layers' splines at those points, up to e^mag in the steepest
// bins; with these seeds no point lands in one.
const (
	extremeFlowTol32 = 1e-4
	extremeLogJTol32 = 1e-6
)
