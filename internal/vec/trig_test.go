package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestCosSin: within one float32 ulp of Go's math.Cos and math.Sin
// rounded to float32 on angles in [−4π, 4π] (plaquettes and loops lie in
// [0, 2π)), exactly 1 and 0 where the mask is off, for lengths that leave
// a remainder after every vector width.
func TestCosSin(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 17, 256, 1001} {
		a, c, s, on := make([]float32, n), make([]float32, n), make([]float32, n), make([]bool, n)
		for i := range a {
			a[i] = float32(8 * math.Pi * (rng.Float64() - 0.5))
			on[i] = rng.IntN(3) > 0
		}
		CosSin(c, s, a, on)
		for i := range a {
			wc, ws := float32(1), float32(0)
			if on[i] {
				wc, ws = float32(math.Cos(float64(a[i]))), float32(math.Sin(float64(a[i])))
			}
			if !withinULP(c[i], wc) || !withinULP(s[i], ws) || (!on[i] && (c[i] != 1 || s[i] != 0)) {
				t.Fatalf("n %d, angle %v (on %v): cos, sin = %v, %v, want %v, %v", n, a[i], on[i], c[i], s[i], wc, ws)
			}
		}
	}
}

// withinULP reports whether got is want or a float32 neighbour of it.
func withinULP(got, want float32) bool {
	return got == want || got == math.Nextafter32(want, float32(math.Inf(1))) || got == math.Nextafter32(want, float32(math.Inf(-1)))
}

// BenchmarkCosSin times the conditioner input's cosines and sines of one
// L = 16 configuration's 256 plaquettes, two thirds of them on: CosSin
// against the Go loop it replaces (math.Sincos per angle), side by side.
func BenchmarkCosSin(b *testing.B) {
	const n = 256
	rng := rand.New(rand.NewPCG(1, 2))
	a, c, s, on := make([]float32, n), make([]float32, n), make([]float32, n), make([]bool, n)
	for i := range a {
		a[i] = float32(2 * math.Pi * rng.Float64())
		on[i] = i%3 > 0
	}
	b.Run("c", func(b *testing.B) {
		for b.Loop() {
			CosSin(c, s, a, on)
		}
	})
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			for i, x := range a {
				cx, sx := float32(1), float32(0)
				if on[i] {
					sv, cv := math.Sincos(float64(x))
					cx, sx = float32(cv), float32(sv)
				}
				c[i], s[i] = cx, sx
			}
		}
	})
}
