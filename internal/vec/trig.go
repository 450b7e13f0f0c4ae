package vec

/*
#cgo CFLAGS: -O3 -fopenmp-simd
#cgo LDFLAGS: -lmvec -lm
#include <math.h>
#include <stdint.h>

// As in softmax.go: libmvec's vector cos and sin, within 4 ulp in float64.
#pragma omp declare simd notinbranch
extern double cos(double);
#pragma omp declare simd notinbranch
extern double sin(double);

// nf_cos_sin: see CosSin. The cosines and the sines in loops of their own
// (in one, GCC would merge them into a scalar sincos call), the mask
// applied after (a select on the byte mask keeps GCC from vectorizing).
__attribute__((target_clones("avx512f", "avx2", "default")))
static void nf_cos_sin(float *restrict c, float *restrict s, const float *restrict a, const uint8_t *restrict on, long n) {
	#pragma omp simd
	for (long i = 0; i < n; i++) c[i] = (float)cos((double)a[i]);
	#pragma omp simd
	for (long i = 0; i < n; i++) s[i] = (float)sin((double)a[i]);
	for (long i = 0; i < n; i++)
		if (!on[i]) c[i] = 1.0f, s[i] = 0.0f;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// CosSin writes c[i] = cos a[i] and s[i] = sin a[i] where on[i], else 1
// and 0 (the conditioner input of a masked angle), for i < len(a): computed
// in float64 with libmvec's cos and sin (within 4 ulp), vectorized, then
// rounded to float32 — within one float32 ulp of float32(math.Cos(a)).
func CosSin(c, s, a []float32, on []bool) {
	n := len(a)
	if len(c) != n || len(s) != n || len(on) != n {
		panic(fmt.Sprintf("vec: CosSin: lengths c %d, s %d, a %d, on %d", len(c), len(s), n, len(on)))
	}
	if n == 0 {
		return
	}
	C.nf_cos_sin((*C.float)(unsafe.Pointer(unsafe.SliceData(c))), (*C.float)(unsafe.Pointer(unsafe.SliceData(s))),
		(*C.float)(unsafe.Pointer(unsafe.SliceData(a))), (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(on))), C.long(n))
}
