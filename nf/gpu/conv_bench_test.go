package gpu

import (
	"fmt"
	"testing"
	"time"

	"nfschwinger/internal/cuda"
)

// BenchmarkConv times the conditioner's middle convolution (64 → 64,
// dilation 2) on the device at L = 8, 16, 24 with micro-batches 512 and
// 1536 (the paper's), float32: forward and forward + backward, next to
// cuBLAS's own Sgemm of the forward product's shape (m = B·V, n = 64,
// k = 576) in the same run — the issue's "GEMMs at least 50 % of cuBLAS's
// own rate". GFLOP/s counts the products' flops (backward = 2× forward).
// For the GPU machine (gpu-check); on the emulator it only proves the
// code runs (-test.short keeps it to L = 8, batch 16).
func BenchmarkConv(b *testing.B) {
	d, err := cuda.Open(0)
	if err != nil {
		if deviceCheck() {
			b.Fatal(err) // the device check: no device is a failure
		}
		b.Skip(err)
	}
	k, err := NewKernels(d)
	if err != nil {
		b.Fatal(err)
	}
	type shape struct{ L, B int }
	shapes := []shape{{8, 512}, {16, 512}, {16, 1536}, {24, 1536}}
	if testing.Short() {
		shapes = []shape{{8, 16}}
	}
	for _, s := range shapes {
		N := s.B * s.L * s.L
		const cin, cout, K = 64, 64, 3
		alloc := func(n int) cuda.DevicePtr {
			p, err := d.Alloc(n * 4)
			if err != nil {
				skipOnlyIfTooLarge(b, fmt.Errorf("%w: %w", ErrOutOfMemory, err))
			}
			return p
		}
		in, out, gin, gout := alloc(cin*N), alloc(cout*N), alloc(cin*N), alloc(cout*N)
		w, gw, bias, gb := alloc(cout*cin*K*K), alloc(cout*cin*K*K), alloc(cout), alloc(cout)
		cv := NewConv[float32](k, cin, cout, K, 2)
		flops := 2 * float64(N) * cout * cin * K * K
		run := func(b *testing.B, name string, f func() error, fl float64) {
			b.Run(fmt.Sprintf("L%d_B%d/%s", s.L, s.B, name), func(b *testing.B) {
				if err := f(); err != nil {
					b.Fatal(err)
				}
				d.Synchronize()
				b.ResetTimer()
				t0 := time.Now()
				for range b.N {
					if err := f(); err != nil {
						b.Fatal(err)
					}
				}
				if err := d.Synchronize(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(fl*float64(b.N)/time.Since(t0).Seconds()/1e9, "GFLOP/s")
			})
		}
		run(b, "forward", func() error { return cv.Forward(out, in, w, bias, s.B, s.L) }, flops)
		run(b, "forward+backward", func() error {
			if err := cv.Forward(out, in, w, bias, s.B, s.L); err != nil {
				return err
			}
			return cv.Backward(gin, gout, in, w, gw, gb, s.B, s.L)
		}, 3*flops)
		col := alloc(cin * K * K * N)
		run(b, "sgemm", func() error {
			return d.Sgemm(cuda.NoTrans, cuda.NoTrans, N, cout, cin*K*K, 1, col, N, w, cin*K*K, 0, out, N)
		}, flops)
		cv.Close()
		for _, p := range []cuda.DevicePtr{in, out, gin, gout, w, gw, bias, gb, col} {
			d.Free(p)
		}
	}
}
