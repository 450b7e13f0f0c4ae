// The coupling layer's spline on the device: nf/spline.go and the spline
// parts of nf/coupling.go (couplingForwardRange, couplingReverseRange,
// splineBackwardRange), line by line in float64 whatever T, with the same
// numerical safety branches (see nf/spline.go for the formulas and why
// each branch exists). One thread per active site of a configuration:
// column si = b·nA + i of the compact raw spline parameters [3n+1][M],
// M = B·nA, for site active[i] of configuration b.

#ifndef SPL_MAXBINS // the largest number of bins: the knot arrays are per thread
#define SPL_MAXBINS 64
#endif
#define SPL_TINY 1e-280
#define SPL_HUGE 1e280
#define SPL_LN2 0.6931471805599453
#define SPL_PI 3.141592653589793
#define SPL_MAXDOUBLE 1.7976931348623157e308

__device__ __forceinline__ double spl_softplus(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }

__device__ __forceinline__ double spl_log_softplus(double x) { return x < -37 ? x : log(spl_softplus(x)); }

__device__ __forceinline__ double spl_sigmoid(double x) {
	if (x >= 0) return 1 / (1 + exp(-x));
	double e = exp(x);
	return e / (1 + e);
}

__device__ __forceinline__ double spl_log_add_exp(double a, double b) {
	if (a < b) { double t = a; a = b; b = t; }
	if (b < -SPL_MAXDOUBLE) return a; // b = −∞
	return a + log1p(exp(b - a));
}

__device__ __forceinline__ double spl_clamp01(double v) { return v < 0 ? 0 : (v > 1 ? 1 : v); }

// A site's spline (nf's splineSite), built from the raw parameters; the
// derivatives δ_j = softplus(r_j) and their slopes sigmoid(r_j) are
// computed where a bin needs them (spl_bin, spl_scatter).
struct SplSite {
	int n;
	double x[SPL_MAXBINS + 1], y[SPL_MAXBINS + 1], r[SPL_MAXBINS + 1];
	double pw[SPL_MAXBINS], ph[SPL_MAXBINS], lpw[SPL_MAXBINS], lph[SPL_MAXBINS];
};

template <class T>
__device__ void spl_softmax(double *p, double *lp, int n, const T *raw, long stride, long s) {
	double m = (double)raw[s];
	for (int i = 1; i < n; i++) m = fmax(m, (double)raw[i * stride + s]);
	double sum = 0;
	for (int i = 0; i < n; i++) {
		p[i] = exp((double)raw[i * stride + s] - m);
		sum += p[i];
	}
	double ls = log(sum);
	for (int i = 0; i < n; i++) {
		p[i] /= sum;
		lp[i] = (double)raw[i * stride + s] - m - ls;
	}
}

__device__ void spl_knots(double *k, const double *p, int n) {
	double acc = 0;
	k[0] = 0;
	for (int i = 0; i < n - 1; i++) {
		acc += p[i];
		k[i + 1] = 2 * SPL_PI * acc;
	}
	k[n] = 2 * SPL_PI;
}

template <class T>
__device__ void spl_load(SplSite &sp, const T *raw, long stride, long s, int n) {
	sp.n = n;
	spl_softmax(sp.pw, sp.lpw, n, raw, stride, s);
	spl_softmax(sp.ph, sp.lph, n, raw + n * stride, stride, s);
	spl_knots(sp.x, sp.pw, n);
	spl_knots(sp.y, sp.ph, n);
	long off = 2 * n * stride;
	for (int j = 0; j < n; j++) sp.r[j + 1] = (double)raw[off + j * stride + s];
	sp.r[0] = sp.r[n];
}

__device__ __forceinline__ int spl_search(const double *knots, int n, double v) {
	int k = 0;
	while (k < n - 1 && knots[k + 1] <= v) k++;
	return k;
}

// One bin (nf's rqBin).
struct SplBin {
	double x0, x1, y0, y1, d0, d1, w, h, s, ls, r0, r1;

	__device__ bool fast() const { return s < SPL_HUGE && d0 < SPL_HUGE && d1 < SPL_HUGE; }

	__device__ double xi(double x) const { return w > 0 ? spl_clamp01((x - x0) / w) : 0; }

	__device__ void scaled(double &ss, double &sd0, double &sd1, double &m) const {
		double ld0 = spl_log_softplus(r0), ld1 = spl_log_softplus(r1);
		m = fmax(fmax(ls, ld0), ld1);
		ss = exp(ls - m);
		sd0 = exp(ld0 - m);
		sd1 = exp(ld1 - m);
	}

	__device__ double log_deriv_safe(double xi) const {
		double om = 1 - xi, la = log(xi * om);
		double ld0 = spl_log_softplus(r0), ld1 = spl_log_softplus(r1);
		double lq = spl_log_add_exp(spl_log_add_exp(ld1 + 2 * log(xi), SPL_LN2 + ls + la), ld0 + 2 * log(om));
		double lden = spl_log_add_exp(ls + log(xi * xi + om * om), spl_log_add_exp(ld0, ld1) + la);
		return 2 * ls + lq - 2 * lden;
	}

	__device__ void eval(double x, double &g, double &logd) const {
		double xi_ = xi(x), om = 1 - xi_, a = xi_ * om;
		double den = s * (xi_ * xi_ + om * om) + (d0 + d1) * a;
		double frac;
		if (fast() && den > SPL_TINY) {
			frac = (s * xi_ * xi_ + d0 * a) / den;
		} else {
			double ss, sd0, sd1, m;
			scaled(ss, sd0, sd1, m);
			double dn = ss * (xi_ * xi_ + om * om) + (sd0 + sd1) * a;
			frac = dn > 0 ? (ss * xi_ * xi_ + sd0 * a) / dn : xi_;
		}
		g = fmin(fmax(y0 + h * frac, y0), y1);
		double q = d1 * xi_ * xi_ + 2 * s * a + d0 * om * om;
		if (fast() && q > SPL_TINY && den > SPL_TINY)
			logd = 2 * ls + log(q) - 2 * log(den);
		else
			logd = log_deriv_safe(xi_);
	}

	__device__ double inverse(double u) const {
		if (!(w > 0) || !fast()) return x0;
		double dy = u - y0, c = d1 + d0 - 2 * s;
		double qa = h * (s - d0) + dy * c, qb = h * d0 - dy * c, qc = -s * dy;
		double m = fmax(fmax(fabs(qa), fabs(qb)), fabs(qc));
		if (m > 0) {
			int e;
			frexp(m, &e);
			qa = ldexp(qa, -e);
			qb = ldexp(qb, -e);
			qc = ldexp(qc, -e);
		}
		double disc = qb * qb - 4 * qa * qc;
		if (disc < 0) disc = 0;
		double sq = sqrt(disc), xi_ = 0;
		if (qb >= 0) {
			double dn = -qb - sq;
			if (dn != 0) xi_ = 2 * qc / dn;
		} else if (qa != 0) {
			xi_ = (-qb + sq) / (2 * qa);
		}
		xi_ = spl_clamp01(xi_);
		return fmin(x0 + xi_ * w, x1);
	}

	__device__ double dlogdx(double x) const {
		if (!(w > 0)) return 0;
		double xi_ = xi(x), om = 1 - xi_, a = xi_ * om;
		double ss = s, sd0 = d0, sd1 = d1;
		double den = ss * (xi_ * xi_ + om * om) + (sd0 + sd1) * a;
		double q = sd1 * xi_ * xi_ + 2 * ss * a + sd0 * om * om;
		if (!fast() || !(q > SPL_TINY && den > SPL_TINY)) {
			double m;
			scaled(ss, sd0, sd1, m);
			den = ss * (xi_ * xi_ + om * om) + (sd0 + sd1) * a;
			q = sd1 * xi_ * xi_ + 2 * ss * a + sd0 * om * om;
		}
		double c = sd1 + sd0 - 2 * ss;
		double dq = 2 * sd1 * xi_ + 2 * ss * (1 - 2 * xi_) - 2 * sd0 * om;
		double dden = c * (1 - 2 * xi_);
		return (dq / q - 2 * dden / den) / w;
	}
};

// Adjoints of a bin's data and of x (nf's rqAdj).
struct SplAdj {
	double x, x0, x1, y0, y1, d0, d1;
};

__device__ __forceinline__ double spl_scale_adj(double v, double e) {
	if (v == 0) return 0;
	return copysign(exp(log(fabs(v)) + e), v);
}

__device__ SplBin spl_bin(const SplSite &sp, int k) {
	SplBin b;
	b.x0 = sp.x[k];
	b.x1 = sp.x[k + 1];
	b.y0 = sp.y[k];
	b.y1 = sp.y[k + 1];
	b.d0 = spl_softplus(sp.r[k]);
	b.d1 = spl_softplus(sp.r[k + 1]);
	b.r0 = sp.r[k];
	b.r1 = sp.r[k + 1];
	b.w = 2 * SPL_PI * sp.pw[k];
	b.h = 2 * SPL_PI * sp.ph[k];
	b.s = b.h / b.w;
	if (b.s > SPL_TINY && b.s < SPL_HUGE)
		b.ls = log(b.s);
	else
		b.ls = sp.lph[k] - sp.lpw[k];
	return b;
}

__device__ SplAdj spl_vjp_scaled(const SplBin &b, double x, double gg, double gl) {
	SplAdj r = {0, 0, 0, 0, 0, 0, 0};
	double w = b.w, h = b.h, s, d0, d1, m;
	b.scaled(s, d0, d1, m);
	double xi = b.xi(x), om = 1 - xi, a = xi * om, c = d1 + d0 - 2 * s;
	double den = s * (xi * xi + om * om) + (d0 + d1) * a;
	double frac = (s * xi * xi + d0 * a) / den;
	double q = d1 * xi * xi + 2 * s * a + d0 * om * om;
	r.y0 = gg;
	double fracB = gg * h, hB = gg * frac;
	double denB = -fracB * frac / den - 2 * gl / den;
	double numB = fracB / den;
	double sB = 2 * gl / s, qB = gl / q;
	double aB = 0, xiB = 0, d0B = 0, d1B = 0, wB = 0;
	d1B += qB * xi * xi;
	xiB += qB * (2 * d1 * xi - 2 * d0 * om);
	sB += qB * 2 * a;
	aB += qB * 2 * s;
	d0B += qB * om * om;
	sB += numB * xi * xi;
	xiB += numB * s * 2 * xi;
	d0B += numB * a;
	aB += numB * d0;
	sB += denB * (1 - 2 * a);
	d1B += denB * a;
	d0B += denB * a;
	aB += denB * c;
	xiB += aB * (1 - 2 * xi);
	double sBs = sB * s;
	r.d0 = spl_scale_adj(d0B, -m);
	r.d1 = spl_scale_adj(d1B, -m);
	r.x += xiB / w;
	r.x0 -= xiB / w;
	wB -= xiB * xi / w;
	hB += sBs / h;
	wB -= sBs / w;
	r.y1 += hB;
	r.y0 -= hB;
	r.x1 += wB;
	r.x0 -= wB;
	return r;
}

__device__ SplAdj spl_vjp(const SplBin &b, double x, double gg, double gl) {
	SplAdj r = {0, 0, 0, 0, 0, 0, 0};
	if (!(b.w > 0)) {
		r.y0 = gg;
		return r;
	}
	double w = b.w, h = b.h, s = b.s, d0 = b.d0, d1 = b.d1;
	double xi = b.xi(x), om = 1 - xi, a = xi * om, c = d1 + d0 - 2 * s;
	double den = s * (xi * xi + om * om) + (d0 + d1) * a;
	double num = h * (s * xi * xi + d0 * a);
	double q = d1 * xi * xi + 2 * s * a + d0 * om * om;
	if (!b.fast() || !(den > SPL_TINY && q > SPL_TINY)) return spl_vjp_scaled(b, x, gg, gl);
	r.y0 = gg;
	double numB = gg / den;
	double denB = -gg * (num / den) / den - 2 * gl / den;
	double sB = 2 * gl / s, qB = gl / q;
	double aB = 0, xiB = 0, hB = 0, wB = 0;
	r.d1 += qB * xi * xi;
	xiB += qB * (2 * d1 * xi - 2 * d0 * om);
	sB += qB * 2 * a;
	aB += qB * 2 * s;
	r.d0 += qB * om * om;
	hB += numB * (s * xi * xi + d0 * a);
	sB += numB * h * xi * xi;
	xiB += numB * h * s * 2 * xi;
	r.d0 += numB * h * a;
	aB += numB * h * d0;
	sB += denB * (1 - 2 * a);
	r.d1 += denB * a;
	r.d0 += denB * a;
	aB += denB * c;
	xiB += aB * (1 - 2 * xi);
	r.x += xiB / w;
	r.x0 -= xiB / w;
	wB -= xiB * xi / w;
	hB += sB / w;
	wB -= sB * s / w;
	r.y1 += hB;
	r.y0 -= hB;
	r.x1 += wB;
	r.x0 -= wB;
	return r;
}

// The gradient of the raw width, height and derivative inputs of the site
// from the adjoints of bin k's data (nf's splineSite.scatter), rounded to T.
template <class T>
__device__ void spl_scatter(const SplSite &sp, int k, const SplAdj &a, T *graw, long stride, long s) {
	int n = sp.n;
	double dotX = a.x0 * sp.x[k] + a.x1 * sp.x[k + 1];
	double dotY = a.y0 * sp.y[k] + a.y1 * sp.y[k + 1];
	for (int i = 0; i < n; i++) {
		double px = 0, py = 0;
		if (i < k) {
			px = a.x0 + a.x1;
			py = a.y0 + a.y1;
		} else if (i == k) {
			px = a.x1;
			py = a.y1;
		}
		graw[i * stride + s] = (T)(sp.pw[i] * (TWO_PI * px - dotX));
		graw[(n + i) * stride + s] = (T)(sp.ph[i] * (TWO_PI * py - dotY));
		graw[(2 * n + i) * stride + s] = 0;
	}
	int j0 = k == 0 ? n - 1 : k - 1;
	if (j0 == k) {
		graw[(2 * n + k) * stride + s] = (T)((a.d0 + a.d1) * spl_sigmoid(sp.r[k + 1]));
		return;
	}
	graw[(2 * n + j0) * stride + s] = (T)(a.d0 * spl_sigmoid(sp.r[j0 + 1]));
	graw[(2 * n + k) * stride + s] = (T)(a.d1 * spl_sigmoid(sp.r[k + 1]));
}

// spl_thread gives the calling thread its active site: the column si of
// the compact layout, the configuration b and the site x; false for the
// threads beyond the M = B·nA sites.
__device__ __forceinline__ bool spl_thread(long &si, long &b, int &x, const int *__restrict__ active, int nA, long M) {
	si = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (si >= M) return false;
	b = si / nA;
	x = active[si - b * nA];
	return true;
}

// Forward coupling (couplingForwardRange): P' = (g(P) + t) mod 2π at the
// active sites, the links updated by ±(P' − P), logd[si] = log g'(P).
template <class T>
__device__ void coupling_fwd(T *links, double *logd, const T *__restrict__ raw, const T *__restrict__ P, const int *__restrict__ active,
		int n, int nA, int V, int mu, int B) {
	long si, b, M = (long)B * nA;
	int x;
	if (!spl_thread(si, b, x, active, nA, M)) return;
	SplSite sp;
	spl_load(sp, raw, M, si, n);
	T p = P[b * V + x];
	int k = spl_search(sp.x, n, (double)p);
	SplBin bin = spl_bin(sp, k);
	double g64, ld;
	bin.eval((double)p, g64, ld);
	T g = (T)g64;
	T pp = mod2pi<T>(g + raw[3 * n * M + si]);
	T sgn = mu == 0 ? (T)1 : (T)-1;
	T *l = links + b * 2 * V + (long)mu * V;
	l[x] = mod2pi<T>(l[x] + sgn * (pp - p));
	logd[si] = ld;
}

// Reverse coupling (couplingReverseRange): P = g⁻¹((P' − t) mod 2π), the
// links updated by ∓(P' − P), P written over P' at the active sites,
// logd[si] = −log g'(P).
template <class T>
__device__ void coupling_rev(T *links, double *logd, T *P, const T *__restrict__ raw, const int *__restrict__ active,
		int n, int nA, int V, int mu, int B) {
	long si, b, M = (long)B * nA;
	int x;
	if (!spl_thread(si, b, x, active, nA, M)) return;
	SplSite sp;
	spl_load(sp, raw, M, si, n);
	T pp = P[b * V + x];
	T u = mod2pi<T>(pp - raw[3 * n * M + si]);
	int k = spl_search(sp.y, n, (double)u);
	SplBin bin = spl_bin(sp, k);
	T p = (T)bin.inverse((double)u);
	double g64, ld;
	bin.eval((double)p, g64, ld);
	P[b * V + x] = p;
	T sgn = mu == 0 ? (T)1 : (T)-1;
	T *l = links + b * 2 * V + (long)mu * V;
	l[x] = mod2pi<T>(l[x] - sgn * (pp - p));
	logd[si] = -ld;
}

// logJ[b] += Σ_i logd[b·nA + i]: a block per configuration, each thread
// summing the active sites i ≡ t (mod REDUCE_THREADS) in order, then
// block_sum's tree (the CPU sums in site order: the two agree to the
// rounding of float64).
__device__ void coupling_logj(double *logJ, const double *__restrict__ logd, int nA, int B) {
	long b = blockIdx.x; // a block per configuration
	double s = 0;
	for (int i = threadIdx.x; i < nA; i += REDUCE_THREADS) s += logd[b * nA + i];
	s = block_sum(s);
	if (threadIdx.x == 0) logJ[b] += s;
}

// The spline's backward pass (splineBackwardRange): from the link
// gradient g (read at the updated links) and glogJ (B, or null: zero) the
// gradient of the raw parameters graw ([3n+1][M], every entry written) and
// the direct gradient of the incoming plaquettes pbar at the active sites
// (pbar zero elsewhere: cleared beforehand). P is the spline's argument
// as the tape recorded it. rev selects the reverse layer.
template <class T>
__device__ void spline_bwd(T *graw, T *pbar, const T *__restrict__ g, const double *__restrict__ glogJ, const T *__restrict__ raw,
		const T *__restrict__ P, const int *__restrict__ active, int n, int nA, int V, int mu, int B, int rev) {
	long si, b, M = (long)B * nA;
	int x;
	if (!spl_thread(si, b, x, active, nA, M)) return;
	long s = b * V + x;
	SplSite sp;
	spl_load(sp, raw, M, si, n);
	T p = P[s];
	T gl = glogJ ? (T)glogJ[b] : (T)0;
	T sgn = mu == 0 ? (T)1 : (T)-1;
	T glink = g[b * 2 * V + (long)mu * V + x];
	double xf = (double)p;
	int k = spl_search(sp.x, n, xf);
	SplBin bin = spl_bin(sp, k);
	if (!rev) {
		T gd = sgn * glink;
		SplAdj a = spl_vjp(bin, xf, (double)gd, (double)gl);
		spl_scatter(sp, k, a, graw, M, si);
		T gx = (T)a.x;
		graw[3 * n * M + si] = gd;
		pbar[s] = gx - gd;
	} else {
		T gd = -sgn * glink;
		double g64, ld;
		bin.eval(xf, g64, ld);
		double xt = (double)(-gd) - (double)gl * bin.dlogdx(xf);
		double gu64 = xt * exp(-ld);
		SplAdj a = spl_vjp(bin, xf, -gu64, -(double)gl);
		spl_scatter(sp, k, a, graw, M, si);
		T gu = (T)gu64;
		graw[3 * n * M + si] = -gu;
		pbar[s] = gd + gu;
	}
}

extern "C" __global__ void coupling_fwd_f32(float *links, double *logd, const float *__restrict__ raw, const float *__restrict__ P, const int *__restrict__ active, int n, int nA, int V, int mu, int B) { coupling_fwd(links, logd, raw, P, active, n, nA, V, mu, B); }
extern "C" __global__ void coupling_fwd_f64(double *links, double *logd, const double *__restrict__ raw, const double *__restrict__ P, const int *__restrict__ active, int n, int nA, int V, int mu, int B) { coupling_fwd(links, logd, raw, P, active, n, nA, V, mu, B); }
extern "C" __global__ void coupling_rev_f32(float *links, double *logd, float *P, const float *__restrict__ raw, const int *__restrict__ active, int n, int nA, int V, int mu, int B) { coupling_rev(links, logd, P, raw, active, n, nA, V, mu, B); }
extern "C" __global__ void coupling_rev_f64(double *links, double *logd, double *P, const double *__restrict__ raw, const int *__restrict__ active, int n, int nA, int V, int mu, int B) { coupling_rev(links, logd, P, raw, active, n, nA, V, mu, B); }
extern "C" __global__ void coupling_logj_k(double *logJ, const double *__restrict__ logd, int nA, int B) { coupling_logj(logJ, logd, nA, B); }
extern "C" __global__ void spline_bwd_f32(float *graw, float *pbar, const float *__restrict__ g, const double *__restrict__ glogJ, const float *__restrict__ raw, const float *__restrict__ P, const int *__restrict__ active, int n, int nA, int V, int mu, int B, int rev) { spline_bwd(graw, pbar, g, glogJ, raw, P, active, n, nA, V, mu, B, rev); }
extern "C" __global__ void spline_bwd_f64(double *graw, double *pbar, const double *__restrict__ g, const double *__restrict__ glogJ, const double *__restrict__ raw, const double *__restrict__ P, const int *__restrict__ active, int n, int nA, int V, int mu, int B, int rev) { spline_bwd(graw, pbar, g, glogJ, raw, P, active, n, nA, V, mu, B, rev); }
