package nf_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"nfschwinger/nf"
	"nfschwinger/nf/device"
	"nfschwinger/nf/gpu"
)

// The parity suite: every engine available on the machine (OpenBLAS in
// float32, oneDNN in float32 and bf16, the CUDA engine in float64,
// float32 and bf16 — on the emulator in make test, on the GPU with
// NFSCHWINGER_CUDA_TEST=gpu) against the float64 OpenBLAS engine, on the
// same cases, every pass of gpu.RunPasses, by gpu.Compare's rules.

// parityCase is one flow and micro-batch of the suite.
type parityCase struct {
	L, layers, B int
	hidden       []int
	knots        int
	slope        float64 // LeakyReLU's negative slope
	recompute    bool    // the host engines' tape mode
	steep        bool    // biases 8× PyTorch's initialization: splines far from the identity
	record       bool    // a case of the device check's recorded references
}

func (c parityCase) String() string {
	return fmt.Sprintf("L%d_layers%d_B%d_hidden%v_knots%d_slope%v_recompute%v", c.L, c.layers, c.B, c.hidden, c.knots, c.slope, c.recompute)
}

func (c parityCase) arch() nf.Arch {
	a := nf.DefaultArch(c.L)
	a.NLayers, a.Hidden, a.NKnots, a.LeakyReLUSlope = c.layers, c.hidden, c.knots, c.slope
	return a
}

// parityCases: the paper's masks and kernel at L = 4 and 8, 2 and 8
// layers, micro-batches of 1, 3 and 8 with narrow conditioners (the
// device check records these); 1, 2 and 16 spline bins (coupling.cu is
// compiled per number), these with steep splines; conditioners of 16
// channels, as oneDNN serves them, at LeakyReLU slopes 1 and 0.01, in
// both tape modes, with PyTorch's initialization (steep splines amplify
// bf16's rounding of 2⁻⁹ beyond first order: 30–60 % in the gradients).
func parityCases() []parityCase {
	var cs []parityCase
	for _, L := range []int{4, 8} {
		for _, layers := range []int{2, 8} {
			for _, B := range []int{1, 3, 8} {
				cs = append(cs, parityCase{L: L, layers: layers, B: B, hidden: []int{8, 8}, knots: 9, slope: 0.01, recompute: true, steep: true, record: true})
			}
		}
	}
	for _, knots := range []int{2, 3, 17} {
		cs = append(cs, parityCase{L: 4, layers: 2, B: 3, hidden: []int{8, 8}, knots: knots, slope: 0.01, recompute: true, steep: true})
	}
	for _, slope := range []float64{1, 0.01} {
		cs = append(cs,
			parityCase{L: 4, layers: 2, B: 3, hidden: []int{16, 16}, knots: 9, slope: slope, recompute: true},
			parityCase{L: 4, layers: 8, B: 1, hidden: []int{16, 16}, knots: 9, slope: slope},
			parityCase{L: 8, layers: 2, B: 8, hidden: []int{16, 16}, knots: 9, slope: slope},
			parityCase{L: 8, layers: 8, B: 3, hidden: []int{16, 16}, knots: 9, slope: slope, recompute: true})
	}
	return cs
}

// parityEngine is an engine of the suite: its name, precision, the
// float32 engine of the same kind (bf16 engines), and how to make a flow
// on it for a case (errEngineMissing: not on this machine).
type parityEngine struct {
	name string
	prec gpu.Precision
	same string
	run  func(c parityCase, in parityInputs) (gpu.Passes, error)
}

var errEngineMissing = errors.New("not on this machine")

// parityInputs are a case's parameters and inputs (float32-representable,
// so that every precision sees the same numbers) and the reference's
// Forward output, which every engine's Reverse inverts.
type parityInputs struct {
	params, z, gout, glogJ, xrev []float64
}

// parityEngines returns the engines of the suite, the CUDA ones on the
// kernels k.
func parityEngines(k *gpu.Kernels) []parityEngine {
	host := func(e func() nf.Engine[float32]) func(parityCase, parityInputs) (gpu.Passes, error) {
		return onFlow(func(a nf.Arch, _ int) (*nf.Flow[float32], error) { return nf.NewFlowOn(a, e()) })
	}
	cuda := func(bf16 bool) func(parityCase, parityInputs) (gpu.Passes, error) {
		return onFlow(func(a nf.Arch, B int) (*nf.Flow[float32], error) { return device.NewFlow[float32](k, a, B, bf16, true) })
	}
	return []parityEngine{
		{"OpenBLAS float64", gpu.Float64, "", onFlow(func(a nf.Arch, _ int) (*nf.Flow[float64], error) {
			return nf.NewFlowOn(a, nf.OpenBLAS[float64](nf.CPU(2)))
		})},
		{"OpenBLAS float32", gpu.Float32, "", host(func() nf.Engine[float32] { return nf.OpenBLAS[float32](nf.CPU(2)) })},
		// Winograd for the 16 → 16 convolution of the cases that have one.
		{"oneDNN float32", gpu.Float32, "", host(func() nf.Engine[float32] { return nf.OneDNN[float32](nf.CPU(2), nf.DNNLOptions{}) })},
		{"oneDNN float32 direct", gpu.Float32, "", host(func() nf.Engine[float32] {
			return nf.OneDNN[float32](nf.CPU(2), nf.DNNLOptions{Direct: true})
		})},
		// bf16 arithmetic wherever oneDNN has it, emulated or not: the
		// suite checks numbers, not speed. Its own float32 is the direct
		// kernels', as bf16 runs direct (Winograd's larger rounding would
		// widen its bound).
		{"oneDNN bf16", gpu.BF16, "oneDNN float32 direct", host(func() nf.Engine[float32] { return nf.OneDNNAnyBF16[float32](nf.CPU(2)) })},
		{"CUDA float64", gpu.Float64, "", onFlow(func(a nf.Arch, B int) (*nf.Flow[float64], error) {
			return device.NewFlow[float64](k, a, B, false, true)
		})},
		{"CUDA float32", gpu.Float32, "", cuda(false)},
		{"CUDA bf16", gpu.BF16, "CUDA float32", cuda(true)},
	}
}

// onFlow returns the run of an engine whose flows mk makes (for an
// architecture and micro-batch): the case's passes on a new flow in the
// case's tape mode; an engine that refuses bf16 here is errEngineMissing.
func onFlow[T nf.Float](mk func(a nf.Arch, B int) (*nf.Flow[T], error)) func(parityCase, parityInputs) (gpu.Passes, error) {
	return func(c parityCase, in parityInputs) (gpu.Passes, error) {
		f, err := mk(c.arch(), c.B)
		if errors.Is(err, nf.ErrBF16Slow) {
			return gpu.Passes{}, fmt.Errorf("%w: %v", errEngineMissing, err)
		}
		if err != nil {
			return gpu.Passes{}, err
		}
		defer f.Close()
		f.SetRecompute(c.recompute)
		return gpu.RunPasses(device.PassFlow(f, c.B), in.params, in.z, in.xrev, in.gout, in.glogJ, c.B)
	}
}

// newInputs draws a case's parameters (PyTorch's initialization, for
// steep cases with the biases 8× larger) and inputs, all rounded to
// float32.
func newInputs(c parityCase, seed uint64) parityInputs {
	f, err := nf.NewFlow[float64](c.arch(), nf.CPU(1))
	if err != nil {
		panic(err)
	}
	f.Init(rand.New(rand.NewPCG(seed, 7)))
	for _, ti := range f.Params.Tensors {
		if len(ti.Shape) == 1 && c.steep { // a bias
			for i := range ti.Size {
				f.Params.Data[ti.Offset+i] *= 8
			}
		}
	}
	r32 := func(v float64) float64 { return float64(float32(v)) }
	in := parityInputs{params: f.Params.Data}
	for i, v := range in.params {
		in.params[i] = r32(v)
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	n := c.B * 2 * c.L * c.L
	in.z, in.gout, in.glogJ = make([]float64, n), make([]float64, n), make([]float64, c.B)
	for i := range in.z {
		in.z[i], in.gout[i] = r32(2*math.Pi*rng.Float64()), r32(rng.NormFloat64())
	}
	for i := range in.glogJ {
		in.glogJ[i] = r32(rng.NormFloat64())
	}
	return in
}

// parityKernels returns the CUDA kernels of the suite: the emulator, or
// with NFSCHWINGER_CUDA_TEST=gpu the real device 0.
func parityKernels(t *testing.T) *gpu.Kernels {
	t.Helper()
	k, err := gpu.CheckKernels()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEngineParity: every engine against the float64 OpenBLAS engine on
// every case (gpu.Compare: float64 to 1e-12, float32 within 4× the
// float32 OpenBLAS engine's error, bf16 between 10× its float32 error and
// 2¹⁶×). Outputs at every LeakyReLU slope; the gradients of float32 and
// bf16 engines at slope 1 only: elsewhere a pre-activation within float32
// rounding of 0 takes a different side of the kink in two engines
// (gpu.Comparison says more).
// The device check's path from a recorded case alone (gpu.CheckReference)
// runs too, for the recorded cases of 3 configurations; with
// NFSCHWINGER_GPU_REFERENCE=FILE the recorded cases are written to FILE
// for the device check (make gpu-check), which has no host engines.
func TestEngineParity(t *testing.T) {
	k := parityKernels(t)
	engines := parityEngines(k)
	var refs []gpu.Reference
	missing := map[string]bool{}
	for i, c := range parityCases() {
		t.Run(c.String(), func(t *testing.T) {
			in := newInputs(c, uint64(i+1))
			ref, err := engines[0].run(c, in)
			if err != nil {
				t.Fatal(err)
			}
			in.xrev = ref.X
			got := map[string]gpu.Passes{engines[0].name: ref}
			for _, e := range engines[1:] {
				p, err := e.run(c, in)
				if errors.Is(err, errEngineMissing) {
					missing[e.name] = true
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", e.name, err)
				}
				got[e.name] = p
				cmp := gpu.Comparison{Precision: e.prec, Got: p, Ref: ref, RefSelf: ref, Z0: in.z,
					Base: got["OpenBLAS float32"], Same: got[e.same],
					OutputsOnly: c.slope != 1 && e.prec != gpu.Float64}
				for _, msg := range gpu.Compare(cmp) {
					t.Errorf("%s: %s", e.name, msg)
				}
			}
			if !c.record {
				return
			}
			r := gpu.Reference{Name: c.String(), Spec: device.Spec(c.arch(), false), B: c.B, Params: in.params,
				Z: in.z, GOut: in.gout, GLogJ: in.glogJ, CPU64: ref, CPU32: got["OpenBLAS float32"]}
			if k != nil && c.B == 3 {
				for _, msg := range gpu.CheckReference(k, r) {
					t.Error("from the reference: " + msg)
				}
			}
			refs = append(refs, r)
		})
	}
	for name := range missing {
		t.Logf("%s: not on this machine, not compared", name)
	}
	if path := os.Getenv("NFSCHWINGER_GPU_REFERENCE"); path != "" {
		if err := gpu.WriteReferences(path, refs); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %d cases to %s", len(refs), path)
	}
}
