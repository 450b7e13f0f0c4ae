package dnnl

/*
#cgo CFLAGS: -O3 -fopenmp
#cgo LDFLAGS: -ldnnl -fopenmp
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include "nfdnnl.h"

// nf_scatter_sites is scatterSites for configurations [lo, hi): compiled
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

// nf_gather_sites is gatherSites for configurations [lo, hi), into
// float32 columns, or rounded into bfloat16 columns when bf.
__attribute__((target_clones("avx512f", "avx2", "default")))
static void nf_gather_sites(void *restrict col, const float *restrict in, const int32_t *restrict taps,
		long lo, long hi, long V, long nA, long C, long KK, int bf) {
	long CKK = C * KK;
	for (long b = lo; b < hi; b++)
		for (long i = 0; i < nA; i++) {
			long cs = (b * nA + i) * CKK;
			for (long t = 0; t < KK; t++) {
				const float *s = in + (b * V + taps[t * nA + i]) * C;
				if (bf) {
					nf_bf16_row((uint16_t *)col + cs + t * C, s, C);
					continue;
				}
				float *d = (float *)col + cs + t * C;
				for (long c = 0; c < C; c++) d[c] = s[c];
			}
		}
}

// nfsites is the last convolution of a conditioner at the active sites
// for one batch size (SitesConv): the gathered columns col [M][CKK]
// (M = n·na rows, column t·cin + c), owned here, and three oneDNN matrix
// products on them: forward out[cout][M] += wp[cout][CKK]·colᵀ, backward
// weights gwp[cout][CKK] = gout[cout][M]·col, backward data
// col = goutᵀ·wp. With bf16 the products read bfloat16 copies of their
// inputs (colh, wph, gouth), rounded to nearest even, and write float32.
typedef struct {
	int n, v, na, cin, cout, kk, nthr, bf16;
	float *col;
	uint16_t *colh, *wph, *gouth; // bf16 only: the columns, the weights and gout
	dnnl_engine_t eng;
	dnnl_stream_t st;
	dnnl_primitive_desc_t pd[3]; // forward, backward weights, backward data
	dnnl_primitive_t prim[3];
	dnnl_memory_t scratch[3];
	size_t scrbytes; // the largest scratchpad of the products (nf_scratch)
	dnnl_memory_desc_t md[3][3]; // per product: src, weights, dst
} nfsites;

static dnnl_status_t nfsites_prim(nfsites *c, int i, const_dnnl_primitive_attr_t attr) {
	dnnl_matmul_desc_t d;
	NF_CK(dnnl_matmul_desc_init(&d, &c->md[i][0], &c->md[i][1], NULL, &c->md[i][2]));
	NF_CK(dnnl_primitive_desc_create(&c->pd[i], &d, attr, c->eng, NULL));
	NF_CK(dnnl_primitive_create(&c->prim[i], c->pd[i]));
	return nf_scratch_memory(&c->scratch[i], c->pd[i], c->eng, &c->scrbytes);
}

static dnnl_status_t nfsites_create_attrs(nfsites *c, dnnl_primitive_attr_t sum, dnnl_primitive_attr_t plain) {
	long M = (long)c->n * c->na, K = (long)c->cin * c->kk, O = c->cout;
	c->col = nf_alloc((size_t)(M * K) * 4);
	if (!c->col) return dnnl_out_of_memory;
	dnnl_data_type_t in = dnnl_f32;
	if (c->bf16) {
		in = dnnl_bf16;
		c->colh = nf_alloc((size_t)(M * K) * 2);
		c->wph = nf_alloc((size_t)(O * K) * 2);
		c->gouth = nf_alloc((size_t)(O * M) * 2);
		if (!c->colh || !c->wph || !c->gouth) return dnnl_out_of_memory;
	}
	NF_CK(dnnl_engine_create(&c->eng, dnnl_cpu, 0));
	NF_CK(dnnl_stream_create(&c->st, c->eng, dnnl_stream_default_flags));
	NF_CK(dnnl_primitive_attr_set_scratchpad_mode(sum, dnnl_scratchpad_mode_user));
	NF_CK(dnnl_primitive_attr_set_scratchpad_mode(plain, dnnl_scratchpad_mode_user));
	dnnl_post_ops_t po;
	NF_CK(dnnl_post_ops_create(&po));
	dnnl_status_t s = dnnl_post_ops_append_sum(po, 1.0f);
	if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(sum, po);
	dnnl_post_ops_destroy(po);
	NF_CK(s);
	// forward: wp [O][K] · colᵀ [K][M] added to out [O][M]
	NF_CK(nf_matrix_md(&c->md[0][0], O, K, K, 1, in));
	NF_CK(nf_matrix_md(&c->md[0][1], K, M, 1, K, in));
	NF_CK(nf_matrix_md(&c->md[0][2], O, M, M, 1, dnnl_f32));
	NF_CK(nfsites_prim(c, 0, sum));
	// backward weights: gout [O][M] · col [M][K] into gwp [O][K]
	NF_CK(nf_matrix_md(&c->md[1][0], O, M, M, 1, in));
	NF_CK(nf_matrix_md(&c->md[1][1], M, K, K, 1, in));
	NF_CK(nf_matrix_md(&c->md[1][2], O, K, K, 1, dnnl_f32));
	NF_CK(nfsites_prim(c, 1, plain));
	// backward data: goutᵀ [M][O] · wp [O][K] into col [M][K]
	NF_CK(nf_matrix_md(&c->md[2][0], M, O, 1, M, in));
	NF_CK(nf_matrix_md(&c->md[2][1], O, K, K, 1, in));
	NF_CK(nf_matrix_md(&c->md[2][2], M, K, K, 1, dnnl_f32));
	return nfsites_prim(c, 2, plain);
}

static dnnl_status_t nfsites_create(nfsites *c) {
	nf_use_threads(c->nthr);
	dnnl_primitive_attr_t sum = NULL, plain = NULL;
	dnnl_status_t s = dnnl_primitive_attr_create(&sum);
	if (s == dnnl_success) s = dnnl_primitive_attr_create(&plain);
	if (s == dnnl_success) s = nfsites_create_attrs(c, sum, plain);
	if (sum) dnnl_primitive_attr_destroy(sum);
	if (plain) dnnl_primitive_attr_destroy(plain);
	return s;
}

static void nfsites_destroy(nfsites *c) {
	nf_destroy_prims(c->pd, c->prim, c->scratch, 3);
	if (c->st) dnnl_stream_destroy(c->st);
	if (c->eng) dnnl_engine_destroy(c->eng);
	free(c->col);
	free(c->colh);
	free(c->wph);
	free(c->gouth);
	free(c);
}

// nfsites_run runs product i on src, weights and dst (the caller's
// memory, or col), through memory objects that live for this call.
static dnnl_status_t nfsites_run(nfsites *c, int i, void *src, void *wei, void *dst) {
	void *h[3] = {src, wei, dst};
	int role[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
	dnnl_exec_arg_t a[4];
	dnnl_status_t s = dnnl_success;
	int made = 0;
	for (; made < 3 && s == dnnl_success; made++) {
		a[made].arg = role[made];
		s = dnnl_memory_create(&a[made].memory, &c->md[i][made], c->eng, h[made]);
		if (s != dnnl_success) break;
	}
	if (s == dnnl_success) {
		a[3].arg = DNNL_ARG_SCRATCHPAD;
		a[3].memory = c->scratch[i];
		s = nf_set_scratch(c->scratch[i], c->scrbytes);
		if (s == dnnl_success) s = dnnl_primitive_execute(c->prim[i], c->st, 4, a);
		if (s == dnnl_success) s = dnnl_stream_wait(c->st);
	}
	for (int k = 0; k < made; k++) dnnl_memory_destroy(a[k].memory);
	return s;
}

// nfsites_share is the calling OpenMP thread's share [lo, hi) of the
// configurations.
static inline void nfsites_share(const nfsites *c, long *lo, long *hi) {
	int t = omp_get_thread_num(), nt = omp_get_num_threads();
	*lo = (long)c->n * t / nt;
	*hi = (long)c->n * (t + 1) / nt;
}

// nfsites_cols is where the gather writes: col, or colh with bf16.
static inline void *nfsites_cols(nfsites *c) { return c->bf16 ? (void *)c->colh : (void *)c->col; }

// nfsites_gather fills col (colh with bf16) from the NHWC input,
// configurations split over the threads, and returns it.
static void *nfsites_gather(nfsites *c, const float *in, const int32_t *taps) {
	#pragma omp parallel
	{
		long lo, hi;
		nfsites_share(c, &lo, &hi);
		if (hi > lo) nf_gather_sites(nfsites_cols(c), in, taps, lo, hi, c->v, c->na, c->cin, c->kk, c->bf16);
	}
	return nfsites_cols(c);
}

// nfsites_weights returns the weights the products read: wp, or its
// bf16 copy wph.
static void *nfsites_weights(nfsites *c, const float *wp) {
	if (!c->bf16) return (void *)wp;
	nf_bf16_row(c->wph, wp, (long)c->cout * c->cin * c->kk);
	return c->wph;
}

// nfsites_forward: out [cout][M] = bias + wp · gather(in)ᵀ.
static dnnl_status_t nfsites_forward(nfsites *c, float *out, const float *in, const int32_t *taps, const float *wp, const float *b) {
	nf_enter(c->nthr);
	long M = (long)c->n * c->na;
	void *col = nfsites_gather(c, in, taps);
	#pragma omp parallel for schedule(static)
	for (int o = 0; o < c->cout; o++)
		for (long m = 0; m < M; m++) out[o * M + m] = b[o];
	return nfsites_run(c, 0, nfsites_weights(c, wp), col, out);
}

// nfsites_backward: gb += the row sums of gout (in double, in order),
// gwp = gout · gather(in), and, when gin is not NULL, gin = the scatter of
// goutᵀ · wp through the input's LeakyReLU (slope > 0).
static dnnl_status_t nfsites_backward(nfsites *c, float *gin, const float *gout, const float *in, const int32_t *taps,
		const float *wp, float *gwp, float *gb, float slope) {
	nf_enter(c->nthr);
	long M = (long)c->n * c->na;
	#pragma omp parallel for schedule(static)
	for (int o = 0; o < c->cout; o++) {
		double s = 0;
		for (long m = 0; m < M; m++) s += gout[o * M + m];
		gb[o] += (float)s;
		if (c->bf16) nf_bf16_row(c->gouth + o * M, gout + o * M, M);
	}
	void *g = c->bf16 ? (void *)c->gouth : (void *)gout;
	void *col = nfsites_gather(c, in, taps);
	NF_CK(nfsites_run(c, 1, g, col, gwp));
	if (!gin) return dnnl_success;
	NF_CK(nfsites_run(c, 2, g, nfsites_weights(c, wp), c->col));
	#pragma omp parallel
	{
		long lo, hi;
		nfsites_share(c, &lo, &hi);
		if (hi > lo) nf_scatter_sites(gin, c->col, in, taps, lo, hi, c->v, c->na, c->cin, c->kk, slope);
	}
	return dnnl_success;
}

static const char *nfsites_impl(nfsites *c) { return nf_impl(c->pd[0]); }

static size_t nfsites_bytes(nfsites *c) {
	size_t mk = (size_t)c->n * c->na * c->cin * c->kk, t = mk * 4;
	if (c->bf16) t += (mk + (size_t)c->cout * c->cin * c->kk + (size_t)c->cout * c->n * c->na) * 2;
	return t;
}

static nfsites *nfsites_new(void) { return calloc(1, sizeof(nfsites)); }
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// gatherSites fills the columns of the last convolution at the active
// sites from NHWC activations in (B·V·ch), for configurations [lo, hi):
// col[(b·nA + i)·KK·ch + t·ch + c] = in[(b·V + taps[t·nA + i])·ch + c].
func gatherSites(col, in []float32, taps []int32, lo, hi, V, nA, ch, KK int) {
	checkSites("gatherSites", col, in, taps, lo, hi, V, nA, ch, KK)
	if hi == lo {
		return
	}
	C.nf_gather_sites(unsafe.Pointer(ptr(col)), ptr(in), tapPtr(taps), C.long(lo), C.long(hi), C.long(V), C.long(nA), C.long(ch), C.long(KK), 0)
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

// scatterSites is the adjoint of the last convolution's gather at the
// active sites, on NHWC activations, for configurations [lo, hi) of
// lattices of V sites and ch channels: gin (B·V·ch) is zeroed in that range, then for every
// configuration b, active site i < nA and tap t < KK the column gradient
// col[(b·nA + i)·KK·ch + t·ch : …+ch] is added at the tap's source site
// taps[t·nA + i] of configuration b; with slope > 0, gin is then
// multiplied by the derivative of the LeakyReLU whose output in (B·V·ch) is
// (1 where in > 0, else slope). The same additions in the same order as
// the portable loop (nf's scatterRange): the same bits on every CPU.
func scatterSites(gin, col, in []float32, taps []int32, lo, hi, V, nA, ch, KK int, slope float32) {
	checkSites("scatterSites", col, gin, taps, lo, hi, V, nA, ch, KK)
	if slope > 0 && len(in) < hi*V*ch {
		panic(fmt.Sprintf("dnnl: scatterSites: input %d for configurations up to %d of %d·%d", len(in), hi, V, ch))
	}
	if hi == lo {
		return
	}
	var inp *C.float
	if slope > 0 {
		inp = ptr(in)
	}
	C.nf_scatter_sites(ptr(gin), ptr(col), inp, tapPtr(taps), C.long(lo), C.long(hi), C.long(V), C.long(nA), C.long(ch), C.long(KK), C.float(slope))
}

// SitesShape is the shape of a conditioner's last convolution evaluated
// at the active sites only: N configurations of V sites, NA active sites
// each, Cin input and Cout output channels, Taps = K² taps of the kernel.
type SitesShape struct {
	N, V, NA, Cin, Cout, Taps int
}

// Rows is the number of active sites of the batch, N·NA: the rows of the
// gathered columns and the length of an output channel.
func (s SitesShape) Rows() int { return s.N * s.NA }

// Cols is the length of a gathered column, Taps·Cin.
func (s SitesShape) Cols() int { return s.Taps * s.Cin }

// SitesConv is the last convolution of a conditioner at the active sites
// through oneDNN, for a fixed shape. One call gathers the im2col columns
// of the active sites from the NHWC input into memory it owns,
// col[b·NA + i][t·Cin + c] = in[(b·V + taps[t·NA + i])·Cin + c], and
// multiplies them with oneDNN's matrix-product primitive (float32, or
// bf16 inputs with float32 accumulation and outputs); the backward
// call also sums the bias gradient and scatters the columns' gradient
// back. Everything runs on the OpenMP threads of the other convolutions,
// so the cores are not handed to Go's workers and back in the middle of a
// conditioner. Weights are in the columns' order, wp[o][t·Cin + c]
// (nf permutes its OIHW weights). Not safe for concurrent use.
type SitesConv struct {
	c     *C.nfsites
	shape SitesShape
}

// SitesOptions are SitesConv's settings.
type SitesOptions struct {
	// BF16 makes the products' inputs (the gathered columns, the weights
	// and, backward, the output gradient) bfloat16, rounded to nearest
	// even, as CircOptions.BF16 does; accumulation, bias, outputs and
	// gradients stay float32.
	BF16 bool
	// Threads is the number of OpenMP threads of every call (≥ 1).
	Threads int
}

// NewSitesConv creates the products for s with options o.
func NewSitesConv(s SitesShape, o SitesOptions) (*SitesConv, error) {
	threads := o.Threads
	if s.N < 1 || s.V < 1 || s.NA < 1 || s.NA > s.V || s.Cin < 1 || s.Cout < 1 || s.Taps < 1 || threads < 1 {
		return nil, fmt.Errorf("dnnl: invalid convolution at the active sites %+v (threads %d)", s, threads)
	}
	c := C.nfsites_new()
	if c == nil {
		return nil, fmt.Errorf("dnnl: out of memory")
	}
	c.n, c.v, c.na, c.cin, c.cout, c.kk, c.nthr = C.int(s.N), C.int(s.V), C.int(s.NA), C.int(s.Cin), C.int(s.Cout), C.int(s.Taps), C.int(threads)
	if o.BF16 {
		c.bf16 = 1
	}
	if st := C.nfsites_create(c); st != C.dnnl_success {
		C.nfsites_destroy(c)
		return nil, fmt.Errorf("dnnl: convolution at the active sites %+v (bf16 %v): %w", s, o.BF16, statusError(int(st)))
	}
	return &SitesConv{c: c, shape: s}, nil
}

func (sc *SitesConv) check(name string, x []float32, want int) {
	if len(x) != want {
		panic(fmt.Sprintf("dnnl: SitesConv %+v: len(%s) = %d, want %d", sc.shape, name, len(x), want))
	}
}

// checkArgs checks the arguments both passes share.
func (sc *SitesConv) checkArgs(in []float32, taps []int32, wp []float32) {
	s := sc.shape
	sc.check("in", in, s.N*s.V*s.Cin)
	sc.check("wp", wp, s.Cout*s.Cols())
	if len(taps) != s.Taps*s.NA {
		panic(fmt.Sprintf("dnnl: SitesConv %+v: len(taps) = %d, want %d", s, len(taps), s.Taps*s.NA))
	}
	for _, t := range taps {
		if t < 0 || int(t) >= s.V {
			panic(fmt.Sprintf("dnnl: SitesConv %+v: tap source %d outside 0 … %d", s, t, s.V-1))
		}
	}
}

// Forward writes out ([Cout][Rows]; row o, column b·NA + i: active site i
// of configuration b) = b + wp · colᵀ, the columns gathered from in (NHWC,
// N·V·Cin) at the tap sources taps[t·NA + i].
func (sc *SitesConv) Forward(out, in []float32, taps []int32, wp, b []float32) error {
	if !onMaster() {
		return doErr(func() error { return sc.Forward(out, in, taps, wp, b) })
	}
	sc.checkArgs(in, taps, wp)
	sc.check("out", out, sc.shape.Cout*sc.shape.Rows())
	sc.check("b", b, sc.shape.Cout)
	if st := C.nfsites_forward(sc.c, ptr(out), ptr(in), tapPtr(taps), ptr(wp), ptr(b)); st != C.dnnl_success {
		return fmt.Errorf("dnnl: forward convolution at the active sites %+v: %w", sc.shape, statusError(int(st)))
	}
	return nil
}

// Backward is Forward's vector–Jacobian product: from gout = dL/dout
// ([Cout][Rows]) and the forward input in, it ADDS the row sums of gout
// (each summed in float64 in order) into gb, WRITES gwp = gout · col (the
// weights' gradient in wp's order), and WRITES gin (NHWC; skipped when
// nil) = the scatter of goutᵀ · wp to the tap sources (scatterSites'
// order), times the derivative of the LeakyReLU whose output in is when
// slope > 0 (1 where in > 0, else slope).
func (sc *SitesConv) Backward(gin, gout, in []float32, taps []int32, wp, gwp, gb []float32, slope float32) error {
	if !onMaster() {
		return doErr(func() error { return sc.Backward(gin, gout, in, taps, wp, gwp, gb, slope) })
	}
	sc.checkArgs(in, taps, wp)
	sc.check("gout", gout, sc.shape.Cout*sc.shape.Rows())
	sc.check("gwp", gwp, len(wp))
	sc.check("gb", gb, sc.shape.Cout)
	var gp *C.float
	if gin != nil {
		sc.check("gin", gin, len(in))
		gp = ptr(gin)
	}
	if st := C.nfsites_backward(sc.c, gp, ptr(gout), ptr(in), tapPtr(taps), ptr(wp), ptr(gwp), ptr(gb), C.float(slope)); st != C.dnnl_success {
		return fmt.Errorf("dnnl: backward convolution at the active sites %+v: %w", sc.shape, statusError(int(st)))
	}
	return nil
}

func tapPtr(t []int32) *C.int32_t { return (*C.int32_t)(unsafe.Pointer(unsafe.SliceData(t))) }

// Impl names oneDNN's implementation of the forward product, e.g.
// "brg:avx512_core".
func (sc *SitesConv) Impl() string { return C.GoString(C.nfsites_impl(sc.c)) }

// Bytes returns the memory SitesConv owns: the columns (and their bf16
// copies); not the scratchpad that every primitive of the process shares
// (ScratchBytes).
func (sc *SitesConv) Bytes() int { return int(C.nfsites_bytes(sc.c)) }

// Close frees the products and the columns.
func (sc *SitesConv) Close() {
	if sc.c != nil {
		C.nfsites_destroy(sc.c)
		sc.c = nil
	}
}
