package nf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveConv evaluates the convolution formula of Conv2D term by term in
// float64 and returns out and, per output element, Σ|terms| (bias
// included), the scale of its rounding error.
func naiveConv(cin, cout, K, dil, B, L int, w, bias, in []float64) (out, mag []float64) {
	V := L * L
	N := B * V
	out = make([]float64, cout*N)
	mag = make([]float64, cout*N)
	h := K / 2
	for co := range cout {
		for b := range B {
			for i := range L {
				for j := range L {
					s, m := bias[co], math.Abs(bias[co])
					for ci := range cin {
						for ki := range K {
							for kj := range K {
								ii := ((i+(ki-h)*dil)%L + L) % L
								jj := ((j+(kj-h)*dil)%L + L) % L
								t := w[((co*cin+ci)*K+ki)*K+kj] * in[ci*N+b*V+ii*L+jj]
								s += t
								m += math.Abs(t)
							}
						}
					}
					out[co*N+b*V+i*L+j] = s
					mag[co*N+b*V+i*L+j] = m
				}
			}
		}
	}
	return out, mag
}

func convRandSlice(rng *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = 2*rng.Float64() - 1
	}
	return x
}

func convCast[T, U Float](x []U) []T {
	y := make([]T, len(x))
	for i, v := range x {
		y[i] = T(v)
	}
	return y
}

// convCases are the shapes the tests run: kernel sizes 1, 3, 5, dilations up
// to 3 with padding up to L−1 (wrapping across the whole lattice), and the
// conditioner's channel counts.
var convCases = []struct{ cin, cout, K, dil, L, B int }{
	{1, 1, 1, 1, 4, 1},
	{3, 2, 1, 1, 8, 3},
	{1, 1, 3, 1, 4, 1},
	{6, 64, 3, 1, 8, 3},
	{64, 25, 3, 3, 8, 2},
	{3, 5, 3, 2, 4, 2},
	{4, 3, 3, 3, 4, 2},
	{2, 3, 5, 1, 4, 2},
	{2, 3, 5, 2, 12, 2},
	{5, 7, 3, 2, 16, 5},
}

// genericBackend hides the CPU backend's sequential products, so that
// Conv2D takes its generic path (whole-batch im2col and one Gemm), the one a
// GPU backend gets.
type genericBackend struct{ Backend }

// convBackends are the code paths every convolution test runs on: the fused
// CPU path on 1, 2 and 3 workers and the generic path.
var convBackends = []struct {
	name string
	be   Backend
}{
	{"cpu1", CPU(1)}, {"cpu2", CPU(2)}, {"cpu3", CPU(3)}, {"generic2", genericBackend{CPU(2)}},
}

// convForwardTol64 bounds |Forward − naive| in float64 relative to Σ|terms|:
// both sum at most 64·9+1 terms, in different orders, each step with
// relative error ≤ 2⁻⁵³ ≈ 1.1e-16; 1e-12 leaves room for 4000 terms.
const convForwardTol64 = 1e-12

func TestConvForward(t *testing.T) {
	for _, bk := range convBackends {
		be := bk.be
		for n, tc := range convCases {
			name := fmt.Sprintf("%s/cin=%d,cout=%d,K=%d,dil=%d,L=%d,B=%d", bk.name, tc.cin, tc.cout, tc.K, tc.dil, tc.L, tc.B)
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(n), 1))
				N := tc.B * tc.L * tc.L
				c := &Conv2D[float64]{Cin: tc.cin, Cout: tc.cout, K: tc.K, Dil: tc.dil,
					Weight: convRandSlice(rng, tc.cout*tc.cin*tc.K*tc.K), Bias: convRandSlice(rng, tc.cout)}
				in := convRandSlice(rng, tc.cin*N)
				want, mag := naiveConv(tc.cin, tc.cout, tc.K, tc.dil, tc.B, tc.L, c.Weight, c.Bias, in)
				out := make([]float64, tc.cout*N)
				for i := range out {
					out[i] = math.NaN() // Forward must overwrite
				}
				var ws Workspace[float64]
				inCopy := append([]float64(nil), in...)
				c.Forward(be, out, in, tc.B, tc.L, &ws)
				for i := range out {
					if !(math.Abs(out[i]-want[i]) <= convForwardTol64*mag[i]) {
						t.Fatalf("out[%d] = %v, want %v (Σ|terms| %v)", i, out[i], want[i], mag[i])
					}
				}
				for i := range in {
					if in[i] != inCopy[i] {
						t.Fatalf("Forward modified in[%d]", i)
					}
				}
				// Bitwise reproducible: the flow's reverse pass recomputes the
				// same conditioner outputs and relies on getting them exactly.
				again := make([]float64, len(out))
				c.Forward(be, again, in, tc.B, tc.L, &Workspace[float64]{})
				for i := range out {
					if again[i] != out[i] {
						t.Fatalf("second Forward differs at %d: %v, %v", i, again[i], out[i])
					}
				}
			})
		}
	}
}

// convFDStep is the central-difference step. The loss Σ r·out is linear in each
// of weight, bias and input, so the difference quotient has no truncation
// error; only rounding, ≈ eps·|terms of the loss|/convFDStep, remains.
const convFDStep = 1e-3

// convFDTol is the tolerance of gradient against finite difference, relative to
// the scale Σ|r·out| of the loss: 2.2e-16/1e-3 ≈ 2e-13, times a margin.
const convFDTol = 1e-11

func TestConvBackwardFiniteDifference(t *testing.T) {
	for cn, tc := range convCases {
		if tc.cin*tc.cout*tc.K*tc.K > 2000 || tc.B*tc.L*tc.L > 300 {
			continue // keep the O(params²) check fast
		}
		for _, bk := range convBackends {
			be, n := bk.be, cn
			name := fmt.Sprintf("%s/cin=%d,cout=%d,K=%d,dil=%d,L=%d,B=%d", bk.name, tc.cin, tc.cout, tc.K, tc.dil, tc.L, tc.B)
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(n), 2))
				N := tc.B * tc.L * tc.L
				nw := tc.cout * tc.cin * tc.K * tc.K
				c := &Conv2D[float64]{Cin: tc.cin, Cout: tc.cout, K: tc.K, Dil: tc.dil,
					Weight: convRandSlice(rng, nw), Bias: convRandSlice(rng, tc.cout),
					GradWeight: convRandSlice(rng, nw), GradBias: convRandSlice(rng, tc.cout)}
				gw0 := append([]float64(nil), c.GradWeight...)
				gb0 := append([]float64(nil), c.GradBias...)
				in := convRandSlice(rng, tc.cin*N)
				r := convRandSlice(rng, tc.cout*N) // dL/dout
				var ws Workspace[float64]
				out := make([]float64, tc.cout*N)
				loss := func() (l, scale float64) {
					c.Forward(be, out, in, tc.B, tc.L, &ws)
					for i, v := range out {
						l += r[i] * v
						scale += math.Abs(r[i] * v)
					}
					return l, scale
				}
				gin := make([]float64, len(in))
				for i := range gin {
					gin[i] = math.NaN() // Backward must overwrite
				}
				c.Backward(be, gin, r, in, tc.B, tc.L, &ws)
				check := func(what string, x []float64, grad func(i int) float64) {
					for i := range x {
						x0 := x[i]
						x[i] = x0 + convFDStep
						lp, sp := loss()
						x[i] = x0 - convFDStep
						lm, sm := loss()
						x[i] = x0
						fd := (lp - lm) / (2 * convFDStep)
						if g := grad(i); !(math.Abs(g-fd) <= convFDTol*(sp+sm)/convFDStep) {
							t.Fatalf("d/d%s[%d]: backward %v, finite difference %v", what, i, g, fd)
						}
					}
				}
				check("weight", c.Weight, func(i int) float64 { return c.GradWeight[i] - gw0[i] })
				check("bias", c.Bias, func(i int) float64 { return c.GradBias[i] - gb0[i] })
				check("in", in, func(i int) float64 { return gin[i] })

				// gin == nil: parameter gradients only, the same values (the
				// same operations in the same order, so exactly).
				gw1 := append([]float64(nil), c.GradWeight...)
				gb1 := append([]float64(nil), c.GradBias...)
				clear(c.GradWeight)
				clear(c.GradBias)
				c.Backward(be, nil, r, in, tc.B, tc.L, &ws)
				for i := range c.GradWeight {
					if c.GradWeight[i] != gw1[i]-gw0[i] && math.Abs(c.GradWeight[i]-(gw1[i]-gw0[i])) > 1e-14*(1+math.Abs(gw0[i])) {
						t.Fatalf("gin == nil: dW[%d] = %v, want %v", i, c.GradWeight[i], gw1[i]-gw0[i])
					}
				}
				for i := range c.GradBias {
					if math.Abs(c.GradBias[i]-(gb1[i]-gb0[i])) > 1e-14*(1+math.Abs(gb0[i])) {
						t.Fatalf("gin == nil: db[%d] = %v, want %v", i, c.GradBias[i], gb1[i]-gb0[i])
					}
				}
			})
		}
	}
}

// TestConvPrecision compares float32 with float64 on the same data. Each
// output is a sum of n = Cin·K²+1 terms; float32 rounding (eps = 2⁻²⁴ ≈
// 6e-8 per operation, plus the rounding of the inputs) bounds the error by
// about (n+2)·eps·Σ|terms|. The weight gradient sums N = B·V terms, bounded
// the same way with n = N. The test uses the worst-case bound (typical
// errors are √n smaller), so it cannot flake, and checks that the maximum
// observed error is also far above float64 rounding: float32 really ran.
func TestConvPrecision(t *testing.T) {
	const eps32 = 0x1p-24
	for cn, tc := range convCases {
		for _, bk := range convBackends[2:] {
			be, n := bk.be, cn
			name := fmt.Sprintf("%s/cin=%d,cout=%d,K=%d,dil=%d,L=%d,B=%d", bk.name, tc.cin, tc.cout, tc.K, tc.dil, tc.L, tc.B)
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(n), 3))
				N := tc.B * tc.L * tc.L
				nw := tc.cout * tc.cin * tc.K * tc.K
				c64 := &Conv2D[float64]{Cin: tc.cin, Cout: tc.cout, K: tc.K, Dil: tc.dil,
					Weight: convRandSlice(rng, nw), Bias: convRandSlice(rng, tc.cout),
					GradWeight: make([]float64, nw), GradBias: make([]float64, tc.cout)}
				c32 := &Conv2D[float32]{Cin: tc.cin, Cout: tc.cout, K: tc.K, Dil: tc.dil,
					Weight: convCast[float32](c64.Weight), Bias: convCast[float32](c64.Bias),
					GradWeight: make([]float32, nw), GradBias: make([]float32, tc.cout)}
				in := convRandSlice(rng, tc.cin*N)
				r := convRandSlice(rng, tc.cout*N)
				out64, out32 := make([]float64, tc.cout*N), make([]float32, tc.cout*N)
				var ws64 Workspace[float64]
				var ws32 Workspace[float32]
				c64.Forward(be, out64, in, tc.B, tc.L, &ws64)
				c32.Forward(be, out32, convCast[float32](in), tc.B, tc.L, &ws32)
				_, mag := naiveConv(tc.cin, tc.cout, tc.K, tc.dil, tc.B, tc.L, c64.Weight, c64.Bias, in)
				terms := float64(tc.cin*tc.K*tc.K + 1)
				for i := range out64 {
					if d := math.Abs(float64(out32[i]) - out64[i]); !(d <= (terms+2)*eps32*mag[i]) {
						t.Fatalf("out[%d]: float32 %v, float64 %v", i, out32[i], out64[i])
					}
				}
				gin64, gin32 := make([]float64, len(in)), make([]float32, len(in))
				c64.Backward(be, gin64, r, in, tc.B, tc.L, &ws64)
				c32.Backward(be, gin32, convCast[float32](r), convCast[float32](in), tc.B, tc.L, &ws32)
				// Σ|terms| of dW[co][k] = Σ_n r[co][n]·col[k][n] ≤ Σ_n |r[co][n]| · max|in|.
				for co := range tc.cout {
					var sr float64
					for _, v := range r[co*N : (co+1)*N] {
						sr += math.Abs(v)
					}
					for k := range tc.cin * tc.K * tc.K {
						i := co*tc.cin*tc.K*tc.K + k
						if d := math.Abs(float64(c32.GradWeight[i]) - c64.GradWeight[i]); !(d <= float64(N+2)*eps32*sr) {
							t.Fatalf("dW[%d]: float32 %v, float64 %v", i, c32.GradWeight[i], c64.GradWeight[i])
						}
					}
					if d := math.Abs(float64(c32.GradBias[co]) - c64.GradBias[co]); !(d <= float64(N+2)*eps32*sr) {
						t.Fatalf("db[%d]: float32 %v, float64 %v", co, c32.GradBias[co], c64.GradBias[co])
					}
				}
				// dL/din sums Cout·K² terms |W·r| ≤ Σ|W[:,ci]| per input channel.
				var sw float64
				for _, v := range c64.Weight {
					sw += math.Abs(v)
				}
				terms = float64(tc.cout * tc.K * tc.K)
				for i := range gin64 {
					if d := math.Abs(float64(gin32[i]) - gin64[i]); !(d <= (terms+2)*eps32*sw) {
						t.Fatalf("din[%d]: float32 %v, float64 %v", i, gin32[i], gin64[i])
					}
				}
			})
		}
	}
}

// TestConvNoAlloc checks that Forward and Backward allocate nothing once the
// workspace has grown.
func TestConvNoAlloc(t *testing.T) {
	if convRace {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	for _, bk := range convBackends {
		t.Run(bk.name, func(t *testing.T) { testConvNoAlloc(t, bk.be) })
	}
}

func testConvNoAlloc(t *testing.T, be Backend) {
	rng := rand.New(rand.NewPCG(7, 7))
	const B, L = 4, 8
	N := B * L * L
	c := &Conv2D[float32]{Cin: 6, Cout: 64, K: 3, Dil: 2,
		Weight: convCast[float32](convRandSlice(rng, 64*6*9)), Bias: convCast[float32](convRandSlice(rng, 64)),
		GradWeight: make([]float32, 64*6*9), GradBias: make([]float32, 64)}
	in := convCast[float32](convRandSlice(rng, 6*N))
	out := make([]float32, 64*N)
	gin := make([]float32, 6*N)
	var ws Workspace[float32]
	step := func() {
		c.Forward(be, out, in, B, L, &ws)
		ws.LeakyReLU(be, out, 0.01)
		ws.LeakyReLUBackward(be, out, out, 0.01)
		c.Backward(be, gin, out, in, B, L, &ws)
	}
	step()
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Errorf("Forward+Backward: %v allocations per run, want 0", a)
	}
}

func TestConvFLOPs(t *testing.T) {
	c := Conv2D[float32]{Cin: 64, Cout: 25, K: 3, Dil: 3}
	if got, want := c.FLOPs(64, 16), 2.0*25*64*9*64*256; got != want {
		t.Errorf("FLOPs = %v, want %v", got, want)
	}
}

// TestInitConvUniform checks PyTorch's bound 1/√fanIn and the moments of
// U(−a, a): mean 0 and variance a²/3, within 5 standard errors, for several
// fixed seeds.
func TestInitConvUniform(t *testing.T) {
	const fanIn, n = 576, 40000
	a := 1 / math.Sqrt(fanIn)
	for seed := range uint64(3) {
		w, b := make([]float64, n), make([]float64, 64)
		InitConvUniform(w, b, fanIn, rand.New(rand.NewPCG(seed, 0)))
		var s, s2 float64
		for _, v := range append(w, b...) {
			if math.Abs(v) > a {
				t.Fatalf("seed %d: value %v outside ±%v", seed, v, a)
			}
		}
		for _, v := range w {
			s += v
			s2 += v * v
		}
		mean, variance := s/n, s2/n
		if se := a / math.Sqrt(3*n); math.Abs(mean) > 5*se {
			t.Errorf("seed %d: mean %v, want 0 ± %v", seed, mean, 5*se)
		}
		// Var of v² for U(−a,a) is a⁴(1/5 − 1/9).
		if se := a * a * math.Sqrt((1.0/5-1.0/9)/n); math.Abs(variance-a*a/3) > 5*se {
			t.Errorf("seed %d: variance %v, want %v ± %v", seed, variance, a*a/3, 5*se)
		}
		if b[0] == b[1] || w[0] == w[1] {
			t.Errorf("seed %d: repeated values", seed)
		}
	}
}

// TestLeakyReLUParallel checks the Workspace's parallel kernels against the
// sequential ones on lengths around the chunk size (exact: same operations).
func TestLeakyReLUParallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	var ws Workspace[float32]
	for _, n := range []int{0, 1, activationGrain - 1, activationGrain + 1, 5*activationGrain + 3} {
		x := convCast[float32](convRandSlice(rng, n))
		g := convCast[float32](convRandSlice(rng, n))
		want, wantG := append([]float32(nil), x...), append([]float32(nil), g...)
		LeakyReLU(want, 0.01)
		LeakyReLUBackward(wantG, want, 0.01)
		ws.LeakyReLU(CPU(3), x, 0.01)
		ws.LeakyReLUBackward(CPU(3), g, x, 0.01)
		for i := range x {
			if x[i] != want[i] || g[i] != wantG[i] {
				t.Fatalf("n=%d, i=%d: parallel (%v, %v), sequential (%v, %v)", n, i, x[i], g[i], want[i], wantG[i])
			}
		}
	}
}

func TestLeakyReLU(t *testing.T) {
	const slope = 0.01
	for _, tc := range []struct{ x, y, d float64 }{
		{2, 2, 1}, {-2, -0.02, slope}, {0, 0, slope}, {1e-30, 1e-30, 1}, {-1e-30, -1e-32, slope},
	} {
		x := []float64{tc.x}
		LeakyReLU(x, slope)
		if x[0] != tc.y {
			t.Errorf("LeakyReLU(%v) = %v, want %v", tc.x, x[0], tc.y)
		}
		g := []float64{3}
		LeakyReLUBackward(g, x, slope)
		if g[0] != 3*tc.d {
			t.Errorf("LeakyReLUBackward at %v: %v, want %v", tc.x, g[0], 3*tc.d)
		}
	}
}
