// The conditioner's input on the device (nf/coupling.go, inputsRange and
// inputsBackwardRange): plaquettes and 2x1 loops of the links
// (lgt.Plaquettes, lgt.Loops2x1), the cosines and sines of the frozen
// ones, and the backward pass into the link gradient. Links are nf's
// configuration-major b·2V + μ·V + x, x = i·L + j; the input is [6][N].

__device__ __forceinline__ int site(int i, int j, int L) { return ((i % L + L) % L) * L + ((j % L + L) % L); }

// One thread per site of a configuration: P (B·V), loops (B·2V) and the
// input. frozen[x] and lfrozen[c·V + x] are the masks (nf.Masks).
template <class T>
__device__ void cond_inputs(T *inp, T *P, T *loops, const T *__restrict__ links, const unsigned char *__restrict__ frozen,
		const unsigned char *__restrict__ lfrozen, int L, int B) {
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	long V = (long)L * L, N = B * V;
	if (idx >= N) return;
	long b = idx / V;
	int x = (int)(idx - b * V), i = x / L, j = x % L;
	const T *t0 = links + b * 2 * V, *t1 = t0 + V;
	T p = mod2pi<T>(t0[x] + t1[site(i + 1, j, L)] - t0[site(i, j + 1, L)] - t1[x]);
	T l0 = mod2pi<T>(t0[x] + t0[site(i + 1, j, L)] + t1[site(i + 2, j, L)] - t0[site(i + 1, j + 1, L)] - t0[site(i, j + 1, L)] - t1[x]);
	T l1 = mod2pi<T>(t1[x] + t1[site(i, j + 1, L)] + t0[site(i, j + 2, L)] - t1[site(i + 1, j + 1, L)] - t1[site(i + 1, j, L)] - t0[x]);
	P[idx] = p;
	loops[b * 2 * V + x] = l0;
	loops[b * 2 * V + V + x] = l1;
	T c = 1, s = 0;
	if (frozen[x]) { c = (T)cos((double)p); s = (T)sin((double)p); }
	inp[idx] = c;
	inp[N + idx] = s;
	T l[2] = {l0, l1};
	for (int ch = 0; ch < 2; ch++) {
		T lc = 1, ls = 0;
		if (lfrozen[ch * V + x]) { lc = (T)cos((double)l[ch]); ls = (T)sin((double)l[ch]); }
		inp[(2 + ch) * N + idx] = lc;
		inp[(4 + ch) * N + idx] = ls;
	}
}

// The gradients of the plaquettes (pbar, B·V: the direct one from the
// spline plus the frozen cosines' and sines') and of the loops (lbar, B·2V)
// from the input gradient gin ([6][N]) and the recorded input inp.
template <class T>
__device__ void cond_inputs_bwd1(T *pbar, T *lbar, const T *__restrict__ gin, const T *__restrict__ inp,
		const unsigned char *__restrict__ frozen, const unsigned char *__restrict__ lfrozen, int L, int B) {
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	long V = (long)L * L, N = B * V;
	if (idx >= N) return;
	long b = idx / V;
	int x = (int)(idx - b * V);
	if (frozen[x]) pbar[idx] += -inp[N + idx] * gin[idx] + inp[idx] * gin[N + idx];
	for (int ch = 0; ch < 2; ch++) {
		T g = 0;
		if (lfrozen[ch * V + x]) {
			long ic = (2 + ch) * N + idx, is = (4 + ch) * N + idx;
			g = -inp[is] * gin[ic] + inp[ic] * gin[is];
		}
		lbar[b * 2 * V + ch * V + x] = g;
	}
}

// g (the link gradient, B·2V) += the transposes of the plaquettes and
// loops applied to pbar and lbar: one thread per link, gathering the
// plaquettes and loops that contain it (no atomics).
template <class T>
__device__ void cond_inputs_bwd2(T *g, const T *__restrict__ pbar, const T *__restrict__ lbar, int L, int B) {
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	long V = (long)L * L;
	if (idx >= B * 2 * V) return;
	long b = idx / (2 * V);
	int r = (int)(idx - b * 2 * V), mu = r / (int)V, x = r % (int)V, a = x / L, c = x % L;
	const T *pb = pbar + b * V, *l0 = lbar + b * 2 * V, *l1 = l0 + V;
	T acc;
	if (mu == 0)
		acc = pb[x] - pb[site(a, c - 1, L)] + l0[x] + l0[site(a - 1, c, L)] - l0[site(a - 1, c - 1, L)] - l0[site(a, c - 1, L)] +
		      l1[site(a, c - 2, L)] - l1[x];
	else
		acc = pb[site(a - 1, c, L)] - pb[x] + l1[x] + l1[site(a, c - 1, L)] - l1[site(a - 1, c - 1, L)] - l1[site(a - 1, c, L)] +
		      l0[site(a - 2, c, L)] - l0[x];
	g[idx] += acc;
}

extern "C" __global__ void cond_inputs_f32(float *inp, float *P, float *loops, const float *__restrict__ links, const unsigned char *__restrict__ frozen, const unsigned char *__restrict__ lfrozen, int L, int B) { cond_inputs(inp, P, loops, links, frozen, lfrozen, L, B); }
extern "C" __global__ void cond_inputs_f64(double *inp, double *P, double *loops, const double *__restrict__ links, const unsigned char *__restrict__ frozen, const unsigned char *__restrict__ lfrozen, int L, int B) { cond_inputs(inp, P, loops, links, frozen, lfrozen, L, B); }
extern "C" __global__ void cond_inputs_bwd1_f32(float *pbar, float *lbar, const float *__restrict__ gin, const float *__restrict__ inp, const unsigned char *__restrict__ frozen, const unsigned char *__restrict__ lfrozen, int L, int B) { cond_inputs_bwd1(pbar, lbar, gin, inp, frozen, lfrozen, L, B); }
extern "C" __global__ void cond_inputs_bwd1_f64(double *pbar, double *lbar, const double *__restrict__ gin, const double *__restrict__ inp, const unsigned char *__restrict__ frozen, const unsigned char *__restrict__ lfrozen, int L, int B) { cond_inputs_bwd1(pbar, lbar, gin, inp, frozen, lfrozen, L, B); }
extern "C" __global__ void cond_inputs_bwd2_f32(float *g, const float *__restrict__ pbar, const float *__restrict__ lbar, int L, int B) { cond_inputs_bwd2(g, pbar, lbar, L, B); }
extern "C" __global__ void cond_inputs_bwd2_f64(double *g, const double *__restrict__ pbar, const double *__restrict__ lbar, int L, int B) { cond_inputs_bwd2(g, pbar, lbar, L, B); }
