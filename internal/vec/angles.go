package vec

/*
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lm
#include <math.h>
#include <stdint.h>

// No product here is added to anything but through fma(), so GCC's
// contraction of multiply–adds changes no result. Without trapping math
// GCC may vectorize trunc (the same values; no exception flag is read).
#pragma GCC optimize("no-trapping-math")

// NF_TWO_PI is float64(2π), lgt.TwoPi.
#define NF_TWO_PI 0x1.921fb54442d18p+2

// nf_rem_two_pi is lgt.RemTwoPi for |x| < 2²⁰: the truncated quotient,
// one exact fused multiply–add, the quotient corrected by one where x is
// within rounding of a multiple of 2π; the same operations, so the same
// bits. lgt's four corrections exclude each other, so they are one
// nested select here (GCC vectorizes that, not four selects in a row), and
// the loop below vectorizes.
static inline double nf_rem_two_pi(double x) {
	double n = trunc(x / NF_TWO_PI);
	double r = fma(-n, NF_TWO_PI, x);
	double d = x >= 0 ? (r < 0 ? -1.0 : r >= NF_TWO_PI ? 1.0 : 0.0) : (r > 0 ? 1.0 : r <= -NF_TWO_PI ? -1.0 : 0.0);
	double rc = fma(-(n + d), NF_TWO_PI, x);
	r = d != 0 ? rc : r;
	return r == 0 ? copysign(0, x) : r;
}

// nf_mod_two_pi32 is lgt.Mod2Pi[float32] on the n angles a, in place:
// vectorized for |a| < 2²⁰, then fmod (exact, as math.Mod) for the
// others, which the first loop leaves as they were.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void nf_mod_two_pi32(float *a, long n) {
	const float tp = (float)NF_TWO_PI;
	for (long i = 0; i < n; i++) {
		double x = a[i];
		int fast = fabs(x) < 1048576.0;
		float v = (float)nf_rem_two_pi(fast ? x : 0);
		v = v < 0 ? v + tp : v;
		v = v >= tp ? 0 : v;
		a[i] = fast ? v : a[i];
	}
	for (long i = 0; i < n; i++) {
		double x = a[i];
		if (fabs(x) < 1048576.0) continue;
		float v = (float)fmod(x, NF_TWO_PI);
		v = v < 0 ? v + tp : v;
		a[i] = v >= tp ? 0 : v;
	}
}

// nf_rem_two_pi_test is nf_rem_two_pi for the test (float64 angles, where
// the quotient's correction happens; float32 sums never come that close
// to a multiple of 2π).
static double nf_rem_two_pi_test(double x) { return nf_rem_two_pi(x); }

// nf_plaquettes_loops: see PlaquettesLoops. The sums in float32 in
// lgt's order, then the angles reduced.
static void nf_plaquettes_loops(float *restrict p, float *restrict lp, const float *restrict links, int L) {
	long V = (long)L * L;
	const float *t0 = links, *t1 = links + V;
	for (int i = 0; i < L; i++) {
		int i1 = (i + 1) % L, i2 = (i + 2) % L;
		for (int j = 0; j < L; j++) {
			int j1 = j + 1 < L ? j + 1 : j + 1 - L, j2 = j + 2 < L ? j + 2 : (j + 2 - L) % L;
			long x = (long)i * L + j;
			p[x] = t0[x] + t1[(long)i1 * L + j] - t0[(long)i * L + j1] - t1[x];
			lp[x] = t0[x] + t0[(long)i1 * L + j] + t1[(long)i2 * L + j] - t0[(long)i1 * L + j1] - t0[(long)i * L + j1] - t1[x];
			lp[V + x] = t1[x] + t1[(long)i * L + j1] + t0[(long)i * L + j2] - t1[(long)i1 * L + j1] - t1[(long)i1 * L + j] - t0[x];
		}
	}
	nf_mod_two_pi32(p, V);
	nf_mod_two_pi32(lp, 2 * V);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// PlaquettesLoops writes the plaquette angles of one L×L configuration of
// float32 links (len 2V, index μ·V + x) into p (len V) and its two
// channels of 2×1 loop angles into loops (len 2V): lgt.Plaquettes and
// lgt.Loops2x1 for float32, the same sums in the same order and the same
// reduction into [0, 2π) (lgt.Mod2Pi, vectorized), so the same bits.
func PlaquettesLoops(p, loops, links []float32, L int) {
	V := L * L
	if L < 1 || len(p) != V || len(loops) != 2*V || len(links) != 2*V {
		panic(fmt.Sprintf("vec: PlaquettesLoops at L = %d: p %d, loops %d, links %d", L, len(p), len(loops), len(links)))
	}
	C.nf_plaquettes_loops((*C.float)(unsafe.Pointer(unsafe.SliceData(p))), (*C.float)(unsafe.Pointer(unsafe.SliceData(loops))),
		(*C.float)(unsafe.Pointer(unsafe.SliceData(links))), C.int(L))
}

// remTwoPi is the C reduction's core on a float64 angle |x| < 2²⁰, for
// the test against lgt.RemTwoPi.
func remTwoPi(x float64) float64 { return float64(C.nf_rem_two_pi_test(C.double(x))) }
