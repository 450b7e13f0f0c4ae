package vec

import (
	"math"
	"math/rand/v2"
	"testing"

	"nfschwinger/lgt"
)

// TestPlaquettesLoops: the same bits as lgt.Plaquettes and lgt.Loops2x1
// in float32 (NaN where they give NaN), for links in [0, 2π) (as the flow keeps them), in
// [−40, 40], near multiples of 2π, and with a few beyond 2²⁰ (math.Mod's
// path), infinite and NaN, at L = 4 (every site wraps) and 16.
func TestPlaquettesLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, L := range []int{4, 16} {
		V := L * L
		for _, kind := range []string{"circle", "wide", "multiples", "huge"} {
			links := make([]float32, 2*V)
			for i := range links {
				switch kind {
				case "circle":
					links[i] = float32(2 * math.Pi * rng.Float64())
				case "wide":
					links[i] = float32(80 * (rng.Float64() - 0.5))
				case "multiples":
					links[i] = math.Nextafter32(float32(float64(rng.IntN(7)-3)*math.Pi/2), float32(rng.NormFloat64()))
				case "huge":
					links[i] = float32(2 * math.Pi * rng.Float64())
				}
			}
			if kind == "huge" {
				links[0], links[V+3], links[5] = 3e7, float32(math.Inf(1)), float32(math.NaN())
			}
			wantP, wantL := make([]float32, V), make([]float32, 2*V)
			lgt.Plaquettes(wantP, links, L)
			lgt.Loops2x1(wantL, links, L)
			p, loops := make([]float32, V), make([]float32, 2*V)
			PlaquettesLoops(p, loops, links, L)
			for _, c := range []struct {
				name      string
				got, want []float32
			}{{"plaquette", p, wantP}, {"loop", loops, wantL}} {
				for i := range c.got {
					nan := c.got[i] != c.got[i] && c.want[i] != c.want[i] // NaN payloads differ between Go and libm
					if math.Float32bits(c.got[i]) != math.Float32bits(c.want[i]) && !nan {
						t.Fatalf("L %d, %s links: %s %d = %v, lgt gives %v", L, kind, c.name, i, c.got[i], c.want[i])
					}
				}
			}
		}
	}
}

// TestRemTwoPi: the C reduction gives lgt.RemTwoPi's bits on float64
// angles below 2²⁰, the 64 neighbours on each side of k·2π included
// (where the quotient needs its correction) and ±0.
func TestRemTwoPi(t *testing.T) {
	check := func(x float64) {
		if got, want := remTwoPi(x), lgt.RemTwoPi(x); math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("remTwoPi(%v) = %v, lgt.RemTwoPi %v", x, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for range 100000 {
		check(math.Ldexp(2*rng.Float64()-1, rng.IntN(24)-3))
	}
	for k := -40; k <= 40; k++ {
		up, down := float64(k)*lgt.TwoPi, float64(k)*lgt.TwoPi
		for range 64 {
			check(up)
			check(down)
			up, down = math.Nextafter(up, math.Inf(1)), math.Nextafter(down, math.Inf(-1))
		}
	}
	check(0)
	check(math.Copysign(0, -1))
}

// BenchmarkPlaquettesLoops times the conditioner input's angles of one
// L = 16 configuration: PlaquettesLoops against lgt's Plaquettes and
// Loops2x1, side by side.
func BenchmarkPlaquettesLoops(b *testing.B) {
	const L = 16
	rng := rand.New(rand.NewPCG(1, 2))
	links := make([]float32, 2*L*L)
	for i := range links {
		links[i] = float32(2 * math.Pi * rng.Float64())
	}
	p, loops := make([]float32, L*L), make([]float32, 2*L*L)
	b.Run("c", func(b *testing.B) {
		for b.Loop() {
			PlaquettesLoops(p, loops, links, L)
		}
	})
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			lgt.Plaquettes(p, links, L)
			lgt.Loops2x1(loops, links, L)
		}
	})
}
