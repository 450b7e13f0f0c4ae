package dnnl

import (
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
		ScatterSites(got, col, in, taps, lo, hi, V, nA, ch, KK, slope)
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
	GatherSites(col, in, taps, 1, 3, V, nA, ch, KK)
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
			GatherSites(col, in, taps, 0, B, V, nA, ch, KK)
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
// micro-batch 64, with the LeakyReLU derivative), in C (ScatterSites) and
// as the portable Go loop it replaced, side by side in one run.
func BenchmarkScatterSites(b *testing.B) {
	const B, V, nA, ch, KK = 64, 256, 64, 64, 9
	taps, d := siteData(7, V, nA, KK, B*nA*KK*ch, B*V*ch)
	col, in, gin := d[0], d[1], make([]float32, B*V*ch)
	b.Run("c", func(b *testing.B) {
		for b.Loop() {
			ScatterSites(gin, col, in, taps, 0, B, V, nA, ch, KK, 0.01)
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
