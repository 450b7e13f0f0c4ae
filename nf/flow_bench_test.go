package nf

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchFlow returns a float32 flow with the paper's architecture and n
// layers on L×L, randomly initialized, with a batch of prior samples.
func benchFlow(tb testing.TB, L, layers, B int) (*Flow[float32], []float32) {
	a := DefaultArch(L)
	a.NLayers = layers
	fl, err := NewFlow[float32](a, CPU(0))
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fl.Init(rng)
	z := make([]float32, B*2*L*L)
	SamplePrior(z, B, 1, DomainTrain, 0, 0)
	return fl, z
}

// convFLOPs returns the flops of the conditioner's convolutions of one layer
// over B configurations: forward, and backward (weight and input gradients
// of every convolution).
func (f *Flow[T]) convFLOPs(B int) (fwd, bwd float64) {
	for _, cv := range f.layers[0].convs {
		fl := cv.FLOPs(B, f.Arch.L)
		fwd += fl
		bwd += 2 * fl
	}
	return fwd, bwd
}

// BenchmarkCouplingLayer times one coupling layer of the paper's
// architecture in float32 at L = 8 and 16, micro-batch 64: forward without a
// tape, and forward with a tape plus BackwardForward. GFLOP/s counts the
// convolutions' matrix-product flops only (the spline, plaquettes, im2col
// and activations are in the time, not in the count); compare with
// BenchmarkSgemm's plain OpenBLAS sgemm of the middle convolution's shape,
// run in the same `go test -bench` invocation.
func BenchmarkCouplingLayer(b *testing.B) {
	const B = benchMicroBatch
	for _, L := range []int{8, 16} {
		fl, z := benchFlow(b, L, 1, B)
		x := make([]float32, len(z))
		gx := make([]float32, len(z))
		for i := range gx {
			gx[i] = 1e-3 * float32(i%7)
		}
		logJ, glogJ := make([]float64, B), make([]float64, B)
		for i := range glogJ {
			glogJ[i] = 1
		}
		tape := fl.NewTape(B)
		fwd, bwd := fl.convFLOPs(B)
		b.Run(fmt.Sprintf("L=%d/forward", L), func(b *testing.B) {
			fl.Forward(x, z, logJ, B, nil)
			b.ResetTimer()
			for b.Loop() {
				fl.Forward(x, z, logJ, B, nil)
			}
			b.ReportMetric(fwd*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("L=%d/forward+backward", L), func(b *testing.B) {
			fl.Forward(x, z, logJ, B, tape)
			fl.BackwardForward(tape, nil, gx, glogJ)
			b.ResetTimer()
			for b.Loop() {
				fl.Forward(x, z, logJ, B, tape)
				fl.BackwardForward(tape, nil, gx, glogJ)
			}
			b.ReportMetric((fwd+bwd)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(float64(tape.BytesPerConfigLayer()), "tape-B/cfg/layer")
		})
	}
}

// TestFlowDoesNotAllocate: Forward, Reverse and both backward passes do not
// allocate once the scratch has grown.
func TestFlowDoesNotAllocate(t *testing.T) {
	const L, B = 8, 4
	fl, z := benchFlow(t, L, 2, B)
	x := make([]float32, len(z))
	g := make([]float32, len(z))
	logJ := make([]float64, B)
	tape := fl.NewTape(B)
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"Forward", func() { fl.Forward(x, z, logJ, B, nil) }},
		{"Forward+BackwardForward", func() {
			fl.Forward(x, z, logJ, B, tape)
			fl.BackwardForward(tape, g, x, logJ)
		}},
		{"Reverse+BackwardReverse", func() {
			fl.Reverse(x, z, logJ, B, tape)
			fl.BackwardReverse(tape, nil, x, logJ)
		}},
	} {
		c.fn()
		if n := testing.AllocsPerRun(5, c.fn); n != 0 {
			t.Errorf("%s: %v allocations per call", c.name, n)
		}
	}
}
