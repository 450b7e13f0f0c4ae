// What several kernel sources of the package share, compiled in front of
// each of them (prelude: NewKernels, Kernels.Spline, NewLogDet).

#define TWO_PI 6.283185307179586

// mod2pi reduces an angle into [0, 2π) as lgt.Mod2Pi: in float64, rounded
// to T, a negative remainder shifted up and a rounding up to 2π sent to 0.
template <class T>
__device__ __forceinline__ T mod2pi(T a) {
	T r = (T)fmod((double)a, TWO_PI);
	if (r < 0) r += (T)TWO_PI;
	if (r >= (T)TWO_PI) r = 0;
	return r;
}

// block_sum returns, in every thread of the block, the sum of the block's
// values v (one a thread; REDUCE_THREADS threads, set by the package, a
// power of two) by a fixed tree in shared memory: the same additions in the
// same order on every run, hence the same result. Every thread of the
// block must call it (no thread may have returned).
__device__ double block_sum(double v) {
	__shared__ double sh[REDUCE_THREADS];
	unsigned t = threadIdx.x;
	sh[t] = v;
	__syncthreads();
	for (unsigned s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
		if (t < s) sh[t] += sh[t + s];
		__syncthreads();
	}
	return sh[0];
}
