// The emulator's prelude: what CUDA C kernels use, on the CPU (internal/cuda).
// Blocks run one after the other on the calling thread. A block's threads
// run as one loop, or, for kernels that call __syncthreads, as fibers
// (ucontext) on the calling thread: each runs until its next
// __syncthreads (or its end) and hands over to the next, so that a round
// over the fibers is the barrier. __shared__ variables are static: shared
// by the threads of the block that is running.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ucontext.h>
#include <vector>

struct dim3 {
	unsigned x, y, z;
};

namespace nfemu {
inline thread_local dim3 tIdx, bIdx;
inline dim3 bDim, gDim;

// A fiber: one CUDA thread of a block of a kernel that synchronizes.
struct fiber {
	ucontext_t ctx;
	std::vector<char> stack;
	bool done;
};
inline ucontext_t sched;            // the launch's own context
inline std::vector<fiber> fibers;   // of the running block
inline unsigned cur;                // the fiber running
inline bool inFiber = false;        // __syncthreads is legal
inline void (*fiberBody)(void *);   // the kernel's body, and
inline void *fiberArg;              // its closure
constexpr size_t fiberStack = 1 << 18;

inline void fiberMain() {
	fiberBody(fiberArg);
	fibers[cur].done = true; // returns to sched (uc_link)
}

template <bool Sync, class F>
void run(dim3 g, dim3 b, F body) {
	gDim = g;
	bDim = b;
	unsigned nt = b.x * b.y * b.z;
	auto setThread = [&](unsigned t) { tIdx = dim3{t % b.x, (t / b.x) % b.y, t / (b.x * b.y)}; };
	if constexpr (!Sync) {
		for (unsigned bz = 0; bz < g.z; bz++)
			for (unsigned by = 0; by < g.y; by++)
				for (unsigned bx = 0; bx < g.x; bx++) {
					bIdx = dim3{bx, by, bz};
					for (unsigned t = 0; t < nt; t++) {
						setThread(t);
						body();
					}
				}
	} else {
		fibers.resize(nt);
		for (auto &f : fibers)
			if (f.stack.size() < fiberStack) f.stack.resize(fiberStack);
		fiberBody = [](void *p) { (*(F *)p)(); };
		fiberArg = &body;
		inFiber = true;
		for (unsigned bz = 0; bz < g.z; bz++)
			for (unsigned by = 0; by < g.y; by++)
				for (unsigned bx = 0; bx < g.x; bx++) {
					bIdx = dim3{bx, by, bz};
					for (unsigned t = 0; t < nt; t++) {
						fiber &f = fibers[t];
						getcontext(&f.ctx);
						f.ctx.uc_stack.ss_sp = f.stack.data();
						f.ctx.uc_stack.ss_size = f.stack.size();
						f.ctx.uc_link = &sched;
						makecontext(&f.ctx, fiberMain, 0);
						f.done = false;
					}
					// Rounds until every fiber has ended: each round takes
					// every fiber from one __syncthreads to the next.
					for (bool more = true; more;) {
						more = false;
						for (unsigned t = 0; t < nt; t++) {
							if (fibers[t].done) continue;
							cur = t;
							setThread(t);
							swapcontext(&sched, &fibers[t].ctx);
							more = more || !fibers[t].done;
						}
					}
				}
		inFiber = false;
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
	if (!nfemu::inFiber) __builtin_trap(); // a kernel the emulator did not see calling it (internal/cuda)
	swapcontext(&nfemu::fibers[nfemu::cur].ctx, &nfemu::sched);
}

inline unsigned __float_as_uint(float f) {
	unsigned u;
	std::memcpy(&u, &f, 4);
	return u;
}

template <class T>
inline T atomicAdd(T *p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
