package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"

	"nfschwinger/internal/cuda"
	"nfschwinger/nf"
)

// devices returns the emulator and, where one exists, the real device 0
// (only the real one with NFSCHWINGER_CUDA_TEST=gpu, for the GPU machine).
func devices(t *testing.T) map[string]cuda.Driver {
	t.Helper()
	t.Setenv("NFSCHWINGER_CUDA_CACHE", t.TempDir())
	ds := map[string]cuda.Driver{}
	if os.Getenv("NFSCHWINGER_CUDA_TEST") != "gpu" {
		em, err := cuda.NewEmulator()
		if err != nil {
			t.Fatal(err)
		}
		ds["emulator"] = em
	}
	r, err := cuda.OpenReal(0)
	switch {
	case err == nil:
		ds["gpu"] = r
	case os.Getenv("NFSCHWINGER_CUDA_TEST") == "gpu" || !errors.Is(err, cuda.ErrNoDevice):
		t.Fatal(err)
	}
	return ds
}

func toDevice[T nf.Float](t *testing.T, d cuda.Driver, x []T) cuda.DevicePtr {
	t.Helper()
	n := len(x) * size[T]()
	p, err := d.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CopyHtoD(p, unsafe.Pointer(&x[0]), n); err != nil {
		t.Fatal(err)
	}
	return p
}

func fromDevice[T nf.Float](t *testing.T, d cuda.Driver, p cuda.DevicePtr, n int) []T {
	t.Helper()
	x := make([]T, n)
	if err := d.Synchronize(); err != nil {
		t.Fatal(err)
	}
	if err := d.CopyDtoH(unsafe.Pointer(&x[0]), p, n*size[T]()); err != nil {
		t.Fatal(err)
	}
	return x
}

// TestConvMatchesCPU: the device convolution against nf.Conv2D on the
// CPU (im2col + OpenBLAS): forward, the weight, bias and input gradients,
// float64 within 1e-12 relative to the sum of |terms| (the products sum in
// other orders), float32 within 64 float32 ulps of it; shapes of the
// conditioner (6 → 8, 8 → 8 with dilation 2, 8 → 5 with dilation 3, a 5×5
// kernel), L = 4 and 8, micro-batches 1 and 3.
func TestConvMatchesCPU(t *testing.T) {
	for name, d := range devices(t) {
		t.Run(name, func(t *testing.T) {
			k, err := NewKernels(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []struct{ cin, cout, K, dil, L, B int }{
				{6, 8, 3, 1, 4, 3}, {8, 8, 3, 2, 8, 1}, {8, 5, 3, 3, 8, 3}, {3, 4, 5, 1, 8, 2},
			} {
				t.Run(fmt.Sprintf("%d-%d_K%d_d%d_L%d_B%d", s.cin, s.cout, s.K, s.dil, s.L, s.B), func(t *testing.T) {
					testConv[float64](t, k, s.cin, s.cout, s.K, s.dil, s.L, s.B, 1e-12)
					testConv[float32](t, k, s.cin, s.cout, s.K, s.dil, s.L, s.B, 64*0x1p-24)
				})
			}
		})
	}
}

func testConv[T nf.Float](t *testing.T, k *Kernels, cin, cout, K, dil, L, B int, tol float64) {
	d := k.d
	N := B * L * L
	rng := rand.New(rand.NewPCG(uint64(cin*cout), uint64(L)))
	rnd := func(n int) []T {
		x := make([]T, n)
		for i := range x {
			x[i] = T(2*rng.Float64() - 1)
		}
		return x
	}
	in, gout := rnd(cin*N), rnd(cout*N)
	w, bias := rnd(cout*cin*K*K), rnd(cout)
	gw0, gb0 := rnd(len(w)), rnd(cout) // Backward adds to these

	cpu := nf.Conv2D[T]{Cin: cin, Cout: cout, K: K, Dil: dil, Weight: w, Bias: bias,
		GradWeight: append([]T(nil), gw0...), GradBias: append([]T(nil), gb0...)}
	var ws nf.Workspace[T]
	be := nf.CPU(2)
	wantOut, wantGin := make([]T, cout*N), make([]T, cin*N)
	cpu.Forward(be, wantOut, in, B, L, &ws)
	cpu.Backward(be, wantGin, gout, in, B, L, &ws)

	c := NewConv[T](k, cin, cout, K, dil)
	defer c.Close()
	pin, pw, pb := toDevice(t, d, in), toDevice(t, d, w), toDevice(t, d, bias)
	pout, err := d.Alloc(cout * N * size[T]())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Forward(pout, pin, pw, pb, B, L); err != nil {
		t.Fatal(err)
	}
	pgout, pgw, pgb := toDevice(t, d, gout), toDevice(t, d, gw0), toDevice(t, d, gb0)
	pgin, err := d.Alloc(cin * N * size[T]())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Backward(pgin, pgout, pin, pw, pgw, pgb, B, L); err != nil {
		t.Fatal(err)
	}
	// Every quantity sums at most max(Cin·K², Cout·K², N) terms of size ≤ 1.
	scale := float64(max(cin*K*K, cout*K*K, N)) + 1
	for _, q := range []struct {
		name      string
		got, want []T
	}{
		{"out", fromDevice[T](t, d, pout, cout*N), wantOut},
		{"gin", fromDevice[T](t, d, pgin, cin*N), wantGin},
		{"gw", fromDevice[T](t, d, pgw, len(w)), cpu.GradWeight},
		{"gb", fromDevice[T](t, d, pgb, cout), cpu.GradBias},
	} {
		for i := range q.want {
			if e := math.Abs(float64(q.got[i]) - float64(q.want[i])); e > tol*scale {
				t.Fatalf("%T %s[%d] = %v, CPU %v (|Δ| %.3g > %.3g)", T(0), q.name, i, q.got[i], q.want[i], e, tol*scale)
			}
		}
	}
}
