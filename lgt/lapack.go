package lgt

// #cgo LDFLAGS: -llapacke -lopenblas
// #include <complex.h>
// #include <lapacke.h>
// void openblas_set_num_threads(int num_threads);
// int openblas_get_num_threads(void);
import "C"

import (
	"math"
	"math/cmplx"
	"sync"
	"unsafe"
)

// The dense linear algebra goes through LAPACKE's *_work functions in
// column-major layout, so that LAPACKE neither allocates nor transposes.
// A row-major Go matrix A is the column-major matrix Aᵀ: its LU gives
// det Aᵀ = det A, and inverting it in place leaves (Aᵀ)⁻¹ in column-major
// order, which is A⁻¹ in row-major order.

// zgetrf LU-factorizes the n×n matrix a in place (partial pivoting, any
// layout, see above) and returns LAPACK's info: 0 on success, > 0 for an
// exactly zero pivot. ipiv has length n.
func zgetrf(a []complex128, n int, ipiv []int32) int {
	info := C.LAPACKE_zgetrf_work(C.LAPACK_COL_MAJOR, C.lapack_int(n), C.lapack_int(n),
		(*C.lapack_complex_double)(unsafe.Pointer(&a[0])), C.lapack_int(n),
		(*C.lapack_int)(unsafe.Pointer(&ipiv[0])))
	return int(info)
}

// zgetri overwrites the LU factors in a (from zgetrf) with the inverse.
// work has length at least n; zgetriWorkLen gives the optimal length.
func zgetri(a []complex128, n int, ipiv []int32, work []complex128) int {
	info := C.LAPACKE_zgetri_work(C.LAPACK_COL_MAJOR, C.lapack_int(n),
		(*C.lapack_complex_double)(unsafe.Pointer(&a[0])), C.lapack_int(n),
		(*C.lapack_int)(unsafe.Pointer(&ipiv[0])),
		(*C.lapack_complex_double)(unsafe.Pointer(&work[0])), C.lapack_int(len(work)))
	return int(info)
}

// zgetrs solves A X = B in place of b (n×nrhs, column-major) with the LU
// factors of A from zgetrf.
func zgetrs(a []complex128, n int, ipiv []int32, b []complex128, nrhs int) int {
	info := C.LAPACKE_zgetrs_work(C.LAPACK_COL_MAJOR, C.char('N'), C.lapack_int(n), C.lapack_int(nrhs),
		(*C.lapack_complex_double)(unsafe.Pointer(&a[0])), C.lapack_int(n),
		(*C.lapack_int)(unsafe.Pointer(&ipiv[0])),
		(*C.lapack_complex_double)(unsafe.Pointer(&b[0])), C.lapack_int(n))
	return int(info)
}

// zgetriWorkLen returns the optimal work length of zgetri for order n.
func zgetriWorkLen(n int) int {
	var q complex128
	var a [1]complex128
	var ipiv [1]int32
	C.LAPACKE_zgetri_work(C.LAPACK_COL_MAJOR, C.lapack_int(n),
		(*C.lapack_complex_double)(unsafe.Pointer(&a[0])), C.lapack_int(n),
		(*C.lapack_int)(unsafe.Pointer(&ipiv[0])),
		(*C.lapack_complex_double)(unsafe.Pointer(&q)), -1)
	w := int(real(q))
	if w < n {
		w = n
	}
	return w
}

// luLogDet returns log|det A| and the phase angle arg det A (not reduced)
// of an n×n matrix from its LU factors (zgetrf): the product of the
// diagonal of U, times −1 per row interchange.
func luLogDet(lu []complex128, n int, ipiv []int32) (logAbs, angle float64) {
	for k := 0; k < n; k++ {
		u := lu[k*n+k]
		logAbs += math.Log(cmplx.Abs(u))
		angle += cmplx.Phase(u)
		if int(ipiv[k]) != k+1 {
			angle += math.Pi
		}
	}
	return logAbs, angle
}

// BLASThreads returns the number of threads OpenBLAS uses for one call.
func BLASThreads() int { return int(C.openblas_get_num_threads()) }

// SetBLASThreads sets the number of threads OpenBLAS uses for one call,
// process-wide.
func SetBLASThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

// blasSerial counts the Pool calls in flight that need OpenBLAS to run
// single-threaded, and remembers the thread count to restore.
var blasSerial struct {
	mu    sync.Mutex
	users int
	saved int
}

// serialBLAS switches OpenBLAS to one thread per call (the Pool's
// parallelism is over configurations, one LU per goroutine) and returns the
// function that restores the previous setting once no Pool call needs it.
func serialBLAS() (restore func()) {
	blasSerial.mu.Lock()
	if blasSerial.users == 0 {
		blasSerial.saved = BLASThreads()
		if blasSerial.saved != 1 {
			SetBLASThreads(1)
		}
	}
	blasSerial.users++
	blasSerial.mu.Unlock()
	return func() {
		blasSerial.mu.Lock()
		blasSerial.users--
		if blasSerial.users == 0 && blasSerial.saved != 1 {
			SetBLASThreads(blasSerial.saved)
		}
		blasSerial.mu.Unlock()
	}
}

// zhetrf factorizes the hermitian n×n matrix a (lower triangle in
// column-major order, which is the upper triangle in row-major order) as
// P L D Lᴴ Pᵀ (Bunch–Kaufman) in place. work has length ≥ 1 (the optimal
// length from hermWorkLen).
func zhetrf(a []complex128, n int, ipiv []int32, work []complex128) int {
	info := C.LAPACKE_zhetrf_work(C.LAPACK_COL_MAJOR, C.char('L'), C.lapack_int(n),
		(*C.lapack_complex_double)(unsafe.Pointer(&a[0])), C.lapack_int(n),
		(*C.lapack_int)(unsafe.Pointer(&ipiv[0])),
		(*C.lapack_complex_double)(unsafe.Pointer(&work[0])), C.lapack_int(len(work)))
	return int(info)
}

// zhetri2 overwrites the factors from zhetrf with the lower triangle
// (column-major) of the inverse.
func zhetri2(a []complex128, n int, ipiv []int32, work []complex128) int {
	info := C.LAPACKE_zhetri2_work(C.LAPACK_COL_MAJOR, C.char('L'), C.lapack_int(n),
		(*C.lapack_complex_double)(unsafe.Pointer(&a[0])), C.lapack_int(n),
		(*C.lapack_int)(unsafe.Pointer(&ipiv[0])),
		(*C.lapack_complex_double)(unsafe.Pointer(&work[0])), C.lapack_int(len(work)))
	return int(info)
}

// hermWorkLen returns a work length good for both zhetrf and zhetri2 of
// order n.
func hermWorkLen(n int) int {
	var q1, q2 complex128
	var a [1]complex128
	var ipiv [1]int32
	C.LAPACKE_zhetrf_work(C.LAPACK_COL_MAJOR, C.char('L'), C.lapack_int(n),
		(*C.lapack_complex_double)(unsafe.Pointer(&a[0])), C.lapack_int(n),
		(*C.lapack_int)(unsafe.Pointer(&ipiv[0])),
		(*C.lapack_complex_double)(unsafe.Pointer(&q1)), -1)
	C.LAPACKE_zhetri2_work(C.LAPACK_COL_MAJOR, C.char('L'), C.lapack_int(n),
		(*C.lapack_complex_double)(unsafe.Pointer(&a[0])), C.lapack_int(n),
		(*C.lapack_int)(unsafe.Pointer(&ipiv[0])),
		(*C.lapack_complex_double)(unsafe.Pointer(&q2)), -1)
	return max(int(real(q1)), int(real(q2)), n)
}

// bkLogDet returns log|det A| and the phase angle (0 or π, det A is real)
// of a hermitian matrix from its Bunch–Kaufman factors (zhetrf, 'L',
// column-major): det A = Π det D_k over the 1×1 blocks D(k,k) and the 2×2
// blocks [[d₁₁, conj d₂₁], [d₂₁, d₂₂]] marked by ipiv(k) = ipiv(k+1) < 0.
func bkLogDet(f []complex128, n int, ipiv []int32) (logAbs, angle float64) {
	neg := false
	for k := 0; k < n; k++ {
		var d float64
		if ipiv[k] > 0 {
			d = real(f[k*n+k])
		} else {
			d21 := f[k*n+k+1] // column k, row k+1
			d = real(f[k*n+k])*real(f[(k+1)*n+k+1]) - (real(d21)*real(d21) + imag(d21)*imag(d21))
			k++
		}
		logAbs += math.Log(math.Abs(d))
		if d < 0 {
			neg = !neg
		}
	}
	if neg {
		angle = math.Pi
	}
	return logAbs, angle
}
