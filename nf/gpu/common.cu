// What several kernel sources of the package share, compiled in front of
// each of them (NewKernels, Kernels.Spline).

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
