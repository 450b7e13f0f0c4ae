// The conditioner's circular convolution on the device (nf/gpu): im2col,
// its adjoint, the bias and its gradient, in float32 and float64. Layouts
// are nf's: activations channel-major [C][N], N = B·L·L, row-major; the
// im2col matrix [Cin·K·K][N], row (ci·K + ki)·K + kj.

// wrap brings a coordinate moved by at most L in either direction back
// into [0, L) by a conditional add (|(k − K/2)·dil| < L for every tap).
__device__ __forceinline__ int wrap(int a, int L) { return a < 0 ? a + L : (a >= L ? a - L : a); }

// bf16_round rounds x to bfloat16 (the upper 16 bits of a float32),
// to nearest even, a NaN kept quiet: the operands of the bf16 products.
__device__ __forceinline__ unsigned short bf16_round(float x) {
	unsigned u = __float_as_uint(x);
	return (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u) : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float store_as(float x, float *) { return x; }
__device__ __forceinline__ double store_as(double x, double *) { return x; }
__device__ __forceinline__ unsigned short store_as(float x, unsigned short *) { return bf16_round(x); }

// im2col: one thread per site n of the B·L·L and tap t = blockIdx.y, which
// finds its source site once (four 32-bit divisions or remainders: the
// configuration, the row, the tap's row and column) and then copies it for
// every input channel: col[(ci·KK + t)·N + n] =
// in[ci·N + src], in O (T, or bf16 for the bf16 products: the rounding
// done on the way, with no float32 copy to convert). Adjacent threads
// write adjacent elements.
template <class T, class O>
__device__ void im2col(O *col, const T *__restrict__ in, int cin, int K, int dil, int L, int N) {
	int n = blockIdx.x * blockDim.x + threadIdx.x;
	if (n >= N) return;
	int t = blockIdx.y, KK = K * K, h = K / 2, V = L * L;
	int b = n / V, x = n - b * V, i = x / L, j = x - i * L;
	int src = b * V + wrap(i + (t / K - h) * dil, L) * L + wrap(j + (t % K - h) * dil, L);
	for (int ci = 0; ci < cin; ci++)
		col[((long)ci * KK + t) * N + n] = store_as(in[(long)ci * N + src], col);
}

// col2im, the adjoint of im2col: gin[ci][s] = Σ over the taps t (in order)
// of col[(ci, t)][n] for the n whose tap t reads s. One thread per input
// site s, which finds the K·K sites n once per channel by conditional adds
// and loops over the channels (no atomics, no division per element).
template <class T>
__device__ void col2im(T *gin, const T *__restrict__ col, int cin, int K, int dil, int L, int N) {
	int s = blockIdx.x * blockDim.x + threadIdx.x;
	if (s >= N) return;
	int KK = K * K, h = K / 2, V = L * L;
	int b = s / V, x = s - b * V, si = x / L, sj = x - si * L;
	for (int ci = 0; ci < cin; ci++) {
		T acc = 0;
		const T *c = col + (long)ci * KK * N + (long)b * V;
		for (int ki = 0; ki < K; ki++) {
			int row = wrap(si - (ki - h) * dil, L) * L;
			for (int kj = 0; kj < K; kj++)
				acc += c[(long)(ki * K + kj) * N + row + wrap(sj - (kj - h) * dil, L)];
		}
		gin[(long)ci * N + s] = acc;
	}
}

template <class T>
__device__ void fill_bias(T *out, const T *__restrict__ bias, int cout, long N) {
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (idx < cout * N) out[idx] = bias[idx / N];
}

// gb[co] += Σ_n gout[co][n] in two kernels (the same order on every run,
// float64 sums): bias_grad_part has one thread per channel co and residue
// t < parts summing gout[co][n] over n ≡ t (mod parts) — adjacent threads
// read adjacent elements —, and bias_grad_sum one block per channel adding
// its parts partial sums, strided over the threads, by block_sum's tree.

template <class T>
__device__ void bias_grad_part(double *part, const T *__restrict__ gout, int cout, long N, int parts) {
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (long)cout * parts) return;
	long co = i / parts, t = i % parts;
	const T *g = gout + co * N;
	double s = 0;
	for (long n = t; n < N; n += parts) s += g[n];
	part[i] = s;
}

template <class T>
__device__ void bias_grad_sum(T *gb, const double *__restrict__ part, int cout, int parts) {
	long co = blockIdx.x;
	double s = 0;
	for (int t = threadIdx.x; t < parts; t += REDUCE_THREADS) s += part[co * parts + t];
	s = block_sum(s);
	if (threadIdx.x == 0) gb[co] += (T)s;
}

extern "C" __global__ void im2col_f32(float *col, const float *__restrict__ in, int cin, int K, int dil, int L, int N) { im2col(col, in, cin, K, dil, L, N); }
extern "C" __global__ void im2col_f64(double *col, const double *__restrict__ in, int cin, int K, int dil, int L, int N) { im2col(col, in, cin, K, dil, L, N); }
extern "C" __global__ void im2col_bf16(unsigned short *col, const float *__restrict__ in, int cin, int K, int dil, int L, int N) { im2col(col, in, cin, K, dil, L, N); }
extern "C" __global__ void col2im_f32(float *gin, const float *__restrict__ col, int cin, int K, int dil, int L, int N) { col2im(gin, col, cin, K, dil, L, N); }
extern "C" __global__ void col2im_f64(double *gin, const double *__restrict__ col, int cin, int K, int dil, int L, int N) { col2im(gin, col, cin, K, dil, L, N); }
extern "C" __global__ void fill_bias_f32(float *out, const float *__restrict__ bias, int cout, long N) { fill_bias(out, bias, cout, N); }
extern "C" __global__ void fill_bias_f64(double *out, const double *__restrict__ bias, int cout, long N) { fill_bias(out, bias, cout, N); }
extern "C" __global__ void bias_grad_part_f32(double *part, const float *__restrict__ gout, int cout, long N, int parts) { bias_grad_part(part, gout, cout, N, parts); }
extern "C" __global__ void bias_grad_part_f64(double *part, const double *__restrict__ gout, int cout, long N, int parts) { bias_grad_part(part, gout, cout, N, parts); }
extern "C" __global__ void bias_grad_sum_f32(float *gb, const double *__restrict__ part, int cout, int parts) { bias_grad_sum(gb, part, cout, parts); }
extern "C" __global__ void bias_grad_sum_f64(double *gb, const double *__restrict__ part, int cout, int parts) { bias_grad_sum(gb, part, cout, parts); }

// LeakyReLU in place, and its backward pass from the output y (slope > 0:
// y has the sign of the input), as nf.LeakyReLU and nf.LeakyReLUBackward.
template <class T>
__device__ void leaky_relu(T *x, T slope, long n) {
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n && !(x[i] > 0)) x[i] *= slope;
}

template <class T>
__device__ void leaky_relu_bwd(T *g, const T *__restrict__ y, T slope, long n) {
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n && !(y[i] > 0)) g[i] *= slope;
}

extern "C" __global__ void leaky_relu_f32(float *x, float slope, long n) { leaky_relu(x, slope, n); }
extern "C" __global__ void leaky_relu_f64(double *x, double slope, long n) { leaky_relu(x, slope, n); }
extern "C" __global__ void leaky_relu_bwd_f32(float *g, const float *__restrict__ y, float slope, long n) { leaky_relu_bwd(g, y, slope, n); }
extern "C" __global__ void leaky_relu_bwd_f64(double *g, const double *__restrict__ y, double slope, long n) { leaky_relu_bwd(g, y, slope, n); }

// The last convolution at a subset of the sites (nf.Conv2D.ForwardSites):
// taps[t·nS + i] is the source site (in one configuration) of tap t for
// output site i; inv[t·V + s] the output site whose tap t reads s, or −1.
// col is [Cin·K·K][M], M = B·nS, column b·nS + i.
template <class T>
__device__ void gather_sites(T *col, const T *__restrict__ in, const int *__restrict__ taps, int cin, int KK, int nS, int V, int B) {
	int m = blockIdx.x * blockDim.x + threadIdx.x, M = B * nS;
	if (m >= M) return;
	int t = blockIdx.y, b = m / nS, i = m - b * nS;
	long src = (long)b * V + taps[t * nS + i], N = (long)B * V;
	for (int ci = 0; ci < cin; ci++)
		col[((long)ci * KK + t) * M + m] = in[ci * N + src];
}

// The adjoint: gin[ci][b·V + s] = Σ_t (in order) col[(ci, t)][b·nS +
// inv[t·V + s]], one thread per input site looping over the channels (no
// atomics, no division per element).
template <class T>
__device__ void scatter_sites(T *gin, const T *__restrict__ col, const int *__restrict__ inv, int cin, int KK, int nS, int V, int B) {
	int n = blockIdx.x * blockDim.x + threadIdx.x, N = B * V;
	if (n >= N) return;
	int b = n / V, s = n - b * V;
	long M = (long)B * nS, base = (long)b * nS;
	for (int ci = 0; ci < cin; ci++) {
		T acc = 0;
		for (int t = 0; t < KK; t++) {
			int i = inv[t * V + s];
			if (i >= 0) acc += col[((long)ci * KK + t) * M + base + i];
		}
		gin[(long)ci * N + n] = acc;
	}
}

extern "C" __global__ void gather_sites_f32(float *col, const float *__restrict__ in, const int *__restrict__ taps, int cin, int KK, int nS, int V, int B) { gather_sites(col, in, taps, cin, KK, nS, V, B); }
extern "C" __global__ void gather_sites_f64(double *col, const double *__restrict__ in, const int *__restrict__ taps, int cin, int KK, int nS, int V, int B) { gather_sites(col, in, taps, cin, KK, nS, V, B); }
extern "C" __global__ void scatter_sites_f32(float *gin, const float *__restrict__ col, const int *__restrict__ inv, int cin, int KK, int nS, int V, int B) { scatter_sites(gin, col, inv, cin, KK, nS, V, B); }
extern "C" __global__ void scatter_sites_f64(double *gin, const double *__restrict__ col, const int *__restrict__ inv, int cin, int KK, int nS, int V, int B) { scatter_sites(gin, col, inv, cin, KK, nS, V, B); }

// float32 → bfloat16 (upper 16 bits), round to nearest even, NaN quiet:
// the operands of the bf16 products (conv_precision = "bf16").
extern "C" __global__ void to_bf16(unsigned short *out, const float *__restrict__ in, long n) {
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) out[i] = bf16_round(in[i]);
}

// p[i] = 0 for i < n.
template <class T>
__device__ void fill_zero(T *p, long n) {
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) p[i] = 0;
}

extern "C" __global__ void fill_zero_f32(float *p, long n) { fill_zero(p, n); }
extern "C" __global__ void fill_zero_f64(double *p, long n) { fill_zero(p, n); }

// The device-resident target (gpu.Links, gpu.Force): the flow's output
// links widened to float64 for the log det, out[i] = in[i] for i < n.
template <class T>
__device__ void widen(double *out, const T *__restrict__ in, long n) {
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) out[i] = (double)in[i];
}

// The upstream link gradient of a backward pass from the force:
// g[i] = T((g[i] + force[i])·scale) with add, else T(force[i]·scale), for
// i < n, in float64 and rounded once, as the host's Trainer forms it.
template <class T>
__device__ void upstream(T *g, const double *__restrict__ force, double scale, int add, long n) {
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n) return;
	double v = force[i];
	if (add) v = (double)g[i] + v;
	g[i] = (T)(v * scale);
}

extern "C" __global__ void widen_f32(double *out, const float *__restrict__ in, long n) { widen(out, in, n); }
extern "C" __global__ void widen_f64(double *out, const double *__restrict__ in, long n) { widen(out, in, n); }
extern "C" __global__ void upstream_f32(float *g, const double *__restrict__ force, double scale, int add, long n) { upstream(g, force, scale, add, n); }
extern "C" __global__ void upstream_f64(double *g, const double *__restrict__ force, double scale, int add, long n) { upstream(g, force, scale, add, n); }
