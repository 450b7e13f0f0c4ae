// Helpers shared by the C of this package's files (each cgo preamble is
// compiled on its own, so they are static inline here).
#ifndef NFDNNL_H
#define NFDNNL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

// NF_CK returns a failed oneDNN call's status from the calling function.
#define NF_CK(x) do { dnnl_status_t s_ = (x); if (s_ != dnnl_success) return s_; } while (0)

// nf_scratch returns the process's one scratchpad, grown to at least n
// bytes (NULL when out of memory). Every primitive runs on the master
// thread (master.go), one at a time, so all share it; growing it frees
// the old buffer, so a primitive's scratchpad memory gets its handle
// right before each execution (nf_set_scratch). Winograd's scratchpads
// are MiBs and grow with the threads: one per convolution and batch size
// added up to hundreds of MiB on a wide rank.
void *nf_scratch(size_t n);

// nf_scratch_memory creates m, the scratchpad memory that primitive pd
// asks for, without a buffer, and raises *max to its size.
static inline dnnl_status_t nf_scratch_memory(dnnl_memory_t *m, const_dnnl_primitive_desc_t pd, dnnl_engine_t eng, size_t *max) {
	const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
	size_t n = dnnl_memory_desc_get_size(md);
	if (n > *max) *max = n;
	return dnnl_memory_create(m, md, eng, DNNL_MEMORY_NONE);
}

// nf_set_scratch points scratchpad memory m at the process's scratchpad,
// grown to n bytes (the largest its owner's primitives ask for).
static inline dnnl_status_t nf_set_scratch(dnnl_memory_t m, size_t n) {
	void *p = nf_scratch(n);
	return p ? dnnl_memory_set_data_handle(m, p) : dnnl_out_of_memory;
}

// nf_memory_bytes is the size of m's buffer (0 for no memory).
static inline size_t nf_memory_bytes(const_dnnl_memory_t m) {
	if (!m) return 0;
	const dnnl_memory_desc_t *md;
	dnnl_memory_get_memory_desc(m, &md);
	return dnnl_memory_desc_get_size(md);
}

// nf_destroy_prims destroys the scratchpads, primitives and primitive
// descriptors of n primitives (those not created are NULL).
static inline void nf_destroy_prims(dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim, dnnl_memory_t *scratch, int n) {
	for (int i = 0; i < n; i++) {
		if (scratch[i]) dnnl_memory_destroy(scratch[i]);
		if (prim[i]) dnnl_primitive_destroy(prim[i]);
		if (pd[i]) dnnl_primitive_desc_destroy(pd[i]);
	}
}

// nf_impl names pd's implementation, e.g. "brg:avx512_core" ("" for none).
static inline const char *nf_impl(const_dnnl_primitive_desc_t pd) {
	const char *s = "";
	if (pd) dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s);
	return s;
}

// nf_alloc is aligned_alloc of n bytes rounded up to 64.
static inline void *nf_alloc(size_t n) { return aligned_alloc(64, (n + 63) / 64 * 64); }

// nf_matrix_md describes a rows×cols matrix of type t with the given
// strides.
static inline dnnl_status_t nf_matrix_md(dnnl_memory_desc_t *md, long rows, long cols, long srow, long scol, dnnl_data_type_t t) {
	dnnl_dims_t d = {rows, cols}, s = {srow, scol};
	return dnnl_memory_desc_init_by_strides(md, 2, d, t, s);
}

// nf_bf16 rounds f to bfloat16, to nearest even (a NaN stays a quiet NaN).
static inline uint16_t nf_bf16(float f) {
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; // round to nearest even
	return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r); // NaN stays a quiet NaN
}

// nf_bf16_row converts n floats: branch-free, so that the compiler
// vectorizes it, or with the AVX512-BF16 instruction where the CPU has it
// (the same rounding to nearest even; it flushes float32 denormals,
// |x| < 2⁻¹²⁶, to zero). Cloning the portable loop for AVX-512 and AVX2
// measured no faster: the wrap is bound by memory there.
static inline void nf_bf16_row_sw(uint16_t *restrict d, const float *restrict s, long n) {
	for (long i = 0; i < n; i++) d[i] = nf_bf16(s[i]);
}

__attribute__((target("avx512f,avx512bf16,avx512vl")))
static inline void nf_bf16_row_hw(uint16_t *restrict d, const float *restrict s, long n) {
	long i = 0;
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *)(d + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + i)));
	for (; i < n; i++) d[i] = nf_bf16(s[i]);
}

// nf_cpu_bf16 reports whether the CPU has AVX512-BF16 (asked once per file).
static inline int nf_cpu_bf16(void) {
	static int has = -1;
	if (has < 0) has = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
	return has;
}

static inline void nf_bf16_row(uint16_t *restrict d, const float *restrict s, long n) {
	if (nf_cpu_bf16()) nf_bf16_row_hw(d, s, n);
	else nf_bf16_row_sw(d, s, n);
}

// nf_note_master counts the calling OS thread, once, among those that
// execute primitives or start parallel regions (master.go).
void nf_note_master(void);

// nf_use_threads gives the calling thread nthr OpenMP threads. Creating
// primitives needs it as much as running them: oneDNN fixes a primitive's
// thread count when it creates it (from dnnl_get_max_threads()) and runs
// it with that count (`omp parallel num_threads(n)` in parallel(),
// src/common/dnnl_thread.cpp), whatever omp_set_num_threads says at
// execution; primitives created under OpenMP's default ran on every CPU,
// and a flow's results depended on which flow had run before it.
static inline void nf_use_threads(int nthr) { omp_set_num_threads(nthr); }

// nf_enter begins every entry point that executes primitives or starts
// parallel regions: it counts the thread and sets nthr threads.
static inline void nf_enter(int nthr) {
	nf_note_master();
	nf_use_threads(nthr);
}

#endif
