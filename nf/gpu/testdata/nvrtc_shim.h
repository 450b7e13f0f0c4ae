// What NVRTC provides without includes, declared for clang's CUDA front
// end run with -nocudainc (TestKernelsCompileAsCUDA): the execution-space
// attributes, the built-in index variables, and the device functions the
// kernels call. A kernel that calls anything else — a host function, a
// name NVRTC does not know — fails that test.
#define __device__ __attribute__((device))
#define __global__ __attribute__((global))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __forceinline__ __inline__ __attribute__((always_inline))
#include <__clang_cuda_builtin_vars.h>
extern "C" {
__device__ double exp(double);
__device__ double log(double);
__device__ double log1p(double);
__device__ double fmax(double, double);
__device__ double fmin(double, double);
__device__ double fabs(double);
__device__ double sqrt(double);
__device__ double frexp(double, int *);
__device__ double ldexp(double, int);
__device__ double copysign(double, double);
__device__ double fmod(double, double);
__device__ double cos(double);
__device__ double sin(double);
__device__ void __syncthreads();
__device__ unsigned __float_as_uint(float);
__device__ double hypot(double, double);
__device__ double nan(const char *);
}
