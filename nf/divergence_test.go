package nf

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestLRSchedule: warm-up, the three shapes at their defining points.
func TestLRSchedule(t *testing.T) {
	cos := LRSchedule{Kind: "cosine", Base: 1e-3, Warmup: 10, Steps: 110, Min: 1e-5}
	step := LRSchedule{Kind: "step", Base: 1e-3, Every: 100, Factor: 0.5}
	tests := []struct {
		l    LRSchedule
		s    int64
		want float64
	}{
		{LRSchedule{Kind: "constant", Base: 2e-3}, 12345, 2e-3},
		{cos, 0, 1e-4}, {cos, 9, 1e-3}, // warm-up: (s+1)/10
		{cos, 10, 1e-3}, {cos, 60, (1e-3 + 1e-5) / 2}, {cos, 110, 1e-5}, {cos, 500, 1e-5},
		{step, 0, 1e-3}, {step, 99, 1e-3}, {step, 100, 5e-4}, {step, 250, 2.5e-4},
	}
	for _, tc := range tests {
		if got := tc.l.At(tc.s); math.Abs(got-tc.want) > 1e-15*tc.want {
			t.Errorf("%s At(%d) = %v, want %v", tc.l.Kind, tc.s, got, tc.want)
		}
	}
	for s := int64(10); s < 110; s++ { // the cosine decreases monotonically
		if cos.At(s+1) > cos.At(s) {
			t.Fatalf("cosine rises at step %d", s)
		}
	}
}

// TestDivergenceGuard: noise with a falling trend and single outliers is
// never a divergence; Patience exploded or skipped steps in a row are, and
// not one fewer.
func TestDivergenceGuard(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	g := NewDivergenceGuard(20, 3)
	fq := func(s int) float64 { return 100*math.Exp(-float64(s)/300) + 5*rng.NormFloat64() }
	for s := range 2000 {
		v := fq(s)
		if s%97 == 50 {
			v += 150 // a single outlier: bad, but alone
		}
		if why := g.Observe(v, false); why != "" {
			t.Fatalf("step %d: divergence in healthy noise: %s", s, why)
		}
	}
	for i, bad := range []struct {
		fq      float64
		skipped bool
	}{{1e4, false}, {math.NaN(), false}, {0, true}} {
		for k := range 3 {
			v := bad.fq
			why := g.Observe(v, bad.skipped)
			if (why != "") != (k == 2) {
				t.Fatalf("case %d, bad step %d of 3: reason %q", i, k+1, why)
			}
			if k == 2 && !strings.Contains(why, "3 bad steps in a row") {
				t.Errorf("reason %q", why)
			}
		}
		g.Reset()
		g.Observe(fq(2000), false)
	}
	off := NewDivergenceGuard(0, 2) // threshold 0: skipped steps only
	for range 50 {
		off.Observe(1, false)
	}
	if off.Observe(1e9, false) != "" || off.Observe(1e9, false) != "" {
		t.Error("threshold 0 judged F_q")
	}
	if off.Observe(0, true); off.Observe(0, true) == "" {
		t.Error("threshold 0: two skipped steps in a row not a divergence")
	}
}

// TestTrainSnapshot: Restore returns parameters and Adam state exactly.
func TestTrainSnapshot(t *testing.T) {
	a := NewAdam(3, 1e-3, 0.9, 0.999, 1e-8)
	p := []float32{1, 2, 3}
	Update(a, p, []float32{0.1, -0.2, 0.3})
	var s TrainSnapshot[float32]
	s.Take(7, p, a)
	want, wm, wstep := append([]float32(nil), p...), append([]float64(nil), a.M...), a.Step
	Update(a, p, []float32{5, 5, 5})
	s.Restore(p, a)
	for i := range p {
		if p[i] != want[i] || a.M[i] != wm[i] {
			t.Fatalf("restored %v %v, want %v %v", p, a.M, want, wm)
		}
	}
	if a.Step != wstep || s.Step != 7 {
		t.Errorf("Adam step %d, want %d", a.Step, wstep)
	}
}
