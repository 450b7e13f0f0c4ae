package nf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"nfschwinger/lgt"
)

// Tolerances of the flow's derivative tests (float64).
const (
	// flowFDStep: central differences of a loss of order 10–100 built from
	// smooth (C¹ at the spline knots, C^∞ elsewhere) maps: truncation
	// O(h²) ≈ 1e-12 relative, rounding ε·|L|/h ≈ 1e-9.
	flowFDStep = 1e-6
	// flowFDTol: agreement of backward pass and differences, relative to
	// max(1, |derivative|): 100× the rounding error above.
	flowFDTol = 1e-6
	// invTol: Reverse(Forward(z)) = z and logJ_rev = −logJ_fwd after 48
	// layers in float64: each layer's inverse is accurate to a few ulps
	// times its condition number (measured ≈ 1e-12).
	invTol = 1e-9
	// jacStep, jacTol: log|det| of the 2V×2V Jacobian from central
	// differences (error O(h²) ≈ 1e-10 per entry, amplified by the
	// condition number of the Jacobian, O(100)) against log J.
	jacStep = 1e-5
	jacTol  = 1e-6
	// gaugeTol: log q is gauge invariant up to rounding of the transformed
	// links (a few ulps of 2π) propagated through the flow.
	gaugeTol = 1e-9
)

// smallArch is a small flow for derivative tests on an L×L lattice.
func smallArch(L, layers int) Arch {
	return Arch{L: L, NLayers: layers, NKnots: 5, Hidden: []int{6, 5}, KernelSize: 3,
		Dilation: []int{1, 2, 1}, Masking: "2x1", LeakyReLUSlope: 0.01}
}

// newTestFlow returns a float64 flow with PyTorch-default random weights,
// the last convolution's weights scaled by 3 so the splines are far from
// the identity.
func newTestFlow(t *testing.T, a Arch, seed uint64) *Flow[float64] {
	t.Helper()
	fl, err := NewFlow[float64](a, CPU(0))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 17))
	fl.Init(rng)
	for k := range fl.layers {
		w := fl.layers[k].convs[len(fl.layers[k].convs)-1].Weight
		for i := range w {
			w[i] *= 3
		}
	}
	return fl
}

// uniformLinks returns B configurations of uniform angles.
func uniformLinks(rng *rand.Rand, B, L int) []float64 {
	z := make([]float64, B*2*L*L)
	for i := range z {
		z[i] = 2 * math.Pi * rng.Float64()
	}
	return z
}

// smoothLoss is L = Σ_i r_i sin(y_i + c_i) + Σ_b w_b logJ_b, smooth and
// periodic in the angles; grad writes ∂L/∂y.
type smoothLoss struct {
	r, c, w []float64
}

func newSmoothLoss(rng *rand.Rand, n, B int) smoothLoss {
	l := smoothLoss{make([]float64, n), make([]float64, n), make([]float64, B)}
	for i := range l.r {
		l.r[i], l.c[i] = rng.NormFloat64(), 2*math.Pi*rng.Float64()
	}
	for b := range l.w {
		l.w[b] = rng.NormFloat64()
	}
	return l
}

func (l smoothLoss) value(y, logJ []float64) float64 {
	s := 0.0
	for i := range y {
		s += l.r[i] * math.Sin(y[i]+l.c[i])
	}
	for b := range logJ {
		s += l.w[b] * logJ[b]
	}
	return s
}

func (l smoothLoss) grad(g, y []float64) {
	for i := range y {
		g[i] = l.r[i] * math.Cos(y[i]+l.c[i])
	}
}

// TestFlowBackwardFiniteDifferences checks BackwardForward and
// BackwardReverse against central differences with respect to a sample of
// parameters and of input links, on L = 4 with 6 layers (all four offsets
// in direction 0, two in direction 1).
func TestFlowBackwardFiniteDifferences(t *testing.T) {
	const L, B = 4, 2
	a := smallArch(L, 6)
	fl := newTestFlow(t, a, 1)
	rng := rand.New(rand.NewPCG(2, 3))
	n := B * 2 * L * L
	in := uniformLinks(rng, B, L)
	loss := newSmoothLoss(rng, n, B)
	out := make([]float64, n)
	logJ := make([]float64, B)
	tape := fl.NewTape(B)

	for _, dir := range []string{"forward", "reverse"} {
		run := func(dst, src []float64, tp *Tape[float64]) {
			if dir == "forward" {
				fl.Forward(dst, src, logJ, B, tp)
			} else {
				fl.Reverse(dst, src, logJ, B, tp)
			}
		}
		eval := func() float64 {
			run(out, in, nil)
			return loss.value(out, logJ)
		}
		run(out, in, tape)
		gout := make([]float64, n)
		loss.grad(gout, out)
		gin := make([]float64, n)
		fl.Params.ZeroGrad()
		glogJ := append([]float64(nil), loss.w...)
		if dir == "forward" {
			fl.BackwardForward(tape, gin, gout, glogJ)
		} else {
			fl.BackwardReverse(tape, gin, gout, glogJ)
		}
		check := func(what string, p *float64, analytic float64) {
			t.Helper()
			p0 := *p
			*p = p0 + flowFDStep
			lp := eval()
			*p = p0 - flowFDStep
			lm := eval()
			*p = p0
			num := (lp - lm) / (2 * flowFDStep)
			if math.Abs(num-analytic) > flowFDTol*math.Max(1, math.Abs(num)) {
				t.Errorf("%s %s: backward %v, differences %v", dir, what, analytic, num)
			}
		}
		for i := 0; i < n; i += 3 {
			check(fmt.Sprintf("∂L/∂link[%d]", i), &in[i], gin[i])
		}
		for s := 0; s < 60; s++ {
			i := rng.IntN(fl.Params.Len())
			check(fmt.Sprintf("∂L/∂param[%d]", i), &fl.Params.Data[i], fl.Params.Grad[i])
		}
		// Every bias of the last convolution of every layer (the spline
		// parameters of all kinds: widths, heights, derivatives, shift).
		for k := 0; k < a.NLayers; k++ {
			bias, gbias := fl.Params.View(ParamName(k, len(a.Hidden), "bias"))
			for i := range bias {
				check(fmt.Sprintf("layer %d spline bias %d", k, i), &bias[i], gbias[i])
			}
		}
	}
}

// TestBackwardGzNil checks that the parameter gradient does not depend on
// whether the input gradient is requested, and that gz may alias gx.
func TestBackwardGzNil(t *testing.T) {
	const L, B = 4, 3
	fl := newTestFlow(t, smallArch(L, 4), 4)
	rng := rand.New(rand.NewPCG(5, 6))
	n := B * 2 * L * L
	z := uniformLinks(rng, B, L)
	x := make([]float64, n)
	logJ := make([]float64, B)
	tape := fl.NewTape(B)
	fl.Forward(x, z, logJ, B, tape)
	gx := uniformLinks(rng, B, L)
	glogJ := []float64{0.3, -1, 2}
	fl.Params.ZeroGrad()
	fl.BackwardForward(tape, nil, gx, glogJ)
	want := append([]float64(nil), fl.Params.Grad...)
	fl.Params.ZeroGrad()
	g := append([]float64(nil), gx...)
	fl.BackwardForward(tape, g, g, glogJ)
	for i := range want {
		if fl.Params.Grad[i] != want[i] {
			t.Fatalf("param grad %d: %v with gz = gx, %v with gz = nil", i, fl.Params.Grad[i], want[i])
		}
	}
}

// TestFlowInvertible: Reverse(Forward(z)) = z and logJ_rev = −logJ_fwd at
// L = 16 with 48 layers (six full mask periods), in float64 and in place.
func TestFlowInvertible(t *testing.T) {
	const L, B = 16, 2
	a := smallArch(L, 48)
	a.NKnots = 9
	fl := newTestFlow(t, a, 7)
	rng := rand.New(rand.NewPCG(8, 9))
	z := uniformLinks(rng, B, L)
	x := make([]float64, len(z))
	lf, lr := make([]float64, B), make([]float64, B)
	fl.Forward(x, z, lf, B, nil)
	zb := append([]float64(nil), x...)
	fl.Reverse(zb, zb, lr, B, nil)
	if d := compareLinks(zb, z); d > invTol {
		t.Fatalf("reverse(forward(z)) − z: max |Δ| = %g", d)
	}
	moved := compareLinks(x, z)
	for b := range lf {
		if math.Abs(lf[b]+lr[b]) > invTol*math.Max(1, math.Abs(lf[b])) {
			t.Fatalf("cfg %d: logJ forward %v, reverse %v", b, lf[b], lr[b])
		}
	}
	if moved < 0.1 || lf[0] == 0 {
		t.Fatalf("the flow is close to the identity (max move %g, logJ %v): the test would not see errors", moved, lf[0])
	}
}

// TestLogJacobianDeterminant: logJ equals log|det ∂x/∂z| of the numerical
// Jacobian (central differences of all 2V outputs with respect to all 2V
// inputs) on L = 4 with 8 layers.
func TestLogJacobianDeterminant(t *testing.T) {
	const L = 4
	n := 2 * L * L
	fl := newTestFlow(t, smallArch(L, 8), 10)
	rng := rand.New(rand.NewPCG(11, 12))
	z := uniformLinks(rng, 1, L)
	x := make([]float64, n)
	logJ := make([]float64, 1)
	fl.Forward(x, z, logJ, 1, nil)
	// All 2n perturbed configurations in one batch.
	zs := make([]float64, 2*n*n)
	for j := 0; j < n; j++ {
		for s, sgn := range []float64{1, -1} {
			c := zs[(2*j+s)*n : (2*j+s+1)*n]
			copy(c, z)
			c[j] += sgn * jacStep
		}
	}
	xs := make([]float64, len(zs))
	lj := make([]float64, 2*n)
	fl.Forward(xs, zs, lj, 2*n, nil)
	jac := mat.NewDense(n, n, nil)
	for j := 0; j < n; j++ {
		p, m := xs[2*j*n:(2*j+1)*n], xs[(2*j+1)*n:(2*j+2)*n]
		for i := 0; i < n; i++ {
			d := math.Remainder(p[i]-m[i], 2*math.Pi) // difference on the circle
			jac.Set(i, j, d/(2*jacStep))
		}
	}
	var lu mat.LU
	lu.Factorize(jac)
	logDet, _ := lu.LogDet()
	if math.Abs(logDet-logJ[0]) > jacTol*math.Max(1, math.Abs(logJ[0])) {
		t.Fatalf("log|det J| = %v, logJ = %v", logDet, logJ[0])
	}
	if math.Abs(logJ[0]) < 0.1 {
		t.Fatalf("logJ = %v: too close to 0 for a meaningful test", logJ[0])
	}
}

// TestGaugeEquivariance: log q(φ) is unchanged by a gauge transformation of
// φ, and the flow commutes with gauge transformations: f(Ωz) = Ω f(z).
func TestGaugeEquivariance(t *testing.T) {
	const L, B = 8, 2
	fl := newTestFlow(t, smallArch(L, 8), 13)
	rng := rand.New(rand.NewPCG(14, 15))
	V := L * L
	phi := uniformLinks(rng, B, L)
	phiG := make([]float64, len(phi))
	alpha := make([]float64, V)
	for b := 0; b < B; b++ {
		for i := range alpha {
			alpha[i] = 2 * math.Pi * rng.Float64()
		}
		lgt.GaugeTransform(phiG[b*2*V:(b+1)*2*V], phi[b*2*V:(b+1)*2*V], alpha, L)
	}
	z, zG := make([]float64, len(phi)), make([]float64, len(phi))
	lq, lqG := make([]float64, B), make([]float64, B)
	fl.Reverse(z, phi, lq, B, nil)
	fl.Reverse(zG, phiG, lqG, B, nil)
	for b := range lq {
		if math.Abs(lq[b]-lqG[b]) > gaugeTol*math.Max(1, math.Abs(lq[b])) {
			t.Fatalf("cfg %d: log q %v, after a gauge transformation %v", b, LogPrior(L)+lq[b], LogPrior(L)+lqG[b])
		}
	}
	// Forward: f(Ω z) = Ω f(z) with the same α.
	x, xG := make([]float64, V*2), make([]float64, V*2)
	zz, zzG := phi[:2*V], make([]float64, 2*V)
	lgt.GaugeTransform(zzG, zz, alpha, L)
	l1, l2 := make([]float64, 1), make([]float64, 1)
	fl.Forward(x, zz, l1, 1, nil)
	fl.Forward(xG, zzG, l2, 1, nil)
	want := make([]float64, 2*V)
	lgt.GaugeTransform(want, x, alpha, L)
	if d := compareLinks(xG, want); d > gaugeTol {
		t.Fatalf("f(Ωz) − Ωf(z): max |Δ| = %g", d)
	}
}

// invTol32 bounds Reverse(Forward(z)) − z in float32 after 48 layers at
// L = 16 with PyTorch-default weights: every layer pass rounds the angles by
// a few ε₃₂·2π ≈ 7.5e-7, and the reverse pass amplifies earlier errors by
// the inverse's condition number (1/g', and the conditioner's sensitivity to
// its frozen inputs), so the error grows about linearly with the number of
// layers: measured 1.4e-6 after 8, 1.3e-5 after 48 layers. log J sums
// 48·64 log-derivatives per configuration: measured 2e-4.
const (
	invTol32     = 1e-4
	invLogJTol32 = 2e-3
)

// TestFlowInvertible32 is TestFlowInvertible in float32, the default
// precision, with the initialization training starts from.
func TestFlowInvertible32(t *testing.T) {
	const L, B = 16, 2
	a := smallArch(L, 48)
	a.NKnots = 9
	fl, err := NewFlow[float32](a, CPU(0))
	if err != nil {
		t.Fatal(err)
	}
	fl.Init(rand.New(rand.NewPCG(7, 17)))
	z := make([]float32, B*2*L*L)
	SamplePrior(z, B, 3, DomainTrain, 0, 0)
	x := make([]float32, len(z))
	zb := make([]float32, len(z))
	lf, lr := make([]float64, B), make([]float64, B)
	fl.Forward(x, z, lf, B, nil)
	fl.Reverse(zb, x, lr, B, nil)
	zf := make([]float64, len(z))
	for i := range z {
		zf[i] = float64(z[i])
	}
	d := compareLinks(zb, zf)
	t.Logf("float32 round trip: max |Δz| = %.2e, logJ %v, %v", d, lf, lr)
	if d > invTol32 {
		t.Fatalf("reverse(forward(z)) − z: max |Δ| = %g", d)
	}
	for b := range lf {
		if math.Abs(lf[b]+lr[b]) > invLogJTol32 {
			t.Fatalf("cfg %d: logJ forward %v, reverse %v", b, lf[b], lr[b])
		}
	}
}
