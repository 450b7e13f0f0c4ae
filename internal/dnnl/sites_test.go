package dnnl

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestScatterSites: the C scatter equals the portable loop it replaces
// (zero the range, add each tap's column gradient at its source in order,
// then the LeakyReLU derivative) bit for bit, with and without the
// derivative, touching only the configurations of its range.
func TestScatterSites(t *testing.T) {
	const B, V, nA, ch, KK = 4, 16, 4, 24, 9
	rng := rand.New(rand.NewPCG(5, 6))
	col := make([]float32, B*nA*KK*ch)
	in := make([]float32, B*V*ch)
	for i := range col {
		col[i] = float32(rng.NormFloat64())
	}
	for i := range in {
		in[i] = float32(rng.NormFloat64())
	}
	taps := make([]int32, KK*nA)
	for i := range taps {
		taps[i] = int32(rng.IntN(V)) // sources repeat: additions in order matter
	}
	for _, slope := range []float32{0, 0.01} {
		const lo, hi = 1, 3
		got, want := make([]float32, B*V*ch), make([]float32, B*V*ch)
		for i := range got {
			got[i] = 7 // outside [lo, hi) untouched
			want[i] = 7
		}
		clear(want[lo*V*ch : hi*V*ch])
		for b := lo; b < hi; b++ {
			for i := range nA {
				for tp := range KK {
					g := want[(b*V+int(taps[tp*nA+i]))*ch:][:ch]
					for c, v := range col[(b*nA+i)*KK*ch+tp*ch:][:ch] {
						g[c] += v
					}
				}
			}
		}
		if slope > 0 {
			for k := lo * V * ch; k < hi*V*ch; k++ {
				if !(in[k] > 0) {
					want[k] *= slope
				}
			}
		}
		scatterSites(got, col, in, taps, lo, hi, V, nA, ch, KK, slope)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("slope %v: element %d: %v, want %v", slope, i, got[i], want[i])
			}
		}
	}
}

// TestGatherSites: each column row is the tap's source row of the
// configuration, for the configurations of the range only.
func TestGatherSites(t *testing.T) {
	const B, V, nA, ch, KK = 4, 16, 4, 24, 9
	rng := rand.New(rand.NewPCG(9, 10))
	in := make([]float32, B*V*ch)
	for i := range in {
		in[i] = float32(rng.NormFloat64())
	}
	taps := make([]int32, KK*nA)
	for i := range taps {
		taps[i] = int32(rng.IntN(V))
	}
	col := make([]float32, B*nA*KK*ch)
	for i := range col {
		col[i] = 7
	}
	gatherSites(col, in, taps, 1, 3, V, nA, ch, KK)
	for b := range B {
		for i := range nA {
			for tp := range KK {
				for c := range ch {
					got := col[(b*nA+i)*KK*ch+tp*ch+c]
					want := float32(7)
					if b >= 1 && b < 3 {
						want = in[(b*V+int(taps[tp*nA+i]))*ch+c]
					}
					if got != want {
						t.Fatalf("configuration %d, site %d, tap %d, channel %d: %v, want %v", b, i, tp, c, got, want)
					}
				}
			}
		}
	}
}

// BenchmarkGatherSites times the gather of the last convolution at
// L = 16 (as BenchmarkScatterSites) in C and with Go's copy per tap, side
// by side in one run.
func BenchmarkGatherSites(b *testing.B) {
	const B, V, nA, ch, KK = 64, 256, 64, 64, 9
	taps, d := siteData(7, V, nA, KK, B*V*ch)
	col, in := make([]float32, B*nA*KK*ch), d[0]
	b.Run("c", func(b *testing.B) {
		for b.Loop() {
			gatherSites(col, in, taps, 0, B, V, nA, ch, KK)
		}
	})
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			for bb := range B {
				for i := range nA {
					cs := col[(bb*nA+i)*KK*ch:][:KK*ch]
					for tp := range KK {
						copy(cs[tp*ch:(tp+1)*ch], in[(bb*V+int(taps[tp*nA+i]))*ch:][:ch])
					}
				}
			}
		}
	})
}

// BenchmarkScatterSites times the scatter of the last convolution's
// backward pass at L = 16 (64 active sites of 256, 64 channels, 9 taps,
// micro-batch 64, with the LeakyReLU derivative), in C (scatterSites) and
// as the portable Go loop it replaced, side by side in one run.
func BenchmarkScatterSites(b *testing.B) {
	const B, V, nA, ch, KK = 64, 256, 64, 64, 9
	taps, d := siteData(7, V, nA, KK, B*nA*KK*ch, B*V*ch)
	col, in, gin := d[0], d[1], make([]float32, B*V*ch)
	b.Run("c", func(b *testing.B) {
		for b.Loop() {
			scatterSites(gin, col, in, taps, 0, B, V, nA, ch, KK, 0.01)
		}
	})
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			clear(gin)
			for bb := range B {
				for i := range nA {
					for tp := range KK {
						g := gin[(bb*V+int(taps[tp*nA+i]))*ch:][:ch]
						s := col[(bb*nA+i)*KK*ch+tp*ch:][:ch]
						for c, v := range s {
							g[c] += v
						}
					}
				}
			}
			for k, v := range in {
				if !(v > 0) {
					gin[k] *= 0.01
				}
			}
		}
	})
}

// siteData returns random float32 data of n values each (normal) and the
// taps of nA sites with KK taps into V sites (sources repeat), from seed.
func siteData(seed uint64, V, nA, KK int, ns ...int) (taps []int32, data [][]float32) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for _, n := range ns {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64())
		}
		data = append(data, d)
	}
	taps = make([]int32, KK*nA)
	for i := range taps {
		taps[i] = int32(rng.IntN(V))
	}
	return taps, data
}

// TestSitesConv checks SitesConv against float64 sums of the same gather,
// products and scatter, in float32 and in bf16 (the products' inputs
// rounded to bfloat16 in the reference too): out, the bias and weight
// gradients and the input gradient (with and without the LeakyReLU's
// derivative), each element within 1e-5 of the sum of its terms'
// magnitudes (float32 rounding of sums of at most 576 terms), the bias
// gradient added (from gout unrounded), the weight gradient overwritten,
// and gin nil accepted.
func TestSitesConv(t *testing.T) {
	for _, bf16 := range []bool{false, true} {
		t.Run(fmt.Sprintf("bf16=%v", bf16), func(t *testing.T) { testSitesConv(t, bf16) })
	}
}

func testSitesConv(t *testing.T, bf16 bool) {
	s := SitesShape{N: 3, V: 16, NA: 4, Cin: 8, Cout: 5, Taps: 9}
	rng := rand.New(rand.NewPCG(7, 8))
	normal := func(n int) []float32 { return normals(rng, n) }
	// r is a product's input as the products read it.
	r := func(x float32) float64 {
		if bf16 {
			return float64(bf16Round(x))
		}
		return float64(x)
	}
	in, wp, b := normal(s.N*s.V*s.Cin), normal(s.Cout*s.Cols()), normal(s.Cout)
	gout := normal(s.Cout * s.Rows())
	taps := make([]int32, s.Taps*s.NA)
	for i := range taps {
		taps[i] = int32(rng.IntN(s.V))
	}
	sc, err := NewSitesConv(s, SitesOptions{BF16: bf16, Threads: 2})
	if bf16 && errors.Is(err, ErrUnimplemented) {
		t.Skipf("no bf16 matrix products in this CPU's oneDNN: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	M, K := s.Rows(), s.Cols()
	col := make([]float32, M*K)
	gatherSites(col, in, taps, 0, s.N, s.V, s.NA, s.Cin, s.Taps)
	near := func(what string, i int, got float32, want, mag float64) {
		t.Helper()
		if math.Abs(float64(got)-want) > 1e-5*mag+1e-30 {
			t.Fatalf("%s[%d] = %v, want %v (terms' magnitudes %v)", what, i, got, want, mag)
		}
	}

	out := normal(s.Cout * M) // overwritten
	if err := sc.Forward(out, in, taps, wp, b); err != nil {
		t.Fatal(err)
	}
	for o := range s.Cout {
		for m := range M {
			want, mag := float64(b[o]), math.Abs(float64(b[o]))
			for k := range K {
				p := r(wp[o*K+k]) * r(col[m*K+k])
				want, mag = want+p, mag+math.Abs(p)
			}
			near("out", o*M+m, out[o*M+m], want, mag)
		}
	}

	for _, slope := range []float32{0, 0.01} {
		gb, gwp, gin := make([]float32, s.Cout), normal(len(wp)), normal(len(in))
		for i := range gb {
			gb[i] = 1
		}
		if err := sc.Backward(gin, gout, in, taps, wp, gwp, gb, slope); err != nil {
			t.Fatal(err)
		}
		for o := range s.Cout {
			want, mag := 1.0, 1.0
			for _, g := range gout[o*M : (o+1)*M] {
				want, mag = want+float64(g), mag+math.Abs(float64(g))
			}
			near("gb", o, gb[o], want, mag)
			for k := range K {
				want, mag := 0.0, 0.0
				for m := range M {
					p := r(gout[o*M+m]) * r(col[m*K+k])
					want, mag = want+p, mag+math.Abs(p)
				}
				near("gwp", o*K+k, gwp[o*K+k], want, mag)
			}
		}
		want, mag := make([]float64, len(in)), make([]float64, len(in))
		for bi := range s.N {
			for i := range s.NA {
				for tp := range s.Taps {
					src := (bi*s.V + int(taps[tp*s.NA+i])) * s.Cin
					for c := range s.Cin {
						for o := range s.Cout {
							p := r(gout[o*M+bi*s.NA+i]) * r(wp[o*K+tp*s.Cin+c])
							want[src+c] += p
							mag[src+c] += math.Abs(p)
						}
					}
				}
			}
		}
		for i := range want {
			if slope > 0 && !(in[i] > 0) {
				want[i] *= float64(slope)
				mag[i] *= float64(slope)
			}
			near("gin", i, gin[i], want[i], mag[i])
		}
		if err := sc.Backward(nil, gout, in, taps, wp, gwp, gb, slope); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkSitesConv times SitesConv's passes at L = 16, micro-batch 64,
// 64 → 25 channels at the 64 active sites of a configuration, float32
// and bf16; GFLOP/s counts the products (one forward, two backward).
func BenchmarkSitesConv(b *testing.B) {
	s := SitesShape{N: 64, V: 256, NA: 64, Cin: 64, Cout: 25, Taps: 9}
	rng := rand.New(rand.NewPCG(1, 2))
	in := make([]float32, s.N*s.V*s.Cin)
	for i := range in {
		in[i] = float32(rng.NormFloat64())
	}
	taps := make([]int32, s.Taps*s.NA)
	for i := range taps {
		taps[i] = int32(rng.IntN(s.V))
	}
	wp, gwp, bias := make([]float32, s.Cout*s.Cols()), make([]float32, s.Cout*s.Cols()), make([]float32, s.Cout)
	out, gin := make([]float32, s.Cout*s.Rows()), make([]float32, len(in))
	flops := 2 * float64(s.Rows()) * float64(s.Cols()) * float64(s.Cout)
	for _, bf16 := range []bool{false, true} {
		prec := "float32"
		if bf16 {
			prec = "bf16"
		}
		sc, err := NewSitesConv(s, SitesOptions{BF16: bf16, Threads: 2})
		if err != nil {
			b.Logf("%s: %v", prec, err)
			continue
		}
		defer sc.Close()
		b.Run(prec+"/forward", func(b *testing.B) {
			var err error
			Do(func() {
				for b.Loop() && err == nil {
					err = sc.Forward(out, in, taps, wp, bias)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(prec+"/backward", func(b *testing.B) {
			var err error
			Do(func() {
				for b.Loop() && err == nil {
					err = sc.Backward(gin, out, in, taps, wp, gwp, bias, 0.01)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(2*flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
