package device

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"nfschwinger/internal/cuda"
	"nfschwinger/internal/h5"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
	"nfschwinger/nf/gpu"
)

// testKernels returns the kernels of the device the tests run on: the
// emulator, or with NFSCHWINGER_CUDA_TEST=gpu the real device 0.
func testKernels(t *testing.T) *gpu.Kernels {
	t.Helper()
	k, err := gpu.CheckKernels()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// emulator returns a new emulated device (its memory as the environment
// sets it) and its kernels, for the tests that count its allocations.
func emulator(t *testing.T) (*cuda.Emulator, *gpu.Kernels) {
	t.Helper()
	em, k, err := gpu.EmulatedKernels()
	if err != nil {
		t.Fatal(err)
	}
	return em, k
}

// flowPair returns a flow of arch on the CPU and one with the same
// parameters on the device (micro-batches up to maxB, with a tape). The
// parameters are PyTorch's initialization with the biases scaled up, so
// that the splines are far from the identity.
func flowPair[T nf.Float](t *testing.T, k *gpu.Kernels, a nf.Arch, maxB int, seed uint64) (cpu, dev *nf.Flow[T]) {
	t.Helper()
	mk := func() *nf.Flow[T] {
		f, err := nf.NewFlow[T](a, nf.CPU(2))
		if err != nil {
			t.Fatal(err)
		}
		f.Init(rand.New(rand.NewPCG(seed, 7)))
		for _, ti := range f.Params.Tensors {
			if len(ti.Shape) == 1 { // a bias
				for i := range ti.Size {
					f.Params.Data[ti.Offset+i] *= 8
				}
			}
		}
		return f
	}
	cpu = mk()
	dev, err := NewFlow[T](k, a, maxB, false, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	copy(dev.Params.Data, cpu.Params.Data)
	return cpu, dev
}

func to64[T nf.Float](x []T) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func arch(L, layers int) nf.Arch {
	a := nf.DefaultArch(L)
	a.NLayers, a.Hidden = layers, []int{8, 8}
	return a
}

// TestDeviceBF16: a float32 flow with conv_precision = "bf16" on the
// device (cublasGemmEx's bf16 products, float32 accumulation) against the
// CPU's float64 flow: its forward outputs (links, log J) lie between 10×
// the device float32 flow's error and 2¹⁶× it (bf16 has 8 bits where
// float32 has 24: the rounding is there, and bounded), and its reverse
// inverts its own forward to float32 accuracy (the same rounded
// conditioner on both sides). Outputs only: gradients can differ by a
// LeakyReLU kink flip (gpu.Comparison says why).
func TestDeviceBF16(t *testing.T) {
	k := testKernels(t)
	a := arch(8, 2)
	a.Hidden = []int{16, 16}
	_, d32 := flowPair[float32](t, k, a, 4, 9)
	ref, err := nf.NewFlow[float64](a, nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	bf, err := NewFlow[float32](k, a, 4, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	for i, v := range d32.Params.Data {
		ref.Params.Data[i], bf.Params.Data[i] = float64(v), v
	}
	const B = 4
	n := B * 2 * a.L * a.L
	rng := rand.New(rand.NewPCG(4, 4))
	z32, z64 := make([]float32, n), make([]float64, n)
	for i := range z32 {
		z32[i] = float32(2 * math.Pi * rng.Float64())
		z64[i] = float64(z32[i])
	}
	x64, l64 := make([]float64, n), make([]float64, B)
	ref.Forward(x64, z64, l64, B, nil)
	run := func(f *nf.Flow[float32]) (x, zr []float32, lf []float64) {
		x, zr, lf = make([]float32, n), make([]float32, n), make([]float64, B)
		f.Forward(x, z32, lf, B, nil)
		f.Reverse(zr, x, make([]float64, B), B, nil)
		return
	}
	x32, zr32, lf32 := run(d32)
	xb, zrb, lfb := run(bf)
	for _, c := range []struct {
		name     string
		f32, fbf []float64
		want     []float64
		angles   bool
	}{{"Forward x", to64(x32), to64(xb), x64, true}, {"Forward log J", lf32, lfb, l64, false}} {
		e32, ebf := gpu.RelErr(c.f32, c.want, c.angles), gpu.RelErr(c.fbf, c.want, c.angles)
		t.Logf("%s: float32 error %.2g, bf16 %.2g", c.name, e32, ebf)
		if !(ebf > 10*e32) || !(ebf <= 0x1p16*e32) {
			t.Errorf("%s: bf16 error %.3g outside (10 × %.3g, 2¹⁶ × %.3g]", c.name, ebf, e32, e32)
		}
	}
	e32, ebf := gpu.RelErr(to64(zr32), z64, true), gpu.RelErr(to64(zrb), z64, true)
	if !(ebf <= 4*e32+64*0x1p-24) {
		t.Errorf("the bf16 flow does not invert itself: error %.3g, float32 %.3g", ebf, e32)
	}
}

// TestDeviceBytes: the device memory estimate (Bytes, what check prints
// and the out-of-memory message names) against what the flow allocates on
// the emulator, after a training pass (the workspaces grown): equal, to
// the byte (the estimate counts what NewFlow allocates, term by term).
func TestDeviceBytes(t *testing.T) {
	for _, c := range []struct {
		L, B, layers int
		hidden       []int
		bf16         bool
	}{{4, 8, 2, []int{8, 8}, false}, {8, 16, 4, []int{64, 64}, false}, {8, 16, 4, []int{64, 64}, true}, {16, 4, 2, []int{32}, false}} {
		t.Run(fmt.Sprintf("L%d_B%d_hidden%v_bf16%v", c.L, c.B, c.hidden, c.bf16), func(t *testing.T) {
			em, k := emulator(t)
			a := arch(c.L, c.layers)
			a.Hidden = c.hidden
			if len(c.hidden) == 1 {
				a.Dilation = []int{1, 2}
			}
			before := em.Used()
			f, err := NewFlow[float32](k, a, c.B, c.bf16, true)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n := c.B * 2 * c.L * c.L
			if _, err := gpu.RunPasses(PassFlow(f, c.B), make([]float64, f.Params.Len()), make([]float64, n), nil, make([]float64, n), nil, c.B); err != nil {
				t.Fatal(err)
			}
			used, est := em.Used()-before, Bytes[float32](a, c.B, c.bf16, true)
			t.Logf("allocated %d bytes, estimate %d (%.2f×)", used, est, float64(est)/float64(used))
			if est != used {
				t.Errorf("estimate %d bytes for %d allocated", est, used)
			}
		})
	}
}

// TestNewFlowOutOfMemory: a micro-batch that the device cannot hold fails
// in NewFlow with gpu.ErrOutOfMemory, leaving nothing allocated — also
// when only the last allocation fails (a device one byte short of the
// estimate: the workspaces, allocated by the warm-up pass of gpu.NewFlow).
func TestNewFlowOutOfMemory(t *testing.T) {
	k := testKernels(t)
	a := arch(8, 2)
	f, err := NewFlow[float32](k, a, 1<<40, false, true)
	if !errors.Is(err, gpu.ErrOutOfMemory) || f != nil {
		t.Fatalf("NewFlow of 2⁴⁰ configurations: %v, want ErrOutOfMemory", err)
	}
	for _, bf16 := range []bool{false, true} {
		t.Setenv(cuda.EnvEmulatorMemory, fmt.Sprint(Bytes[float32](a, 16, bf16, true)-1))
		em, k := emulator(t)
		_, err = NewFlow[float32](k, a, 16, bf16, true)
		if !errors.Is(err, gpu.ErrOutOfMemory) {
			t.Fatalf("bf16 %v, one byte short: %v, want ErrOutOfMemory", bf16, err)
		}
		if em.Used() != 0 {
			t.Errorf("bf16 %v: %d bytes left allocated after the failure", bf16, em.Used())
		}
	}
}

// TestDeviceFlowAgainstVectors: the reference vectors of the paper's code
// (shared/vectors/flow_L8.h5: L = 8, 8 layers of [64, 64]) through the
// flow on the device, forward (links and log J) and reverse, within the
// bounds nf's own test of the CPU flow uses (nf/flow_test.go: 1e-9 in
// float64; in float32 1e-5 for angles and 3e-4 for log J).
func TestDeviceFlowAgainstVectors(t *testing.T) {
	k := testKernels(t)
	testVectors[float64](t, k, 1e-9, 1e-9)
	testVectors[float32](t, k, 1e-5, 3e-4)
}

func testVectors[T nf.Float](t *testing.T, k *gpu.Kernels, angTol, logJTol float64) {
	const path = "../../../shared/vectors/flow_L8.h5"
	m, err := nfio.OpenModelFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := h5.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	read := func(name string) []float64 {
		v, _, err := h5.Read[float64](h, name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	B := len(read("z")) / (2 * m.Arch.L * m.Arch.L)
	f, err := NewFlow[T](k, m.Arch, B, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := nfio.ReadModelFile(m, f.Params); err != nil {
		t.Fatal(err)
	}
	toT := func(v []float64) []T {
		out := make([]T, len(v))
		for i, x := range v {
			out[i] = T(x)
		}
		return out
	}
	z := toT(read("z"))
	angle := func(got []T, want []float64) float64 {
		e := 0.0
		for i := range want {
			e = math.Max(e, lgt.AngleDist(float64(got[i]), want[i]))
		}
		return e
	}
	abs := func(got, want []float64) float64 {
		e := 0.0
		for i := range want {
			e = math.Max(e, math.Abs(got[i]-want[i]))
		}
		return e
	}
	x, logJ := make([]T, len(z)), make([]float64, B)
	f.Forward(x, z, logJ, B, nil)
	dx, dj := angle(x, read("forward/x")), abs(logJ, read("forward/logJ"))
	zr := make([]T, len(z))
	f.Reverse(zr, toT(read("forward/x")), logJ, B, nil)
	dz, djr := angle(zr, read("reverse/z")), abs(logJ, read("reverse/logJ"))
	t.Logf("%T: forward |Δx| %.2e, |Δlog J| %.2e; reverse |Δz| %.2e, |Δlog J| %.2e", T(0), dx, dj, dz, djr)
	if dx > angTol || dz > angTol || dj > logJTol || djr > logJTol {
		t.Errorf("%T: beyond %g (angles), %g (log J)", T(0), angTol, logJTol)
	}
}

// TestDeviceAction: the training target with the action on the device
// against lgt.Pool — the action within 1e-12 relative (an LU of S there,
// Bunch–Kaufman of σ₃S here), in pieces of the device's micro-batch; made
// without the force, a call with it is the pool's, bit for bit; made with
// it, the device's force within 1e-11 of lgt's; non-finite links are
// lgt.ErrNonFinite naming the configuration.
func TestDeviceAction(t *testing.T) {
	k := testKernels(t)
	for _, L := range []int{4, 8} {
		pool := lgt.NewPool(lgt.Paper(L), 2)
		a, err := NewAction(pool, k, 3, false)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		const B = 7 // three pieces of at most 3
		n := 2 * L * L
		links := make([]float64, B*n)
		rng := rand.New(rand.NewPCG(uint64(L), 2))
		for i := range links {
			links[i] = 2 * math.Pi * rng.Float64()
		}
		got, want := make([]float64, B), make([]float64, B)
		if err := a.Action(got, nil, links); err != nil {
			t.Fatal(err)
		}
		if err := pool.Action(want, nil, links); err != nil {
			t.Fatal(err)
		}
		for b := range B {
			if d := math.Abs(got[b] - want[b]); !(d <= 1e-12*math.Abs(want[b])) {
				t.Errorf("L = %d, configuration %d: S = %.17g, lgt %.17g", L, b, got[b], want[b])
			}
		}
		fg, fw := make([]float64, B*n), make([]float64, B*n)
		if err := a.Action(got, fg, links); err != nil {
			t.Fatal(err)
		}
		if err := pool.Action(want, fw, links); err != nil {
			t.Fatal(err)
		}
		for i := range fw {
			if fg[i] != fw[i] {
				t.Fatalf("L = %d: with the force, not the pool's result", L)
			}
		}
		af, err := NewAction(pool, k, 3, true)
		if err != nil {
			t.Fatal(err)
		}
		defer af.Close()
		if err := af.Action(got, fg, links); err != nil {
			t.Fatal(err)
		}
		for b := range B {
			if d := math.Abs(got[b] - want[b]); !(d <= 1e-12*math.Abs(want[b])) {
				t.Errorf("L = %d, configuration %d, with the force: S = %.17g, lgt %.17g", L, b, got[b], want[b])
			}
		}
		if e := gpu.RelErr(fg, fw, false); !(e <= 1e-11) {
			t.Errorf("L = %d: the device's force against lgt's: relative error %.3g > 1e-11", L, e)
		}
		links[5*n+3] = math.NaN()
		if err := a.Action(got, nil, links); !errors.Is(err, lgt.ErrNonFinite) || !strings.Contains(err.Error(), "configuration 5 of 7") {
			t.Errorf("L = %d: NaN link: %v, want lgt.ErrNonFinite naming configuration 5 of 7", L, err)
		}
	}
}
