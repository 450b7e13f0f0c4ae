package nf

import (
	"nfschwinger/internal/dnnl"
	"nfschwinger/lgt"

	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/netlib/blas/netlib"
)

// benchConditioner is the paper's conditioner, 6 → 64 → 64 → 25 channels,
// kernel 3, dilations 1, 2, 3, LeakyReLU(0.01) between the convolutions, on
// a micro-batch of B configurations of L×L, with its activations.
type benchConditioner struct {
	convs      [3]*Conv2D[float32]
	x, h0, h1  []float32 // input and hidden activations
	out        []float32
	g0, g1, g2 []float32 // gradients of h0, h1, out
	ws         Workspace[float32]
	B, L       int
}

func newBenchConditioner(B, L int) *benchConditioner {
	rng := rand.New(rand.NewPCG(1, 2))
	N := B * L * L
	ch := []int{6, 64, 64, 25}
	c := &benchConditioner{B: B, L: L}
	for i := range 3 {
		cv := &Conv2D[float32]{Cin: ch[i], Cout: ch[i+1], K: 3, Dil: i + 1}
		nw := cv.Cout * cv.Cin * 9
		cv.Weight, cv.Bias = make([]float32, nw), make([]float32, cv.Cout)
		cv.GradWeight, cv.GradBias = make([]float32, nw), make([]float32, cv.Cout)
		InitConvUniform(cv.Weight, cv.Bias, cv.Cin*9, rng)
		c.convs[i] = cv
	}
	c.x = convCast[float32](convRandSlice(rng, 6*N))
	c.h0, c.h1, c.out = make([]float32, 64*N), make([]float32, 64*N), make([]float32, 25*N)
	c.g0, c.g1 = make([]float32, 64*N), make([]float32, 64*N)
	c.g2 = convCast[float32](convRandSlice(rng, 25*N))
	return c
}

func (c *benchConditioner) forward(be Backend) {
	c.convs[0].Forward(be, c.h0, c.x, c.B, c.L, &c.ws)
	c.ws.LeakyReLU(be, c.h0, 0.01)
	c.convs[1].Forward(be, c.h1, c.h0, c.B, c.L, &c.ws)
	c.ws.LeakyReLU(be, c.h1, 0.01)
	c.convs[2].Forward(be, c.out, c.h1, c.B, c.L, &c.ws)
}

func (c *benchConditioner) backward(be Backend) {
	c.convs[2].Backward(be, c.g1, c.g2, c.h1, c.B, c.L, &c.ws)
	c.ws.LeakyReLUBackward(be, c.g1, c.h1, 0.01)
	c.convs[1].Backward(be, c.g0, c.g1, c.h0, c.B, c.L, &c.ws)
	c.ws.LeakyReLUBackward(be, c.g0, c.h0, 0.01)
	c.convs[0].Backward(be, nil, c.g0, c.x, c.B, c.L, &c.ws)
}

// flops returns the flops of the forward pass and of the backward pass
// (weight gradients of all three, input gradients of the last two).
func (c *benchConditioner) flops() (fwd, bwd float64) {
	for i, cv := range c.convs {
		f := cv.FLOPs(c.B, c.L)
		fwd += f
		bwd += f
		if i > 0 {
			bwd += f
		}
	}
	return fwd, bwd
}

const benchMicroBatch = 64

// BenchmarkConditioner times the conditioner in float32 at L = 8 and 16,
// micro-batch 64, forward and forward+backward, reporting GFLOP/s of the
// convolutions (the matrix products' flops; im2col, col2im, bias and
// LeakyReLU are in the time but not in the count).
func BenchmarkConditioner(b *testing.B) {
	be := CPU(0)
	for _, L := range []int{8, 16} {
		c := newBenchConditioner(benchMicroBatch, L)
		fwd, bwd := c.flops()
		b.Run(fmt.Sprintf("L=%d/forward", L), func(b *testing.B) {
			c.forward(be)
			b.ResetTimer()
			for b.Loop() {
				c.forward(be)
			}
			b.ReportMetric(fwd*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("L=%d/forward+backward", L), func(b *testing.B) {
			c.forward(be)
			c.backward(be)
			b.ResetTimer()
			for b.Loop() {
				c.forward(be)
				c.backward(be)
			}
			b.ReportMetric((fwd+bwd)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSgemm is the reference: a plain OpenBLAS sgemm of the shape of
// the conditioner's middle convolution (m = 64, k = 64·9, n = 64·L²), once
// through the CPU backend (sequential OpenBLAS on one column block per
// worker) and once as one call with OpenBLAS's own threads, one per core.
func BenchmarkSgemm(b *testing.B) {
	be := CPU(0)
	for _, L := range []int{8, 16} {
		m, k, n := 64, 64*9, benchMicroBatch*L*L
		rng := rand.New(rand.NewPCG(3, 4))
		A := convCast[float32](convRandSlice(rng, m*k))
		B := convCast[float32](convRandSlice(rng, k*n))
		C := make([]float32, m*n)
		flops := 2 * float64(m) * float64(n) * float64(k)
		b.Run(fmt.Sprintf("L=%d/backend", L), func(b *testing.B) {
			for b.Loop() {
				be.Gemm32(false, false, m, n, k, 1, A, k, B, n, 0, C, n)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("L=%d/openblas-threads", L), func(b *testing.B) {
			lgt.SetBLASThreads(runtime.GOMAXPROCS(0))
			defer lgt.SetBLASThreads(1)
			for b.Loop() {
				netlib.Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, A, k, B, n, 0, C, n)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// hiddenConv returns one run of the conditioner's middle convolution
// through oneDNN (64 → 64 channels, dilation 2, LeakyReLU, random
// weights) on in, B configurations of L×L: what the thread hand-off
// benchmarks run before the work they time. It is closed with b.
func hiddenConv(b *testing.B, be Backend, in []float32, B, L int, rng *rand.Rand) func() {
	conv, err := dnnl.NewCircConv(dnnl.CircShape{N: B, Cin: 64, Cout: 64, L: L, K: 3, Dilation: 2},
		dnnl.CircOptions{LeakyReLUSlope: 0.01, Threads: be.Workers()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(conv.Close)
	w, bias, out := convCast[float32](convRandSlice(rng, 64*64*9)), make([]float32, 64), make([]float32, 64*B*L*L)
	return func() { mustDNNL(conv.Forward(out, in, w, bias)) }
}

// BenchmarkLastConv times the conditioner's last convolution, 64 → 25
// channels at the V/4 active sites, forward and backward, at L = 8 and 16,
// micro-batch 64, in the two ways the engines run it: "openblas", im2col
// and OpenBLAS products on Go's workers (Conv2D.ForwardSites and
// BackwardSites), and "dnnl", one dnnl.SitesConv call on oneDNN's OpenMP
// threads; each "alone" and "after-conv", right after a oneDNN 64 → 64
// convolution as in a conditioner, with that convolution alone as the
// "conv" row. after-conv − conv − alone is what handing the cores from
// one thread runtime to the other costs. GFLOP/s counts the three
// products only.
func BenchmarkLastConv(b *testing.B) {
	const B = benchMicroBatch
	be := CPU(0)
	for _, L := range []int{8, 16} {
		V := L * L
		rng := rand.New(rand.NewPCG(3, 4))
		last := &Conv2D[float32]{Cin: 64, Cout: 25, K: 3, Dil: 3}
		last.Weight, last.Bias = convCast[float32](convRandSlice(rng, 25*64*9)), make([]float32, 25)
		last.GradWeight, last.GradBias = make([]float32, 25*64*9), make([]float32, 25)
		var sites []int
		for x := range V {
			if (x/L)%2 == 0 && x%2 == 0 {
				sites = append(sites, x)
			}
		}
		M := B * len(sites)
		in := convCast[float32](convRandSlice(rng, 64*B*V))
		gin := make([]float32, len(in))
		out, gout := make([]float32, 25*M), convCast[float32](convRandSlice(rng, 25*M))
		var ws Workspace[float32]
		ws.siteTaps(last, sites, L)
		taps := append([]int32(nil), ws.taps...)
		sc, err := dnnl.NewSitesConv(dnnl.SitesShape{N: B, V: V, NA: len(sites), Cin: 64, Cout: 25, Taps: 9}, dnnl.SitesOptions{Threads: be.Workers()})
		if err != nil {
			b.Fatal(err)
		}
		defer sc.Close()
		runConv := hiddenConv(b, be, in, B, L, rng)
		products := map[string]func(){
			"openblas": func() {
				last.ForwardSites(be, out, in, B, L, sites, &ws)
				last.BackwardSites(be, gin, gout, in, B, L, sites, &ws)
			},
			"dnnl": func() {
				mustDNNL(sc.Forward(out, in, taps, last.Weight, last.Bias))
				mustDNNL(sc.Backward(gin, gout, in, taps, last.Weight, last.GradWeight, last.GradBias, 0.01))
			},
		}
		flops := 3 * last.FLOPsSites(B, len(sites))
		b.Run(fmt.Sprintf("L=%d/conv", L), func(b *testing.B) {
			dnnl.Do(func() { // on the master thread, as the flow's passes
				for b.Loop() {
					runConv()
				}
			})
		})
		for _, name := range []string{"openblas", "dnnl"} {
			run := products[name]
			b.Run(fmt.Sprintf("L=%d/%s/alone", L, name), func(b *testing.B) {
				dnnl.Do(func() { // on the master thread, as the flow's passes
					for b.Loop() {
						run()
					}
				})
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			b.Run(fmt.Sprintf("L=%d/%s/after-conv", L, name), func(b *testing.B) {
				dnnl.Do(func() { // on the master thread, as the flow's passes
					for b.Loop() {
						runConv()
						run()
					}
				})
			})
		}
	}
}

// BenchmarkHandOff times an elementwise kernel on Go's workers (exp of
// 2¹⁸ float32s split over them, about a millisecond) alone and right
// after a oneDNN 64 → 64 convolution at L = 16, micro-batch 64, with the
// convolution alone as the "conv" row: after-conv − conv − alone is what
// the OpenMP threads, which spin for a while after a parallel region
// (OMP_WAIT_POLICY, GOMP_SPINCOUNT), take from Go's workers.
func BenchmarkHandOff(b *testing.B) {
	const B, L = benchMicroBatch, 16
	be := CPU(0)
	rng := rand.New(rand.NewPCG(3, 4))
	in := convCast[float32](convRandSlice(rng, 64*B*L*L))
	runConv := hiddenConv(b, be, in, B, L, rng)
	x := in[:1<<18]
	y := make([]float32, len(x))
	chunk := len(x) / 64
	kernel := func(lo, hi int) {
		for i := lo * chunk; i < hi*chunk; i++ {
			y[i] = float32(math.Exp(float64(x[i])))
		}
	}
	b.Run("conv", func(b *testing.B) {
		dnnl.Do(func() { // on the master thread, as the flow's passes
			for b.Loop() {
				runConv()
			}
		})
	})
	b.Run("go/alone", func(b *testing.B) {
		dnnl.Do(func() { // on the master thread, as the flow's passes
			for b.Loop() {
				be.ParallelFor(64, kernel)
			}
		})
	})
	b.Run("go/after-conv", func(b *testing.B) {
		dnnl.Do(func() { // on the master thread, as the flow's passes
			for b.Loop() {
				runConv()
				be.ParallelFor(64, kernel)
			}
		})
	})
}
