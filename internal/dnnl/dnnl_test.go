package dnnl

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestConvMatchesDirect: the plain float32 primitive equals a direct
// float64 convolution to float32 rounding of the sums (relative to the sum
// of the absolute terms), for dilations 1–3 and channel counts of the
// conditioner.
func TestConvMatchesDirect(t *testing.T) {
	for _, s := range []Shape{
		{N: 2, Cin: 6, Hp: 10, Wp: 10, Cout: 8, K: 3, Dilation: 1},
		{N: 3, Cin: 8, Hp: 12, Wp: 12, Cout: 8, K: 3, Dilation: 2},
		{N: 1, Cin: 8, Hp: 14, Wp: 14, Cout: 5, K: 3, Dilation: 3},
	} {
		t.Run(fmt.Sprintf("%dto%d_d%d", s.Cin, s.Cout, s.Dilation), func(t *testing.T) {
			cv, err := NewConv(s, Plain, false, 2)
			if err != nil {
				t.Fatal(err)
			}
			defer cv.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			for _, b := range [][]float32{cv.Src(), cv.Weights(), cv.Bias()} {
				for i := range b {
					b[i] = float32(rng.NormFloat64())
				}
			}
			if err := cv.Forward(); err != nil {
				t.Fatal(err)
			}
			h, w := s.Out()
			src, wt, bias, dst := cv.Src(), cv.Weights(), cv.Bias(), cv.Dst()
			if len(dst) != s.N*s.Cout*h*w {
				t.Fatalf("dst has %d values, want %d", len(dst), s.N*s.Cout*h*w)
			}
			worst := 0.0
			for n := range s.N {
				for o := range s.Cout {
					for y := range h {
						for x := range w {
							sum, abs := float64(bias[o]), math.Abs(float64(bias[o]))
							for c := range s.Cin {
								for ky := range s.K {
									for kx := range s.K {
										v := float64(src[((n*s.Cin+c)*s.Hp+y+ky*s.Dilation)*s.Wp+x+kx*s.Dilation]) *
											float64(wt[((o*s.Cin+c)*s.K+ky)*s.K+kx])
										sum += v
										abs += math.Abs(v)
									}
								}
							}
							got := float64(dst[((n*s.Cout+o)*h+y)*w+x])
							worst = math.Max(worst, math.Abs(got-sum)/abs)
						}
					}
				}
			}
			// float32 sums of Cin·K² + 1 ≤ 73 terms: a few ulps of the
			// absolute sum.
			if worst > 1e-6 {
				t.Errorf("largest error %.3g of the absolute sum, want ≤ 1e-6", worst)
			}
		})
	}
}

// TestBadShape: an impossible shape is an error, not a crash.
func TestBadShape(t *testing.T) {
	if _, err := NewConv(Shape{N: 1, Cin: 1, Hp: 2, Wp: 2, Cout: 1, K: 3, Dilation: 2}, Plain, false, 2); err == nil {
		t.Error("a kernel larger than the input was accepted")
	}
}

// BenchmarkConvPrimitive is the reference rate of the convolutions: the
// 64→64 dilation-2 convolution of the conditioner at L = 8 and 16, batch
// 64, in oneDNN's own layouts, float32 and bf16 (GFLOP/s reported).
func BenchmarkConvPrimitive(b *testing.B) {
	for _, L := range []int{8, 16} {
		for _, bf16 := range []bool{false, true} {
			s := Shape{N: 64, Cin: 64, Hp: L + 4, Wp: L + 4, Cout: 64, K: 3, Dilation: 2}
			name := fmt.Sprintf("L%d_f32", L)
			if bf16 {
				name = fmt.Sprintf("L%d_bf16", L)
			}
			b.Run(name, func(b *testing.B) {
				cv, err := NewConv(s, Blocked, bf16, 2)
				if err != nil {
					b.Skip(err)
				}
				defer cv.Close()
				cv.FillOnes()
				cv.Forward()
				b.ResetTimer()
				Do(func() {
					for range b.N {
						if err = cv.Forward(); err != nil {
							return
						}
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(s.Flops()*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestConvBackwardMatchesDirect: the backward-data and backward-weights
// primitives equal the adjoints of the direct convolution, computed in
// float64, to float32 rounding of their sums.
func TestConvBackwardMatchesDirect(t *testing.T) {
	for _, s := range []Shape{
		{N: 2, Cin: 6, Hp: 10, Wp: 10, Cout: 8, K: 3, Dilation: 1},
		{N: 3, Cin: 8, Hp: 12, Wp: 12, Cout: 5, K: 3, Dilation: 2},
	} {
		t.Run(fmt.Sprintf("%dto%d_d%d", s.Cin, s.Cout, s.Dilation), func(t *testing.T) {
			cv, err := NewConv(s, Plain, false, 2)
			if err != nil {
				t.Fatal(err)
			}
			defer cv.Close()
			if err := cv.EnableBackward(); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			for _, b := range [][]float32{cv.Src(), cv.Weights(), cv.DiffDst()} {
				for i := range b {
					b[i] = float32(rng.NormFloat64())
				}
			}
			if err := cv.Backward(); err != nil {
				t.Fatal(err)
			}
			h, w := s.Out()
			src, wt, g := cv.Src(), cv.Weights(), cv.DiffDst()
			dSrc := make([]float64, len(src))
			aSrc := make([]float64, len(src))
			dW := make([]float64, len(wt))
			aW := make([]float64, len(wt))
			dB := make([]float64, s.Cout)
			aB := make([]float64, s.Cout)
			for n := range s.N {
				for o := range s.Cout {
					for y := range h {
						for x := range w {
							gv := float64(g[((n*s.Cout+o)*h+y)*w+x])
							dB[o] += gv
							aB[o] += math.Abs(gv)
							for c := range s.Cin {
								for ky := range s.K {
									for kx := range s.K {
										si := ((n*s.Cin+c)*s.Hp+y+ky*s.Dilation)*s.Wp + x + kx*s.Dilation
										wi := ((o*s.Cin+c)*s.K+ky)*s.K + kx
										dSrc[si] += gv * float64(wt[wi])
										aSrc[si] += math.Abs(gv * float64(wt[wi]))
										dW[wi] += gv * float64(src[si])
										aW[wi] += math.Abs(gv * float64(src[si]))
									}
								}
							}
						}
					}
				}
			}
			for _, c := range []struct {
				name      string
				got       []float32
				want, abs []float64
			}{{"diff_src", cv.DiffSrc(), dSrc, aSrc}, {"diff_weights", cv.DiffWeights(), dW, aW}, {"diff_bias", cv.DiffBias(), dB, aB}} {
				worst := 0.0
				for i, v := range c.want {
					if c.abs[i] > 0 {
						worst = math.Max(worst, math.Abs(float64(c.got[i])-v)/c.abs[i])
					} else if c.got[i] != 0 {
						worst = math.Inf(1)
					}
				}
				// float32 sums of up to N·H·W = 192 terms: a few ulps of
				// the absolute sum.
				if worst > 2e-6 {
					t.Errorf("%s: largest error %.3g of the absolute sum, want ≤ 2e-6", c.name, worst)
				}
			}
		})
	}
}

// TestConvAcrossThreads: a primitive created on one OS thread and run on
// another (as Go's scheduler may do between two cgo calls) computes the
// same output. With oneDNN's default per-thread scratchpad this overran
// memory and crashed now and then; each primitive owns its scratchpad.
func TestConvAcrossThreads(t *testing.T) {
	s := Shape{N: 64, Cin: 64, Hp: 12, Wp: 12, Cout: 64, K: 3, Dilation: 2}
	for round := range 5 {
		made := make(chan *Conv)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cv, err := NewConv(s, Plain, false, 2)
			if err != nil {
				t.Error(err)
			}
			made <- cv
			<-made // hold this thread until the other is done
		}()
		cv := <-made
		if cv == nil {
			t.FailNow()
		}
		for i, v := range cv.Src() {
			_ = v
			cv.Src()[i] = float32(i%7) - 3
		}
		for i := range cv.Weights() {
			cv.Weights()[i] = float32(i%5) - 2
		}
		clear(cv.Bias()) // oneDNN's buffers start uninitialized
		done := make(chan []float32)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var out []float32
			for range 3 {
				if err := cv.Forward(); err != nil {
					t.Error(err)
				}
				out = append(out[:0], cv.Dst()...)
			}
			done <- out
		}()
		out := <-done
		made <- nil
		if err := cv.Forward(); err != nil {
			t.Fatal(err)
		}
		for i, v := range cv.Dst() {
			if v != out[i] {
				t.Fatalf("round %d: output %d differs between threads: %v and %v", round, i, out[i], v)
			}
		}
		cv.Close()
	}
}
