package nf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// convSitesTol: ForwardSites / BackwardSites and Forward / Backward sum the
// same float64 products in different orders (different GEMM shapes and,
// for the input gradient, scatter order): rounding of sums of ≤ 600 terms
// of order one, ≈ 1e-13; bound relative to max(1, |value|).
const convSitesTol = 1e-12

// TestConvSites checks ForwardSites against Forward at the sites and
// BackwardSites against Backward with the output gradient zero outside the
// sites, for the masks' active sites and other site lists, with several
// kernels, dilations and workers.
func TestConvSites(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, c := range []struct{ cin, cout, K, dil, L, B, workers int }{
		{5, 7, 3, 1, 8, 3, 1},
		{4, 6, 3, 3, 8, 2, 2},
		{3, 2, 5, 2, 12, 3, 3},
		{6, 4, 1, 1, 4, 2, 2},
	} {
		V := c.L * c.L
		N := c.B * V
		for _, sites := range [][]int{NewMasks(c.L, 0).Active, NewMasks(c.L, 5).Active, {0, V - 1, 3}, {}} {
			t.Run(fmt.Sprintf("%+v/%d-sites", c, len(sites)), func(t *testing.T) {
				be := CPU(c.workers)
				M := c.B * len(sites)
				w := convRandSlice(rng, c.cout*c.cin*c.K*c.K)
				bias := convRandSlice(rng, c.cout)
				conv := func() *Conv2D[float64] {
					return &Conv2D[float64]{Cin: c.cin, Cout: c.cout, K: c.K, Dil: c.dil, Weight: w, Bias: bias,
						GradWeight: make([]float64, len(w)), GradBias: make([]float64, len(bias))}
				}
				full, part := conv(), conv()
				in := convRandSlice(rng, c.cin*N)
				var ws Workspace[float64]
				outF := make([]float64, c.cout*N)
				outS := make([]float64, c.cout*M)
				full.Forward(be, outF, in, c.B, c.L, &ws)
				part.ForwardSites(be, outS, in, c.B, c.L, sites, &ws)
				goutS := convRandSlice(rng, c.cout*M)
				goutF := make([]float64, c.cout*N)
				for co := range c.cout {
					for b := range c.B {
						for i, x := range sites {
							want := outF[co*N+b*V+x]
							if got := outS[co*M+b*len(sites)+i]; math.Abs(got-want) > convSitesTol*math.Max(1, math.Abs(want)) {
								t.Fatalf("out[%d] cfg %d site %d: %v, full convolution %v", co, b, x, got, want)
							}
							goutF[co*N+b*V+x] = goutS[co*M+b*len(sites)+i]
						}
					}
				}
				ginF := make([]float64, c.cin*N)
				ginS := convRandSlice(rng, c.cin*N) // overwritten
				full.Backward(be, ginF, goutF, in, c.B, c.L, &ws)
				part.BackwardSites(be, ginS, goutS, in, c.B, c.L, sites, &ws)
				for _, p := range []struct {
					name      string
					got, want []float64
				}{{"gin", ginS, ginF}, {"grad weight", part.GradWeight, full.GradWeight}, {"grad bias", part.GradBias, full.GradBias}} {
					for i := range p.want {
						if math.Abs(p.got[i]-p.want[i]) > convSitesTol*math.Max(1, math.Abs(p.want[i])) {
							t.Fatalf("%s[%d]: %v, full convolution %v", p.name, i, p.got[i], p.want[i])
						}
					}
				}
			})
		}
	}
}

// TestConvSitesNoAlloc: steady-state ForwardSites and BackwardSites do not
// allocate.
func TestConvSitesNoAlloc(t *testing.T) {
	const L, B = 8, 4
	rng := rand.New(rand.NewPCG(1, 1))
	cv := &Conv2D[float32]{Cin: 8, Cout: 5, K: 3, Dil: 2}
	cv.Weight, cv.Bias = convCast[float32](convRandSlice(rng, 8*5*9)), convCast[float32](convRandSlice(rng, 5))
	cv.GradWeight, cv.GradBias = make([]float32, len(cv.Weight)), make([]float32, 5)
	sites := NewMasks(L, 2).Active
	in := convCast[float32](convRandSlice(rng, 8*B*L*L))
	out := make([]float32, 5*B*len(sites))
	gin := make([]float32, len(in))
	var ws Workspace[float32]
	be := CPU(2)
	fn := func() {
		cv.ForwardSites(be, out, in, B, L, sites, &ws)
		cv.BackwardSites(be, gin, out, in, B, L, sites, &ws)
	}
	fn()
	if n := testing.AllocsPerRun(5, fn); n != 0 {
		t.Errorf("%v allocations per call", n)
	}
}
