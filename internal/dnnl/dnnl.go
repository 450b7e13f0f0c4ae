// Package dnnl is the binding of oneDNN (Debian's libdnnl-dev 2.6, the C
// API of dnnl.h) that the conditioner's convolutions are moving to (issue
// 15): one forward convolution primitive per shape, created once and run
// many times, on memory that oneDNN owns (so that it may keep its blocked
// layouts, and so that no Go pointer is retained by C).
//
// Conventions: activations NCHW (batch, channels, rows, columns), weights
// OIHW, both row-major when the layout is plain; the input is the
// circularly padded lattice (the caller wraps it), so the primitive itself
// pads nothing; a dilation d spaces the kernel taps d sites apart (oneDNN
// stores d − 1). oneDNN runs on its OpenMP threads (OMP_NUM_THREADS).
package dnnl

/*
#cgo LDFLAGS: -ldnnl
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <oneapi/dnnl/dnnl.h>

typedef struct {
	dnnl_engine_t eng;
	dnnl_stream_t st;
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t prim;
	dnnl_memory_t mem[4]; // src, weights, bias, dst
} nfconv;

static int nfconv_create(nfconv *c, int n, int cin, int hp, int wp, int cout, int k, int dil,
		int bf16, int any) {
	memset(c, 0, sizeof *c);
	int h = hp - dil * (k - 1), w = wp - dil * (k - 1);
	dnnl_status_t s;
	if ((s = dnnl_engine_create(&c->eng, dnnl_cpu, 0)) != dnnl_success) return s;
	if ((s = dnnl_stream_create(&c->st, c->eng, dnnl_stream_default_flags)) != dnnl_success) return s;
	dnnl_dims_t sd = {n, cin, hp, wp}, wd = {cout, cin, k, k}, bd = {cout}, dd = {n, cout, h, w};
	dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
	dnnl_memory_desc_t smd, wmd, bmd, dmd;
	if ((s = dnnl_memory_desc_init_by_tag(&smd, 4, sd, in, any ? dnnl_format_tag_any : dnnl_nchw)) != dnnl_success) return s;
	if ((s = dnnl_memory_desc_init_by_tag(&wmd, 4, wd, in, any ? dnnl_format_tag_any : dnnl_oihw)) != dnnl_success) return s;
	if ((s = dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x)) != dnnl_success) return s;
	if ((s = dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw)) != dnnl_success) return s;
	dnnl_dims_t strides = {1, 1}, dilates = {dil - 1, dil - 1}, pad = {0, 0};
	dnnl_convolution_desc_t cd;
	if ((s = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
			&smd, &wmd, &bmd, &dmd, strides, dilates, pad, pad)) != dnnl_success) return s;
	if ((s = dnnl_primitive_desc_create(&c->pd, &cd, NULL, c->eng, NULL)) != dnnl_success) return s;
	if ((s = dnnl_primitive_create(&c->prim, c->pd)) != dnnl_success) return s;
	dnnl_query_t q[4] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_weights_md, dnnl_query_dst_md};
	int idx[4] = {0, 0, 1, 0};
	for (int i = 0; i < 4; i++) {
		const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(c->pd, q[i], idx[i]);
		if ((s = dnnl_memory_create(&c->mem[i], md, c->eng, DNNL_MEMORY_ALLOCATE)) != dnnl_success) return s;
	}
	return dnnl_success;
}

static void *nfconv_handle(nfconv *c, int i) {
	void *p = NULL;
	dnnl_memory_get_data_handle(c->mem[i], &p);
	return p;
}

static size_t nfconv_bytes(nfconv *c, int i) {
	const dnnl_memory_desc_t *md;
	dnnl_memory_get_memory_desc(c->mem[i], &md);
	return dnnl_memory_desc_get_size(md);
}

static int nfconv_run(nfconv *c) {
	dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->mem[0]}, {DNNL_ARG_WEIGHTS, c->mem[1]},
		{DNNL_ARG_BIAS, c->mem[2]}, {DNNL_ARG_DST, c->mem[3]}};
	dnnl_status_t s = dnnl_primitive_execute(c->prim, c->st, 4, args);
	if (s != dnnl_success) return s;
	return dnnl_stream_wait(c->st);
}

static void nfconv_destroy(nfconv *c) {
	for (int i = 0; i < 4; i++) if (c->mem[i]) dnnl_memory_destroy(c->mem[i]);
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
	c     C.nfconv
	shape Shape
	bf16  bool
	plain bool
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

// NewConv creates the primitive for s. bf16 selects bfloat16 inputs and
// weights (float32 accumulation, bias and output); only with Blocked.
func NewConv(s Shape, layout Layout, bf16 bool) (*Conv, error) {
	if oh, ow := s.Out(); s.N < 1 || s.Cin < 1 || s.Cout < 1 || s.K < 1 || s.Dilation < 1 || oh < 1 || ow < 1 {
		return nil, fmt.Errorf("dnnl: invalid convolution shape %+v", s)
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
		C.int(s.K), C.int(s.Dilation), b, any); st != C.dnnl_success {
		C.nfconv_destroy(&cv.c)
		return nil, fmt.Errorf("dnnl: convolution %+v (bf16 %v): oneDNN status %d", s, bf16, int(st))
	}
	return cv, nil
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
	if st := C.nfconv_run(&cv.c); st != C.dnnl_success {
		return fmt.Errorf("dnnl: convolution %+v: oneDNN status %d", cv.shape, int(st))
	}
	return nil
}

// Close frees the primitive and its memory.
func (cv *Conv) Close() { C.nfconv_destroy(&cv.c) }
