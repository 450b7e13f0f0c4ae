// The emulator's prelude: what CUDA C kernels use, on the CPU (internal/cuda).
// Blocks run one after the other; a block's threads run as one loop on the
// calling thread, or, for kernels that call __syncthreads, on one OS thread
// each (for the whole launch) meeting at a barrier. __shared__ variables are static: shared by
// the threads of the block that is running.
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

struct dim3 {
	unsigned x, y, z;
};

namespace nfemu {
inline thread_local dim3 tIdx, bIdx;
inline dim3 bDim, gDim;
inline std::barrier<> *bar = nullptr;

template <bool Sync, class F>
void run(dim3 g, dim3 b, F body) {
	gDim = g;
	bDim = b;
	unsigned nt = b.x * b.y * b.z;
	auto at = [&](unsigned bx, unsigned by, unsigned bz, unsigned t) {
		bIdx = dim3{bx, by, bz};
		tIdx = dim3{t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
		body();
	};
	if constexpr (!Sync) {
		for (unsigned bz = 0; bz < g.z; bz++)
			for (unsigned by = 0; by < g.y; by++)
				for (unsigned bx = 0; bx < g.x; bx++)
					for (unsigned t = 0; t < nt; t++) at(bx, by, bz, t);
	} else {
		// One OS thread per thread of a block, for the whole launch: each
		// runs its thread of every block in turn, and all meet at the
		// barrier after each block (its __shared__ variables are static).
		std::barrier<> br(nt);
		bar = &br;
		auto worker = [&](unsigned t) {
			for (unsigned bz = 0; bz < g.z; bz++)
				for (unsigned by = 0; by < g.y; by++)
					for (unsigned bx = 0; bx < g.x; bx++) {
						at(bx, by, bz, t);
						br.arrive_and_wait();
					}
		};
		std::vector<std::thread> ts;
		ts.reserve(nt);
		for (unsigned t = 0; t < nt; t++) ts.emplace_back(worker, t);
		for (auto &th : ts) th.join();
		bar = nullptr;
	}
}
} // namespace nfemu

#define threadIdx (nfemu::tIdx)
#define blockIdx (nfemu::bIdx)
#define blockDim (nfemu::bDim)
#define gridDim (nfemu::gDim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

inline void __syncthreads() {
	if (!nfemu::bar) __builtin_trap(); // a kernel the emulator did not see calling it (internal/cuda)
	nfemu::bar->arrive_and_wait();
}

inline unsigned __float_as_uint(float f) {
	unsigned u;
	std::memcpy(&u, &f, 4);
	return u;
}

template <class T>
inline T atomicAdd(T *p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
