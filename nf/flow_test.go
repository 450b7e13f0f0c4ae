package nf

import (
	"fmt"
	"math"
	"testing"

	"nfschwinger/internal/h5"
	"nfschwinger/lgt"
)

// Tolerances against flow_L8.h5 (computed in float64 by the seed's PyTorch
// code).
const (
	// vecTol64: float64 forward and reverse agree with the reference to
	// rounding, amplified by 8 layers of conditioners (measured ≈ 1e-13).
	vecTol64 = 1e-9
	// vecAngleTol32: in float32 the prior angles alone are rounded by up to
	// ε₃₂/2·2π ≈ 3.7e-7, and every layer adds rounding of the same order
	// (the spline, mod 2π) plus the conditioner's error (fan-in 576,
	// ε₃₂·√576 relative) times |∂δ/∂input| = O(1). Measured worst case
	// 1.2e-6 rad after 8 layers and in reverse; the bound 1e-5 leaves ~10×.
	vecAngleTol32 = 1e-5
	// vecLogJTol32: log J sums 8 layers × V/4 = 128 log-derivatives, each
	// with the angle error above times |∂ log g'/∂x| = O(10) plus its own
	// rounding: measured 3.2e-5, bound 3e-4.
	vecLogJTol32 = 3e-4
)

// referenceFlow builds the flow of flow_L8.h5 in precision T with the
// file's weights, and returns it with the open file (caller closes).
func referenceFlow[T Float](t *testing.T) (*Flow[T], *h5.File) {
	t.Helper()
	f, err := h5.Open(vectorsDir + "flow_L8.h5")
	if err != nil {
		t.Fatal(err)
	}
	scalar := func(name string) int {
		v, err := h5.ReadScalarAttr[int64](f, "/", name)
		if err != nil {
			t.Fatal(err)
		}
		return int(v)
	}
	ints := func(name string) []int {
		v, err := h5.ReadAttr[int64](f, "/", name)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int, len(v))
		for i := range v {
			out[i] = int(v[i])
		}
		return out
	}
	slope, err := h5.ReadScalarAttr[float64](f, "/", "leaky_relu_slope")
	if err != nil {
		t.Fatal(err)
	}
	a := Arch{L: scalar("L"), NLayers: scalar("n_layers"), NKnots: scalar("n_knots"),
		Hidden: ints("hidden_channels"), KernelSize: scalar("kernel_size"),
		Dilation: ints("dilation"), Masking: "2x1", LeakyReLUSlope: slope}
	fl, err := NewFlow[T](a, CPU(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range fl.Params.Tensors {
		w, shape, err := h5.Read[float64](f, ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(shape) != fmt.Sprint(ti.Shape) {
			t.Fatalf("%s: shape %v in the file, %v in the flow", ti.Name, shape, ti.Shape)
		}
		for i, v := range w {
			fl.Params.Data[ti.Offset+i] = T(v)
		}
	}
	return fl, f
}

// readT reads a dataset into []T.
func readT[T Float](t *testing.T, f *h5.File, path string) []T {
	t.Helper()
	v, _, err := h5.Read[float64](f, path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]T, len(v))
	for i := range v {
		out[i] = T(v[i])
	}
	return out
}

func read64(t *testing.T, f *h5.File, path string) []float64 {
	t.Helper()
	v, _, err := h5.Read[float64](f, path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// compareLinks returns the largest circle distance of got and want.
func compareLinks[T Float](got []T, want []float64) float64 {
	m := 0.0
	for i := range want {
		m = math.Max(m, lgt.AngleDist(float64(got[i]), want[i]))
	}
	return m
}

func maxAbsDiff(got, want []float64) float64 {
	m := 0.0
	for i := range want {
		m = math.Max(m, math.Abs(got[i]-want[i]))
	}
	return m
}

func TestFlowAgainstVectors64(t *testing.T) {
	testFlowAgainstVectors[float64](t, vecTol64, vecTol64, false)
}
func TestFlowAgainstVectors32(t *testing.T) {
	testFlowAgainstVectors[float32](t, vecAngleTol32, vecLogJTol32, false)
}

// TestFlowAgainstVectors32DNNL: the float32 flow with its conditioners on
// oneDNN (the program's float32 path) within the same float32 bounds.
func TestFlowAgainstVectors32DNNL(t *testing.T) {
	testFlowAgainstVectors[float32](t, vecAngleTol32, vecLogJTol32, true)
}

func testFlowAgainstVectors[T Float](t *testing.T, angTol, logJTol float64, dnnl bool) {
	fl, f := referenceFlow[T](t)
	defer f.Close()
	if dnnl {
		fl = mustReflow(t, fl, OneDNN[T](CPU(0), DNNLOptions{}))
	}
	z := readT[T](t, f, "z")
	V := fl.Arch.L * fl.Arch.L
	B := len(z) / (2 * V)

	// Layer by layer.
	x := append([]T(nil), z...)
	logJ := make([]float64, B)
	e := host(fl)
	e.grow(B)
	for k := range fl.layers {
		e.layerForward(k, x, logJ, B, nil, false)
		wantX := read64(t, f, fmt.Sprintf("forward/after_layer/%02d/x", k))
		wantJ := read64(t, f, fmt.Sprintf("forward/after_layer/%02d/logJ", k))
		dx, dj := compareLinks(x, wantX), maxAbsDiff(logJ, wantJ)
		t.Logf("layer %d: max |Δx| = %.2e, max |ΔlogJ| = %.2e", k, dx, dj)
		if dx > angTol || dj > logJTol {
			t.Fatalf("after layer %d: |Δx| = %g (tol %g), |ΔlogJ| = %g (tol %g)", k, dx, angTol, dj, logJTol)
		}
	}

	// The whole flow, with and without a tape.
	for _, tape := range []*Tape[T]{nil, fl.NewTape(B)} {
		x := make([]T, len(z))
		fl.Forward(x, z, logJ, B, tape)
		if d := compareLinks(x, read64(t, f, "forward/x")); d > angTol {
			t.Fatalf("forward x: |Δ| = %g", d)
		}
		if d := maxAbsDiff(logJ, read64(t, f, "forward/logJ")); d > logJTol {
			t.Fatalf("forward logJ: |Δ| = %g", d)
		}
		logq := make([]float64, B)
		for b := range logq {
			logq[b] = LogPrior(fl.Arch.L) - logJ[b]
		}
		if d := maxAbsDiff(logq, read64(t, f, "forward/logq")); d > logJTol {
			t.Fatalf("forward logq: |Δ| = %g", d)
		}
	}

	// Reverse of the reference forward/x.
	xr := readT[T](t, f, "forward/x")
	zr := make([]T, len(xr))
	fl.Reverse(zr, xr, logJ, B, nil)
	dz, dj := compareLinks(zr, read64(t, f, "reverse/z")), maxAbsDiff(logJ, read64(t, f, "reverse/logJ"))
	t.Logf("reverse: max |Δz| = %.2e, max |ΔlogJ| = %.2e", dz, dj)
	if dz > angTol || dj > logJTol {
		t.Fatalf("reverse: |Δz| = %g, |ΔlogJ| = %g", dz, dj)
	}
}

// TestLogPrior pins −2V log 2π against the reference's logq + logJ.
func TestLogPrior(t *testing.T) {
	f, err := h5.Open(vectorsDir + "flow_L8.h5")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	logq, logJ := read64(t, f, "forward/logq"), read64(t, f, "forward/logJ")
	for b := range logq {
		if d := math.Abs(LogPrior(8) - (logq[b] + logJ[b])); d > 1e-12*math.Abs(LogPrior(8)) {
			t.Fatalf("LogPrior(8) = %v, reference %v", LogPrior(8), logq[b]+logJ[b])
		}
	}
}
