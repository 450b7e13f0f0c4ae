package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// recordedFile returns the file of recorded CPU results that the
// environment variable env names (make gpu-check writes them): the test
// skips without it, except in the device check (NFSCHWINGER_CUDA_TEST =
// gpu), where it fails.
func recordedFile(t *testing.T, env string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		if deviceCheck() {
			t.Fatalf("%s is not set: the device check needs the CPU's recorded results", env)
		}
		t.Skipf("%s not set (make gpu-check writes it)", env)
	}
	return path
}

// TestFlowAgainstReference: the device flow against the CPU flow's
// results recorded by nf's TestEngineParity
// (NFSCHWINGER_GPU_REFERENCE names the file; make gpu-check writes it
// and runs this on the GPU machine, which has no CPU flow). make test
// checks the same path on the emulator inside that test; here, without
// the file, it skips — except in the device check
// (NFSCHWINGER_CUDA_TEST=gpu), where a missing file fails.
func TestFlowAgainstReference(t *testing.T) {
	refs, err := ReadReferences(recordedFile(t, "NFSCHWINGER_GPU_REFERENCE"))
	if err != nil {
		t.Fatal(err)
	}
	if testing.Short() && len(refs) > 1 {
		refs = refs[:1] // the device check's smoke stage: one parity case
	}
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, r := range refs {
			t.Run(r.Name, func(t *testing.T) {
				for _, msg := range CheckReference(k, r) {
					t.Error(msg)
				}
			})
		}
	})
}

// TestLogDetAgainstReference: the device's log|det D| against lgt's,
// recorded by TestLogDetMatchesCPU (NFSCHWINGER_GPU_LOGDET names the
// file; make gpu-check writes it): skipped without it, failing without it
// in the device check.
func TestLogDetAgainstReference(t *testing.T) {
	var cases []LogDetCase
	if err := readGob(recordedFile(t, "NFSCHWINGER_GPU_LOGDET"), &cases); err != nil {
		t.Fatal(err)
	}
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, c := range cases {
			for _, msg := range checkLogDet(k, c) {
				t.Error(msg)
			}
		}
	})
}

// BenchmarkLogDet times gpu.LogDet (building S, the batched LU, the sum;
// with the force also the batched inverse and the force kernels) at L =
// 16 and 24 for micro-batches of 512 and 1536 random configurations, with
// each batched LU (cuBLAS's and the blocked one, LogDet.LU): the device's
// share of the action. In the device
// check only (NFSCHWINGER_GPU_SPECS set); the emulator's LU is OpenBLAS's.
func BenchmarkLogDet(b *testing.B) {
	if os.Getenv("NFSCHWINGER_GPU_SPECS") == "" {
		b.Skip("the device check's benchmark (NFSCHWINGER_GPU_SPECS not set)")
	}
	for name, d := range devices(b) {
		k, err := NewKernels(d)
		if err != nil {
			b.Fatal(err)
		}
		for _, L := range []int{16, 24} {
			for _, B := range []int{512, 1536} {
				for _, c := range []struct {
					withForce bool
					lu        LUMethod
				}{{false, CuBLASLU}, {false, BlockedLU}, {true, CuBLASLU}, {true, BlockedLU}} {
					withForce := c.withForce
					b.Run(fmt.Sprintf("%s/L%d/B%d/force%v/lu-%s", name, L, B, withForce, c.lu), func(b *testing.B) {
						ld, err := NewLogDet(k, L, 0.276, B, withForce)
						skipOnlyIfTooLarge(b, err)
						defer ld.Close()
						ld.LU = c.lu
						rng := rand.New(rand.NewPCG(uint64(L), uint64(B)))
						links := make([]float64, B*2*L*L)
						for i := range links {
							links[i] = 2 * math.Pi * rng.Float64()
						}
						out, force := make([]float64, B), make([]float64, len(links))
						run := func() error {
							if withForce {
								return ld.Force(out, force, links, 2, B)
							}
							return ld.Compute(out, links, B)
						}
						if err := run(); err != nil {
							b.Fatal(err)
						}
						b.ResetTimer()
						for range b.N {
							if err := run(); err != nil {
								b.Fatal(err)
							}
						}
						b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/batch")
					})
				}
			}
		}
	}
}
