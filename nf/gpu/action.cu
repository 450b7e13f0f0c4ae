// log|det D| of the Wilson–Dirac operator on the device, as lgt computes it
// (lgt/evaluator.go, factorize; the conventions of lgt/doc.go and
// lgt/dirac.go): the even–odd Schur complement S = 1 − κ² H_oe H_eo of
// order n = V (V/2 odd sites × 2 spins), built from the links here,
// factorized by cuBLAS's batched LU, and log|det S| = Σ_k log|U_kk|
// (det D = det S). S is written row-major; cuBLAS reads it as Sᵀ, whose
// determinant is the same.

struct zc {
	double re, im;
};

__device__ __forceinline__ zc zmul(zc a, zc b) { return zc{a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }

// The hop coefficient c_d(y) of site y = (i, j) (lgt's hop): U₀(y),
// conj U₀(y − 0̂), U₁(y), conj U₁(y − 1̂), with b = −1 on the links of
// direction 0 that wrap around the lattice.
__device__ zc ld_coef(const double *__restrict__ links, int L, int y, int d) {
	int V = L * L, i = y / L, j = y % L;
	double b = 1, th;
	bool conj = false;
	switch (d) {
	case 0:
		if (i + 1 == L) b = -1;
		th = links[i * L + j];
		break;
	case 1: {
		int im = i - 1;
		if (im < 0) { im = L - 1; b = -1; }
		th = links[im * L + j];
		conj = true;
		break;
	}
	case 2:
		th = links[V + i * L + j];
		break;
	default: {
		int jm = j - 1;
		if (jm < 0) jm = L - 1;
		th = links[V + i * L + jm];
		conj = true;
	}
	}
	zc c = {b * cos(th), b * sin(th)};
	if (conj) c.im = -c.im;
	return c;
}

// proj[d] = 1 ∓ σ of hop direction d, row-major 2×2 (lgt's proj).
__device__ __forceinline__ zc ld_proj(int d, int e) {
	const double pr[4][4] = {{1, -1, -1, 1}, {1, 1, 1, 1}, {1, 0, 0, 1}, {1, 0, 0, 1}};
	const double pi[4][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 1, -1, 0}, {0, -1, 1, 0}};
	return zc{pr[d][e], pi[d][e]};
}

// One thread per odd site a of configuration b: rows 2a and 2a + 1 of
// S_b (n = V columns, row-major, matrices n² apart) — the identity minus
// κ² Σ_{d, d2 ≠ d^1} c_d(y) c_d2(e) P_d P_d2 into the columns of z =
// n_d2(n_d(y)). nbr[4x + d] = n_d(x), odds the odd sites increasing,
// oddIdx[x] the position of odd site x.
__device__ void build_schur(zc *S, const double *__restrict__ links, const int *__restrict__ nbr, const int *__restrict__ odds,
		const int *__restrict__ oddIdx, int L, double k2, int B) {
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	int V = L * L, half = V / 2, n = V;
	if (idx >= (long)B * half) return;
	long b = idx / half;
	int a = (int)(idx - b * half);
	zc *r0 = S + b * (long)n * n + (long)(2 * a) * n, *r1 = r0 + n;
	for (int c = 0; c < n; c++) r0[c] = r1[c] = zc{0, 0};
	r0[2 * a] = r1[2 * a + 1] = zc{1, 0};
	const double *lk = links + b * 2 * V;
	int y = odds[a];
	for (int d = 0; d < 4; d++) {
		int ev = nbr[4 * y + d];
		zc c1 = ld_coef(lk, L, y, d);
		c1.re *= k2;
		c1.im *= k2;
		for (int d2 = 0; d2 < 4; d2++) {
			if (d2 == (d ^ 1)) continue; // (1 ± σ)(1 ∓ σ) = 0: no back-tracking
			int z = nbr[4 * ev + d2];
			zc c = zmul(c1, ld_coef(lk, L, ev, d2));
			// p = P_d · P_d2
			zc p[4];
			for (int r = 0; r < 2; r++)
				for (int s = 0; s < 2; s++) {
					zc u = zmul(ld_proj(d, 2 * r), ld_proj(d2, s)), v = zmul(ld_proj(d, 2 * r + 1), ld_proj(d2, 2 + s));
					p[2 * r + s] = zc{u.re + v.re, u.im + v.im};
				}
			int col = 2 * oddIdx[z];
			zc t;
			t = zmul(c, p[0]); r0[col].re -= t.re; r0[col].im -= t.im;
			t = zmul(c, p[1]); r0[col + 1].re -= t.re; r0[col + 1].im -= t.im;
			t = zmul(c, p[2]); r1[col].re -= t.re; r1[col].im -= t.im;
			t = zmul(c, p[3]); r1[col + 1].re -= t.re; r1[col + 1].im -= t.im;
		}
	}
}

// logAbs[b] = Σ_k log|U_kk| of the factors of S_b (NaN where info[b] ≠ 0:
// a zero pivot, D singular): a block per configuration, strided partial
// sums and block_sum's tree.
__device__ void schur_logdet(double *logAbs, const zc *__restrict__ S, const int *__restrict__ info, int n, int B) {
	long b = blockIdx.x; // a block per configuration
	if (info[b] != 0) { // the whole block returns
		if (threadIdx.x == 0) logAbs[b] = nan("");
		return;
	}
	const zc *s = S + b * (long)n * n;
	double sum = 0;
	for (int k = threadIdx.x; k < n; k += REDUCE_THREADS) sum += log(hypot(s[(long)k * n + k].re, s[(long)k * n + k].im));
	sum = block_sum(sum);
	if (threadIdx.x == 0) logAbs[b] = sum;
}

// The device array of the matrices' addresses for the batched LU.
__device__ void schur_ptrs(unsigned long long *ptrs, unsigned long long base, long stride, int B) {
	long b = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (b < B) ptrs[b] = base + (unsigned long long)(b * stride);
}

// The gauge force (lgt's gaugeForce): one thread per link of
// configuration b, force = dS_G/dθ written (not added): θ₀(x):
// β (sin P(x) − sin P(x − 1̂)), θ₁(x): β (sin P(x − 0̂) − sin P(x)).
__device__ __forceinline__ double ld_plaq(const double *__restrict__ lk, int L, int i, int j) {
	int V = L * L, ip = (i + 1) % L, jp = (j + 1) % L;
	return lk[i * L + j] + lk[V + ip * L + j] - lk[i * L + jp] - lk[V + i * L + j];
}

__device__ void gauge_force(double *force, const double *__restrict__ links, int L, double beta, int B) {
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	int V = L * L;
	if (idx >= (long)B * 2 * V) return;
	long b = idx / (2 * V);
	int r = (int)(idx - b * 2 * V), mu = r / V, x = r % V, i = x / L, j = x % L;
	const double *lk = links + b * 2 * V;
	if (mu == 0)
		force[idx] = beta * (sin(ld_plaq(lk, L, i, j)) - sin(ld_plaq(lk, L, i, (j + L - 1) % L)));
	else
		force[idx] = beta * (sin(ld_plaq(lk, L, (i + L - 1) % L, j)) - sin(ld_plaq(lk, L, i, j)));
}

__device__ __forceinline__ void m2mul(zc *out, const zc *a, const zc *b) {
	for (int r = 0; r < 2; r++)
		for (int c = 0; c < 2; c++) {
			zc u = zmul(a[2 * r], b[c]), v = zmul(a[2 * r + 1], b[2 + c]);
			out[2 * r + c] = zc{u.re + v.re, u.im + v.im};
		}
}

// Im tr(a·b) of 2×2 matrices.
__device__ __forceinline__ double m2imtr(const zc *a, const zc *b) {
	zc p = zmul(a[0], b[0]), q = zmul(a[1], b[2]), r = zmul(a[2], b[1]), s = zmul(a[3], b[3]);
	return p.im + q.im + r.im + s.im;
}

// The fermion force (lgt's fermionBlocks) from W = S⁻¹ (row-major, n = V,
// matrices n² apart): one thread per even site x of configuration b,
// adding to force its four links, each between x and an odd site (so no
// two threads write one link). evens lists the even sites.
__device__ void fermion_force(double *force, const zc *__restrict__ W, const double *__restrict__ links, const int *__restrict__ nbr,
		const int *__restrict__ evens, const int *__restrict__ oddIdx, int L, double kappa, int B) {
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	int V = L * L, half = V / 2, n = V;
	if (idx >= (long)B * half) return;
	long b = idx / half;
	int x = evens[idx - b * half];
	const double *lk = links + b * 2 * V;
	const zc *w = W + b * (long)n * n;
	double *f = force + b * 2 * V;
	int col[4];
	zc teo[4][4], toe[4][4];
	for (int d = 0; d < 4; d++) {
		int o = nbr[4 * x + d];
		col[d] = 2 * oddIdx[o];
		zc c = ld_coef(lk, L, x, d), cc = zc{c.re, -c.im};
		for (int e = 0; e < 4; e++) {
			teo[d][e] = zmul(c, ld_proj(d, e));
			toe[d][e] = zmul(cc, ld_proj(d ^ 1, e));
		}
	}
	for (int d = 0; d < 4; d++) {
		zc goe[4] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}}, geo[4] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
		for (int d2 = 0; d2 < 4; d2++) {
			// wb[d][d2] and wb[d2][d]: the 2×2 blocks of W between the odd
			// neighbours.
			const zc *r0 = w + (long)col[d] * n, *r1 = r0 + n;
			zc wdd2[4] = {r0[col[d2]], r0[col[d2] + 1], r1[col[d2]], r1[col[d2] + 1]};
			const zc *q0 = w + (long)col[d2] * n, *q1 = q0 + n;
			zc wd2d[4] = {q0[col[d]], q0[col[d] + 1], q1[col[d]], q1[col[d] + 1]};
			zc a[4], bb[4];
			m2mul(a, wdd2, toe[d2]);
			m2mul(bb, teo[d2], wd2d);
			for (int k = 0; k < 4; k++) {
				goe[k].re += a[k].re;
				goe[k].im += a[k].im;
				geo[k].re += bb[k].re;
				geo[k].im += bb[k].im;
			}
		}
		for (int k = 0; k < 4; k++) {
			goe[k].re *= kappa;
			goe[k].im *= kappa;
			geo[k].re *= kappa;
			geo[k].im *= kappa;
		}
		double fv = 2 * kappa * (m2imtr(geo, toe[d]) - m2imtr(goe, teo[d]));
		switch (d) {
		case 0: f[x] += fv; break;                        // θ₀(x), x even
		case 1: f[nbr[4 * x + 1]] -= fv; break;           // θ₀(x − 0̂)
		case 2: f[V + x] += fv; break;                    // θ₁(x)
		default: f[V + nbr[4 * x + 3]] -= fv;             // θ₁(x − 1̂)
		}
	}
}

// The blocked batched LU (LogDet with BlockedLU), column-major as
// cuBLAS's getrf and with its pivots (1-based, LAPACK's) and info: per
// panel of nb columns from k0, lu_panel factorizes the panel with partial
// pivoting, swapping whole rows; lu_trsm solves L11 U12 = A12 for the rows
// of the panel right of it; and a strided-batched ZGEMM subtracts L21 U12
// from the trailing matrix (Go: LogDet.blockedLU). Every order is fixed:
// the same result on every run.

// zabs1 is |re| + |im|, LAPACK's pivot measure (izamax).
__device__ __forceinline__ double zabs1(zc z) { return fabs(z.re) + fabs(z.im); }

// zrecip is 1/z.
__device__ __forceinline__ zc zrecip(zc z) {
	double d = z.re * z.re + z.im * z.im;
	return zc{z.re / d, -z.im / d};
}

// lu_panel: one block of REDUCE_THREADS threads per matrix. For each
// column j of the panel: the pivot is the first row at or below j of the
// largest |re| + |im| (a fixed tree over the threads' strided maxima, ties
// to the lower row, as izamax), its rows swapped across all n columns,
// the column below j scaled by the pivot's reciprocal, and the rest of the
// panel updated (rank 1). A zero pivot leaves the column and sets info
// to j + 1 if it was 0 (zeroed at k0 = 0).
__device__ void lu_panel(zc *A, int *piv, int *info, int n, long stride, int k0, int nb) {
	__shared__ double shv[REDUCE_THREADS];
	__shared__ int shi[REDUCE_THREADS];
	zc *a = A + blockIdx.x * stride;
	int *pv = piv + (long)blockIdx.x * n;
	unsigned t = threadIdx.x;
	if (k0 == 0 && t == 0) info[blockIdx.x] = 0;
	for (int j = k0; j < k0 + nb; j++) {
		double best = -1;
		int bi = n;
		for (int i = j + t; i < n; i += REDUCE_THREADS) {
			double v = zabs1(a[i + (long)j * n]);
			if (v > best) { best = v; bi = i; }
		}
		shv[t] = best;
		shi[t] = bi;
		__syncthreads();
		for (unsigned s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
			if (t < s && (shv[t + s] > shv[t] || (shv[t + s] == shv[t] && shi[t + s] < shi[t]))) {
				shv[t] = shv[t + s];
				shi[t] = shi[t + s];
			}
			__syncthreads();
		}
		int p = shi[0];
		double pmax = shv[0];
		__syncthreads(); // all have read the pivot before the next column's search
		if (t == 0) {
			pv[j] = p + 1;
			if (pmax == 0 && info[blockIdx.x] == 0) info[blockIdx.x] = j + 1;
		}
		if (pmax != 0) {
			if (p != j)
				for (int c = t; c < n; c += REDUCE_THREADS) {
					zc x = a[j + (long)c * n];
					a[j + (long)c * n] = a[p + (long)c * n];
					a[p + (long)c * n] = x;
				}
			__syncthreads();
			zc r = zrecip(a[j + (long)j * n]);
			for (int i = j + 1 + t; i < n; i += REDUCE_THREADS) a[i + (long)j * n] = zmul(a[i + (long)j * n], r);
		}
		__syncthreads();
		for (int i = j + 1 + t; i < n; i += REDUCE_THREADS) {
			zc l = a[i + (long)j * n];
			for (int c = j + 1; c < k0 + nb; c++) {
				zc u = zmul(l, a[j + (long)c * n]);
				a[i + (long)c * n].re -= u.re;
				a[i + (long)c * n].im -= u.im;
			}
		}
		__syncthreads();
	}
}

// lu_trsm: U12 = L11⁻¹ A12 for the panel's rows k0 … k0+nb−1 and the
// columns right of it, L11 unit lower triangular: a thread per column
// (blockIdx.x the matrix, blockIdx.y · blockDim.x + threadIdx.x the column
// after the panel), forward substitution down the rows.
__device__ void lu_trsm(zc *A, int n, long stride, int k0, int nb) {
	int c = k0 + nb + blockIdx.y * blockDim.x + threadIdx.x;
	if (c >= n) return;
	zc *a = A + blockIdx.x * stride;
	zc *col = a + (long)c * n;
	for (int r = 1; r < nb; r++) {
		zc s = col[k0 + r];
		for (int q = 0; q < r; q++) {
			zc u = zmul(a[k0 + r + (long)(k0 + q) * n], col[k0 + q]);
			s.re -= u.re;
			s.im -= u.im;
		}
		col[k0 + r] = s;
	}
}

extern "C" __global__ void gauge_force_k(double *force, const double *__restrict__ links, int L, double beta, int B) { gauge_force(force, links, L, beta, B); }
extern "C" __global__ void fermion_force_k(double *force, const zc *__restrict__ W, const double *__restrict__ links, const int *__restrict__ nbr, const int *__restrict__ evens, const int *__restrict__ oddIdx, int L, double kappa, int B) { fermion_force(force, W, links, nbr, evens, oddIdx, L, kappa, B); }
extern "C" __global__ void build_schur_k(zc *S, const double *__restrict__ links, const int *__restrict__ nbr, const int *__restrict__ odds, const int *__restrict__ oddIdx, int L, double k2, int B) { build_schur(S, links, nbr, odds, oddIdx, L, k2, B); }
extern "C" __global__ void schur_logdet_k(double *logAbs, const zc *__restrict__ S, const int *__restrict__ info, int n, int B) { schur_logdet(logAbs, S, info, n, B); }
extern "C" __global__ void schur_ptrs_k(unsigned long long *ptrs, unsigned long long base, long stride, int B) { schur_ptrs(ptrs, base, stride, B); }
extern "C" __global__ void lu_panel_k(zc *A, int *piv, int *info, int n, long stride, int k0, int nb) { lu_panel(A, piv, info, n, stride, k0, nb); }
extern "C" __global__ void lu_trsm_k(zc *A, int n, long stride, int k0, int nb) { lu_trsm(A, n, stride, k0, nb); }
