package lgt

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"nfschwinger/internal/h5"
)

// Tolerances against the reference vectors (float64 PyTorch, see
// shared/vectors/README.md). Both sides are float64 LU factorizations of
// well-conditioned matrices of order ≤ 288 with entries O(1); the
// differences observed are ~1e-14 relative, so these bounds leave room for
// other BLAS builds and still catch any convention error, which shows up at
// O(κ) ≈ 0.3.
const (
	vectorsRelTol = 1e-10 // scalars, relative to the scale of the array
	forceRelTol   = 1e-9  // force, relative to the largest |force| of the configuration
)

// randomLinks returns a configuration of uniform angles in [0, 2π).
func randomLinks(rng *rand.Rand, L int) []float64 {
	links := make([]float64, 2*L*L)
	for i := range links {
		links[i] = TwoPi * rng.Float64()
	}
	return links
}

// maxAbs returns max |a_i|.
func maxAbs(a []float64) float64 {
	m := 0.0
	for _, v := range a {
		m = math.Max(m, math.Abs(v))
	}
	return m
}

// checkClose fails t unless |got_i − want_i| ≤ tol·max(|want_i|, scale)
// for every i, where scale = max(max_j |want_j|, floor): a relative
// criterion that does not blow up for entries near 0. floor is the natural
// size of the quantity when the array may hold only values near 0 (1 for
// the scalar observables, which are sums of O(1) terms: a log-determinant
// of 1e-6 is a sum of terms of O(κ²) that cancel), or 0.
func checkClose(t *testing.T, what string, got, want []float64, tol, floor float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	scale := math.Max(maxAbs(want), math.Max(floor, 1e-300))
	worst := 0.0
	for i := range got {
		d := math.Abs(got[i]-want[i]) / math.Max(math.Abs(want[i]), scale)
		if !(d <= tol) {
			t.Errorf("%s[%d]: got %.15g want %.15g (relative %.2g > %.2g)", what, i, got[i], want[i], d, tol)
			return
		}
		worst = math.Max(worst, d)
	}
	t.Logf("%s: worst relative difference %.2g", what, worst)
}

// vectorFile is one reference file, read whole.
type vectorFile struct {
	L, B  int
	beta  float64
	kappa float64
	links []float64
	want  map[string][]float64
}

var observableNames = []string{"gauge_action", "fermion_action", "action", "log_abs_det_D",
	"sign_det_D", "condensate", "topological_charge", "mean_cos_plaquette"}

func readVectors(t *testing.T, name string) vectorFile {
	t.Helper()
	f, err := h5.Open(vectorsDir + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var v vectorFile
	links, shape, err := h5.Read[float64](f, "links")
	if err != nil {
		t.Fatal(err)
	}
	v.links, v.B, v.L = links, shape[0], shape[2]
	if v.beta, err = h5.ReadScalarAttr[float64](f, "/", "beta"); err != nil {
		t.Fatal(err)
	}
	if v.kappa, err = h5.ReadScalarAttr[float64](f, "/", "kappa"); err != nil {
		t.Fatal(err)
	}
	v.want = map[string][]float64{}
	for _, k := range append(observableNames, "force") {
		if v.want[k], _, err = h5.Read[float64](f, k); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// field returns the named observable of every element of obs.
func field(obs []Observables, name string) []float64 {
	out := make([]float64, len(obs))
	for i, o := range obs {
		out[i] = map[string]float64{
			"gauge_action": o.GaugeAction, "fermion_action": o.FermionAction, "action": o.Action,
			"log_abs_det_D": o.LogAbsDetD, "sign_det_D": o.SignDetD, "condensate": o.Condensate,
			"topological_charge": o.TopologicalCharge, "mean_cos_plaquette": o.MeanCosPlaquette,
		}[name]
	}
	return out
}

func TestAgainstVectors(t *testing.T) {
	for _, name := range []string{"schwinger_L4.h5", "schwinger_L8.h5", "schwinger_L12.h5"} {
		t.Run(name, func(t *testing.T) {
			v := readVectors(t, name)
			p := Params{L: v.L, Beta: v.beta, Kappa: v.kappa}
			n := 2 * p.V()
			pool := NewPool(p, 2)
			obs := make([]Observables, v.B)
			force := make([]float64, v.B*n)
			if err := pool.Measure(obs, force, v.links); err != nil {
				t.Fatal(err)
			}
			for _, k := range observableNames {
				checkClose(t, k, field(obs, k), v.want[k], vectorsRelTol, 0)
			}
			for b := 0; b < v.B; b++ {
				checkClose(t, fmt.Sprintf("force cfg %d", b), force[b*n:(b+1)*n], v.want["force"][b*n:(b+1)*n], forceRelTol, 0)
			}
			// Action (the cheaper path without the condensate) agrees too.
			action := make([]float64, v.B)
			clear(force)
			if err := pool.Action(action, force, v.links); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "Pool.Action", action, v.want["action"], vectorsRelTol, 0)
			checkClose(t, "Pool.Action force", force, v.want["force"], forceRelTol, 0)
			// The dense reference path agrees as well.
			ev := NewEvaluator(p)
			for b := 0; b < v.B; b++ {
				f := make([]float64, n)
				o, err := ev.MeasureDense(v.links[b*n:(b+1)*n], f)
				if err != nil {
					t.Fatal(err)
				}
				checkClose(t, "dense action", []float64{o.Action}, v.want["action"][b:b+1], vectorsRelTol, 0)
				checkClose(t, "dense force", f, v.want["force"][b*n:(b+1)*n], forceRelTol, 0)
			}
		})
	}
}

func TestDiracDenseAgainstVectors(t *testing.T) {
	const tol = 1e-14 // entries are κ·(±1, ±i)·e^{iθ}: one rounding of sin/cos
	f, err := h5.Open(vectorsDir + "schwinger_L4.h5")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	links, _, err := h5.Read[float64](f, "links")
	if err != nil {
		t.Fatal(err)
	}
	re, shape, err := h5.Read[float64](f, "dirac_cfg0_real")
	if err != nil {
		t.Fatal(err)
	}
	im, _, err := h5.Read[float64](f, "dirac_cfg0_imag")
	if err != nil {
		t.Fatal(err)
	}
	const L = 4
	n := 2 * L * L
	if shape[0] != n || shape[1] != n {
		t.Fatalf("dirac_cfg0 shape %v, want (%d, %d)", shape, n, n)
	}
	kappa, _ := h5.ReadScalarAttr[float64](f, "/", "kappa")
	d := make([]complex128, n*n)
	DiracDense(d, links[:n], L, kappa)
	for r := 0; r < n; r++ {
		for c := 0; c < n; c++ {
			g, w := d[r*n+c], complex(re[r*n+c], im[r*n+c])
			if diff := g - w; math.Abs(real(diff)) > tol || math.Abs(imag(diff)) > tol {
				t.Fatalf("D[%d][%d] = %v, want %v", r, c, g, w)
			}
		}
	}
}

func TestDiracApplyMatchesDense(t *testing.T) {
	const tol = 1e-13 // ≤ 5 terms of size ≤ 2κ|v| per entry
	rng := rand.New(rand.NewPCG(11, 12))
	for _, L := range []int{2, 4, 6} {
		n := 2 * L * L
		links := randomLinks(rng, L)
		src := make([]complex128, n)
		for i := range src {
			src[i] = complex(rng.NormFloat64(), rng.NormFloat64())
		}
		d := make([]complex128, n*n)
		DiracDense(d, links, L, 0.276)
		got := make([]complex128, n)
		DiracApply(got, src, links, L, 0.276)
		for r := 0; r < n; r++ {
			var want complex128
			for c := 0; c < n; c++ {
				want += d[r*n+c] * src[c]
			}
			if diff := got[r] - want; math.Hypot(real(diff), imag(diff)) > tol {
				t.Fatalf("L=%d: (D·v)[%d] = %v, dense %v", L, r, got[r], want)
			}
		}
	}
}

// TestFreeField compares with the analytic free theory (all θ = 0): with
// momenta p₀ = 2π(k + ½)/L (antiperiodic) and p₁ = 2πm/L, D is diagonal in
// momentum space, D(p) = a + i b·σ with a = 1 − 2κ(cos p₀ + cos p₁) and
// b_μ = ±2κ sin p_μ, so det D = Π_p (a² + |b|²) and
// Re Tr D⁻¹ = Σ_p 2a/(a² + |b|²).
func TestFreeField(t *testing.T) {
	const tol = 1e-12
	for _, L := range []int{2, 4, 6, 8} {
		p := Params{L: L, Beta: 2, Kappa: 0.276}
		V := p.V()
		links := make([]float64, 2*V)
		logDet, trInv := 0.0, 0.0
		for k := 0; k < L; k++ {
			for m := 0; m < L; m++ {
				p0 := TwoPi * (float64(k) + 0.5) / float64(L)
				p1 := TwoPi * float64(m) / float64(L)
				a := 1 - 2*p.Kappa*(math.Cos(p0)+math.Cos(p1))
				b2 := 4 * p.Kappa * p.Kappa * (math.Sin(p0)*math.Sin(p0) + math.Sin(p1)*math.Sin(p1))
				logDet += math.Log(a*a + b2)
				trInv += 2 * a / (a*a + b2)
			}
		}
		o, err := NewEvaluator(p).Measure(links, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := Observables{GaugeAction: -p.Beta * float64(V), FermionAction: -2 * logDet,
			Action: -p.Beta*float64(V) - 2*logDet, LogAbsDetD: logDet, SignDetD: 1,
			Condensate: trInv / float64(V), TopologicalCharge: 0, MeanCosPlaquette: 1}
		for _, k := range observableNames {
			checkClose(t, fmt.Sprintf("L=%d %s", L, k), field([]Observables{o}, k), field([]Observables{want}, k), tol, 1)
		}
	}
}

// TestForceFiniteDifference compares the force with central differences
// (S(θ + h) − S(θ − h))/2h, h = 1e-5: truncation error h²/6·|S”'| ~ 1e-10
// and rounding ε|S|/h ~ 1e-10 for |S| ~ 10², so 1e-7 relative to the force
// scale is a bound with margin that a wrong term (O(κ)) cannot meet.
func TestForceFiniteDifference(t *testing.T) {
	const (
		h   = 1e-5
		tol = 1e-7
	)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, L := range []int{2, 4, 6} {
		p := Params{L: L, Beta: 2, Kappa: 0.276}
		ev := NewEvaluator(p)
		links := randomLinks(rng, L)
		force := make([]float64, 2*p.V())
		if _, err := ev.Action(links, force); err != nil {
			t.Fatal(err)
		}
		fd := make([]float64, len(force))
		for l := range links {
			save := links[l]
			links[l] = save + h
			sp, err1 := ev.Action(links, nil)
			links[l] = save - h
			sm, err2 := ev.Action(links, nil)
			links[l] = save
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			fd[l] = (sp - sm) / (2 * h)
		}
		checkClose(t, fmt.Sprintf("L=%d force vs finite differences", L), force, fd, tol, 0)
	}
}

func TestGaugeInvariance(t *testing.T) {
	const tol = 1e-11 // gauge-invariant up to the rounding of θ + α − α'
	rng := rand.New(rand.NewPCG(5, 6))
	for _, L := range []int{4, 6, 8} {
		p := Params{L: L, Beta: 2, Kappa: 0.276}
		ev := NewEvaluator(p)
		links := randomLinks(rng, L)
		alpha := make([]float64, p.V())
		for i := range alpha {
			alpha[i] = TwoPi * rng.Float64()
		}
		g := make([]float64, len(links))
		GaugeTransform(g, links, alpha, L)
		f0, f1 := make([]float64, len(links)), make([]float64, len(links))
		o0, err := ev.Measure(links, f0)
		if err != nil {
			t.Fatal(err)
		}
		o1, err := ev.Measure(g, f1)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range observableNames {
			checkClose(t, fmt.Sprintf("L=%d %s", L, k), field([]Observables{o1}, k), field([]Observables{o0}, k), tol, 1)
		}
		// dS/dθ is gauge invariant too: S(θ^Ω) = S(θ) for all θ.
		checkClose(t, fmt.Sprintf("L=%d force", L), f1, f0, tol, 0)
	}
}

// TestEvenOddMatchesDense checks the even–odd reduction against the LU of
// the full matrix, on random configurations including L = 2 (where the two
// hops along a direction connect the same pair of sites), and that det D is
// real.
func TestEvenOddMatchesDense(t *testing.T) {
	const (
		tol      = 1e-11 // two LU's of orders V and 2V ≤ 128
		imagTol  = 1e-11 // |Im phase| of det D
		forceTol = 1e-10
	)
	rng := rand.New(rand.NewPCG(7, 8))
	methods := []struct {
		name string
		inv  int
	}{{"hetrf", invHerm}, {"getri", invGetri}, {"getrs", invGetrs}}
	for _, L := range []int{2, 4, 6, 8} {
		for _, kappa := range []float64{0.1, 0.276, 0.4} {
			p := Params{L: L, Beta: 2, Kappa: kappa}
			ev := NewEvaluator(p)
			for trial := 0; trial < 3; trial++ {
				m := methods[trial%len(methods)]
				ev.inv = m.inv
				links := randomLinks(rng, L)
				la, pa, err := ev.LogDet(links)
				if err != nil {
					t.Fatal(err)
				}
				lb, pb, err := ev.LogDetDense(links)
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("L=%d κ=%v #%d %s", L, kappa, trial, m.name)
				if math.Abs(la-lb) > tol*math.Max(1, math.Abs(lb)) {
					t.Errorf("%s: log|det D| even–odd %v, dense %v", name, la, lb)
				}
				if math.Abs(imag(pa)) > imagTol || math.Abs(imag(pb)) > imagTol {
					t.Errorf("%s: det D not real: phases %v, %v", name, pa, pb)
				}
				if math.Abs(real(pa)-real(pb)) > imagTol {
					t.Errorf("%s: sign of det D: even–odd %v, dense %v", name, pa, pb)
				}
				fa, fb := make([]float64, 2*p.V()), make([]float64, 2*p.V())
				oa, err := ev.Measure(links, fa)
				if err != nil {
					t.Fatal(err)
				}
				ob, err := ev.MeasureDense(links, fb)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range observableNames {
					checkClose(t, name+" "+k, field([]Observables{oa}, k), field([]Observables{ob}, k), tol, 1)
				}
				checkClose(t, name+" force", fa, fb, forceTol, 0)
			}
		}
	}
}

func TestPoolIndependentOfWorkers(t *testing.T) {
	const B, L = 7, 6
	p := Params{L: L, Beta: 2, Kappa: 0.276}
	n := 2 * p.V()
	rng := rand.New(rand.NewPCG(9, 10))
	links := make([]float64, 0, B*n)
	for b := 0; b < B; b++ {
		links = append(links, randomLinks(rng, L)...)
	}
	var refObs []Observables
	var refForce []float64
	for _, workers := range []int{1, 2, 3, 8, 0} {
		pool := NewPool(p, workers)
		obs := make([]Observables, B)
		force := make([]float64, B*n)
		if err := pool.Measure(obs, force, links); err != nil {
			t.Fatal(err)
		}
		action := make([]float64, B)
		force2 := make([]float64, B*n)
		if err := pool.Action(action, force2, links); err != nil {
			t.Fatal(err)
		}
		for b := range obs {
			if action[b] != obs[b].Action {
				t.Errorf("workers=%d cfg %d: Action %v, Measure %v", workers, b, action[b], obs[b].Action)
			}
		}
		if refObs == nil {
			refObs, refForce = obs, force
			continue
		}
		for b := range obs {
			if obs[b] != refObs[b] {
				t.Errorf("workers=%d cfg %d: %+v, with 1 worker %+v", workers, b, obs[b], refObs[b])
			}
		}
		for i := range force {
			if force[i] != refForce[i] || force2[i] != refForce[i] {
				t.Fatalf("workers=%d: force[%d] = %v / %v, with 1 worker %v", workers, i, force[i], force2[i], refForce[i])
			}
		}
	}
}

func TestEvaluatorDoesNotAllocate(t *testing.T) {
	p := Params{L: 8, Beta: 2, Kappa: 0.276}
	ev := NewEvaluator(p)
	links := randomLinks(rand.New(rand.NewPCG(1, 1)), p.L)
	force := make([]float64, 2*p.V())
	for name, fn := range map[string]func(){
		"Action":            func() { _, _ = ev.Action(links, nil) },
		"Action+force":      func() { _, _ = ev.Action(links, force) },
		"Measure+force":     func() { _, _ = ev.Measure(links, force) },
		"GaugeAction":       func() { _ = GaugeAction(links, p.L, p.Beta) },
		"TopologicalCharge": func() { _ = TopologicalCharge(links, p.L) },
	} {
		if a := testing.AllocsPerRun(5, fn); a != 0 {
			t.Errorf("%s: %v allocations per call", name, a)
		}
	}
}

func TestErrors(t *testing.T) {
	p := Params{L: 4, Beta: 2, Kappa: 0.276}
	ev := NewEvaluator(p)
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		links := make([]float64, 2*p.V())
		links[5] = bad
		if _, err := ev.Action(links, nil); !errors.Is(err, ErrNonFinite) {
			t.Errorf("Action with angle %v: error %v, want ErrNonFinite", bad, err)
		}
		if _, err := ev.Measure(links, nil); !errors.Is(err, ErrNonFinite) {
			t.Errorf("Measure with angle %v: error %v, want ErrNonFinite", bad, err)
		}
	}
	// The pool names the first failing configuration.
	links := make([]float64, 3*2*p.V())
	links[2*2*p.V()+1] = math.NaN()
	err := NewPool(p, 2).Action(make([]float64, 3), nil, links)
	if !errors.Is(err, ErrNonFinite) || err.Error()[:len("lgt: configuration 2 of 3")] != "lgt: configuration 2 of 3" {
		t.Errorf("Pool error %q", err)
	}
}

// TestValidate checks that Params.Validate rejects what the kernels cannot
// handle: odd or too small L (no consistent checkerboard), non-finite
// couplings.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Params
		ok bool
	}{
		{Params{L: 4, Beta: 2, Kappa: 0.276}, true},
		{Params{L: 2, Beta: 0, Kappa: 0}, true},
		{Params{L: 0, Beta: 2, Kappa: 0.276}, false},
		{Params{L: 5, Beta: 2, Kappa: 0.276}, false},
		{Params{L: -4, Beta: 2, Kappa: 0.276}, false},
		{Params{L: 4, Beta: math.NaN(), Kappa: 0.276}, false},
		{Params{L: 4, Beta: 2, Kappa: math.Inf(1)}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}
