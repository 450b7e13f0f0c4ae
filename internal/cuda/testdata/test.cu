// Kernels of the cuda package's tests: elementwise, a shared-memory tree
// reduction with __syncthreads, 3D grids and blocks, atomics.

extern "C" __global__ void axpy(float *y, const float *__restrict__ x, float a, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) y[i] += a * x[i];
}

// One block per row; blockDim.x a power of two, at most 128.
extern "C" __global__ void row_sums(double *out, const double *__restrict__ in, int cols) {
	__shared__ double part[128];
	unsigned t = threadIdx.x;
	double s = 0;
	for (int j = t; j < cols; j += blockDim.x) s += in[(long)blockIdx.x * cols + j];
	part[t] = s;
	__syncthreads();
	for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
		if (t < h) part[t] += part[t + h];
		__syncthreads();
	}
	if (t == 0) out[blockIdx.x] = part[0];
}

// Every thread writes its coordinates at its linear index.
extern "C" __global__ void coords(int *out, long stride) {
	unsigned b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
	unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
	long i = (long)b * blockDim.x * blockDim.y * blockDim.z + t;
	int *o = out + i * stride;
	o[0] = blockIdx.x; o[1] = blockIdx.y; o[2] = blockIdx.z;
	o[3] = threadIdx.x; o[4] = threadIdx.y; o[5] = threadIdx.z;
}

extern "C" __global__ void atomic_sum(double *sum, const double *__restrict__ x, unsigned n) {
	unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) atomicAdd(sum, x[i]);
}

// float32 → bfloat16, round to nearest even, NaN kept quiet.
extern "C" __global__ void to_bf16(unsigned short *out, const float *__restrict__ in, unsigned n) {
	unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n) return;
	unsigned u = __float_as_uint(in[i]);
	out[i] = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u) : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
