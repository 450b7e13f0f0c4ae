package nf

import (
	"nfschwinger/lgt"

	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// naiveGemm is C = alpha·op(A)·op(B) + beta·C term by term in float64.
func naiveGemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	for i := range m {
		for j := range n {
			var s float64
			for l := range k {
				var av, bv float64
				if tA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				if tB {
					bv = b[j*ldb+l]
				} else {
					bv = b[l*ldb+j]
				}
				s += av * bv
			}
			c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
		}
	}
}

// gemmTol is relative to Σ|terms|: float64 sums of at most 300 terms.
const gemmTol = 1e-13

// TestGemm runs every transpose combination, padded leading dimensions, and
// sizes below and above the splitting threshold (and with m > n and m < n,
// the two split directions), on 1, 2 and 3 workers, in both precisions.
func TestGemm(t *testing.T) {
	shapes := []struct{ m, n, k int }{{3, 5, 7}, {1, 1, 1}, {64, 300, 54}, {300, 64, 40}, {17, 257, 130}, {250, 33, 129}}
	for _, workers := range []int{1, 2, 3} {
		be := CPU(workers)
		for _, s := range shapes {
			for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				tA, tB := tr[0], tr[1]
				name := fmt.Sprintf("w=%d/m=%d,n=%d,k=%d,tA=%v,tB=%v", workers, s.m, s.n, s.k, tA, tB)
				t.Run(name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(s.m*s.n), uint64(s.k)))
					ra, ca := s.m, s.k
					if tA {
						ra, ca = ca, ra
					}
					rb, cb := s.k, s.n
					if tB {
						rb, cb = cb, rb
					}
					lda, ldb, ldc := ca+3, cb+1, s.n+2
					a, b := convRandSlice(rng, ra*lda), convRandSlice(rng, rb*ldb)
					c := convRandSlice(rng, s.m*ldc)
					const alpha, beta = 0.7, -1.3
					want := append([]float64(nil), c...)
					naiveGemm(tA, tB, s.m, s.n, s.k, alpha, a, lda, b, ldb, beta, want, ldc)
					absA := make([]float64, len(a))
					absB := make([]float64, len(b))
					for i := range a {
						absA[i] = math.Abs(a[i])
					}
					for i := range b {
						absB[i] = math.Abs(b[i])
					}
					mag := make([]float64, len(c))
					for i := range c {
						mag[i] = math.Abs(beta * c[i])
					}
					naiveGemm(tA, tB, s.m, s.n, s.k, math.Abs(alpha), absA, lda, absB, ldb, 1, mag, ldc)

					c64 := append([]float64(nil), c...)
					gemm(be, tA, tB, s.m, s.n, s.k, alpha, a, lda, b, ldb, beta, c64, ldc)
					c32 := convCast[float32](c)
					gemm(be, tA, tB, s.m, s.n, s.k, float32(alpha), convCast[float32](a), lda, convCast[float32](b), ldb, float32(beta), c32, ldc)
					const eps32 = 0x1p-24
					for i := range s.m {
						for j := range ldc {
							x := i*ldc + j
							if j >= s.n { // padding: untouched
								if c64[x] != c[x] || c32[x] != float32(c[x]) {
									t.Fatalf("padding C[%d][%d] changed", i, j)
								}
								continue
							}
							if d := math.Abs(c64[x] - want[x]); !(d <= gemmTol*mag[x]) {
								t.Fatalf("float64 C[%d][%d] = %v, want %v", i, j, c64[x], want[x])
							}
							if d := math.Abs(float64(c32[x]) - want[x]); !(d <= float64(s.k+4)*eps32*mag[x]) {
								t.Fatalf("float32 C[%d][%d] = %v, want %v", i, j, c32[x], want[x])
							}
						}
					}
				})
			}
		}
	}
}

// TestParallelFor checks that the chunks are disjoint and cover [0, n), on
// several goroutines at once.
func TestParallelFor(t *testing.T) {
	for _, workers := range []int{1, 2, 3} {
		be := CPU(workers)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for _, n := range []int{0, 1, 2, 3, 7, 100, 1001} {
					hits := make([]atomic.Int32, n)
					var calls atomic.Int32
					be.ParallelFor(n, func(lo, hi int) {
						calls.Add(1)
						if lo >= hi {
							t.Errorf("empty chunk [%d, %d)", lo, hi)
						}
						for i := lo; i < hi; i++ {
							hits[i].Add(1)
						}
					})
					for i := range hits {
						if h := hits[i].Load(); h != 1 {
							t.Errorf("workers %d, goroutine %d, n %d: index %d hit %d times", workers, g, n, i, h)
						}
					}
					if c := int(calls.Load()); c > workers || (n > 0 && c < 1) {
						t.Errorf("workers %d, n %d: %d chunks", workers, n, c)
					}
				}
			})
		}
		wg.Wait()
	}
}

func TestCPUShared(t *testing.T) {
	if CPU(2) != CPU(2) {
		t.Error("CPU(2) returned two backends")
	}
	if w := CPU(3).Workers(); w != 3 {
		t.Errorf("Workers() = %d", w)
	}
	if lgt.BLASThreads() != 1 {
		t.Errorf("OpenBLAS threads = %d after CPU, want 1", lgt.BLASThreads())
	}
}
