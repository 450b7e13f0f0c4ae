//go:build !nompi

package comm

/*
#cgo LDFLAGS: -lmpi
#include <mpi.h>

static MPI_Comm nfs_local = MPI_COMM_NULL;

// nfs_init initialises MPI with MPI_THREAD_SERIALIZED (or accepts an
// earlier initialisation) and reports the thread level provided.
static int nfs_init(int *provided) {
	int done = 0;
	MPI_Initialized(&done);
	if (done) {
		return MPI_Query_thread(provided);
	}
	return MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
}

// nfs_local_split builds the node-local communicator and returns this
// process's rank and the size in it.
static int nfs_local_split(int *rank, int *size) {
	int err = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &nfs_local);
	if (err != MPI_SUCCESS) return err;
	MPI_Comm_rank(nfs_local, rank);
	return MPI_Comm_size(nfs_local, size);
}

// The buffers are typed (double*, float*, char*), not void*: cgo checks a
// void* argument against the whole Go object it points into, which fails
// for small buffers inside structs that also hold pointers; a pointer to
// pointer-free elements needs no check.

// nfs_allreduce_d reduces n doubles in place over MPI_COMM_WORLD: max when
// max is non-zero, else sum.
static int nfs_allreduce_d(double *buf, int n, int max) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, max ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD);
}

// nfs_allreduce_f sums n floats in place over MPI_COMM_WORLD.
static int nfs_allreduce_f(float *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static int nfs_bcast_d(double *buf, int n, int root) {
	return MPI_Bcast(buf, n, MPI_DOUBLE, root, MPI_COMM_WORLD);
}

static int nfs_bcast_f(float *buf, int n, int root) {
	return MPI_Bcast(buf, n, MPI_FLOAT, root, MPI_COMM_WORLD);
}

static int nfs_bcast_bytes(char *buf, int n, int root) {
	return MPI_Bcast(buf, n, MPI_BYTE, root, MPI_COMM_WORLD);
}

static int nfs_finalize(void) {
	if (nfs_local != MPI_COMM_NULL) MPI_Comm_free(&nfs_local);
	return MPI_Finalize();
}
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	mpi "github.com/sbromberger/gompi"
)

// maxCount is the largest element count passed to one MPI call (MPI counts
// are C ints); longer buffers go in chunks.
const maxCount = 1 << 30

// mpiComm is the MPI communicator over MPI_COMM_WORLD.
type mpiComm struct {
	mu           sync.Mutex // serialises MPI calls (MPI_THREAD_SERIALIZED)
	world        *mpi.Communicator
	rank, size   int
	lrank, lsize int
	closed       bool
}

// initMPI initialises MPI and returns the world communicator.
func initMPI() (*mpiComm, error) {
	// Keep the Go runtime's handlers for SIGSEGV and friends, so that a nil
	// dereference remains a panic Guard can report (package doc).
	if _, set := os.LookupEnv("OMPI_MCA_opal_signal"); !set {
		os.Setenv("OMPI_MCA_opal_signal", "")
	}
	var provided C.int
	if rc := C.nfs_init(&provided); rc != C.MPI_SUCCESS {
		return nil, fmt.Errorf("MPI_Init_thread failed with code %d", int(rc))
	}
	if provided < C.MPI_THREAD_SERIALIZED {
		C.nfs_finalize()
		return nil, fmt.Errorf("MPI provides thread level %d, need MPI_THREAD_SERIALIZED (%d)", int(provided), int(C.MPI_THREAD_SERIALIZED))
	}
	c := &mpiComm{world: mpi.NewCommunicator(nil)}
	c.rank, c.size = c.world.Rank(), c.world.Size()
	var lr, ls C.int
	if rc := C.nfs_local_split(&lr, &ls); rc != C.MPI_SUCCESS {
		C.nfs_finalize()
		return nil, fmt.Errorf("MPI_Comm_split_type failed with code %d", int(rc))
	}
	c.lrank, c.lsize = int(lr), int(ls)
	return c, nil
}

func (c *mpiComm) Rank() int      { return c.rank }
func (c *mpiComm) Size() int      { return c.size }
func (c *mpiComm) LocalRank() int { return c.lrank }
func (c *mpiComm) LocalSize() int { return c.lsize }

// lock takes the MPI mutex and panics if the communicator is closed.
func (c *mpiComm) lock() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		panic("comm: use of a closed communicator")
	}
}

// chunks calls fn(off, m) for consecutive chunks of at most maxCount of n
// elements, with c's lock held.
func (c *mpiComm) chunks(n int, fn func(off, m int)) {
	c.lock()
	defer c.mu.Unlock()
	for off := 0; off < n; off += maxCount {
		fn(off, min(maxCount, n-off))
	}
}

func (c *mpiComm) AllreduceSum(buf []float64) {
	c.chunks(len(buf), func(off, m int) { C.nfs_allreduce_d((*C.double)(&buf[off]), C.int(m), 0) })
}

func (c *mpiComm) AllreduceSum32(buf []float32) {
	c.chunks(len(buf), func(off, m int) { C.nfs_allreduce_f((*C.float)(&buf[off]), C.int(m)) })
}

func (c *mpiComm) AllreduceMax(buf []float64) {
	c.chunks(len(buf), func(off, m int) { C.nfs_allreduce_d((*C.double)(&buf[off]), C.int(m), 1) })
}

func (c *mpiComm) Bcast(buf []float64, root int) {
	checkRoot(root, c.size)
	c.chunks(len(buf), func(off, m int) { C.nfs_bcast_d((*C.double)(&buf[off]), C.int(m), C.int(root)) })
}

func (c *mpiComm) Bcast32(buf []float32, root int) {
	checkRoot(root, c.size)
	c.chunks(len(buf), func(off, m int) { C.nfs_bcast_f((*C.float)(&buf[off]), C.int(m), C.int(root)) })
}

func (c *mpiComm) BcastBytes(buf []byte, root int) []byte {
	checkRoot(root, c.size)
	c.lock()
	defer c.mu.Unlock()
	n := []int64{int64(len(buf))}
	c.world.BcastInt64s(n, root)
	if c.rank != root {
		buf = make([]byte, n[0])
	}
	for off := 0; off < len(buf); off += maxCount {
		m := min(maxCount, len(buf)-off)
		C.nfs_bcast_bytes((*C.char)(unsafe.Pointer(&buf[off])), C.int(m), C.int(root))
	}
	return buf
}

func (c *mpiComm) Barrier() {
	c.lock()
	defer c.mu.Unlock()
	c.world.Barrier()
}

func (c *mpiComm) AgreeError(err error) error  { return agreeError(c, err) }
func (c *mpiComm) Guard(fn func() error) error { return guard(c, fn) }

// Abort does not take the mutex: it must work while another goroutine is
// blocked in a collective.
func (c *mpiComm) Abort(code int, msg string) {
	printAbort(c.rank, msg)
	os.Stderr.Sync()
	c.world.Abort(code)
	os.Exit(code) // MPI_Abort does not return; this is belt and braces
}

func (c *mpiComm) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if rc := C.nfs_finalize(); rc != C.MPI_SUCCESS {
		return fmt.Errorf("comm: MPI_Finalize failed with code %d", int(rc))
	}
	return nil
}
