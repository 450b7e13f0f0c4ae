package dnnl

/*
#cgo CFLAGS: -O3
#include <stdint.h>
#include <string.h>

// nf_scatter_sites is ScatterSites for configurations [lo, hi): compiled
// for AVX-512, AVX2 and the baseline, the CPU's chosen at load time
// (target_clones). Every element sees the additions in the order of the
// portable loop (taps of a site in order, sites in order), so all three
// give the same bits.
__attribute__((target_clones("avx512f", "avx2", "default")))
static void nf_scatter_sites(float *restrict gin, const float *restrict col, const float *restrict in, const int32_t *restrict taps,
		long lo, long hi, long V, long nA, long C, long KK, float slope) {
	long CKK = C * KK;
	memset(gin + lo * V * C, 0, (size_t)((hi - lo) * V * C) * sizeof(float));
	for (long b = lo; b < hi; b++)
		for (long i = 0; i < nA; i++) {
			const float *cs = col + (b * nA + i) * CKK;
			for (long t = 0; t < KK; t++) {
				float *g = gin + (b * V + taps[t * nA + i]) * C;
				const float *s = cs + t * C;
				for (long c = 0; c < C; c++) g[c] += s[c];
			}
		}
	if (slope > 0)
		for (long k = lo * V * C; k < hi * V * C; k++)
			if (!(in[k] > 0)) gin[k] *= slope;
}

// nf_gather_sites is GatherSites for configurations [lo, hi).
__attribute__((target_clones("avx512f", "avx2", "default")))
static void nf_gather_sites(float *restrict col, const float *restrict in, const int32_t *restrict taps,
		long lo, long hi, long V, long nA, long C, long KK) {
	long CKK = C * KK;
	for (long b = lo; b < hi; b++)
		for (long i = 0; i < nA; i++) {
			float *cs = col + (b * nA + i) * CKK;
			for (long t = 0; t < KK; t++) {
				const float *s = in + (b * V + taps[t * nA + i]) * C;
				float *d = cs + t * C;
				for (long c = 0; c < C; c++) d[c] = s[c];
			}
		}
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// GatherSites fills the columns of the last convolution at the active
// sites from NHWC activations in (B·V·ch), for configurations [lo, hi):
// col[(b·nA + i)·KK·ch + t·ch + c] = in[(b·V + taps[t·nA + i])·ch + c].
func GatherSites(col, in []float32, taps []int32, lo, hi, V, nA, ch, KK int) {
	checkSites("GatherSites", col, in, taps, lo, hi, V, nA, ch, KK)
	if hi == lo {
		return
	}
	C.nf_gather_sites((*C.float)(unsafe.Pointer(unsafe.SliceData(col))), (*C.float)(unsafe.Pointer(unsafe.SliceData(in))),
		(*C.int32_t)(unsafe.Pointer(unsafe.SliceData(taps))), C.long(lo), C.long(hi), C.long(V), C.long(nA), C.long(ch), C.long(KK))
}

// checkSites panics unless the buffers hold configurations [lo, hi) and
// every tap's source is a site.
func checkSites(name string, col, act []float32, taps []int32, lo, hi, V, nA, ch, KK int) {
	if lo < 0 || hi < lo || len(act) < hi*V*ch || len(col) < hi*nA*KK*ch || len(taps) < KK*nA {
		panic(fmt.Sprintf("dnnl: %s: configurations [%d, %d) of %d sites, %d channels, %d taps: activations %d, col %d, taps %d",
			name, lo, hi, V, ch, KK, len(act), len(col), len(taps)))
	}
	for _, s := range taps[:KK*nA] {
		if s < 0 || int(s) >= V {
			panic(fmt.Sprintf("dnnl: %s: tap source %d outside 0 … %d", name, s, V-1))
		}
	}
}

// ScatterSites is the adjoint of the last convolution's gather at the
// active sites, on NHWC activations, for configurations [lo, hi) of
// lattices of V sites and ch channels: gin (B·V·ch) is zeroed in that range, then for every
// configuration b, active site i < nA and tap t < KK the column gradient
// col[(b·nA + i)·KK·ch + t·ch : …+ch] is added at the tap's source site
// taps[t·nA + i] of configuration b; with slope > 0, gin is then
// multiplied by the derivative of the LeakyReLU whose output in (B·V·ch) is
// (1 where in > 0, else slope). The same additions in the same order as
// the portable loop (nf's scatterRange): the same bits on every CPU.
func ScatterSites(gin, col, in []float32, taps []int32, lo, hi, V, nA, ch, KK int, slope float32) {
	checkSites("ScatterSites", col, gin, taps, lo, hi, V, nA, ch, KK)
	if slope > 0 && len(in) < hi*V*ch {
		panic(fmt.Sprintf("dnnl: ScatterSites: input %d for configurations up to %d of %d·%d", len(in), hi, V, ch))
	}
	if hi == lo {
		return
	}
	var inp *C.float
	if slope > 0 {
		inp = (*C.float)(unsafe.Pointer(unsafe.SliceData(in)))
	}
	C.nf_scatter_sites((*C.float)(unsafe.Pointer(unsafe.SliceData(gin))), (*C.float)(unsafe.Pointer(unsafe.SliceData(col))), inp,
		(*C.int32_t)(unsafe.Pointer(unsafe.SliceData(taps))), C.long(lo), C.long(hi), C.long(V), C.long(nA), C.long(ch), C.long(KK), C.float(slope))
}
