package dnnl

/*
#cgo CFLAGS: -O3 -fopenmp
#cgo LDFLAGS: -ldnnl -fopenmp
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <omp.h>
#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include "nfdnnl.h"

// nfcirc is one circular convolution of the conditioner for one batch
// size: padded NHWC input owned here, NHWC output and gradients in the
// caller's memory for the duration of a call, weights in the layouts the
// primitives prefer (reordered from the caller's OIHW at every call).
typedef struct {
	int n, cin, cout, l, k, dil, pad, hp, bf16, nthr, incm, bwd;
	float inslope; // > 0: the input is a LeakyReLU output; the fold applies its derivative
	dnnl_engine_t eng;
	dnnl_stream_t st;
	dnnl_primitive_attr_t attr, attrb; // forward (post-op, user scratchpad); reorders and backward (user scratchpad)
	dnnl_primitive_desc_t pd[6];       // forward, backward data, backward weights, reorders w→fwd, w→bwd data, dw→user
	dnnl_primitive_t prim[6];
	dnnl_memory_t scratch[6];
	dnnl_memory_t src;     // padded input, NHWC, f32 or bf16 (owned)
	dnnl_memory_t wuser;   // OIHW f32 (caller's)
	dnnl_memory_t wfwd;    // forward weights (owned)
	dnnl_memory_t bias;    // f32 (caller's)
	dnnl_memory_t dst;     // NHWC f32 (caller's)
	dnnl_memory_t ddst;    // NHWC diff_dst: f32 caller's, or bf16 owned
	dnnl_memory_t wbwd;    // backward-data weights (owned)
	dnnl_memory_t dsrc;    // padded diff_src NHWC f32 (owned)
	dnnl_memory_t dw;      // diff weights, backward-weights layout (owned)
	dnnl_memory_t dwuser;  // diff weights OIHW f32 (owned)
	dnnl_memory_t db;      // diff bias f32 (owned)
	// A channel-major input's gradient (incm, backward): the transposed
	// OIHW weights [cin·k²][cout] times the transposed output gradient
	// [cout][n·l·l] (a matrix product; oneDNN's backward-data kernels are
	// slow for a few input channels) into the columns gcol
	// [cin·k²][n·l·l], folded straight into the input gradient, a row of
	// sites at a time (nfcirc_fold_cols).
	dnnl_primitive_desc_t mpd;
	dnnl_primitive_t mprim;
	dnnl_memory_t mscratch, mmem[3]; // weights, gout, gcol
	float *gcol;
	uint16_t *wh; // bf16: the weights rounded
	// Winograd (wino): a k = 3 convolution with dilation d on an L×L
	// lattice, L a multiple of d, is d² independent undilated
	// convolutions on the (L/d)×(L/d) periodic sublattices of sites with
	// equal coordinates mod d. The sublattices of all configurations form
	// one batch of n·d² images, image (b·d + p)·d + q holding the sites
	// (i·d + p, j·d + q) of configuration b, in oneDNN's blocked layout
	// nChw16c; oneDNN's Winograd F(4×4, 3×3) kernel (float32 only) runs
	// them. The forward output, the output gradient and the input
	// gradient live in that layout here (dst, ddst, dsrc owned), and the
	// calls scatter them to the caller's NHWC. The input gradient is the
	// forward Winograd kernel run on the wrapped output gradient gpad with
	// the weights transposed and flipped (wflip, [cin][cout][3][3]):
	// oneDNN's Winograd backward-data kernel runs at half the forward's
	// rate. pd/prim 1 is that convolution, 4 the reorder of wflip.
	int wino, sub;       // sub = l / dil, the sublattice's side
	float outslope;      // the forward LeakyReLU, applied by the scatter (no post-op here)
	dnnl_memory_t gpad;  // the wrapped output gradient (owned)
	dnnl_memory_t wflip; // OIHW [cin][cout][3][3] f32 (owned)
	size_t scrbytes;     // the largest scratchpad of the primitives (nf_scratch)
} nfcirc;

static int nfcirc_prim(nfcirc *c, int i, const_dnnl_op_desc_t d, const_dnnl_primitive_attr_t a, const_dnnl_primitive_desc_t hint) {
	NF_CK(dnnl_primitive_desc_create(&c->pd[i], d, a, c->eng, hint));
	NF_CK(dnnl_primitive_create(&c->prim[i], c->pd[i]));
	return nf_scratch_memory(&c->scratch[i], c->pd[i], c->eng, &c->scrbytes);
}

static int nfcirc_reorder(nfcirc *c, int i, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to) {
	NF_CK(dnnl_reorder_primitive_desc_create(&c->pd[i], from, c->eng, to, c->eng, c->attrb));
	NF_CK(dnnl_primitive_create(&c->prim[i], c->pd[i]));
	return nf_scratch_memory(&c->scratch[i], c->pd[i], c->eng, &c->scrbytes);
}

// nfcirc_create_cols creates the matrix product of a channel-major
// input's gradient (see nfcirc) with inputs of type in.
static int nfcirc_create_cols(nfcirc *c, dnnl_data_type_t in) {
	long M = (long)c->n * c->l * c->l, O = c->cout, K = (long)c->cin * c->k * c->k;
	dnnl_memory_desc_t md[3];
	NF_CK(nf_matrix_md(&md[0], K, O, 1, K, in));
	NF_CK(nf_matrix_md(&md[1], O, M, 1, O, in));
	NF_CK(nf_matrix_md(&md[2], K, M, M, 1, dnnl_f32));
	dnnl_matmul_desc_t d;
	NF_CK(dnnl_matmul_desc_init(&d, &md[0], &md[1], NULL, &md[2]));
	NF_CK(dnnl_primitive_desc_create(&c->mpd, &d, c->attrb, c->eng, NULL));
	NF_CK(dnnl_primitive_create(&c->mprim, c->mpd));
	NF_CK(nf_scratch_memory(&c->mscratch, c->mpd, c->eng, &c->scrbytes));
	for (int i = 0; i < 3; i++) NF_CK(dnnl_memory_create(&c->mmem[i], &md[i], c->eng, DNNL_MEMORY_NONE));
	c->gcol = nf_alloc((size_t)(M * K) * 4);
	if (!c->gcol) return dnnl_out_of_memory;
	if (c->bf16 && !(c->wh = nf_alloc((size_t)(O * K) * 2))) return dnnl_out_of_memory;
	return dnnl_success;
}

// nf_blocked_md describes n images of C channels (a multiple of 16) and
// h×h sites in oneDNN's nChw16c layout.
static dnnl_status_t nf_blocked_md(dnnl_memory_desc_t *md, long n, long C, long h) {
	dnnl_dims_t d = {n, C, h, h};
	return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nChw16c);
}

// nfcirc_create_wino creates the Winograd path (see nfcirc): the forward
// convolution of the wrapped sublattices, and for backward the backward
// weights and the input gradient as a forward convolution.
static int nfcirc_create_wino(nfcirc *c) {
	int cin = c->cin, cout = c->cout, s = c->sub;
	long N = (long)c->n * c->dil * c->dil;
	dnnl_dims_t wd = {cout, cin, 3, 3}, wtd = {cin, cout, 3, 3}, bd = {cout}, one = {1, 1}, zero = {0, 0};
	dnnl_memory_desc_t smd, dmd, wany, wplain, bmd, gpmd, dsmd, wtany, wtplain, dwany;
	NF_CK(nf_blocked_md(&smd, N, cin, s + 2));
	NF_CK(nf_blocked_md(&dmd, N, cout, s));
	NF_CK(dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_f32, dnnl_format_tag_any));
	NF_CK(dnnl_memory_desc_init_by_tag(&wplain, 4, wd, dnnl_f32, dnnl_oihw));
	NF_CK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x));
	dnnl_convolution_desc_t cd;
	NF_CK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_winograd,
		&smd, &wany, &bmd, &dmd, one, zero, zero));
	NF_CK(nfcirc_prim(c, 0, &cd, c->attrb, NULL));
	const dnnl_memory_desc_t *wf = dnnl_primitive_desc_query_md(c->pd[0], dnnl_query_weights_md, 0);
	NF_CK(nfcirc_reorder(c, 3, &wplain, wf));
	NF_CK(dnnl_memory_create(&c->src, &smd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->dst, &dmd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->wuser, &wplain, c->eng, DNNL_MEMORY_NONE));
	NF_CK(dnnl_memory_create(&c->wfwd, wf, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->bias, &bmd, c->eng, DNNL_MEMORY_NONE));
	if (!c->bwd) return dnnl_success;

	NF_CK(dnnl_memory_desc_init_by_tag(&dwany, 4, wd, dnnl_f32, dnnl_format_tag_any));
	NF_CK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_winograd,
		&smd, &dwany, &bmd, &dmd, one, zero, zero));
	NF_CK(nfcirc_prim(c, 2, &cd, c->attrb, c->pd[0]));
	const dnnl_memory_desc_t *dwmd = dnnl_primitive_desc_query_md(c->pd[2], dnnl_query_diff_weights_md, 0);
	NF_CK(nfcirc_reorder(c, 5, dwmd, &wplain));
	NF_CK(nf_blocked_md(&gpmd, N, cout, s + 2));
	NF_CK(nf_blocked_md(&dsmd, N, cin, s));
	NF_CK(dnnl_memory_desc_init_by_tag(&wtany, 4, wtd, dnnl_f32, dnnl_format_tag_any));
	NF_CK(dnnl_memory_desc_init_by_tag(&wtplain, 4, wtd, dnnl_f32, dnnl_oihw));
	NF_CK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_winograd,
		&gpmd, &wtany, NULL, &dsmd, one, zero, zero));
	NF_CK(nfcirc_prim(c, 1, &cd, c->attrb, NULL));
	const dnnl_memory_desc_t *wb = dnnl_primitive_desc_query_md(c->pd[1], dnnl_query_weights_md, 0);
	NF_CK(nfcirc_reorder(c, 4, &wtplain, wb));
	NF_CK(dnnl_memory_create(&c->wflip, &wtplain, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->wbwd, wb, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->gpad, &gpmd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->ddst, &dmd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->dsrc, &dsmd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->dw, dwmd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->dwuser, &wplain, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->db, &bmd, c->eng, DNNL_MEMORY_ALLOCATE));
	return dnnl_success;
}

static int nfcirc_create(nfcirc *c, float slope) {
	nf_use_threads(c->nthr);
	int n = c->n, cin = c->cin, cout = c->cout, l = c->l, k = c->k;
	c->pad = c->dil * (k - 1) / 2;
	c->hp = l + 2 * c->pad;
	dnnl_data_type_t in = c->bf16 ? dnnl_bf16 : dnnl_f32;
	NF_CK(dnnl_engine_create(&c->eng, dnnl_cpu, 0));
	NF_CK(dnnl_stream_create(&c->st, c->eng, dnnl_stream_default_flags));
	NF_CK(dnnl_primitive_attr_create(&c->attr));
	NF_CK(dnnl_primitive_attr_set_scratchpad_mode(c->attr, dnnl_scratchpad_mode_user));
	NF_CK(dnnl_primitive_attr_create(&c->attrb));
	NF_CK(dnnl_primitive_attr_set_scratchpad_mode(c->attrb, dnnl_scratchpad_mode_user));
	if (c->wino) { // the shape fits (WinogradFits)
		c->sub = c->l / c->dil;
		c->outslope = slope;
		return nfcirc_create_wino(c);
	}
	if (slope > 0) {
		dnnl_post_ops_t po;
		NF_CK(dnnl_post_ops_create(&po));
		NF_CK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, slope, 0.0f));
		dnnl_status_t s = dnnl_primitive_attr_set_post_ops(c->attr, po);
		dnnl_post_ops_destroy(po);
		NF_CK(s);
	}
	dnnl_dims_t sd = {n, cin, c->hp, c->hp}, wd = {cout, cin, k, k}, bd = {cout}, dd = {n, cout, l, l};
	dnnl_memory_desc_t smd, wany, wplain, bmd, dmd, ddmd, dsmd;
	NF_CK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, in, dnnl_nhwc));
	NF_CK(dnnl_memory_desc_init_by_tag(&wany, 4, wd, in, dnnl_format_tag_any));
	NF_CK(dnnl_memory_desc_init_by_tag(&wplain, 4, wd, dnnl_f32, dnnl_oihw));
	NF_CK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x));
	NF_CK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, dnnl_nhwc));
	NF_CK(dnnl_memory_desc_init_by_tag(&ddmd, 4, dd, in, dnnl_nhwc));
	NF_CK(dnnl_memory_desc_init_by_tag(&dsmd, 4, sd, dnnl_f32, dnnl_nhwc));
	dnnl_dims_t strides = {1, 1}, dil = {c->dil - 1, c->dil - 1}, pad = {0, 0};
	dnnl_convolution_desc_t cd;
	NF_CK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
		&smd, &wany, &bmd, &dmd, strides, dil, pad, pad));
	NF_CK(nfcirc_prim(c, 0, &cd, c->attr, NULL));
	NF_CK(dnnl_memory_create(&c->src, &smd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->wuser, &wplain, c->eng, DNNL_MEMORY_NONE));
	NF_CK(dnnl_memory_create(&c->wfwd, dnnl_primitive_desc_query_md(c->pd[0], dnnl_query_weights_md, 0), c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->bias, &bmd, c->eng, DNNL_MEMORY_NONE));
	NF_CK(dnnl_memory_create(&c->dst, &dmd, c->eng, DNNL_MEMORY_NONE));
	NF_CK(nfcirc_reorder(c, 3, &wplain, dnnl_primitive_desc_query_md(c->pd[0], dnnl_query_weights_md, 0)));
	if (!c->bwd) return dnnl_success;

	dnnl_convolution_desc_t bdd, bwd;
	dnnl_memory_desc_t dsin; // diff_src in the input type: f32 always (the fold adds in f32)
	dsin = dsmd;
	if (!c->incm) { // a channel-major input's gradient is nfcirc_create_cols's
		NF_CK(dnnl_dilated_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct,
			&dsin, &wany, &ddmd, strides, dil, pad, pad));
		NF_CK(nfcirc_prim(c, 1, &bdd, c->attrb, c->pd[0]));
	}
	dnnl_memory_desc_t dwany;
	NF_CK(dnnl_memory_desc_init_by_tag(&dwany, 4, wd, dnnl_f32, dnnl_format_tag_any));
	NF_CK(dnnl_dilated_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct,
		&smd, &dwany, &bmd, &ddmd, strides, dil, pad, pad));
	NF_CK(nfcirc_prim(c, 2, &bwd, c->attrb, c->pd[0]));
	const dnnl_memory_desc_t *dwmd = dnnl_primitive_desc_query_md(c->pd[2], dnnl_query_diff_weights_md, 0);
	NF_CK(nfcirc_reorder(c, 5, dwmd, &wplain));
	if (!c->incm) {
		const dnnl_memory_desc_t *wb = dnnl_primitive_desc_query_md(c->pd[1], dnnl_query_weights_md, 0);
		NF_CK(nfcirc_reorder(c, 4, &wplain, wb));
		NF_CK(dnnl_memory_create(&c->wbwd, wb, c->eng, DNNL_MEMORY_ALLOCATE));
		NF_CK(dnnl_memory_create(&c->dsrc, &dsmd, c->eng, DNNL_MEMORY_ALLOCATE));
	}
	NF_CK(dnnl_memory_create(&c->dw, dwmd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->dwuser, &wplain, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->db, &bmd, c->eng, DNNL_MEMORY_ALLOCATE));
	NF_CK(dnnl_memory_create(&c->ddst, &ddmd, c->eng, c->bf16 ? DNNL_MEMORY_ALLOCATE : DNNL_MEMORY_NONE));
	if (c->incm) NF_CK(nfcirc_create_cols(c, in));
	return dnnl_success;
}

static void nfcirc_destroy(nfcirc *c) {
	dnnl_memory_t m[] = {c->src, c->wuser, c->wfwd, c->bias, c->dst, c->ddst, c->wbwd, c->dsrc, c->dw, c->dwuser, c->db, c->gpad, c->wflip};
	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) if (m[i]) dnnl_memory_destroy(m[i]);
	nf_destroy_prims(c->pd, c->prim, c->scratch, 6);
	nf_destroy_prims(&c->mpd, &c->mprim, &c->mscratch, 1);
	for (int i = 0; i < 3; i++) if (c->mmem[i]) dnnl_memory_destroy(c->mmem[i]);
	free(c->gcol);
	free(c->wh);
	if (c->attr) dnnl_primitive_attr_destroy(c->attr);
	if (c->attrb) dnnl_primitive_attr_destroy(c->attrb);
	if (c->st) dnnl_stream_destroy(c->st);
	if (c->eng) dnnl_engine_destroy(c->eng);
	free(c);
}

static inline int nf_wrapidx(int i, int pad, int l) { return ((i - pad) % l + l) % l; }

// nf_copy_sites copies n sites of C channels from NHWC s to padded d,
// rounding to bf16 when bf.
static inline void nf_copy_sites(void *d, long o, const float *s, long n, int C, int bf) {
	if (bf) nf_bf16_row((uint16_t *)d + o, s, n * C);
	else memcpy((float *)d + o, s, (size_t)(n * C) * 4);
}

// The Winograd path runs only where oneDNN has its AVX-512 kernels, so
// its copies move 16 channels, one cache line, as one AVX-512 register.
#define NF_AVX512 __attribute__((target("avx512f")))

// nfwino_gather_row writes one row of h blocks of 16 floats to o, block j
// from s + off[j].
NF_AVX512 static void nfwino_gather_row(float *restrict o, const float *restrict s, const long *off, int h) {
	for (int j = 0; j < h; j++) _mm512_storeu_ps(o + j * 16, _mm512_loadu_ps(s + off[j]));
}

// nfwino_gather writes the wrapped sublattices (see nfcirc) of x, NHWC
// [n][l][l][C], into the blocked images d: d[img][cb][i][j][0…15], for i,
// j < sub + 2·pad, holds channels 16·cb… of site (((i − pad) mod sub)·dil
// + p, ((j − pad) mod sub)·dil + q) of configuration b, where img =
// (b·dil + p)·dil + q. (No division in the inner loops: they cost more
// than the copies.) With inner non-NULL (pad 1), inner also receives the
// unpadded images, copied from d's interior while it is in cache.
static void nfwino_gather(nfcirc *c, float *restrict d, const float *restrict x, int C, int pad, float *restrict inner) {
	int l = c->l, dil = c->dil, s = c->sub, h = s + 2 * pad, CB = C / 16;
	long N = (long)c->n * dil * dil;
	#pragma omp parallel for schedule(static)
	for (long img = 0; img < N; img++) {
		long b = img / (dil * dil), off[h];
		int p = (int)(img / dil % dil), q = (int)(img % dil);
		for (int j = 0; j < h; j++) off[j] = (long)(nf_wrapidx(j, pad, s) * dil + q) * C;
		for (int i = 0; i < h; i++) {
			const float *row = x + (b * l + nf_wrapidx(i, pad, s) * dil + p) * l * C;
			for (int cb = 0; cb < CB; cb++)
				nfwino_gather_row(d + ((img * CB + cb) * h + i) * h * 16, row + cb * 16, off, h);
		}
		if (inner)
			for (int cb = 0; cb < CB; cb++)
				for (int i = 0; i < s; i++)
					memcpy(inner + ((img * CB + cb) * s + i) * s * 16, d + (((img * CB + cb) * h + i + 1) * h + 1) * 16,
						(size_t)s * 64);
	}
}

// The elementwise maps of nfwino_scatter.
enum { NF_COPY, NF_LEAKY, NF_LEAKY_GRAD };

// nfwino_scatter_row writes n blocks of 16 floats, block j from v + 16·j
// to o + stride·j through the map f (see nfwino_scatter); g is read at
// o's offsets.
NF_AVX512 static void nfwino_scatter_row(float *restrict o, const float *restrict v, const float *restrict g, long stride, int n, int f, float slope) {
	__m512 a = _mm512_set1_ps(slope), one = _mm512_set1_ps(1), zero = _mm512_setzero_ps();
	for (int j = 0; j < n; j++, o += stride, v += 16) {
		__m512 x = _mm512_loadu_ps(v);
		if (f == NF_LEAKY) {
			x = _mm512_mask_mul_ps(x, _mm512_cmp_ps_mask(x, zero, _CMP_LE_OQ), x, a);
		} else if (f == NF_LEAKY_GRAD) {
			__mmask16 neg = _mm512_cmp_ps_mask(_mm512_loadu_ps(g), zero, _CMP_LE_OQ);
			x = _mm512_mul_ps(x, _mm512_mask_blend_ps(neg, one, a));
			g += stride;
		}
		_mm512_storeu_ps(o, x);
	}
}

// nfwino_scatter writes y, NHWC [n][l][l][C], from the unpadded blocked
// images d (nfwino_gather's layout with pad 0) through the map f: NF_COPY;
// NF_LEAKY, the LeakyReLU of slope; NF_LEAKY_GRAD, times the derivative
// of the LeakyReLU whose output is ref (NHWC as y): 1 where ref > 0, else
// slope.
static void nfwino_scatter(nfcirc *c, float *restrict y, const float *restrict d, int C, int f, float slope, const float *restrict ref) {
	int l = c->l, dil = c->dil, s = c->sub, CB = C / 16;
	#pragma omp parallel for collapse(2) schedule(static)
	for (int b = 0; b < c->n; b++) {
		for (int r = 0; r < l; r++) {
			long row = ((long)b * l + r) * l * C;
			for (int q = 0; q < dil; q++) {
				long img = ((long)b * dil + r % dil) * dil + q;
				for (int cb = 0; cb < CB; cb++) {
					long o = row + (long)q * C + cb * 16;
					nfwino_scatter_row(y + o, d + ((img * CB + cb) * s + r / dil) * s * 16, ref ? ref + o : NULL,
						(long)dil * C, s, f, slope);
				}
			}
		}
	}
}

// nfcirc_wrap writes the padded input: src[n][i][j][c] = in at site
// ((i − pad) mod L, (j − pad) mod L) of configuration n, channel c; in is
// NHWC, or channel-major [C][N][L][L] when c->incm. An NHWC padded row is
// three runs of its source row: the last pad sites, the whole row, the
// first pad sites (pad ≤ L). The Winograd path wraps the sublattices
// instead (nfwino_gather).
static void nfcirc_wrap(nfcirc *c, const float *in) {
	int n = c->n, C = c->cin, l = c->l, hp = c->hp, pad = c->pad, bf = c->bf16, cm = c->incm;
	void *dst;
	dnnl_memory_get_data_handle(c->src, &dst);
	if (c->wino) {
		nfwino_gather(c, dst, in, C, 1, NULL);
		return;
	}
	long NV = (long)n * l * l;
	#pragma omp parallel for collapse(2) schedule(static)
	for (int b = 0; b < n; b++) {
		for (int i = 0; i < hp; i++) {
			int si = nf_wrapidx(i, pad, l);
			long o = ((long)b * hp + i) * hp * C;
			long s = ((long)b * l + si) * l;
			if (!cm && pad <= l) {
				const float *row = in + s * C;
				nf_copy_sites(dst, o, row + (long)(l - pad) * C, pad, C, bf);
				nf_copy_sites(dst, o + (long)pad * C, row, l, C, bf);
				nf_copy_sites(dst, o + (long)(pad + l) * C, row, pad, C, bf);
				continue;
			}
			for (int j = 0; j < hp; j++) {
				long sj = s + nf_wrapidx(j, pad, l), oj = o + (long)j * C;
				if (cm) {
					if (bf) for (int ch = 0; ch < C; ch++) ((uint16_t *)dst)[oj + ch] = nf_bf16(in[ch * NV + sj]);
					else for (int ch = 0; ch < C; ch++) ((float *)dst)[oj + ch] = in[ch * NV + sj];
				} else {
					nf_copy_sites(dst, oj, in + sj * C, 1, C, bf);
				}
			}
		}
	}
}

// nf_leaky_grad multiplies g by the derivative of the LeakyReLU whose
// output is y (1 where y > 0, else slope): branch-free and vectorized (a
// branch on the sign, as the loop inside nfcirc_fold was, mispredicted
// half the time and took a tenth of a layer's time).
__attribute__((target_clones("avx512f", "avx2", "default")))
static void nf_leaky_grad(float *restrict g, const float *restrict y, long n, float slope) {
	for (long i = 0; i < n; i++) g[i] *= y[i] > 0 ? 1.0f : slope;
}

// nfcirc_fold writes gin (NHWC), the adjoint of nfcirc_wrap applied to
// the padded input gradient: the sum of every padded site's gradient into
// the site it copies; with c->inslope > 0, times the derivative of the
// LeakyReLU whose output the input in is (1 where in > 0, else the
// slope). A channel-major input's gradient is nfcirc_fold_cols's.
static void nfcirc_fold(nfcirc *c, float *gin, const float *in) {
	int n = c->n, C = c->cin, l = c->l, hp = c->hp, pad = c->pad;
	float *ds;
	dnnl_memory_get_data_handle(c->dsrc, (void **)&ds);
	long V = (long)l * l;
	#pragma omp parallel for schedule(static)
	for (int b = 0; b < n; b++) {
		const float *db = ds + (long)b * hp * hp * C;
		// The interior copies its rows whole (L sites of C channels are
		// contiguous in both layouts); the halo is added below.
		float *gb = gin + b * V * C;
		for (int i = 0; i < l; i++)
			memcpy(gb + (long)i * l * C, db + ((long)(i + pad) * hp + pad) * C, (size_t)l * C * 4);
		for (int i = 0; i < hp; i++) {
			int si = nf_wrapidx(i, pad, l);
			int rowin = i >= pad && i < pad + l;
			for (int j = 0; j < hp; j++) {
				if (rowin && j == pad) { j += l - 1; continue; } // the interior, copied above
				int sj = nf_wrapidx(j, pad, l);
				const float *p = db + ((long)i * hp + j) * C;
				float *q = gin + ((long)b * V + si * l + sj) * C;
				for (int ch = 0; ch < C; ch++) q[ch] += p[ch];
			}
		}
		if (c->inslope > 0) nf_leaky_grad(gin + b * V * C, in + b * V * C, V * C, c->inslope);
	}
}

// nf_add adds n floats of s into d.
static inline void nf_add(float *restrict d, const float *restrict s, int n) {
	for (int i = 0; i < n; i++) d[i] += s[i];
}

// nfcirc_fold_cols writes gin (channel-major) from the columns' gradient
// gcol: every column entry added into the input site its tap read (the
// wrap's source), times the input's LeakyReLU derivative as nfcirc_fold.
static void nfcirc_fold_cols(nfcirc *c, float *gin, const float *in) {
	int n = c->n, C = c->cin, l = c->l, k = c->k, dil = c->dil, pad = c->pad;
	long V = (long)l * l, NV = (long)n * V;
	#pragma omp parallel for schedule(static)
	for (int b = 0; b < n; b++) {
		for (int ch = 0; ch < C; ch++) {
			float *gc = gin + ch * NV + (long)b * V;
			memset(gc, 0, V * 4);
			for (int t = 0; t < k * k; t++) {
				// Output site (y, x) read input site (y + ky·dil − pad,
				// x + kx·dil − pad) mod l: a row of l sites is added as
				// two runs, before and after the wrap.
				int ky = t / k, kx = t % k, sx = nf_wrapidx(kx * dil, pad, l);
				const float *g = c->gcol + ((long)ch * k * k + t) * NV + (long)b * V;
				for (int y = 0; y < l; y++) {
					float *dst = gc + (long)nf_wrapidx(y + ky * dil, pad, l) * l;
					const float *src = g + (long)y * l;
					nf_add(dst + sx, src, l - sx);
					nf_add(dst, src + l - sx, sx);
				}
			}
		}
		if (c->inslope > 0)
			for (int ch = 0; ch < C; ch++) nf_leaky_grad(gin + ch * NV + b * V, in + ch * NV + b * V, V, c->inslope);
	}
}

static int nfcirc_exec(nfcirc *c, int i, int nargs, dnnl_exec_arg_t *args) {
	NF_CK(nf_set_scratch(c->scratch[i], c->scrbytes));
	args[nargs].arg = DNNL_ARG_SCRATCHPAD;
	args[nargs].memory = c->scratch[i];
	return dnnl_primitive_execute(c->prim[i], c->st, nargs + 1, args);
}

static int nfcirc_reorder_run(nfcirc *c, int i, dnnl_memory_t from, dnnl_memory_t to) {
	dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
	return nfcirc_exec(c, i, 2, a);
}

// nfcirc_forward: out (NHWC f32) = conv(wrap(in), w) + b, then the post-op.
static int nfcirc_forward(nfcirc *c, const float *in, const float *w, const float *b, float *out) {
	nf_enter(c->nthr);
	nfcirc_wrap(c, in);
	NF_CK(dnnl_memory_set_data_handle(c->wuser, (void *)w));
	NF_CK(dnnl_memory_set_data_handle(c->bias, (void *)b));
	if (!c->wino) NF_CK(dnnl_memory_set_data_handle(c->dst, out));
	dnnl_status_t s = nfcirc_reorder_run(c, 3, c->wuser, c->wfwd);
	if (s == dnnl_success) {
		dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->wfwd}, {DNNL_ARG_BIAS, c->bias}, {DNNL_ARG_DST, c->dst}};
		s = nfcirc_exec(c, 0, 4, a);
	}
	if (s == dnnl_success) s = dnnl_stream_wait(c->st);
	// The caller's memory is used during this call only.
	dnnl_memory_set_data_handle(c->wuser, NULL);
	dnnl_memory_set_data_handle(c->bias, NULL);
	if (!c->wino) {
		dnnl_memory_set_data_handle(c->dst, NULL);
	} else if (s == dnnl_success) {
		float *d;
		dnnl_memory_get_data_handle(c->dst, (void **)&d);
		nfwino_scatter(c, out, d, c->cout, c->outslope > 0 ? NF_LEAKY : NF_COPY, c->outslope, NULL);
	}
	return s;
}

// nfcirc_backward adds dL/dw, dL/db into gw, gb and writes dL/din into gin
// (skipped when NULL), from gout = dL/dout (NHWC f32) and the forward input.
static int nfcirc_backward(nfcirc *c, float *gin, const float *gout, const float *in, const float *w, float *gw, float *gb) {
	nf_enter(c->nthr);
	nfcirc_wrap(c, in);
	long nd = (long)c->n * c->l * c->l * c->cout;
	if (c->wino) {
		// The output gradient unpadded for the weights' gradient, and
		// wrapped for the input gradient, in one pass when both are needed.
		float *d, *gp;
		dnnl_memory_get_data_handle(c->ddst, (void **)&d);
		dnnl_memory_get_data_handle(c->gpad, (void **)&gp);
		if (gin) nfwino_gather(c, gp, gout, c->cout, 1, d);
		else nfwino_gather(c, d, gout, c->cout, 0, NULL);
	} else if (c->bf16) {
		uint16_t *d;
		dnnl_memory_get_data_handle(c->ddst, (void **)&d);
		int nt = c->nthr;
		#pragma omp parallel for schedule(static)
		for (int t = 0; t < nt; t++) {
			long lo = nd * t / nt, hi = nd * (t + 1) / nt;
			nf_bf16_row(d + lo, gout + lo, hi - lo);
		}
	} else {
		NF_CK(dnnl_memory_set_data_handle(c->ddst, (void *)gout));
	}
	dnnl_status_t s;
	dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_DIFF_DST, c->ddst}, {DNNL_ARG_DIFF_WEIGHTS, c->dw}, {DNNL_ARG_DIFF_BIAS, c->db}};
	s = nfcirc_exec(c, 2, 4, a);
	if (s == dnnl_success) s = nfcirc_reorder_run(c, 5, c->dw, c->dwuser);
	if (s == dnnl_success && gin && c->incm) {
		void *g = (void *)gout, *wm = (void *)w;
		if (c->bf16) {
			dnnl_memory_get_data_handle(c->ddst, &g);
			nf_bf16_row(c->wh, w, (long)c->cout * c->cin * c->k * c->k);
			wm = c->wh;
		}
		dnnl_memory_set_data_handle(c->mmem[0], wm);
		dnnl_memory_set_data_handle(c->mmem[1], g);
		dnnl_memory_set_data_handle(c->mmem[2], c->gcol);
		dnnl_exec_arg_t m[4] = {{DNNL_ARG_SRC, c->mmem[0]}, {DNNL_ARG_WEIGHTS, c->mmem[1]}, {DNNL_ARG_DST, c->mmem[2]},
			{DNNL_ARG_SCRATCHPAD, c->mscratch}};
		s = nf_set_scratch(c->mscratch, c->scrbytes);
		if (s == dnnl_success) s = dnnl_primitive_execute(c->mprim, c->st, 4, m);
	} else if (s == dnnl_success && gin && c->wino) {
		// The input gradient is the correlation of the wrapped output
		// gradient with the kernel transposed and flipped.
		float *wt;
		dnnl_memory_get_data_handle(c->wflip, (void **)&wt);
		int ci = c->cin, co = c->cout;
		for (int i = 0; i < ci; i++)
			for (int o = 0; o < co; o++)
				for (int t = 0; t < 9; t++) wt[((long)i * co + o) * 9 + t] = w[((long)o * ci + i) * 9 + 8 - t];
		s = nfcirc_reorder_run(c, 4, c->wflip, c->wbwd);
		dnnl_exec_arg_t d[4] = {{DNNL_ARG_SRC, c->gpad}, {DNNL_ARG_WEIGHTS, c->wbwd}, {DNNL_ARG_DST, c->dsrc}};
		if (s == dnnl_success) s = nfcirc_exec(c, 1, 3, d);
	} else if (s == dnnl_success && gin) {
		s = dnnl_memory_set_data_handle(c->wuser, (void *)w);
		if (s == dnnl_success) s = nfcirc_reorder_run(c, 4, c->wuser, c->wbwd);
		dnnl_exec_arg_t d[4] = {{DNNL_ARG_DIFF_DST, c->ddst}, {DNNL_ARG_WEIGHTS, c->wbwd}, {DNNL_ARG_DIFF_SRC, c->dsrc}};
		if (s == dnnl_success) s = nfcirc_exec(c, 1, 3, d);
	}
	if (s == dnnl_success) s = dnnl_stream_wait(c->st);
	if (!c->bf16 && !c->wino) dnnl_memory_set_data_handle(c->ddst, NULL);
	dnnl_memory_set_data_handle(c->wuser, NULL);
	if (s != dnnl_success) return s;
	float *dw, *db;
	dnnl_memory_get_data_handle(c->dwuser, (void **)&dw);
	dnnl_memory_get_data_handle(c->db, (void **)&db);
	long nw = (long)c->cout * c->cin * c->k * c->k;
	for (long i = 0; i < nw; i++) gw[i] += dw[i];
	for (int i = 0; i < c->cout; i++) gb[i] += db[i];
	if (gin && c->incm) {
		nfcirc_fold_cols(c, gin, in);
	} else if (gin && c->wino) {
		float *d;
		dnnl_memory_get_data_handle(c->dsrc, (void **)&d);
		nfwino_scatter(c, gin, d, c->cin, c->inslope > 0 ? NF_LEAKY_GRAD : NF_COPY, c->inslope, in);
	} else if (gin) {
		nfcirc_fold(c, gin, in);
	}
	return dnnl_success;
}

// nfcirc_impl names the implementation of primitive i (backward data:
// the matrix product with a channel-major input).
static const char *nfcirc_impl(nfcirc *c, int i) { return nf_impl(i == 1 && c->incm ? c->mpd : c->pd[i]); }

static size_t nfcirc_bytes(nfcirc *c) {
	size_t t = 0;
	dnnl_memory_t m[] = {c->src, c->wfwd, c->wbwd, c->dsrc, c->dw, c->dwuser, c->db};
	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) t += nf_memory_bytes(m[i]);
	if (c->bf16 || c->wino) t += nf_memory_bytes(c->ddst); // owned only in bf16 and Winograd
	if (c->wino) t += nf_memory_bytes(c->dst) + nf_memory_bytes(c->gpad) + nf_memory_bytes(c->wflip);
	long M = (long)c->n * c->l * c->l, K = (long)c->cin * c->k * c->k;
	if (c->gcol) t += (size_t)(M * K) * 4;
	if (c->wh) t += (size_t)(c->cout * K) * 2;
	return t;
}

static nfcirc *nfcirc_new(void) { return calloc(1, sizeof(nfcirc)); }
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// CircShape is the shape of one circular convolution of the conditioner: N
// configurations of an L×L periodic lattice, Cin input and Cout output
// channels, a K×K kernel (K odd) with dilation Dilation, padding
// Dilation·(K−1)/2 wrapped around the lattice (PyTorch's
// padding_mode="circular").
type CircShape struct {
	N, Cin, Cout, L, K, Dilation int
}

// Flops returns twice the multiply-adds of one forward convolution.
func (s CircShape) Flops() float64 {
	return 2 * float64(s.N) * float64(s.Cout) * float64(s.L*s.L) * float64(s.Cin*s.K*s.K)
}

// InputLayout is the memory layout of a CircConv's input and input gradient.
type InputLayout int

const (
	// NHWC: [N][L][L][Cin], channels innermost (the conditioner's hidden
	// activations on this path).
	NHWC InputLayout = iota
	// ChannelMajor: [Cin][N][L][L] (the flow's conditioner input).
	ChannelMajor
)

// CircOptions are the choices of a CircConv beyond its shape.
type CircOptions struct {
	// BF16 makes the convolution's inputs (the wrapped input, the weights
	// and, backward, the output gradient) bfloat16, rounded to nearest
	// even; accumulation, bias, outputs and gradients stay float32.
	BF16 bool
	// LeakyReLUSlope > 0 fuses LeakyReLU(x, slope) into the forward output
	// (oneDNN's relu post-op with negative slope); 0: no activation.
	LeakyReLUSlope float32
	// Backward creates the backward-data and backward-weights primitives.
	Backward bool
	// InputLeakyReLUSlope > 0 says that the input is the output of a
	// LeakyReLU with this slope: Backward then returns the gradient of the
	// LeakyReLU's input, the input gradient times the derivative read from
	// the input's sign (1 where positive, else the slope), in the same pass.
	InputLeakyReLUSlope float32
	// Input is the layout of the input and of the input gradient; the
	// output and its gradient are always NHWC.
	Input InputLayout
	// Threads is the number of OpenMP threads of every call (≥ 1).
	Threads int
	// Winograd runs the convolution as oneDNN's Winograd F(4×4, 3×3)
	// kernels on the lattice's dilation² undilated sublattices, with the
	// input gradient as the forward kernel on the flipped weights (see
	// WinogradFits): float32 only, rounding errors a few times the direct
	// kernels'. NewCircConv fails with ErrUnimplemented where the
	// shape does not fit or this CPU has no such kernel (below AVX-512).
	Winograd bool
}

// WinogradFits reports whether shape s fits the Winograd path: a 3×3
// kernel, a lattice side that is a multiple of the dilation, input and
// output channels multiples of 16 (oneDNN's blocking), NHWC input, float32.
func WinogradFits(s CircShape, opt CircOptions) bool {
	return s.K == 3 && s.L%s.Dilation == 0 && s.Cin%16 == 0 && s.Cout%16 == 0 && !opt.BF16 && opt.Input == NHWC
}

// CircConv is a circular convolution through oneDNN for a fixed shape:
// created once, run many times. The padded input lives in memory that
// oneDNN allocates; outputs, weights and gradients are the caller's
// float32 slices, used only during a call (no Go pointer is kept by C).
// Weights are OIHW (Cout, Cin, K, K) row-major as in nf.Conv2D, reordered
// into the primitives' preferred layouts at every call (they change every
// training step). Not safe for concurrent use.
type CircConv struct {
	c     *C.nfcirc
	shape CircShape
	opt   CircOptions
}

// NewCircConv creates the primitives for s.
func NewCircConv(s CircShape, opt CircOptions) (*CircConv, error) {
	if s.N < 1 || s.Cin < 1 || s.Cout < 1 || s.L < 1 || s.K < 1 || s.K%2 == 0 || s.Dilation < 1 || opt.Threads < 1 {
		return nil, fmt.Errorf("dnnl: invalid circular convolution %+v (threads %d)", s, opt.Threads)
	}
	c := C.nfcirc_new()
	if c == nil {
		return nil, fmt.Errorf("dnnl: out of memory")
	}
	c.n, c.cin, c.cout, c.l, c.k, c.dil = C.int(s.N), C.int(s.Cin), C.int(s.Cout), C.int(s.L), C.int(s.K), C.int(s.Dilation)
	c.nthr = C.int(opt.Threads)
	c.inslope = C.float(opt.InputLeakyReLUSlope)
	if opt.BF16 {
		c.bf16 = 1
	}
	if opt.Input == ChannelMajor {
		c.incm = 1
	}
	if opt.Backward {
		c.bwd = 1
	}
	if opt.Winograd {
		if !WinogradFits(s, opt) {
			C.nfcirc_destroy(c)
			return nil, fmt.Errorf("dnnl: Winograd circular convolution %+v (bf16 %v, layout %d): %w", s, opt.BF16, opt.Input, ErrUnimplemented)
		}
		c.wino = 1
	}
	if st := C.nfcirc_create(c, C.float(opt.LeakyReLUSlope)); st != C.dnnl_success {
		C.nfcirc_destroy(c)
		return nil, fmt.Errorf("dnnl: circular convolution %+v (bf16 %v): %w", s, opt.BF16, statusError(int(st)))
	}
	return &CircConv{c: c, shape: s, opt: opt}, nil
}

// ErrUnimplemented says that this oneDNN has no implementation of a
// primitive on this CPU (bf16 convolutions below AVX-512, for one).
var ErrUnimplemented = errors.New("not implemented by this oneDNN on this CPU")

// statusError names a oneDNN status.
func statusError(st int) error {
	switch st {
	case C.dnnl_out_of_memory:
		return errors.New("out of memory")
	case C.dnnl_invalid_arguments:
		return errors.New("invalid arguments")
	case C.dnnl_unimplemented:
		return ErrUnimplemented
	}
	return fmt.Errorf("oneDNN status %d", st)
}

func (cv *CircConv) inLen() int  { return cv.shape.N * cv.shape.L * cv.shape.L * cv.shape.Cin }
func (cv *CircConv) outLen() int { return cv.shape.N * cv.shape.L * cv.shape.L * cv.shape.Cout }
func (cv *CircConv) wLen() int   { return cv.shape.Cout * cv.shape.Cin * cv.shape.K * cv.shape.K }

func (cv *CircConv) checkLen(name string, x []float32, want int) {
	if len(x) != want {
		panic(fmt.Sprintf("dnnl: CircConv %+v: len(%s) = %d, want %d", cv.shape, name, len(x), want))
	}
}

func ptr(x []float32) *C.float { return (*C.float)(unsafe.Pointer(unsafe.SliceData(x))) }

// Forward writes out (NHWC, N·L·L·Cout) = the convolution of in (in the
// input layout, N·L·L·Cin) with weights w (OIHW) plus bias b, through the
// LeakyReLU when the options fuse one.
func (cv *CircConv) Forward(out, in, w, b []float32) error {
	if !onMaster() {
		return doErr(func() error { return cv.Forward(out, in, w, b) })
	}
	cv.checkLen("in", in, cv.inLen())
	cv.checkLen("out", out, cv.outLen())
	cv.checkLen("w", w, cv.wLen())
	cv.checkLen("b", b, cv.shape.Cout)
	if st := C.nfcirc_forward(cv.c, ptr(in), ptr(w), ptr(b), ptr(out)); st != C.dnnl_success {
		return fmt.Errorf("dnnl: forward convolution %+v: %w", cv.shape, statusError(int(st)))
	}
	return nil
}

// Backward is the vector–Jacobian product of the convolution without its
// activation: given gout = dL/dout (NHWC) and the forward input in, it ADDS
// dL/dw into gw (OIHW) and dL/db into gb, and WRITES dL/din into gin (in
// the input layout; skipped when gin is nil), through the input's
// LeakyReLU when Options.InputLeakyReLUSlope is set. Needs
// Options.Backward. With a channel-major input (the conditioner's first
// convolution, few input channels) dL/din is a oneDNN matrix product of
// the weights and gout, folded into gin, instead of oneDNN's
// backward-data convolution, which is slow for few channels.
func (cv *CircConv) Backward(gin, gout, in, w, gw, gb []float32) error {
	if !onMaster() {
		return doErr(func() error { return cv.Backward(gin, gout, in, w, gw, gb) })
	}
	if !cv.opt.Backward {
		panic("dnnl: CircConv.Backward without Options.Backward")
	}
	cv.checkLen("in", in, cv.inLen())
	cv.checkLen("gout", gout, cv.outLen())
	cv.checkLen("w", w, cv.wLen())
	cv.checkLen("gw", gw, cv.wLen())
	cv.checkLen("gb", gb, cv.shape.Cout)
	var gp *C.float
	if gin != nil {
		cv.checkLen("gin", gin, cv.inLen())
		gp = ptr(gin)
	}
	if st := C.nfcirc_backward(cv.c, gp, ptr(gout), ptr(in), ptr(w), ptr(gw), ptr(gb)); st != C.dnnl_success {
		return fmt.Errorf("dnnl: backward convolution %+v: %w", cv.shape, statusError(int(st)))
	}
	return nil
}

// Impl names oneDNN's implementations of the forward, backward-data and
// backward-weights primitives (empty where not created), e.g.
// "brg:avx512_core_amx": what a CPU actually runs.
func (cv *CircConv) Impl() (fwd, bwdData, bwdWeights string) {
	return C.GoString(C.nfcirc_impl(cv.c, 0)), C.GoString(C.nfcirc_impl(cv.c, 1)), C.GoString(C.nfcirc_impl(cv.c, 2))
}

// Winograd reports whether the convolution runs as Winograd
// (CircOptions.Winograd).
func (cv *CircConv) Winograd() bool { return cv.opt.Winograd }

// Bytes returns the memory the primitives own: padded buffers, weights in
// their layouts and gradients; not the scratchpad that every primitive of
// the process shares (ScratchBytes).
func (cv *CircConv) Bytes() int { return int(C.nfcirc_bytes(cv.c)) }

// Close frees the primitives and their memory.
func (cv *CircConv) Close() {
	if cv.c != nil {
		C.nfcirc_destroy(cv.c)
		cv.c = nil
	}
}
