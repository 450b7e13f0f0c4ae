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
