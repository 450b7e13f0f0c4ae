package dnnl

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// circRef is the circular convolution in float64, directly from its
// definition: out[n][x][co] = b[co] + Σ w[co][ci][ki][kj]·in[n][x + (k − K/2)·dil][ci],
// with in read through at(n, i, j, ci), and its adjoints for gout.
type circRef struct {
	s      CircShape
	at     func(n, i, j, ci int) float64
	w, b   []float64
	out    []float64 // NHWC
	gin    []float64 // indexed like at: gin[idx(n, i, j, ci)]
	gw, gb []float64
}

func wrap(i, L int) int { return ((i % L) + L) % L }

func (r *circRef) run(gout []float64, idx func(n, i, j, ci int) int) {
	s := r.s
	L, K, h := s.L, s.K, s.K/2
	r.out = make([]float64, s.N*L*L*s.Cout)
	r.gin = make([]float64, s.N*L*L*s.Cin)
	r.gw = make([]float64, len(r.w))
	r.gb = make([]float64, s.Cout)
	for n := range s.N {
		for i := range L {
			for j := range L {
				for co := range s.Cout {
					o := ((n*L+i)*L+j)*s.Cout + co
					v := r.b[co]
					g := gout[o]
					r.gb[co] += g
					for ci := range s.Cin {
						for ki := range K {
							for kj := range K {
								si, sj := wrap(i+(ki-h)*s.Dilation, L), wrap(j+(kj-h)*s.Dilation, L)
								wi := ((co*s.Cin+ci)*K+ki)*K + kj
								x := r.at(n, si, sj, ci)
								v += r.w[wi] * x
								r.gw[wi] += g * x
								r.gin[idx(n, si, sj, ci)] += g * r.w[wi]
							}
						}
					}
					r.out[o] = v
				}
			}
		}
	}
}

// normals returns n standard normal float32s drawn from rng.
func normals(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// bf16Round rounds x to bfloat16 (to nearest even), as the binding does.
func bf16Round(x float32) float32 {
	u := math.Float32bits(x)
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

func TestCircConv(t *testing.T) {
	cases := []struct {
		s     CircShape
		in    InputLayout
		slope float32
		bf16  bool
		wino  bool
	}{
		{CircShape{N: 3, Cin: 6, Cout: 7, L: 4, K: 3, Dilation: 1}, ChannelMajor, 0.01, false, false},
		{CircShape{N: 2, Cin: 16, Cout: 5, L: 8, K: 3, Dilation: 2}, NHWC, 0, false, false},
		{CircShape{N: 2, Cin: 8, Cout: 9, L: 4, K: 3, Dilation: 3}, NHWC, 0.2, false, false},
		{CircShape{N: 1, Cin: 3, Cout: 4, L: 6, K: 5, Dilation: 1}, ChannelMajor, 0, false, false},
		{CircShape{N: 3, Cin: 6, Cout: 16, L: 8, K: 3, Dilation: 1}, ChannelMajor, 0.01, false, false},
		{CircShape{N: 3, Cin: 16, Cout: 16, L: 8, K: 3, Dilation: 2}, NHWC, 0.01, false, false},
		{CircShape{N: 3, Cin: 16, Cout: 25, L: 8, K: 3, Dilation: 3}, NHWC, 0, false, false},
		{CircShape{N: 3, Cin: 6, Cout: 16, L: 8, K: 3, Dilation: 1}, ChannelMajor, 0.01, true, false},
		{CircShape{N: 2, Cin: 16, Cout: 32, L: 8, K: 3, Dilation: 2}, NHWC, 0.01, true, false},
		{CircShape{N: 2, Cin: 32, Cout: 25, L: 4, K: 3, Dilation: 3}, NHWC, 0, true, false},
		{CircShape{N: 2, Cin: 8, Cout: 4, L: 2, K: 3, Dilation: 3}, NHWC, 0.01, false, false}, // pad 3 > L: the wrap site by site
		// Winograd: the flow's 64 → 64 shape in small; dilation 1, 2, 3 and
		// 4; sublattices of side 1, 2, 4 and 5 (not a multiple of the 4×4
		// tile).
		{s: CircShape{N: 3, Cin: 16, Cout: 16, L: 8, K: 3, Dilation: 2}, in: NHWC, slope: 0.01, wino: true},
		{s: CircShape{N: 2, Cin: 32, Cout: 16, L: 4, K: 3, Dilation: 1}, in: NHWC, wino: true},
		{s: CircShape{N: 2, Cin: 16, Cout: 48, L: 15, K: 3, Dilation: 3}, in: NHWC, slope: 0.2, wino: true},
		{s: CircShape{N: 1, Cin: 64, Cout: 64, L: 4, K: 3, Dilation: 2}, in: NHWC, slope: 0.01, wino: true},
		{s: CircShape{N: 2, Cin: 16, Cout: 16, L: 4, K: 3, Dilation: 4}, in: NHWC, slope: 0.01, wino: true}, // sublattices of one site
	}
	for _, tc := range cases {
		s := tc.s
		t.Run(fmt.Sprintf("%+v/%v/bf16=%v/wino=%v", s, tc.in, tc.bf16, tc.wino), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(s.Cin), uint64(s.Cout)))
			L := s.L
			nIn, nOut, nW := s.N*L*L*s.Cin, s.N*L*L*s.Cout, s.Cout*s.Cin*s.K*s.K
			in, w, b, gout := make([]float32, nIn), make([]float32, nW), make([]float32, s.Cout), make([]float32, nOut)
			for _, x := range [][]float32{in, w, b, gout} {
				for i := range x {
					x[i] = float32(2*rng.Float64() - 1)
				}
			}
			idx := func(n, i, j, ci int) int { return ((n*L+i)*L+j)*s.Cin + ci }
			if tc.in == ChannelMajor {
				idx = func(n, i, j, ci int) int { return ((ci*s.N+n)*L+i)*L + j }
			}
			// The reference sees what the primitive sees: inputs rounded to
			// bf16 when bf16 (the error left is float32 accumulation).
			round := func(x float32) float64 {
				if tc.bf16 {
					return float64(bf16Round(x))
				}
				return float64(x)
			}
			ref := &circRef{s: s, at: func(n, i, j, ci int) float64 { return round(in[idx(n, i, j, ci)]) },
				w: make([]float64, nW), b: make([]float64, s.Cout)}
			for i := range w {
				ref.w[i] = round(w[i])
			}
			for i := range b {
				ref.b[i] = float64(b[i])
			}
			g64 := make([]float64, nOut)
			for i := range gout {
				g64[i] = round(gout[i])
			}
			ref.run(g64, idx)

			// The input is a LeakyReLU output where the case has a slope:
			// the input gradient then comes through its derivative.
			cv, err := NewCircConv(s, CircOptions{BF16: tc.bf16, LeakyReLUSlope: tc.slope, InputLeakyReLUSlope: tc.slope,
				Backward: true, Input: tc.in, Threads: 2, Winograd: tc.wino})
			if (tc.bf16 || tc.wino) && errors.Is(err, ErrUnimplemented) {
				t.Skipf("no such convolutions in this CPU's oneDNN: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer cv.Close()
			out := make([]float32, nOut)
			if err := cv.Forward(out, in, w, b); err != nil {
				t.Fatal(err)
			}
			// Each output sums Cin·K² products of magnitude ≤ 1: float32
			// accumulation errs by at most a few ulps of that sum.
			terms := float64(s.Cin * s.K * s.K)
			tol := 8 * terms * 0x1p-24
			for i, v := range ref.out {
				if tc.slope > 0 && v < 0 {
					v *= float64(tc.slope)
				}
				if d := math.Abs(float64(out[i]) - v); d > tol {
					t.Fatalf("out[%d] = %v, want %v (|Δ| %.3g > %.3g)", i, out[i], v, d, tol)
				}
			}
			gin, gw, gb := make([]float32, nIn), make([]float32, nW), make([]float32, s.Cout)
			// A first backward pass on other data: nothing of it may stay
			// in the primitives' memory.
			other, otherIn := make([]float32, nOut), make([]float32, nIn)
			for i := range other {
				other[i] = float32(rng.NormFloat64())
			}
			for i := range otherIn {
				otherIn[i] = float32(rng.NormFloat64())
			}
			if err := cv.Backward(gin, other, otherIn, w, gw, gb); err != nil {
				t.Fatal(err)
			}
			clear(gw)
			clear(gb)
			for i := range gw {
				gw[i] = 1 // Backward adds
			}
			gb[0] = 1
			if err := cv.Backward(gin, gout, in, w, gw, gb); err != nil {
				t.Fatal(err)
			}
			check := func(name string, got []float32, want []float64, add float64, terms float64) {
				t.Helper()
				tol := 8 * terms * 0x1p-24
				for i, v := range want {
					if name == "gb" && i > 0 {
						add = 0
					}
					if d := math.Abs(float64(got[i]) - add - v); d > tol*(1+math.Abs(add)) {
						t.Fatalf("%s[%d] = %v, want %v (|Δ| %.3g > %.3g)", name, i, float64(got[i])-add, v, d, tol)
					}
				}
			}
			if tc.slope > 0 {
				for n := range s.N {
					for i := range L {
						for j := range L {
							for ci := range s.Cin {
								if k := idx(n, i, j, ci); in[k] <= 0 {
									ref.gin[k] *= float64(tc.slope)
								}
							}
						}
					}
				}
			}
			check("gin", gin, ref.gin, 0, float64(s.Cout*s.K*s.K))
			check("gw", gw, ref.gw, 1, float64(s.N*L*L))
			check("gb", gb, ref.gb, 1, float64(s.N*L*L))
			f, bd, bw := cv.Impl()
			t.Logf("impl %s / %s / %s, %d bytes", f, bd, bw, cv.Bytes())
		})
	}
}

// BenchmarkCircConv measures the conditioner's convolutions as the flow
// runs them (batch 64, 2 threads): the 64 → 64 one (dilation 2, its input
// a LeakyReLU's output of random signs) and the first one ("first": 6 →
// 64 channels, dilation 1, channel-major input), the wrap and fold
// included, forward alone and forward + backward (data and weights, 3×
// the forward flops), float32, bf16 and float32 Winograd (its GFLOP/s
// count the direct convolution's flops). Compare with
// BenchmarkConvPrimitive, the primitive alone on its preferred layouts.
func BenchmarkCircConv(b *testing.B) {
	for _, L := range []int{8, 16} {
		for _, prec := range []string{"f32", "bf16", "f32wino"} {
			for _, pass := range []string{"fwd", "fwdbwd", "first_fwdbwd"} {
				s := CircShape{N: 64, Cin: 64, Cout: 64, L: L, K: 3, Dilation: 2}
				o := CircOptions{BF16: prec == "bf16", Winograd: prec == "f32wino", LeakyReLUSlope: 0.01, InputLeakyReLUSlope: 0.01,
					Backward: true, Threads: 2}
				if pass == "first_fwdbwd" {
					if o.Winograd {
						continue // six input channels: no Winograd
					}
					s.Cin, s.Dilation = 6, 1
					o.InputLeakyReLUSlope, o.Input = 0, ChannelMajor
				}
				b.Run(fmt.Sprintf("L%d_%s_%s", L, prec, pass), func(b *testing.B) {
					cv, err := NewCircConv(s, o)
					if err != nil {
						b.Skip(err)
					}
					defer cv.Close()
					n, nIn := s.N*L*L*s.Cout, s.N*L*L*s.Cin
					in, out, gin, gout := make([]float32, nIn), make([]float32, n), make([]float32, nIn), make([]float32, n)
					w, gw, bias, gb := make([]float32, 64*s.Cin*9), make([]float32, 64*s.Cin*9), make([]float32, 64), make([]float32, 64)
					rng := rand.New(rand.NewPCG(1, 2))
					for i := range in { // signs at random, as a LeakyReLU's outputs
						in[i] = float32(rng.NormFloat64())
					}
					for i := range gout {
						gout[i] = float32(rng.NormFloat64())
					}
					for i := range w {
						w[i] = float32(i%3) - 1
					}
					flops := s.Flops()
					if pass != "fwd" {
						flops *= 3
					}
					b.ResetTimer()
					Do(func() { // the flow's passes run on the master thread too
						for range b.N {
							if err = cv.Forward(out, in, w, bias); err != nil {
								return
							}
							if pass != "fwd" {
								if err = cv.Backward(gin, gout, in, w, gw, gb); err != nil {
									return
								}
							}
						}
					})
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// TestSharedScratchpad: the process's one scratchpad grows to the largest
// ask (a Winograd convolution's, after a direct one's) and a convolution
// run before the growth gives the same bits after it.
func TestSharedScratchpad(t *testing.T) {
	direct := CircShape{N: 2, Cin: 16, Cout: 16, L: 8, K: 3, Dilation: 2}
	a, err := NewCircConv(direct, CircOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	fill := func(n int) []float32 { return normals(rng, n) }
	in, w, bias := fill(a.inLen()), fill(a.wLen()), fill(16)
	first, again := make([]float32, a.outLen()), make([]float32, a.outLen())
	if err := a.Forward(first, in, w, bias); err != nil {
		t.Fatal(err)
	}
	before := ScratchBytes()
	s := CircShape{N: 64, Cin: 64, Cout: 64, L: 16, K: 3, Dilation: 2}
	b, err := NewCircConv(s, CircOptions{Threads: 2, Winograd: true, Backward: true})
	if errors.Is(err, ErrUnimplemented) {
		t.Skip("no Winograd kernels on this CPU")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bw := fill(b.wLen())
	if err := b.Backward(make([]float32, b.inLen()), fill(b.outLen()), fill(b.inLen()), bw, make([]float32, len(bw)), make([]float32, 64)); err != nil {
		t.Fatal(err)
	}
	after := ScratchBytes()
	t.Logf("scratchpad %d bytes after the direct convolution, %d after Winograd's", before, after)
	if !(after >= before && after >= 1<<20) { // earlier tests of the process may have grown it already
		t.Errorf("scratchpad %d bytes after Winograd's backward, %d before: want it grown to MiBs", after, before)
	}
	if err := a.Forward(again, in, w, bias); err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if math.Float32bits(first[i]) != math.Float32bits(again[i]) {
			t.Fatalf("out[%d] = %v after the scratchpad grew, %v before", i, again[i], first[i])
		}
	}
}
