// Helpers shared by the C of this package's files (each cgo preamble is
// compiled on its own, so they are static inline here).
#ifndef NFDNNL_H
#define NFDNNL_H

#include <oneapi/dnnl/dnnl.h>

// NF_CK returns a failed oneDNN call's status from the calling function.
#define NF_CK(x) do { dnnl_status_t s_ = (x); if (s_ != dnnl_success) return s_; } while (0)

// nf_scratchpad creates the user scratchpad that primitive pd asks for.
static inline dnnl_status_t nf_scratchpad(dnnl_memory_t *m, const_dnnl_primitive_desc_t pd, dnnl_engine_t eng) {
	return dnnl_memory_create(m, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), eng, DNNL_MEMORY_ALLOCATE);
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

// nf_note_master counts the calling OS thread, once, among those that
// execute primitives or start parallel regions (master.go): every entry
// point that does calls it first.
void nf_note_master(void);

#endif
