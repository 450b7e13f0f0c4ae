//go:build cgo

package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"nfschwinger/internal/cuda"
	"nfschwinger/nf"
)

// TestConditionerMatchesCPU: the device conditioner (the paper's shape
// 6 → h → h → 25 with h = 8 and 16, dilations 1, 2, 3, slope 0.01, the
// last convolution at the active sites of layer 0's masks) against nf's
// convolutions and LeakyReLU on the CPU composed as nf's conditioner does
// (Conv2D.Forward, LeakyReLU, ForwardSites and their backward passes):
// activations, parameter gradients and the input gradient, float64 within
// 1e-11 and float32 within 256 ulps of the sums' size (three convolutions
// deep: each adds its rounding, scaled by the next one's weights).
func TestConditionerMatchesCPU(t *testing.T) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, s := range []struct{ h, L, B int }{{8, 4, 3}, {16, 8, 2}} {
			t.Run(fmt.Sprintf("h%d_L%d_B%d", s.h, s.L, s.B), func(t *testing.T) {
				testConditioner[float64](t, k, s.h, s.L, s.B, 1e-11)
				testConditioner[float32](t, k, s.h, s.L, s.B, 256*0x1p-24)
			})
		}
	})
}

func testConditioner[T Float](t *testing.T, k *Kernels, h, L, B int, tol float64) {
	d := k.d
	ch, dil, slope := []int{6, h, h, 25}, []int{1, 2, 3}, 0.01
	N := B * L * L
	rng := rand.New(rand.NewPCG(uint64(h), uint64(L)))
	rnd := func(n int, scale float64) []T {
		x := make([]T, n)
		for i := range x {
			x[i] = T(scale * (2*rng.Float64() - 1))
		}
		return x
	}
	// The CPU conditioner: nf.Conv2D and nf.LeakyReLU.
	be := nf.CPU(2)
	var ws nf.Workspace[T]
	convs := make([]nf.Conv2D[T], 3)
	active := nf.NewMasks(L, 0).Active
	M := B * len(active)
	acts := [][]T{rnd(6*N, 1)}
	for j := range convs {
		fan := ch[j] * 9
		convs[j] = nf.Conv2D[T]{Cin: ch[j], Cout: ch[j+1], K: 3, Dil: dil[j],
			Weight: rnd(ch[j+1]*fan, 1/math.Sqrt(float64(fan))), Bias: rnd(ch[j+1], 0.1),
			GradWeight: make([]T, ch[j+1]*fan), GradBias: make([]T, ch[j+1])}
		if j == 2 {
			out := make([]T, ch[j+1]*M)
			convs[j].ForwardSites(be, out, acts[j], B, L, active, &ws)
			acts = append(acts, out)
			break
		}
		out := make([]T, ch[j+1]*N)
		convs[j].Forward(be, out, acts[j], B, L, &ws)
		nf.LeakyReLU(out, T(slope))
		acts = append(acts, out)
	}
	gout := rnd(25*M, 1)
	g := gout
	var gin []T
	for j := 2; j >= 0; j-- {
		gj := make([]T, ch[j]*N)
		if j == 2 {
			convs[j].BackwardSites(be, gj, g, acts[j], B, L, active, &ws)
		} else {
			convs[j].Backward(be, gj, g, acts[j], B, L, &ws)
		}
		if j > 0 {
			nf.LeakyReLUBackward(gj, acts[j], T(slope))
		}
		g, gin = gj, gj
	}

	// The same on the device.
	c := NewConditioner[T](k, ch, 3, dil, slope)
	defer c.Close()
	sites, err := NewSites(d, active, L, 3, dil[2])
	if err != nil {
		t.Fatal(err)
	}
	defer sites.Close()
	dacts := []cuda.DevicePtr{toDevice(t, d, acts[0])}
	var dw, db, dgw, dgb []cuda.DevicePtr
	for j := range convs {
		p, err := d.Alloc(len(acts[j+1]) * size[T]())
		if err != nil {
			t.Fatal(err)
		}
		dacts = append(dacts, p)
		dw, db = append(dw, toDevice(t, d, convs[j].Weight)), append(db, toDevice(t, d, convs[j].Bias))
		dgw = append(dgw, toDevice(t, d, make([]T, len(convs[j].Weight))))
		dgb = append(dgb, toDevice(t, d, make([]T, len(convs[j].Bias))))
	}
	if err := c.Forward(dacts, dw, db, B, L, sites); err != nil {
		t.Fatal(err)
	}
	dgin, err := d.Alloc(6 * N * size[T]())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Backward(dgin, toDevice(t, d, gout), dacts, dw, dgw, dgb, B, L, sites); err != nil {
		t.Fatal(err)
	}
	scale := float64(max(16*9, N)) + 1
	cmp := func(name string, got, want []T) { t.Helper(); expectClose(t, name, got, want, tol*scale) }
	for j := 1; j <= 3; j++ {
		cmp(fmt.Sprintf("acts[%d]", j), fromDevice[T](t, d, dacts[j], len(acts[j])), acts[j])
	}
	for j := range convs {
		cmp(fmt.Sprintf("gw[%d]", j), fromDevice[T](t, d, dgw[j], len(convs[j].GradWeight)), convs[j].GradWeight)
		cmp(fmt.Sprintf("gb[%d]", j), fromDevice[T](t, d, dgb[j], len(convs[j].GradBias)), convs[j].GradBias)
	}
	cmp("gin", fromDevice[T](t, d, dgin, 6*N), gin)
}

// TestConvSitesMatchesCPU: ForwardSites and BackwardSites against nf's at
// the active sites of every mask of a period, float64 and float32.
func TestConvSitesMatchesCPU(t *testing.T) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		for layer := range nf.MaskPeriod {
			active := nf.NewMasks(8, layer).Active
			for _, s := range convShapes[1:] { // L = 8
				c64 := newConvCase[float64](s.cin, s.cout, s.K, s.dil, s.L, s.B)
				nfSitesReference(c64, active)
				c64.checkSites(t, k, active, 1e-12)
				c32 := newConvCase[float32](s.cin, s.cout, s.K, s.dil, s.L, s.B)
				nfSitesReference(c32, active)
				c32.checkSites(t, k, active, 64*0x1p-24)
			}
		}
	})
}

// nfSitesReference fills c's reference with nf.Conv2D.ForwardSites and
// BackwardSites at sites, in checkSites' full layout (c.gout zero off the
// sites, c.out the full output, correct at the sites).
func nfSitesReference[T Float](c *convCase[T], sites []int) {
	c.zeroOff(sites)
	V, N, nS := c.L*c.L, c.B*c.L*c.L, len(sites)
	M := c.B * nS
	cpu := nf.Conv2D[T]{Cin: c.cin, Cout: c.cout, K: c.K, Dil: c.dil, Weight: c.w, Bias: c.bias,
		GradWeight: append([]T(nil), c.gw0...), GradBias: append([]T(nil), c.gb0...)}
	var ws nf.Workspace[T]
	be := nf.CPU(2)
	out, gout := make([]T, c.cout*M), make([]T, c.cout*M)
	for ch := range c.cout {
		for b := range c.B {
			for i, x := range sites {
				gout[ch*M+b*nS+i] = c.gout[ch*N+b*V+x]
			}
		}
	}
	cpu.ForwardSites(be, out, c.in, c.B, c.L, sites, &ws)
	c.gin = make([]T, c.cin*N)
	cpu.BackwardSites(be, c.gin, gout, c.in, c.B, c.L, sites, &ws)
	c.out = make([]T, c.cout*N)
	for ch := range c.cout {
		for b := range c.B {
			for i, x := range sites {
				c.out[ch*N+b*V+x] = out[ch*M+b*nS+i]
			}
		}
	}
	c.gw, c.gb = cpu.GradWeight, cpu.GradBias
}
