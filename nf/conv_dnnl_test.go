package nf

import (
	"runtime"
	"testing"

	"nfschwinger/internal/dnnl"
)

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

// TestDNNLFlowIgnoresEarlierThreads: a oneDNN flow on one worker gives the
// same bits whatever ran on the OpenMP master before it. oneDNN fixes a
// primitive's thread count when it creates it; the binding once created
// them under whatever count the last call had set, so a flow built after
// a call on every CPU ran its convolutions on every CPU, summed in
// another order, and its losses parted from the same flow built later
// after 1 step (and a rank sharing a node ran on all its cores).
func TestDNNLFlowIgnoresEarlierThreads(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: every thread count is 1")
	}
	everyCPU := func() { // a convolution on every CPU, as another flow or check's rate would run
		s := dnnl.CircShape{N: 1, Cin: 2, Cout: 2, L: 4, K: 3, Dilation: 1}
		cv, err := dnnl.NewCircConv(s, dnnl.CircOptions{Threads: runtime.NumCPU()})
		if err != nil {
			t.Fatal(err)
		}
		defer cv.Close()
		x := make([]float32, s.N*s.L*s.L*2)
		if err := cv.Forward(x, make([]float32, len(x)), make([]float32, 2*2*9), make([]float32, 2)); err != nil {
			t.Fatal(err)
		}
	}
	losses := func() []float64 { return dnnlTrain(t, ReparamTrick, 1, DNNLOptions{}, 64, 4).loss }
	everyCPU()
	after := losses()
	again := losses()
	for i := range after {
		if after[i] != again[i] {
			t.Fatalf("step %d: loss %v after a call on every CPU, %v after one on one thread", i, after[i], again[i])
		}
	}
}
