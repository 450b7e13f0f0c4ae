package lgt

import (
	"math"
	"math/rand/v2"
	"testing"

	"nfschwinger/internal/h5"
)

// vectorsDir is where shared/vectors lies relative to a package directory.
const vectorsDir = "../../shared/vectors/"

func TestGeometryAgainstVectors(t *testing.T) {
	const tol = 1e-12 // a few roundings of sums of angles below 2π·6
	for _, name := range []string{"schwinger_L4.h5", "schwinger_L8.h5", "schwinger_L12.h5"} {
		f, err := h5.Open(vectorsDir + name)
		if err != nil {
			t.Fatal(err)
		}
		links, shape, _ := h5.Read[float64](f, "links")
		plaq, _, _ := h5.Read[float64](f, "plaquette_angle")
		loops, _, _ := h5.Read[float64](f, "loops_2x1")
		f.Close()
		B, L := shape[0], shape[2]
		V := L * L
		p := make([]float64, V)
		l := make([]float64, 2*V)
		for b := 0; b < B; b++ {
			Plaquettes(p, links[b*2*V:(b+1)*2*V], L)
			Loops2x1(l, links[b*2*V:(b+1)*2*V], L)
			for x := range p {
				if d := AngleDist(p[x], plaq[b*V+x]); d > tol {
					t.Fatalf("%s cfg %d plaquette %d: got %v want %v", name, b, x, p[x], plaq[b*V+x])
				}
			}
			for x := range l {
				if d := AngleDist(l[x], loops[b*2*V+x]); d > tol {
					t.Fatalf("%s cfg %d loop %d: got %v want %v", name, b, x, l[x], loops[b*2*V+x])
				}
			}
		}
	}
}

func TestGaugeTransformKeepsLoops(t *testing.T) {
	const L = 8
	V := L * L
	rng := rand.New(rand.NewPCG(1, 2))
	links := make([]float64, 2*V)
	alpha := make([]float64, V)
	for i := range links {
		links[i] = TwoPi * rng.Float64()
	}
	for i := range alpha {
		alpha[i] = TwoPi * rng.Float64()
	}
	g := make([]float64, 2*V)
	GaugeTransform(g, links, alpha, L)
	p0, p1 := make([]float64, V), make([]float64, V)
	l0, l1 := make([]float64, 2*V), make([]float64, 2*V)
	Plaquettes(p0, links, L)
	Plaquettes(p1, g, L)
	Loops2x1(l0, links, L)
	Loops2x1(l1, g, L)
	for x := range p0 {
		if AngleDist(p0[x], p1[x]) > 1e-12 {
			t.Fatalf("plaquette %d changed: %v -> %v", x, p0[x], p1[x])
		}
	}
	for x := range l0 {
		if AngleDist(l0[x], l1[x]) > 1e-12 {
			t.Fatalf("loop %d changed: %v -> %v", x, l0[x], l1[x])
		}
	}
}

func TestAngleDist(t *testing.T) {
	for _, c := range []struct{ a, b, want float64 }{
		{0, 0, 0}, {0.1, 0.3, 0.2}, {0.1, TwoPi - 0.1, 0.2}, {-0.1, 0.1, 0.2},
		{0, math.Pi, math.Pi}, {3 * TwoPi, 0.5, 0.5},
	} {
		if got := AngleDist(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("AngleDist(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestRemTwoPi: RemTwoPi equals math.Mod(x, 2π) bit for bit (the sign of
// a zero included) on random angles of every scale up to beyond its fast
// range, on the multiples k·2π (k from −40 to 40) and the 64 float64
// neighbours on either side of each, where the quotient rounds the wrong
// way, and on ±0, ±Inf and NaN.
func TestRemTwoPi(t *testing.T) {
	check := func(x float64) {
		got, want := RemTwoPi(x), math.Mod(x, TwoPi)
		if math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) {
			t.Fatalf("RemTwoPi(%v) = %v (%#x), math.Mod %v (%#x)", x, got, math.Float64bits(got), want, math.Float64bits(want))
		}
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for range 200000 {
		scale := math.Ldexp(1, rng.IntN(26)-4) // 1/16 … 2²¹
		check(scale * (2*rng.Float64() - 1))
	}
	for k := -40; k <= 40; k++ {
		m := float64(k) * TwoPi
		up, down := m, m
		for range 64 {
			check(up)
			check(down)
			up, down = math.Nextafter(up, math.Inf(1)), math.Nextafter(down, math.Inf(-1))
		}
	}
	for _, x := range []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), TwoPi, -TwoPi, math.Pi} {
		check(x)
	}
}

// BenchmarkRemTwoPi times RemTwoPi against math.Mod on plaquette-like
// angles (sums of four links, in (−4π, 8π)), side by side in one run.
func BenchmarkRemTwoPi(b *testing.B) {
	rng := rand.New(rand.NewPCG(13, 14))
	xs := make([]float64, 4096)
	for i := range xs {
		xs[i] = 12*math.Pi*rng.Float64() - 4*math.Pi
	}
	for _, f := range []struct {
		name string
		fn   func(float64) float64
	}{{"RemTwoPi", RemTwoPi}, {"math.Mod", func(x float64) float64 { return math.Mod(x, TwoPi) }}} {
		b.Run(f.name, func(b *testing.B) {
			var s float64
			for b.Loop() {
				for _, x := range xs {
					s += f.fn(x)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/angle")
			_ = s
		})
	}
}
