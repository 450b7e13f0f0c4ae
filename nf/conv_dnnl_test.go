package nf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// dnnlCase is one flow of the oneDNN comparison: the lattice, the coupling
// layers and the micro-batch.
type dnnlCase struct {
	L, layers, B int
	recompute    bool
	slope        float64 // LeakyReLU's negative slope
}

// flowResults are what the comparisons look at: a flow's outputs and its
// vector–Jacobian products for fixed upstream gradients.
type flowResults struct {
	x, logJ, zr, logJr     []float64 // Forward(z), Reverse(x)
	gz, gxr, gxf           []float64 // link gradients of BackwardForward, BackwardReverse, BackwardReverseFromForward
	gpF, gpR, gpRF         []float64 // their parameter gradients
	forwardOnly, tapedOnly []float64 // Forward without and with a tape (must agree exactly)
}

// runFlow computes flowResults for flow f on the prior batch z with the
// upstream gradients gx, gl (float64, converted to T).
func runFlow[T Float](t *testing.T, f *Flow[T], c dnnlCase, z64, gx64, gl []float64) flowResults {
	t.Helper()
	conv := func(x []float64) []T {
		y := make([]T, len(x))
		for i, v := range x {
			y[i] = T(v)
		}
		return y
	}
	back := func(x []T) []float64 {
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = float64(v)
		}
		return y
	}
	f.SetRecompute(c.recompute)
	B := c.B
	z, gx := conv(z64), conv(gx64)
	var r flowResults
	tape := f.NewTape(B)
	x := make([]T, len(z))
	logJ := make([]float64, B)
	f.Forward(x, z, logJ, B, nil)
	r.forwardOnly = back(x)
	f.Forward(x, z, logJ, B, tape)
	r.x, r.logJ, r.tapedOnly = back(x), append([]float64(nil), logJ...), back(x)
	grad := func() []float64 { g := back(f.Params.Grad); f.Params.ZeroGrad(); return g }
	f.Params.ZeroGrad()
	g := make([]T, len(z))
	f.BackwardForward(tape, g, gx, gl)
	r.gz, r.gpF = back(g), grad()
	f.BackwardReverseFromForward(tape, g, gx, gl)
	r.gxf, r.gpRF = back(g), grad()
	zr := make([]T, len(z))
	logJr := make([]float64, B)
	f.Reverse(zr, x, logJr, B, tape)
	r.zr, r.logJr = back(zr), logJr
	f.BackwardReverse(tape, g, gx, gl)
	r.gxr, r.gpR = back(g), grad()
	return r
}

// relErr returns ‖a − b‖ / ‖b‖; angles are compared modulo 2π.
func relErr(a, b []float64, angles bool) float64 {
	var d, n float64
	for i := range b {
		e := a[i] - b[i]
		if angles {
			e = math.Remainder(e, 2*math.Pi)
		}
		d += e * e
		n += b[i] * b[i]
	}
	return math.Sqrt(d / n)
}

// TestDNNLFlowMatchesGemmFlow: the float32 flow with its conditioners
// through oneDNN (float32 and bf16) against the float64 flow, next to the
// float32 im2col + OpenBLAS flow: forward, reverse, log J and the
// vector–Jacobian products of the three estimators (BackwardForward for
// r.t. and path, BackwardReverse for REINFORCE's four-pass form,
// BackwardReverseFromForward for its three-pass form), on L = 4 and 8, 2
// and 8 layers, micro-batches 1, 3 and 8, in both tape modes.
//
// The gradients are compared with LeakyReLU's slope 1, the outputs also
// with the paper's 0.01. At slope 0.01 the gradient is discontinuous where
// a hidden pre-activation is 0: one that lies within rounding of 0 takes
// the factor 1 in one implementation and 0.01 in another, and the
// gradient jumps by percents. That was seen (oneDNN's AVX2 kernels, L = 8,
// 8 layers: one element of layer 0, the BackwardReverse gradient 3 % off
// with every convolution call exact to float32 for its inputs); it is a
// property of the function, not of either implementation. The outputs are
// continuous at the kink and are compared at both slopes; the fused
// activation itself is checked against its definition in internal/dnnl.
//
// Tolerance. Both float32 paths round the same float32 parameters and
// inputs and differ only in the order of the convolutions' sums, so each
// must be as close to float64 as the other: the oneDNN path's error may be
// at most 4× the OpenBLAS path's, plus a floor of 30 float32 ulps
// (30·2⁻²⁴ relative) for quantities the OpenBLAS path happens to hit
// almost exactly. The forward and the reverse log J are the same sum over
// the same sites (the reverse one at the forward's preimages), with the
// same cancellations, so their errors have one scale, and the OpenBLAS
// error that scales the bound is the larger of the two: at B = 1 each is
// one number, and one of them can be lucky (seen on an Intel Xeon with
// AVX-512: reverse log J 3.5e-8 against 2.7e-6 forward, where oneDNN had
// 3.2e-6 and 2.6e-6). So are the links x and z. bf16 rounds the convolutions' inputs with a unit
// roundoff of 2⁻⁹ instead of float32's 2⁻²⁵: to first order its errors are
// the float32 ones scaled by at most that ratio, 2¹⁶ (the same sums, the
// same cancellations; the float32 error also contains roundings bf16 does
// not enlarge, so the scaled bound is an upper one), and they must exceed
// 10× the float32 error (the rounding really happens). The reverse pass of
// the bf16 flow inverts its own forward pass, so z comes back to float32
// precision.
func TestDNNLFlowMatchesGemmFlow(t *testing.T) {
	var cases []dnnlCase
	for _, slope := range []float64{1, 0.01} {
		cases = append(cases,
			dnnlCase{L: 4, layers: 2, B: 3, recompute: true, slope: slope},
			dnnlCase{L: 4, layers: 8, B: 1, recompute: false, slope: slope},
			dnnlCase{L: 8, layers: 2, B: 8, recompute: false, slope: slope},
			dnnlCase{L: 8, layers: 8, B: 3, recompute: true, slope: slope})
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("L%d_layers%d_B%d_recompute%v_slope%v", c.L, c.layers, c.B, c.recompute, c.slope), func(t *testing.T) {
			a := Arch{L: c.L, NLayers: c.layers, NKnots: 9, Hidden: []int{16, 16}, KernelSize: 3,
				Dilation: []int{1, 2, 3}, Masking: "2x1", LeakyReLUSlope: c.slope}
			be := CPU(2)
			f64, err := NewFlow[float64](a, be)
			if err != nil {
				t.Fatal(err)
			}
			f64.Init(Stream(uint64(c.L*c.layers), DomainInit, 0, 0))
			newF32 := func() *Flow[float32] {
				f, err := NewFlow[float32](a, be)
				if err != nil {
					t.Fatal(err)
				}
				for i, v := range f64.Params.Data {
					f.Params.Data[i] = float32(v)
				}
				return f
			}
			// The float64 flow gets the float32-rounded parameters and
			// inputs too, so that it measures the arithmetic only.
			for i, v := range f64.Params.Data {
				f64.Params.Data[i] = float64(float32(v))
			}
			n := c.B * 2 * c.L * c.L
			z32 := make([]float32, n)
			SamplePrior(z32, c.B, 1, DomainTrain, 0, 0)
			rng := rand.New(rand.NewPCG(uint64(n), 9))
			z, gx, gl := make([]float64, n), make([]float64, n), make([]float64, c.B)
			for i := range z {
				z[i] = float64(z32[i])
				gx[i] = float64(float32(2*rng.Float64() - 1))
			}
			for i := range gl {
				gl[i] = float64(float32(rng.NormFloat64()))
			}
			ref := runFlow(t, f64, c, z, gx, gl)
			gemm := runFlow(t, newF32(), c, z, gx, gl)
			fd := newF32()
			if err := fd.UseDNNL(false); err != nil {
				t.Fatal(err)
			}
			dn := runFlow(t, fd, c, z, gx, gl)
			// bf16 where oneDNN has it (AVX-512 and up), whatever its speed.
			fb := newF32()
			var bf flowResults
			hasBF16 := fb.useDNNL(true, false) == nil
			if hasBF16 {
				bf = runFlow(t, fb, c, z, gx, gl)
			} else {
				t.Log("no bf16 convolutions in this CPU's oneDNN: bf16 not compared")
				bf = dn
			}
			type q struct {
				name          string
				want, g, d, b []float64
				angles        bool
			}
			qs := []q{
				{"x", ref.x, gemm.x, dn.x, bf.x, true},
				{"logJ", ref.logJ, gemm.logJ, dn.logJ, bf.logJ, false},
				{"z (reverse)", ref.zr, gemm.zr, dn.zr, bf.zr, true},
				{"logJ (reverse)", ref.logJr, gemm.logJr, dn.logJr, bf.logJr, false},
				{"gz", ref.gz, gemm.gz, dn.gz, bf.gz, false},
				{"gθ BackwardForward", ref.gpF, gemm.gpF, dn.gpF, bf.gpF, false},
				{"gx BackwardReverse", ref.gxr, gemm.gxr, dn.gxr, bf.gxr, false},
				{"gθ BackwardReverse", ref.gpR, gemm.gpR, dn.gpR, bf.gpR, false},
				{"gx ReverseFromForward", ref.gxf, gemm.gxf, dn.gxf, bf.gxf, false},
				{"gθ ReverseFromForward", ref.gpRF, gemm.gpRF, dn.gpRF, bf.gpRF, false},
			}
			// The OpenBLAS error scale of each quantity: the larger of its
			// own and its forward or reverse twin's (see Tolerance).
			twin := map[string]string{"x": "z (reverse)", "z (reverse)": "x", "logJ": "logJ (reverse)", "logJ (reverse)": "logJ"}
			gemmErr := map[string]float64{}
			for _, x := range qs {
				gemmErr[x.name] = relErr(x.g, x.want, x.angles)
			}
			for _, x := range qs {
				if c.slope != 1 && x.name[0] == 'g' {
					continue // gradients: at slope 1 only (see above)
				}
				eg, ed, eb := gemmErr[x.name], relErr(x.d, x.want, x.angles), relErr(x.b, x.want, x.angles)
				t.Logf("%-22s relative error: OpenBLAS %.2g, oneDNN %.2g, oneDNN bf16 %.2g", x.name, eg, ed, eb)
				if tw, ok := twin[x.name]; ok {
					eg = max(eg, gemmErr[tw])
				}
				if !(ed <= 4*eg+30*0x1p-24) {
					t.Errorf("%s: oneDNN float32 error %.3g > 4 × OpenBLAS's %.3g + 30 ulps", x.name, ed, eg)
				}
				if !hasBF16 {
					continue
				}
				if x.name == "z (reverse)" {
					if !(eb <= 4*eg+30*0x1p-24) {
						t.Errorf("%s: the bf16 flow does not invert itself: error %.3g > 4 × %.3g + 30 ulps", x.name, eb, eg)
					}
					continue
				}
				if !(eb > 10*ed) || !(eb <= 0x1p16*max(ed, eg)) {
					t.Errorf("%s: bf16 error %.3g outside (10 × %.3g, 2¹⁶ × %.3g]", x.name, eb, ed, max(ed, eg))
				}
			}
			for _, r := range []flowResults{dn, bf} {
				for i := range r.forwardOnly {
					if r.forwardOnly[i] != r.tapedOnly[i] {
						t.Fatalf("Forward with and without a tape differ at %d", i)
					}
				}
			}
		})
	}
}

func TestNativeBF16(t *testing.T) {
	for impl, want := range map[string]bool{
		"jit_bf16:avx512_core_bf16": true, // AVX512-BF16 (Zen 4, Cooper Lake)
		"brg:avx512_core_amx":       true,
		"jit:avx512_core_amx_bf16":  true,
		"jit_bf16:avx512_core":      false, // emulated
		"brgconv:avx512_core":       false,
		"ref:any":                   false,
		"jit:avx2":                  false,
		"bf16_without_an_isa":       false,
	} {
		if got := NativeBF16(impl); got != want {
			t.Errorf("NativeBF16(%q) = %v, want %v", impl, got, want)
		}
	}
}
