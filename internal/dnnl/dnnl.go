// Package dnnl is the binding of oneDNN (Debian's libdnnl-dev 2.6, the C
// API of dnnl.h) behind the conditioners of nf's OneDNN engine: the
// convolution primitives of one shape — forward, and for the plain layout
// backward data and backward weights — created once and run many times,
// on memory that oneDNN owns (so that it may keep its blocked layouts, and
// so that no Go pointer is retained by C).
//
// Conventions: activations NCHW (batch, channels, rows, columns), weights
// OIHW, both row-major when the layout is plain; the input is the
// circularly padded lattice (the caller wraps it), so the primitive itself
// pads nothing; a dilation d spaces the kernel taps d sites apart (oneDNN
// stores d − 1). oneDNN runs on its OpenMP threads (OMP_NUM_THREADS, or
// the Threads of each convolution), and every call into this package's C
// is made from one OS thread, the OpenMP master (Do, master.go), so that
// libgomp keeps one pool of workers.
package dnnl

/*
#cgo LDFLAGS: -ldnnl
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <oneapi/dnnl/dnnl.h>
#include "nfdnnl.h"

typedef struct {
	dnnl_engine_t eng;
	dnnl_stream_t st;
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t prim;
	dnnl_memory_t mem[8]; // src, weights, bias, dst; diff_dst, diff_src, diff_weights, diff_bias
	dnnl_primitive_desc_t bpd[2];
	dnnl_primitive_t bprim[2]; // backward data, backward weights
	dnnl_primitive_attr_t attr; // user-managed scratchpad (see nfconv_create)
	dnnl_memory_t scratch[3];   // scratchpads of the forward, backward data and backward weights primitives
	int n, cin, hp, wp, cout, k, dil, nthr;
} nfconv;

// nfconv_mds fills the memory descriptors of src, weights, bias and dst
// (in that order) of c's shape: bf16 or f32 inputs, plain or any layout.
static int nfconv_mds(const nfconv *c, int bf16, int any, dnnl_memory_desc_t md[4]) {
	int h = c->hp - c->dil * (c->k - 1), w = c->wp - c->dil * (c->k - 1);
	dnnl_dims_t sd = {c->n, c->cin, c->hp, c->wp}, wd = {c->cout, c->cin, c->k, c->k}, bd = {c->cout}, dd = {c->n, c->cout, h, w};
	dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
	dnnl_status_t s;
	if ((s = dnnl_memory_desc_init_by_tag(&md[0], 4, sd, in, any ? dnnl_format_tag_any : dnnl_nchw)) != dnnl_success) return s;
	if ((s = dnnl_memory_desc_init_by_tag(&md[1], 4, wd, in, any ? dnnl_format_tag_any : dnnl_oihw)) != dnnl_success) return s;
	if ((s = dnnl_memory_desc_init_by_tag(&md[2], 1, bd, dnnl_f32, dnnl_x)) != dnnl_success) return s;
	return dnnl_memory_desc_init_by_tag(&md[3], 4, dd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw);
}

static int nfconv_create(nfconv *c, int n, int cin, int hp, int wp, int cout, int k, int dil,
		int bf16, int any, int nthr) {
	memset(c, 0, sizeof *c);
	c->n = n; c->cin = cin; c->hp = hp; c->wp = wp; c->cout = cout; c->k = k; c->dil = dil; c->nthr = nthr;
	nf_use_threads(nthr);
	dnnl_status_t s;
	if ((s = dnnl_engine_create(&c->eng, dnnl_cpu, 0)) != dnnl_success) return s;
	// The library's default scratchpad is per thread and sized when a
	// primitive is created; a Go caller may create and execute on
	// different OS threads, which overran it (intermittent crashes). Each
	// primitive gets its own scratchpad memory instead.
	if ((s = dnnl_primitive_attr_create(&c->attr)) != dnnl_success) return s;
	if ((s = dnnl_primitive_attr_set_scratchpad_mode(c->attr, dnnl_scratchpad_mode_user)) != dnnl_success) return s;
	if ((s = dnnl_stream_create(&c->st, c->eng, dnnl_stream_default_flags)) != dnnl_success) return s;
	dnnl_memory_desc_t md[4];
	if ((s = nfconv_mds(c, bf16, any, md)) != dnnl_success) return s;
	dnnl_dims_t strides = {1, 1}, dilates = {dil - 1, dil - 1}, pad = {0, 0};
	dnnl_convolution_desc_t cd;
	if ((s = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
			&md[0], &md[1], &md[2], &md[3], strides, dilates, pad, pad)) != dnnl_success) return s;
	if ((s = dnnl_primitive_desc_create(&c->pd, &cd, c->attr, c->eng, NULL)) != dnnl_success) return s;
	if ((s = dnnl_primitive_create(&c->prim, c->pd)) != dnnl_success) return s;
	if ((s = dnnl_memory_create(&c->scratch[0], dnnl_primitive_desc_query_md(c->pd, dnnl_query_scratchpad_md, 0),
			c->eng, DNNL_MEMORY_ALLOCATE)) != dnnl_success) return s;
	dnnl_query_t q[4] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_weights_md, dnnl_query_dst_md};
	int idx[4] = {0, 0, 1, 0};
	for (int i = 0; i < 4; i++) {
		const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(c->pd, q[i], idx[i]);
		if ((s = dnnl_memory_create(&c->mem[i], md, c->eng, DNNL_MEMORY_ALLOCATE)) != dnnl_success) return s;
	}
	return dnnl_success;
}

// nfconv_backward creates the backward-data and backward-weights
// primitives of a plain float32 convolution, with plain memory for the
// gradients.
static int nfconv_backward(nfconv *c) {
	nf_use_threads(c->nthr);
	dnnl_memory_desc_t md[4];
	dnnl_status_t s;
	if ((s = nfconv_mds(c, 0, 0, md)) != dnnl_success) return s;
	dnnl_memory_desc_t smd = md[0], wmd = md[1], bmd = md[2], dmd = md[3];
	dnnl_dims_t strides = {1, 1}, dilates = {c->dil - 1, c->dil - 1}, pad = {0, 0};
	dnnl_convolution_desc_t bdd, bwd;
	if ((s = dnnl_dilated_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct,
			&smd, &wmd, &dmd, strides, dilates, pad, pad)) != dnnl_success) return s;
	if ((s = dnnl_dilated_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct,
			&smd, &wmd, &bmd, &dmd, strides, dilates, pad, pad)) != dnnl_success) return s;
	if ((s = dnnl_primitive_desc_create(&c->bpd[0], &bdd, c->attr, c->eng, c->pd)) != dnnl_success) return s;
	if ((s = dnnl_primitive_desc_create(&c->bpd[1], &bwd, c->attr, c->eng, c->pd)) != dnnl_success) return s;
	for (int i = 0; i < 2; i++) {
		if ((s = dnnl_primitive_create(&c->bprim[i], c->bpd[i])) != dnnl_success) return s;
		if ((s = dnnl_memory_create(&c->scratch[1 + i], dnnl_primitive_desc_query_md(c->bpd[i], dnnl_query_scratchpad_md, 0),
				c->eng, DNNL_MEMORY_ALLOCATE)) != dnnl_success) return s;
	}
	const dnnl_memory_desc_t *mds[4] = {&dmd, &smd, &wmd, &bmd};
	for (int i = 0; i < 4; i++)
		if ((s = dnnl_memory_create(&c->mem[4 + i], mds[i], c->eng, DNNL_MEMORY_ALLOCATE)) != dnnl_success) return s;
	return dnnl_success;
}

// nfconv_run_backward computes diff_src (from diff_dst and the weights)
// and diff_weights, diff_bias (from src and diff_dst).
static int nfconv_run_backward(nfconv *c) {
	nf_enter(c->nthr);
	dnnl_exec_arg_t a0[4] = {{DNNL_ARG_DIFF_DST, c->mem[4]}, {DNNL_ARG_WEIGHTS, c->mem[1]}, {DNNL_ARG_DIFF_SRC, c->mem[5]},
		{DNNL_ARG_SCRATCHPAD, c->scratch[1]}};
	dnnl_exec_arg_t a1[5] = {{DNNL_ARG_SRC, c->mem[0]}, {DNNL_ARG_DIFF_DST, c->mem[4]},
		{DNNL_ARG_DIFF_WEIGHTS, c->mem[6]}, {DNNL_ARG_DIFF_BIAS, c->mem[7]}, {DNNL_ARG_SCRATCHPAD, c->scratch[2]}};
	dnnl_status_t s;
	if ((s = dnnl_primitive_execute(c->bprim[0], c->st, 4, a0)) != dnnl_success) return s;
	if ((s = dnnl_primitive_execute(c->bprim[1], c->st, 5, a1)) != dnnl_success) return s;
	return dnnl_stream_wait(c->st);
}

static void *nfconv_handle(nfconv *c, int i) {
	void *p = NULL;
	dnnl_memory_get_data_handle(c->mem[i], &p);
	return p;
}

static size_t nfconv_bytes(nfconv *c, int i) { return nf_memory_bytes(c->mem[i]); }

static int nfconv_run(nfconv *c) {
	nf_enter(c->nthr);
	dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, c->mem[0]}, {DNNL_ARG_WEIGHTS, c->mem[1]},
		{DNNL_ARG_BIAS, c->mem[2]}, {DNNL_ARG_DST, c->mem[3]}, {DNNL_ARG_SCRATCHPAD, c->scratch[0]}};
	dnnl_status_t s = dnnl_primitive_execute(c->prim, c->st, 5, args);
	if (s != dnnl_success) return s;
	return dnnl_stream_wait(c->st);
}

static void nfconv_destroy(nfconv *c) {
	for (int i = 0; i < 8; i++) if (c->mem[i]) dnnl_memory_destroy(c->mem[i]);
	for (int i = 0; i < 3; i++) if (c->scratch[i]) dnnl_memory_destroy(c->scratch[i]);
	if (c->attr) dnnl_primitive_attr_destroy(c->attr);
	for (int i = 0; i < 2; i++) {
		if (c->bprim[i]) dnnl_primitive_destroy(c->bprim[i]);
		if (c->bpd[i]) dnnl_primitive_desc_destroy(c->bpd[i]);
	}
	if (c->prim) dnnl_primitive_destroy(c->prim);
	if (c->pd) dnnl_primitive_desc_destroy(c->pd);
	if (c->st) dnnl_stream_destroy(c->st);
	if (c->eng) dnnl_engine_destroy(c->eng);
}

// nfconv_fill sets every element of buffer i to 1.0 (f32) or 1.0 (bf16),
// whatever its layout: input for timing only.
static void nfconv_fill(nfconv *c, int i, int bf16) {
	size_t n = nfconv_bytes(c, i);
	char *p = nfconv_handle(c, i);
	if (bf16 && i < 2) { uint16_t one = 0x3f80; for (size_t j = 0; j + 2 <= n; j += 2) memcpy(p + j, &one, 2); }
	else { float one = 1; for (size_t j = 0; j + 4 <= n; j += 4) memcpy(p + j, &one, 4); }
}
*/
import "C"

import (
	"fmt"
	"math"
	"time"
	"unsafe"
)

// Shape is the shape of one convolution: N configurations of Cin channels
// on the padded Hp×Wp input, Cout output channels, a K×K kernel with
// dilation Dilation, output (Hp − Dilation(K−1)) × (Wp − Dilation(K−1)).
type Shape struct {
	N, Cin, Hp, Wp, Cout, K, Dilation int
}

// Out returns the output rows and columns.
func (s Shape) Out() (h, w int) { return s.Hp - s.Dilation*(s.K-1), s.Wp - s.Dilation*(s.K-1) }

// Flops returns the multiply-adds of the convolution times two.
func (s Shape) Flops() float64 {
	h, w := s.Out()
	return 2 * float64(s.N) * float64(s.Cout) * float64(h*w) * float64(s.Cin*s.K*s.K)
}

// Conv is a forward convolution primitive with its memory. Not safe for
// concurrent use.
type Conv struct {
	c        C.nfconv
	shape    Shape
	bf16     bool
	plain    bool
	backward bool // the backward primitives exist (EnableBackward)
}

// Layout selects the memory layout of a Conv.
type Layout int

const (
	// Plain: NCHW activations and OIHW weights, row-major, float32; the
	// buffers are Go slices (Src, Weights, Bias, Dst).
	Plain Layout = iota
	// Blocked: the layouts oneDNN chooses for speed (format_tag_any); the
	// buffers are opaque.
	Blocked
)

// NewConv creates the primitive for s, run on threads OpenMP threads.
// bf16 selects bfloat16 inputs and weights (float32 accumulation, bias
// and output); only with Blocked.
func NewConv(s Shape, layout Layout, bf16 bool, threads int) (*Conv, error) {
	if oh, ow := s.Out(); s.N < 1 || s.Cin < 1 || s.Cout < 1 || s.K < 1 || s.Dilation < 1 || oh < 1 || ow < 1 {
		return nil, fmt.Errorf("dnnl: invalid convolution shape %+v", s)
	}
	if threads < 1 {
		return nil, fmt.Errorf("dnnl: convolution %+v on %d threads", s, threads)
	}
	if bf16 && layout == Plain {
		return nil, fmt.Errorf("dnnl: bf16 needs the blocked layout")
	}
	cv := &Conv{shape: s, bf16: bf16, plain: layout == Plain}
	b, any := C.int(0), C.int(0)
	if bf16 {
		b = 1
	}
	if layout == Blocked {
		any = 1
	}
	if st := C.nfconv_create(&cv.c, C.int(s.N), C.int(s.Cin), C.int(s.Hp), C.int(s.Wp), C.int(s.Cout),
		C.int(s.K), C.int(s.Dilation), b, any, C.int(threads)); st != C.dnnl_success {
		C.nfconv_destroy(&cv.c)
		return nil, fmt.Errorf("dnnl: convolution %+v (bf16 %v): oneDNN status %d", s, bf16, int(st))
	}
	return cv, nil
}

// EnableBackward creates the backward-data and backward-weights
// primitives of a plain float32 convolution and the gradient buffers
// (DiffDst, DiffSrc, DiffWeights, DiffBias).
func (cv *Conv) EnableBackward() error {
	if !cv.plain {
		return fmt.Errorf("dnnl: backward passes are implemented for the plain layout only")
	}
	if cv.backward {
		return nil
	}
	if st := C.nfconv_backward(&cv.c); st != C.dnnl_success {
		return fmt.Errorf("dnnl: backward convolution %+v: oneDNN status %d", cv.shape, int(st))
	}
	cv.backward = true
	return nil
}

// Backward computes DiffSrc = ∂/∂Src and DiffWeights, DiffBias =
// ∂/∂Weights, ∂/∂Bias of Σ DiffDst·Dst, from DiffDst, Weights and Src
// (EnableBackward first).
func (cv *Conv) Backward() error {
	if !onMaster() {
		return doErr(func() error { return cv.Backward() })
	}
	if !cv.backward {
		panic("dnnl: Backward before EnableBackward")
	}
	if st := C.nfconv_run_backward(&cv.c); st != C.dnnl_success {
		return fmt.Errorf("dnnl: backward convolution %+v: oneDNN status %d", cv.shape, int(st))
	}
	return nil
}

// DiffDst is the gradient of the output, shaped as Dst.
func (cv *Conv) DiffDst() []float32 { return cv.gradBuffer(4) }

// DiffSrc is the gradient of the input, shaped as Src.
func (cv *Conv) DiffSrc() []float32 { return cv.gradBuffer(5) }

// DiffWeights is the gradient of the weights, shaped as Weights.
func (cv *Conv) DiffWeights() []float32 { return cv.gradBuffer(6) }

// DiffBias is the gradient of the bias.
func (cv *Conv) DiffBias() []float32 { return cv.gradBuffer(7) }

func (cv *Conv) gradBuffer(i int) []float32 {
	if !cv.backward {
		panic("dnnl: gradient buffers before EnableBackward")
	}
	return cv.buffer(i)
}

// buffer returns memory i of a plain Conv as a float32 slice.
func (cv *Conv) buffer(i int) []float32 {
	if !cv.plain {
		panic("dnnl: the buffers of a blocked convolution are opaque")
	}
	n := int(C.nfconv_bytes(&cv.c, C.int(i))) / 4
	return unsafe.Slice((*float32)(C.nfconv_handle(&cv.c, C.int(i))), n)
}

// Src is the input, N·Cin·Hp·Wp values (plain layout only).
func (cv *Conv) Src() []float32 { return cv.buffer(0) }

// Weights are Cout·Cin·K·K values (plain layout only).
func (cv *Conv) Weights() []float32 { return cv.buffer(1) }

// Bias has Cout values (plain layout only).
func (cv *Conv) Bias() []float32 { return cv.buffer(2) }

// Dst is the output, N·Cout·H·W values (plain layout only).
func (cv *Conv) Dst() []float32 { return cv.buffer(3) }

// FillOnes sets the input and the weights to 1 and the bias to 1, in any
// layout: data for timing.
func (cv *Conv) FillOnes() {
	b := C.int(0)
	if cv.bf16 {
		b = 1
	}
	for i := range 3 {
		C.nfconv_fill(&cv.c, C.int(i), b)
	}
}

// Forward runs the convolution: Dst = conv(Src, Weights) + Bias.
func (cv *Conv) Forward() error {
	if !onMaster() {
		return doErr(func() error { return cv.Forward() })
	}
	if st := C.nfconv_run(&cv.c); st != C.dnnl_success {
		return fmt.Errorf("dnnl: convolution %+v: oneDNN status %d", cv.shape, int(st))
	}
	return nil
}

// Close frees the primitive and its memory.
func (cv *Conv) Close() { C.nfconv_destroy(&cv.c) }

// ReferenceGFLOPs times the reference convolution: oneDNN's 64 → 64
// channel, dilation-2 convolution alone on an L×L lattice (padded
// beforehand), batch configurations, in its preferred blocked layouts,
// float32 or bf16 inputs, on oneDNN's OpenMP threads; the best of the
// repetitions within minTime (at least 3), in GFLOP/s, on threads OpenMP
// threads (the flow's). The flow's convolution rate is compared with it
// (nfschwinger bench).
func ReferenceGFLOPs(L, batch, threads int, bf16 bool, minTime time.Duration) (g float64, err error) {
	Do(func() { g, err = referenceGFLOPs(L, batch, threads, bf16, minTime) })
	return g, err
}

// referenceGFLOPs is ReferenceGFLOPs on the master thread (no hand-off in
// the times).
func referenceGFLOPs(L, batch, threads int, bf16 bool, minTime time.Duration) (float64, error) {
	r, err := newReference(L, batch, threads, bf16)
	if err != nil {
		return 0, err
	}
	defer r.cv.Close()
	for t0, k := time.Now(), 0; k < 3 || time.Since(t0) < minTime; k++ {
		if err := r.time(); err != nil {
			return 0, err
		}
	}
	return r.gflops(), nil
}

// ReferenceRates times the reference convolution of ReferenceGFLOPs in
// float32 and in bf16 by turns, one repetition of each, for at least
// minTime, so that on a shared machine both see the same load: the best
// of each, in GFLOP/s, on threads OpenMP threads. Where oneDNN has no
// bf16 convolution for this CPU, bf16 is 0 and err wraps ErrUnimplemented.
func ReferenceRates(L, batch, threads int, minTime time.Duration) (f32, bf16 float64, err error) {
	Do(func() { f32, bf16, err = referenceRates(L, batch, threads, minTime) })
	return f32, bf16, err
}

// referenceRates is ReferenceRates on the master thread.
func referenceRates(L, batch, threads int, minTime time.Duration) (f32, bf16 float64, err error) {
	a, err := newReference(L, batch, threads, false)
	if err != nil {
		return 0, 0, err
	}
	defer a.cv.Close()
	b, err := newReference(L, batch, threads, true)
	if err != nil {
		return 0, 0, err
	}
	defer b.cv.Close()
	for t0, k := time.Now(), 0; k < 3 || time.Since(t0) < minTime; k++ {
		if err := a.time(); err != nil {
			return 0, 0, err
		}
		if err := b.time(); err != nil {
			return 0, 0, err
		}
	}
	return a.gflops(), b.gflops(), nil
}

// reference is the reference convolution being timed: its best time so
// far, in seconds.
type reference struct {
	cv   *Conv
	s    Shape
	best float64
}

// newReference creates the reference convolution and runs it once (the
// warm-up).
func newReference(L, batch, threads int, bf16 bool) (*reference, error) {
	s := Shape{N: batch, Cin: 64, Hp: L + 4, Wp: L + 4, Cout: 64, K: 3, Dilation: 2}
	cv, err := NewConv(s, Blocked, bf16, threads)
	if err != nil {
		return nil, err
	}
	cv.FillOnes()
	if err := cv.Forward(); err != nil {
		cv.Close()
		return nil, err
	}
	return &reference{cv: cv, s: s, best: math.Inf(1)}, nil
}

// time runs the convolution once and keeps the best time.
func (r *reference) time() error {
	t := time.Now()
	if err := r.cv.Forward(); err != nil {
		return err
	}
	r.best = min(r.best, time.Since(t).Seconds())
	return nil
}

func (r *reference) gflops() float64 { return r.s.Flops() / r.best / 1e9 }
