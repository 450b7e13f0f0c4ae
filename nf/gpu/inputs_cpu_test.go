//go:build cgo

package gpu

import (
	"math"
	"testing"

	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// TestInputsMatchCPU: the device input equals lgt.Plaquettes, lgt.Loops2x1
// and the cosines and sines of the frozen ones under nf's masks (layers 0–7
// of a period): plaquettes and loops bit for bit in both precisions (the
// same sums in the same order, the same reduction mod 2π), the cosines and
// sines within one ulp of T (math.Sincos and the device's cos and sin,
// both rounded from float64).
func TestInputsMatchCPU(t *testing.T) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		for layer := range nf.MaskPeriod {
			testInputs[float64](t, k, 8, layer, 0x1p-52)
			testInputs[float32](t, k, 8, layer, 0x1p-23)
		}
	})
}

func testInputs[T Float](t *testing.T, k *Kernels, L, layer int, ulp float64) {
	d := k.d
	const B = 3
	V, N := L*L, B*L*L
	m := nf.NewMasks(L, layer)
	links := make([]T, 2*N)
	nf.SamplePrior(links, B, uint64(layer), nf.DomainTrain, 0, 0)
	in, err := NewInputs[T](k, L, m.PlaqFrozen, m.LoopsFrozen)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	pi, _ := d.Alloc(6 * N * size[T]())
	pP, _ := d.Alloc(N * size[T]())
	pl, _ := d.Alloc(2 * N * size[T]())
	if err := in.Forward(pi, pP, pl, toDevice(t, d, links), B); err != nil {
		t.Fatal(err)
	}
	inp, P, loops := fromDevice[T](t, d, pi, 6*N), fromDevice[T](t, d, pP, N), fromDevice[T](t, d, pl, 2*N)
	for b := range B {
		wantP, wantL := make([]T, V), make([]T, 2*V)
		lgt.Plaquettes(wantP, links[b*2*V:(b+1)*2*V], L)
		lgt.Loops2x1(wantL, links[b*2*V:(b+1)*2*V], L)
		for x := range V {
			if P[b*V+x] != wantP[x] || loops[b*2*V+x] != wantL[x] || loops[b*2*V+V+x] != wantL[V+x] {
				t.Fatalf("%T layer %d, b %d, x %d: P %v loops %v %v, want %v %v %v", T(0), layer, b, x,
					P[b*V+x], loops[b*2*V+x], loops[b*2*V+V+x], wantP[x], wantL[x], wantL[V+x])
			}
			n := b*V + x
			want := [6]float64{1, 0, 1, 1, 0, 0}
			if m.PlaqFrozen[x] {
				s, c := math.Sincos(float64(wantP[x]))
				want[0], want[1] = float64(T(c)), float64(T(s))
			}
			for ch := range 2 {
				if m.LoopsFrozen[ch*V+x] {
					s, c := math.Sincos(float64(wantL[ch*V+x]))
					want[2+ch], want[4+ch] = float64(T(c)), float64(T(s))
				}
			}
			for c, w := range want {
				if e := math.Abs(float64(inp[c*N+n]) - w); e > ulp {
					t.Fatalf("%T layer %d: input channel %d at %d = %v, want %v", T(0), layer, c, n, inp[c*N+n], w)
				}
			}
		}
	}
}
