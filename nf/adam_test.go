package nf

import (
	"math"
	"testing"
)

// TestAdamReference checks three steps of Adam on a two-parameter problem
// against values computed by hand from PyTorch's update formula
// (torch.optim.Adam, lr = 0.1, betas = (0.9, 0.999), eps = 1e-8).
func TestAdamReference(t *testing.T) {
	a := NewAdam(2, 0.1, 0.9, 0.999, 1e-8)
	p := []float64{1, -2}
	grads := [][]float64{{0.5, -1}, {0.25, 2}, {-1, 0.5}}
	// Independent recomputation with the textbook form m̂/(√v̂+ε).
	m, v := []float64{0, 0}, []float64{0, 0}
	want := []float64{1, -2}
	for s, g := range grads {
		Update(a, p, append([]float64(nil), g...))
		for i := range g {
			m[i] = 0.9*m[i] + 0.1*g[i]
			v[i] = 0.999*v[i] + 0.001*g[i]*g[i]
			mh := m[i] / (1 - math.Pow(0.9, float64(s+1)))
			vh := v[i] / (1 - math.Pow(0.999, float64(s+1)))
			want[i] -= 0.1 * mh / (math.Sqrt(vh) + 1e-8)
		}
	}
	const tol = 1e-14
	for i := range p {
		if math.Abs(p[i]-want[i]) > tol*math.Abs(want[i]) {
			t.Errorf("param %d: got %.17g want %.17g", i, p[i], want[i])
		}
	}
	// First step of Adam moves every parameter by lr·sign(g) (up to ε).
	b := NewAdam(1, 0.1, 0.9, 0.999, 1e-8)
	q := []float32{3}
	Update(b, q, []float32{-7})
	if got := float64(q[0]); math.Abs(got-3.1) > 1e-6 {
		t.Errorf("first step: got %v want 3.1", got)
	}
}

func TestClipGradNorm(t *testing.T) {
	g := []float64{3, 4}
	if n := ClipGradNorm(g, 1); n != 5 {
		t.Fatalf("norm %v want 5", n)
	}
	if got := GradNorm(g); math.Abs(got-1) > 1e-6 {
		t.Fatalf("clipped norm %v want 1", got)
	}
	h := []float64{3, 4}
	ClipGradNorm(h, 0)
	if h[0] != 3 || h[1] != 4 {
		t.Fatal("maxNorm 0 must not clip")
	}
	if AllFinite([]float32{1, float32(math.NaN())}) || !AllFinite([]float64{1, 2}) {
		t.Fatal("AllFinite wrong")
	}
}

// TestClipGrad: the clipping of the configs (not the paper's code's, which does not clip), component values first, then the norm
// (torch.nn.utils.clip_grad_value_ then clip_grad_norm_), table-driven.
func TestClipGrad(t *testing.T) {
	for _, c := range []struct {
		name           string
		g              []float64
		maxAbs, maxNrm float64
		want           []float64
		norm           float64 // returned: the norm before any clipping
	}{
		{"off", []float64{3, -4}, 0, 0, []float64{3, -4}, 5},
		{"value only", []float64{3, -4, 0.05}, 0.1, 0, []float64{0.1, -0.1, 0.05}, math.Sqrt(25.0025)},
		{"norm only", []float64{3, -4}, 0, 1, []float64{0.6, -0.8}, 5},
		{"value then norm", []float64{30, -40, 0}, 3, 1, []float64{1 / math.Sqrt2, -1 / math.Sqrt2, 0}, 50},
		{"norm not reached after value", []float64{30, -40}, 0.1, 10, []float64{0.1, -0.1}, 50},
	} {
		g := append([]float64(nil), c.g...)
		if n := ClipGrad(g, c.maxAbs, c.maxNrm); math.Abs(n-c.norm) > 1e-12 {
			t.Errorf("%s: norm %v, want %v", c.name, n, c.norm)
		}
		for i := range g {
			// ClipGradNorm scales by maxNorm/(norm + 1e-6), as PyTorch does.
			if math.Abs(g[i]-c.want[i]) > 1e-6 {
				t.Errorf("%s: g = %v, want %v", c.name, g, c.want)
				break
			}
		}
	}
	if n := ClipGradValue([]float32{0.2, -0.3, 0.05}, 0.1); n != 2 {
		t.Errorf("ClipGradValue changed %d components, want 2", n)
	}
}
