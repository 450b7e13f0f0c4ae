package nf

import (
	"fmt"
	"unsafe"
)

// Backend runs the heavy kernels of the flow: dense matrix products and
// data-parallel loops. CPU is the only implementation; a CUDA one will sit
// behind the same interface.
//
// Matrices are row-major, as in gonum's blas: op(A) is m×k, op(B) is k×n and
// C is m×n, with leading dimensions lda, ldb, ldc (the row strides). tA, tB
// select op(X) = Xᵀ. Gemm computes C = alpha·op(A)·op(B) + beta·C; with
// beta = 0 the old contents of C are ignored (NaN included).
//
// Concurrency: a Backend may be used from several goroutines at once, but
// Gemm32, Gemm64 and ParallelFor must not be called from inside the fn of a
// ParallelFor (the backend already uses all its workers).
type Backend interface {
	// Gemm32 is the float32 matrix product C = alpha·op(A)·op(B) + beta·C.
	Gemm32(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	// Gemm64 is the float64 matrix product C = alpha·op(A)·op(B) + beta·C.
	Gemm64(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
	// ParallelFor splits [0, n) into at most Workers() contiguous chunks and
	// calls fn(lo, hi) once for each, concurrently, returning when all are
	// done. Chunks are disjoint and cover [0, n); n ≤ 0 calls nothing. To
	// stay allocation-free, pass a func value created once and reused, not a
	// fresh closure per call.
	ParallelFor(n int, fn func(lo, hi int))
	// Workers is the number of goroutines (cores) the backend computes on.
	Workers() int
	// Name describes the backend for logs and benchmark tables.
	Name() string
}

// gemm is C = alpha·op(A)·op(B) + beta·C in T's precision: it dispatches to
// Gemm32 or Gemm64 of be (see Backend for the conventions).
func gemm[T Float](be Backend, tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if unsafe.Sizeof(alpha) == 4 {
		be.Gemm32(tA, tB, m, n, k, float32(alpha), as32(a), lda, as32(b), ldb, float32(beta), as32(c), ldc)
		return
	}
	be.Gemm64(tA, tB, m, n, k, float64(alpha), as64(a), lda, as64(b), ldb, float64(beta), as64(c), ldc)
}

// as32 reinterprets a slice of a 4-byte Float as []float32 (T may be a named
// type whose underlying type is float32).
func as32[T Float](x []T) []float32 {
	if unsafe.Sizeof(T(0)) != 4 {
		panic(fmt.Sprintf("nf: as32 on %d-byte elements", unsafe.Sizeof(T(0))))
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}

// as64 reinterprets a slice of an 8-byte Float as []float64.
func as64[T Float](x []T) []float64 {
	if unsafe.Sizeof(T(0)) != 8 {
		panic(fmt.Sprintf("nf: as64 on %d-byte elements", unsafe.Sizeof(T(0))))
	}
	return unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}

// seqGemmer is implemented by backends whose products can also run
// sequentially on the calling goroutine, from inside ParallelFor (the CPU
// backend: one OpenBLAS call per worker). Kernels that find it fuse their
// loops with the products, tile by tile; others call Gemm on whole batches.
type seqGemmer interface {
	sgemmSeq(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	dgemmSeq(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
}

// gemmSeq is gemm on the calling goroutine only (see seqGemmer).
func gemmSeq[T Float](sg seqGemmer, tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if unsafe.Sizeof(alpha) == 4 {
		sg.sgemmSeq(tA, tB, m, n, k, float32(alpha), as32(a), lda, as32(b), ldb, float32(beta), as32(c), ldc)
		return
	}
	sg.dgemmSeq(tA, tB, m, n, k, float64(alpha), as64(a), lda, as64(b), ldb, float64(beta), as64(c), ldc)
}
