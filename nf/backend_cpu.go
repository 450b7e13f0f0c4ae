package nf

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/netlib/blas/netlib"

	"nfschwinger/lgt"
)

// Threading on the CPU. OpenBLAS's own threads and Go's goroutines would
// fight over the same cores: OpenBLAS workers spin-wait for a while after
// each product, stealing the cores from the goroutines that run im2col and
// the elementwise kernels next, and a product called from two goroutines at
// once runs 2×threads threads. So the CPU backend keeps OpenBLAS
// single-threaded (openblas_set_num_threads(1) when it is created) and
// parallelizes everything itself: Gemm splits the larger of the m and n
// dimensions of C into one block per worker and runs the sequential OpenBLAS
// kernel on each block in its own goroutine, and the convolutions run
// im2col and sequential products tile by tile inside each worker (Conv2D).
// On the 2-core development machine the split product is as fast as one
// 2-thread OpenBLAS call within the noise of the shared machine (about
// 150–200 GFLOP/s both, BenchmarkSgemm in conv_bench_test.go), and the fused
// tiles are what makes the convolutions reach that speed.

// minSplitFlops is the smallest product (2·m·n·k flops) worth splitting over
// workers: below it, waking a worker (a few µs) costs more than it saves.
const minSplitFlops = 1 << 20

// splitAlign aligns the split points of Gemm (in elements), so that every
// block of C starts on a 64-byte boundary when C does.
const splitAlign = 16

var (
	cpuMu       sync.Mutex
	cpuBackends = map[int]*cpuBackend{}
)

// CPU returns the CPU backend with the given number of workers (≤ 0: one per
// core, runtime.GOMAXPROCS(0)). Products go to OpenBLAS through gonum's
// netlib binding, single-threaded, with the parallelism in Go (see above).
// Backends are shared: CPU(w) returns the same one for the same w, and its
// worker goroutines live as long as the process. Every call sets OpenBLAS
// to one thread, process-wide: create the backend after anything else that
// sizes OpenBLAS's threads (a threaded OpenBLAS called from several workers
// at once would oversubscribe the cores).
func CPU(workers int) Backend {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	cpuMu.Lock()
	defer cpuMu.Unlock()
	lgt.SetBLASThreads(1) // the rule of internal/threads, also without it (tests)
	if be, ok := cpuBackends[workers]; ok {
		return be
	}
	be := &cpuBackend{workers: workers, tasks: make(chan task, 4*workers)}
	be.jobs.New = func() any {
		j := &job{done: make(chan struct{}, 1)}
		j.run = j.runRange
		return j
	}
	for range workers - 1 {
		go be.serve()
	}
	cpuBackends[workers] = be
	return be
}

// cpuBackend is the CPU implementation of Backend: a pool of workers−1
// goroutines plus the calling goroutine.
type cpuBackend struct {
	workers int
	tasks   chan task // chunks waiting for a worker
	jobs    sync.Pool // *job, reused so that calls do not allocate
}

// task is one chunk [lo, hi) of a job.
type task struct {
	j      *job
	lo, hi int
}

// jobKind says what a job computes on each chunk.
type jobKind int

const (
	jobFn     jobKind = iota // call fn(lo, hi)
	jobGemm32                // a block of a float32 product
	jobGemm64                // a block of a float64 product
)

// gemmArgs are the arguments of a product split by rows (splitM) or columns
// of C.
type gemmArgs[T float32 | float64] struct {
	tA, tB      bool
	m, n, k     int
	alpha, beta T
	a, b, c     []T
	lda, ldb    int
	ldc         int
	splitM      bool
}

// job is one ParallelFor or split Gemm call; pending counts its unfinished
// chunks.
type job struct {
	kind    jobKind
	fn      func(lo, hi int)
	g32     gemmArgs[float32]
	g64     gemmArgs[float64]
	run     func(lo, hi int) // j.runRange, bound once
	pending atomic.Int64
	done    chan struct{} // receives once when pending reaches 0
}

// finish runs chunk [lo, hi) and signals done after the last chunk.
func (j *job) finish(lo, hi int) {
	j.run(lo, hi)
	if j.pending.Add(-1) == 0 {
		j.done <- struct{}{}
	}
}

func (j *job) runRange(lo, hi int) {
	switch j.kind {
	case jobFn:
		j.fn(lo, hi)
	case jobGemm32:
		gemmBlock(netlib.Implementation{}.Sgemm, &j.g32, lo, hi)
	case jobGemm64:
		gemmBlock(netlib.Implementation{}.Dgemm, &j.g64, lo, hi)
	}
}

// gemmBlock computes rows (splitM) or columns [lo, hi) of C.
func gemmBlock[T float32 | float64](f func(tA, tB blas.Transpose, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int), g *gemmArgs[T], lo, hi int) {
	if hi <= lo {
		return
	}
	a, b, c := g.a, g.b, g.c
	m, n := g.m, g.n
	if g.splitM {
		m = hi - lo
		if g.tA {
			a = a[lo:]
		} else {
			a = a[lo*g.lda:]
		}
		c = c[lo*g.ldc:]
	} else {
		n = hi - lo
		if g.tB {
			b = b[lo*g.ldb:]
		} else {
			b = b[lo:]
		}
		c = c[lo:]
	}
	f(trans(g.tA), trans(g.tB), m, n, g.k, g.alpha, a, g.lda, b, g.ldb, g.beta, c, g.ldc)
}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// serve runs chunks until the process ends.
func (be *cpuBackend) serve() {
	for t := range be.tasks {
		t.j.finish(t.lo, t.hi)
	}
}

// Workers implements Backend.
func (be *cpuBackend) Workers() int { return be.workers }

// Name implements Backend.
func (be *cpuBackend) Name() string {
	return fmt.Sprintf("cpu (%d workers, OpenBLAS %d thread(s))", be.workers, lgt.BLASThreads())
}

// ParallelFor implements Backend.
func (be *cpuBackend) ParallelFor(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if be.workers == 1 || n == 1 {
		fn(0, n)
		return
	}
	j := be.jobs.Get().(*job)
	j.kind, j.fn = jobFn, fn
	be.execute(j, n, 1)
	j.fn = nil
	be.jobs.Put(j)
}

// execute runs j over [0, n) in at most be.workers chunks whose inner bounds
// are multiples of align. The caller runs the first chunk, then runs
// whatever is still queued (so that progress never depends on a busy
// worker), and then blocks until the chunks taken by workers are done: once
// the queue is empty every chunk of j is running or finished.
func (be *cpuBackend) execute(j *job, n, align int) {
	chunks := min(be.workers, (n+align-1)/align)
	bounds := func(c int) int {
		if c == chunks {
			return n
		}
		return min(n, (c*n/chunks+align/2)/align*align)
	}
	j.pending.Store(int64(chunks))
	for c := 1; c < chunks; c++ {
		be.tasks <- task{j: j, lo: bounds(c), hi: bounds(c + 1)}
	}
	j.finish(0, bounds(1))
	for j.pending.Load() > 0 {
		select {
		case t := <-be.tasks:
			t.j.finish(t.lo, t.hi)
			continue
		default:
		}
		break
	}
	<-j.done
}

// Gemm32 implements Backend.
func (be *cpuBackend) Gemm32(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if be.workers == 1 || 2*float64(m)*float64(n)*float64(k) < minSplitFlops {
		netlib.Implementation{}.Sgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	j := be.jobs.Get().(*job)
	j.kind = jobGemm32
	j.g32 = gemmArgs[float32]{tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta, a: a, b: b, c: c, lda: lda, ldb: ldb, ldc: ldc, splitM: m > n}
	be.execute(j, max(m, n), splitAlign)
	j.g32 = gemmArgs[float32]{}
	be.jobs.Put(j)
}

// Gemm64 implements Backend.
func (be *cpuBackend) Gemm64(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if be.workers == 1 || 2*float64(m)*float64(n)*float64(k) < minSplitFlops {
		netlib.Implementation{}.Dgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	j := be.jobs.Get().(*job)
	j.kind = jobGemm64
	j.g64 = gemmArgs[float64]{tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta, a: a, b: b, c: c, lda: lda, ldb: ldb, ldc: ldc, splitM: m > n}
	be.execute(j, max(m, n), splitAlign)
	j.g64 = gemmArgs[float64]{}
	be.jobs.Put(j)
}

// sgemmSeq implements seqGemmer: one sequential OpenBLAS call.
func (be *cpuBackend) sgemmSeq(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	netlib.Implementation{}.Sgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// dgemmSeq implements seqGemmer: one sequential OpenBLAS call.
func (be *cpuBackend) dgemmSeq(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	netlib.Implementation{}.Dgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
