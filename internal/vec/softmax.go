// Package vec holds the flow's elementwise CPU kernels that Go cannot
// vectorize: C loops compiled for AVX-512, AVX2 and the baseline
// (target_clones, the CPU's variant chosen at load time), with glibc's
// vector math library (libmvec) for exp and log.
package vec

/*
#cgo CFLAGS: -O3 -fopenmp-simd
#cgo LDFLAGS: -lmvec -lm
#include <math.h>

// Declared as SIMD functions, exp and log map to libmvec's variants of the
// vector ABI (_ZGVeN8v_exp for AVX-512, _ZGVdN4v_exp for AVX2, …);
// glibc documents them within 4 ulp of the exact value.
#pragma omp declare simd notinbranch
extern double exp(double);
#pragma omp declare simd notinbranch
extern double log(double);

#define NF_SOFTMAX_SITES 32

// nf_softmax_sites: see SoftmaxSites.
__attribute__((target_clones("avx512f", "avx2", "default")))
static void nf_softmax_sites(double *restrict p, double *restrict lp, const float *restrict raw, long stride,
		int cnt, int n, int sets) {
	for (int k = 0; k < sets; k++) {
		const float *rk = raw + (long)k * n * stride;
		double *pk = p + (long)k * n * cnt, *lpk = lp + (long)k * n * cnt;
		double m[NF_SOFTMAX_SITES], sum[NF_SOFTMAX_SITES], ls[NF_SOFTMAX_SITES];
		for (int i = 0; i < cnt; i++) {
			m[i] = -INFINITY;
			sum[i] = 0;
		}
		for (int j = 0; j < n; j++) {
			const float *r = rk + j * stride;
			#pragma omp simd
			for (int i = 0; i < cnt; i++) {
				double v = r[i];
				m[i] = v > m[i] ? v : m[i]; // a NaN makes the site's sum, and so all of its p, NaN
			}
		}
		for (int j = 0; j < n; j++) {
			const float *r = rk + j * stride;
			#pragma omp simd
			for (int i = 0; i < cnt; i++) {
				double e = exp((double)r[i] - m[i]);
				pk[j * cnt + i] = e;
				sum[i] += e;
			}
		}
		#pragma omp simd
		for (int i = 0; i < cnt; i++) ls[i] = log(sum[i]);
		for (int j = 0; j < n; j++) {
			const float *r = rk + j * stride;
			#pragma omp simd
			for (int i = 0; i < cnt; i++) {
				pk[j * cnt + i] /= sum[i];
				lpk[j * cnt + i] = (double)r[i] - m[i] - ls[i];
			}
		}
	}
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// SoftmaxSites is the most sites one SoftmaxSites call takes.
const SoftmaxSites = C.NF_SOFTMAX_SITES

// Softmax computes sets softmaxes of n channels at each of cnt
// consecutive sites: for set k, channel j < n and site i < cnt, with
// r_j = raw[(k·n + j)·stride + i] (raw starts at the first site),
// p[(k·n + j)·cnt + i] = exp(r_j − max r) / Σ_j exp(r_j − max r) and
// lp (same index) = r_j − max r − log Σ_j exp(r_j − max r), in float64: the
// formulas of nf's softmaxStrided, with exp and log from libmvec (within
// 4 ulp of the exact values), vectorized over the sites.
func Softmax(p, lp []float64, raw []float32, stride, cnt, n, sets int) {
	if cnt < 1 || cnt > SoftmaxSites || n < 1 || sets < 1 || stride < cnt ||
		len(p) < sets*n*cnt || len(lp) < sets*n*cnt || len(raw) < (sets*n-1)*stride+cnt {
		panic(fmt.Sprintf("vec: Softmax of %d×%d channels at %d sites (stride %d): p %d, lp %d, raw %d",
			sets, n, cnt, stride, len(p), len(lp), len(raw)))
	}
	C.nf_softmax_sites((*C.double)(unsafe.Pointer(unsafe.SliceData(p))), (*C.double)(unsafe.Pointer(unsafe.SliceData(lp))),
		(*C.float)(unsafe.Pointer(unsafe.SliceData(raw))), C.long(stride), C.int(cnt), C.int(n), C.int(sets))
}
