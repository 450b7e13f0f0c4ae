package device

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
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
	var d cuda.Driver
	var err error
	if os.Getenv("NFSCHWINGER_CUDA_TEST") == "gpu" {
		d, err = cuda.OpenReal(0)
	} else {
		d, err = cuda.NewEmulator()
	}
	if err != nil {
		t.Fatal(err)
	}
	k, err := gpu.NewKernels(d)
	if err != nil {
		t.Fatal(err)
	}
	return k
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
	cpu, dev = mk(), mk()
	if err := Attach(dev, k, maxB, false, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.CloseDevice)
	return cpu, dev
}

// passes are the results of every pass of a flow on one micro-batch:
// Forward (x, log J), Reverse of x (z, log J), and the gradients of the
// three backward passes (parameters and input links) for fixed upstream
// gradients.
type passes struct {
	x, z, gzF, gxR, gxRF, gradF, gradR, gradRF []float64
	logJF, logJR                               []float64
}

func runPasses[T nf.Float](f *nf.Flow[T], z0 []T, gout []T, glogJ []float64, B int) passes {
	n := len(z0)
	var p passes
	x, z := make([]T, n), make([]T, n)
	lf, lr := make([]float64, B), make([]float64, B)
	tape := f.NewTape(B)
	grad := func() []float64 {
		g := to64(f.Params.Grad)
		clear(f.Params.Grad)
		return g
	}
	g := make([]T, n)
	f.Forward(x, z0, lf, B, tape)
	f.BackwardForward(tape, g, gout, glogJ)
	p.gzF, p.gradF = to64(g), grad()
	f.BackwardReverseFromForward(tape, g, gout, glogJ)
	p.gxRF, p.gradRF = to64(g), grad()
	f.Reverse(z, x, lr, B, tape)
	f.BackwardReverse(tape, g, gout, glogJ)
	p.gxR, p.gradR = to64(g), grad()
	p.x, p.z, p.logJF, p.logJR = to64(x), to64(z), lf, lr
	return p
}

func to64[T nf.Float](x []T) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func (p passes) fields() []struct {
	name string
	v    []float64
} {
	return []struct {
		name string
		v    []float64
	}{{"Forward x", p.x}, {"Forward log J", p.logJF}, {"Reverse z", p.z}, {"Reverse log J", p.logJR},
		{"BackwardForward gz", p.gzF}, {"BackwardForward grad", p.gradF},
		{"BackwardReverseFromForward gx", p.gxRF}, {"BackwardReverseFromForward grad", p.gradRF},
		{"BackwardReverse gx", p.gxR}, {"BackwardReverse grad", p.gradR}}
}

// maxErr returns max |a − b| / max |b| (angles compared on the circle).
func maxErr(name string, a, b []float64) float64 {
	scale, e := 0.0, 0.0
	angles := name == "Forward x" || name == "Reverse z"
	for i := range b {
		scale = math.Max(scale, math.Abs(b[i]))
		d := math.Abs(a[i] - b[i])
		if angles {
			d = math.Min(d, 2*math.Pi-d)
		}
		e = math.Max(e, d)
	}
	if scale == 0 {
		return e
	}
	return e / scale
}

func arch(L, layers int) nf.Arch {
	a := nf.DefaultArch(L)
	a.NLayers, a.Hidden = layers, []int{8, 8}
	return a
}

// TestDeviceFlowMatchesCPU: every pass of the flow on the device (the
// emulator in make test) against the CPU flow with the same parameters:
// Forward, Reverse, log J and the three backward passes (the gradients of
// REINFORCE, r.t. and the path gradient are made of them), L = 4 and 8,
// 2 and 8 layers, micro-batches 1, 3 and 8. float64 within 1e-12 of the
// largest value of each result — for BackwardReverse within twice the
// sum of the two implementations' own disagreements between
// BackwardReverse and the mathematically equal BackwardReverseFromForward
// where that is larger (up to 1e-11 at these steep splines: Reverse's
// preimages carry the rounding of the inversion, amplified by 1/g');
// float32 device and CPU flows both against
// the float64 CPU flow: the device's error within 4× the CPU's plus 64
// float32 ulps of the largest value (the same operations in another order,
// and CUDA's or glibc's math functions instead of Go's).
func TestDeviceFlowMatchesCPU(t *testing.T) {
	k := testKernels(t)
	for _, L := range []int{4, 8} {
		for _, layers := range []int{2, 8} {
			a := arch(L, layers)
			c64, d64 := flowPair[float64](t, k, a, 8, uint64(L*layers))
			c32, d32 := flowPair[float32](t, k, a, 8, uint64(L*layers))
			for _, B := range []int{1, 3, 8} {
				t.Run(fmt.Sprintf("L%d_layers%d_B%d", L, layers, B), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(B), 3))
					n := B * 2 * L * L
					z64, g64 := make([]float64, n), make([]float64, n)
					for i := range z64 {
						z64[i] = 2 * math.Pi * rng.Float64()
						g64[i] = rng.NormFloat64()
					}
					glogJ := make([]float64, B)
					for i := range glogJ {
						glogJ[i] = rng.NormFloat64()
					}
					z32, g32 := make([]float32, n), make([]float32, n)
					for i := range z64 {
						z32[i], g32[i] = float32(z64[i]), float32(g64[i])
						z64[i] = float64(z32[i]) // the same inputs in both precisions
						g64[i] = float64(g32[i])
					}
					ref := runPasses(c64, z64, g64, glogJ, B)
					dev := runPasses(d64, z64, g64, glogJ, B)
					cpu32 := runPasses(c32, z32, g32, glogJ, B)
					dev32 := runPasses(d32, z32, g32, glogJ, B)
					// BackwardReverse's results equal BackwardReverseFromForward's
					// (the same point x = f(z)) up to the rounding of the
					// preimages that Reverse solves for: their difference on
					// each implementation is its own rounding noise there.
					floor := map[string]float64{
						"BackwardReverse gx":   maxErr("", ref.gxR, ref.gxRF) + maxErr("", dev.gxR, dev.gxRF),
						"BackwardReverse grad": maxErr("", ref.gradR, ref.gradRF) + maxErr("", dev.gradR, dev.gradRF),
					}
					rf, df, cf, d32f := ref.fields(), dev.fields(), cpu32.fields(), dev32.fields()
					for i, r := range rf {
						bound := max(1e-12, 2*floor[r.name])
						if e := maxErr(r.name, df[i].v, r.v); !(e <= bound) {
							t.Errorf("float64 %s: relative error %.3g > %.3g (floor %v)", r.name, e, bound, floor)
						}
						ec, ed := maxErr(r.name, cf[i].v, r.v), maxErr(r.name, d32f[i].v, r.v)
						if !(ed <= 4*ec+64*0x1p-24) {
							t.Errorf("float32 %s: device error %.3g, CPU error %.3g", r.name, ed, ec)
						}
					}
				})
			}
		}
	}
}

// TestAttachOutOfMemory: a micro-batch that the device cannot hold fails
// in Attach with gpu.ErrOutOfMemory, and the flow stays on the CPU.
func TestAttachOutOfMemory(t *testing.T) {
	k := testKernels(t)
	f, err := nf.NewFlow[float32](arch(8, 2), nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	err = Attach(f, k, 1<<40, false, true)
	if !errors.Is(err, gpu.ErrOutOfMemory) || f.OnDevice() {
		t.Fatalf("Attach of 2⁴⁰ configurations: %v (on device: %v), want ErrOutOfMemory", err, f.OnDevice())
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
	f, err := nf.NewFlow[T](m.Arch, nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := nfio.ReadModelFile(m, f.Params); err != nil {
		t.Fatal(err)
	}
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
	toT := func(v []float64) []T {
		out := make([]T, len(v))
		for i, x := range v {
			out[i] = T(x)
		}
		return out
	}
	z := toT(read("z"))
	B := len(z) / (2 * m.Arch.L * m.Arch.L)
	if err := Attach(f, k, B, false, false); err != nil {
		t.Fatal(err)
	}
	defer f.CloseDevice()
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
