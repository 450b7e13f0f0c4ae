//go:build cgo

package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"nfschwinger/lgt"
)

// TestLogDetMatchesCPU: the device's log|det D| (Schur complement built
// from the links on the device, batched LU) and force dS/dθ (batched
// inverse, the neighbour blocks of D⁻¹, the gauge force) against lgt's
// (Bunch–Kaufman of σ₃S and its inverse on the CPU) for random links at L = 2, 4, 6, 8 and the paper's β
// and κ (and κ = 0.5, far from the free theory), micro-batches of 1 and 5
// (checkLogDet): log|det D| within 1e-12 of |log|det D|| + 1 (the two
// factorizations round differently; log|det| sums V terms of order one),
// the force within 1e-11 of its largest component. With
// NFSCHWINGER_GPU_LOGDET=FILE it writes the cases to FILE for the device
// check (TestLogDetAgainstReference).
func TestLogDetMatchesCPU(t *testing.T) {
	var cases []LogDetCase
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, L := range []int{2, 4, 6, 8} {
			for _, kappa := range []float64{lgt.PaperKappa, 0.5} {
				t.Run(fmt.Sprintf("L%d_kappa%g", L, kappa), func(t *testing.T) {
					var err error
					ev := lgt.NewEvaluator(lgt.Params{L: L, Beta: lgt.PaperBeta, Kappa: kappa})
					rng := rand.New(rand.NewPCG(uint64(L), 11))
					for _, B := range []int{1, 5} {
						V := L * L
						links := make([]float64, B*2*V)
						for i := range links {
							links[i] = 2 * math.Pi * rng.Float64()
						}
						c := LogDetCase{L: L, Kappa: kappa, Beta: lgt.PaperBeta, Links: links, Want: make([]float64, B), Force: make([]float64, len(links))}
						for b := range B {
							lk := links[b*2*V : (b+1)*2*V]
							if c.Want[b], _, err = ev.LogDet(lk); err != nil {
								t.Fatal(err)
							}
							if _, err := ev.Action(lk, c.Force[b*2*V:(b+1)*2*V]); err != nil {
								t.Fatal(err)
							}
						}
						for _, msg := range checkLogDet(k, c) {
							t.Error(msg)
						}
						cases = append(cases, c)
					}
				})
			}
		}
	})
	if path := os.Getenv("NFSCHWINGER_GPU_LOGDET"); path != "" {
		if err := writeGob(path, cases); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %d cases to %s", len(cases), path)
	}
}
