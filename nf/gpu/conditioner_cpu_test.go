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
// 6 → h → h → 25 with h = 8 and 16, dilations 1, 2, 3, slope 0.01) against
// nf's convolutions and LeakyReLU on the CPU composed the same way:
// activations, parameter gradients and the input gradient, float64 within
// 1e-11 and float32 within 256 ulps of the sums' size (three convolutions
// deep: each adds its rounding, scaled by the next one's weights).
func TestConditionerMatchesCPU(t *testing.T) {
	for name, d := range devices(t) {
		t.Run(name, func(t *testing.T) {
			k, err := NewKernels(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []struct{ h, L, B int }{{8, 4, 3}, {16, 8, 2}} {
				t.Run(fmt.Sprintf("h%d_L%d_B%d", s.h, s.L, s.B), func(t *testing.T) {
					testConditioner[float64](t, k, s.h, s.L, s.B, 1e-11)
					testConditioner[float32](t, k, s.h, s.L, s.B, 256*0x1p-24)
				})
			}
		})
	}
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
	acts := [][]T{rnd(6*N, 1)}
	for j := range convs {
		fan := ch[j] * 9
		convs[j] = nf.Conv2D[T]{Cin: ch[j], Cout: ch[j+1], K: 3, Dil: dil[j],
			Weight: rnd(ch[j+1]*fan, 1/math.Sqrt(float64(fan))), Bias: rnd(ch[j+1], 0.1),
			GradWeight: make([]T, ch[j+1]*fan), GradBias: make([]T, ch[j+1])}
		out := make([]T, ch[j+1]*N)
		convs[j].Forward(be, out, acts[j], B, L, &ws)
		if j < 2 {
			nf.LeakyReLU(out, T(slope))
		}
		acts = append(acts, out)
	}
	gout := rnd(25*N, 1)
	g := gout
	var gin []T
	for j := 2; j >= 0; j-- {
		gj := make([]T, ch[j]*N)
		convs[j].Backward(be, gj, g, acts[j], B, L, &ws)
		if j > 0 {
			nf.LeakyReLUBackward(gj, acts[j], T(slope))
		}
		g, gin = gj, gj
	}

	// The same on the device.
	c := NewConditioner[T](k, ch, 3, dil, slope)
	defer c.Close()
	dacts := []cuda.DevicePtr{toDevice(t, d, acts[0])}
	var dw, db, dgw, dgb []cuda.DevicePtr
	for j := range convs {
		p, err := d.Alloc(ch[j+1] * N * size[T]())
		if err != nil {
			t.Fatal(err)
		}
		dacts = append(dacts, p)
		dw, db = append(dw, toDevice(t, d, convs[j].Weight)), append(db, toDevice(t, d, convs[j].Bias))
		dgw = append(dgw, toDevice(t, d, make([]T, len(convs[j].Weight))))
		dgb = append(dgb, toDevice(t, d, make([]T, len(convs[j].Bias))))
	}
	if err := c.Forward(dacts, dw, db, B, L); err != nil {
		t.Fatal(err)
	}
	dgin, err := d.Alloc(6 * N * size[T]())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Backward(dgin, toDevice(t, d, gout), dacts, dw, dgw, dgb, B, L); err != nil {
		t.Fatal(err)
	}
	scale := float64(max(16*9, N)) + 1
	cmp := func(name string, got, want []T) {
		t.Helper()
		for i := range want {
			if e := math.Abs(float64(got[i]) - float64(want[i])); e > tol*scale {
				t.Fatalf("%T %s[%d] = %v, CPU %v (|Δ| %.3g > %.3g)", T(0), name, i, got[i], want[i], e, tol*scale)
			}
		}
	}
	for j := 1; j <= 3; j++ {
		cmp(fmt.Sprintf("acts[%d]", j), fromDevice[T](t, d, dacts[j], len(acts[j])), acts[j])
	}
	for j := range convs {
		cmp(fmt.Sprintf("gw[%d]", j), fromDevice[T](t, d, dgw[j], len(convs[j].GradWeight)), convs[j].GradWeight)
		cmp(fmt.Sprintf("gb[%d]", j), fromDevice[T](t, d, dgb[j], len(convs[j].GradBias)), convs[j].GradBias)
	}
	cmp("gin", fromDevice[T](t, d, dgin, 6*N), gin)
}
