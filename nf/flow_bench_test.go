package nf

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
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
	convs := f.layers[0].convs
	for j, cv := range convs {
		fl := cv.FLOPs(B, f.Arch.L)
		if j == len(convs)-1 {
			fl = cv.FLOPsSites(B, f.nA) // computed at the active sites only
		}
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
		for _, engine := range []string{"openblas", "dnnl", "dnnl-bf16"} {
			fl, z := benchFlow(b, L, 1, B)
			if engine != "openblas" {
				fl = mustReflow(b, fl, OneDNN[float32](CPU(0), DNNLOptions{BF16: engine == "dnnl-bf16"}))
			}
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
			b.Run(fmt.Sprintf("L=%d/%s/forward", L, engine), func(b *testing.B) {
				fl.Forward(x, z, logJ, B, nil)
				b.ResetTimer()
				for b.Loop() {
					fl.Forward(x, z, logJ, B, nil)
				}
				b.ReportMetric(fwd*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			b.Run(fmt.Sprintf("L=%d/%s/forward+backward", L, engine), func(b *testing.B) {
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
}

// TestFlowDoesNotAllocate: Forward, Reverse and the backward passes do not
// allocate once the scratch has grown, in both tape modes, with the
// conditioners on OpenBLAS and on oneDNN.
func TestFlowDoesNotAllocate(t *testing.T) {
	for _, engine := range []string{"openblas", "dnnl"} {
		t.Run(engine, func(t *testing.T) { testFlowDoesNotAllocate(t, engine == "dnnl") })
	}
}

// allocsPerCall returns the allocations of fn per call: the least of
// three testing.AllocsPerRun measurements. AllocsPerRun counts the whole
// process's mallocs, and the Go runtime allocates now and then on its own
// (a new OS thread when a long cgo call, an OpenBLAS product, gives up its
// processor: seen after the oneDNN tests, in about a third of the runs);
// an allocation of fn itself shows in every measurement.
func allocsPerCall(fn func()) float64 {
	n := testing.AllocsPerRun(5, fn)
	for i := 0; i < 2 && n != 0; i++ {
		n = min(n, testing.AllocsPerRun(5, fn))
	}
	return n
}

func testFlowDoesNotAllocate(t *testing.T, dnnl bool) {
	const L, B = 8, 4
	fl, z := benchFlow(t, L, 2, B)
	if dnnl {
		fl = mustReflow(t, fl, OneDNN[float32](CPU(0), DNNLOptions{}))
	}
	x := make([]float32, len(z))
	g := make([]float32, len(z))
	logJ := make([]float64, B)
	for _, recompute := range []bool{false, true} {
		fl.SetRecompute(recompute)
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
			{"Forward+BackwardReverseFromForward", func() {
				fl.Forward(x, z, logJ, B, tape)
				fl.BackwardReverseFromForward(tape, g, x, logJ)
			}},
			{"Reverse+BackwardReverse", func() {
				fl.Reverse(x, z, logJ, B, tape)
				fl.BackwardReverse(tape, nil, x, logJ)
			}},
		} {
			c.fn()
			if n := allocsPerCall(c.fn); n != 0 {
				t.Errorf("recompute=%v: %s: %v allocations per call", recompute, c.name, n)
			}
		}
	}
}

// Benchmark sizes of BenchmarkGradientStep: a few layers of the paper's
// architecture (the time per layer does not depend on their number) and a
// micro-batch of 16 on 2 cores.
const (
	benchStepLayers = 8
	benchStepBatch  = 16
)

// BenchmarkGradientStep times the flow's part of one gradient step per
// configuration, without the action, in float32 with the paper's
// architecture (benchStepLayers layers; the time and memory scale with the
// number of layers) at L = 8 and 16, for both tape modes:
//
//	rt:   Forward with tape + BackwardForward (upstream: a fixed "force")
//	re3:  Forward with tape + BackwardReverseFromForward (three-pass REINFORCE)
//	re4:  Forward + Reverse with tape + BackwardReverse (four-pass REINFORCE)
//
// Metrics: ns/cfg, the time per configuration; cpu-ns/cfg, the CPU time of
// the process per configuration (user + system, all threads: less disturbed
// than the wall time when other processes share the cores); tape-B/cfg, the bytes kept
// for the backward pass per configuration (all layers); store-all-B/cfg,
// what keeping every activation would cost; tape-buffers.
func BenchmarkGradientStep(b *testing.B) {
	const B = benchStepBatch
	for _, L := range []int{8, 16} {
		fl, z := benchFlow(b, L, benchStepLayers, B)
		x := make([]float32, len(z))
		zr := make([]float32, len(z))
		gx := make([]float32, len(z))
		gz := make([]float32, len(z))
		for i := range gx {
			gx[i] = 1e-3 * float32(i%7)
		}
		logJ, glogJ := make([]float64, B), make([]float64, B)
		for i := range glogJ {
			glogJ[i] = float64(i%3) - 1
		}
		steps := []struct {
			name string
			fn   func(tape *Tape[float32])
		}{
			{"rt", func(tape *Tape[float32]) {
				fl.Forward(x, z, logJ, B, tape)
				fl.BackwardForward(tape, nil, gx, glogJ)
			}},
			{"re3", func(tape *Tape[float32]) {
				fl.Forward(x, z, logJ, B, tape)
				fl.BackwardReverseFromForward(tape, nil, gz, glogJ)
			}},
			{"re4", func(tape *Tape[float32]) {
				fl.Forward(x, z, logJ, B, nil)
				fl.Reverse(zr, x, logJ, B, tape)
				fl.BackwardReverse(tape, nil, gz, glogJ)
			}},
		}
		for _, recompute := range []bool{true, false} {
			fl.SetRecompute(recompute)
			tape := fl.NewTape(B)
			mode := "store-all"
			if recompute {
				mode = "recompute"
			}
			for _, st := range steps {
				b.Run(fmt.Sprintf("L=%d/%s/%s", L, st.name, mode), func(b *testing.B) {
					st.fn(tape)
					b.ResetTimer()
					c0 := cpuTime()
					for b.Loop() {
						st.fn(tape)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*B), "ns/cfg")
					b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N*B), "cpu-ns/cfg")
					b.ReportMetric(float64(tape.BytesPerConfig()), "tape-B/cfg")
					b.ReportMetric(float64(fl.StoreAllBytesPerConfigLayer()*benchStepLayers), "store-all-B/cfg")
					b.ReportMetric(float64(tape.Buffers()), "tape-buffers")
				})
			}
		}
	}
}

// cpuTime returns the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
