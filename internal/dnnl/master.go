package dnnl

/*
#include "nfdnnl.h"

static int nf_master_count;

void nf_note_master(void) {
	static __thread int seen;
	if (!seen) {
		seen = 1;
		__atomic_add_fetch(&nf_master_count, 1, __ATOMIC_RELAXED);
	}
}

static int nf_masters(void) { return __atomic_load_n(&nf_master_count, __ATOMIC_RELAXED); }

static void *nf_scr;
static size_t nf_scr_n;

void *nf_scratch(size_t n) {
	if (n > nf_scr_n) {
		free(nf_scr);
		nf_scr = nf_alloc(n);
		__atomic_store_n(&nf_scr_n, nf_scr ? n : 0, __ATOMIC_RELAXED);
	}
	return nf_scr;
}

static size_t nf_scratch_bytes(void) { return __atomic_load_n(&nf_scr_n, __ATOMIC_RELAXED); }
*/
import "C"

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// The OpenMP master thread.
//
// libgomp keeps one pool of worker threads per OS thread that starts
// parallel regions (gcc's libgomp/config/posix/pool.h,
// gomp_get_thread_pool: the pool hangs off the calling thread), and once
// the process holds more OpenMP threads than CPUs its workers spin only 100
// times before they sleep on a futex (libgomp/env.c sets
// gomp_throttled_spin_count_var = 100 when OMP_WAIT_POLICY is unset;
// libgomp/config/linux/wait.h, do_spin, uses it whenever
// gomp_managed_threads > gomp_available_cpus), instead of 300 000 (about
// 3 ms). Go moves a goroutine between OS threads at will: a flow driven
// from one goroutine started its regions from up to eight OS threads, so
// several pools, and every region woke sleeping workers through the
// kernel. This package therefore starts every OpenMP region of the process
// from one OS thread, the master: a goroutine locked to its thread that
// runs the calls given to Do. On the 2-core AMD EPYC (Zen 5) that took an
// L = 8 float32 REINFORCE step from 0.312 to 0.229 s (medians of three,
// side by side; docs/performance.md, "One thread runtime").

// master is the goroutine, locked to its OS thread tid, that runs every
// call into this package's C which executes primitives or parallel
// regions.
var master struct {
	once  sync.Once
	tid   atomic.Int64
	calls chan masterCall
}

// masterCall is one function for the master, and where its panic (nil
// when it returned) goes.
type masterCall struct {
	f    func()
	done chan any
}

// errGoexit is what Do panics with when f called runtime.Goexit (t.Fatal,
// say) on the master thread.
var errGoexit = errors.New("dnnl: runtime.Goexit (t.Fatal?) inside Do: call it outside")

// startMaster starts the master goroutine once and waits until it knows
// its thread.
func startMaster() {
	master.once.Do(func() {
		master.calls = make(chan masterCall)
		newMaster()
	})
}

// newMaster starts a master goroutine and waits until it has locked its
// thread.
func newMaster() {
	ready := make(chan struct{})
	go serveMaster(ready)
	<-ready
}

// serveMaster locks the goroutine to its thread for good, publishes the
// thread's id and runs the calls, one at a time, forever.
func serveMaster(ready chan<- struct{}) {
	runtime.LockOSThread()
	master.tid.Store(int64(syscall.Gettid()))
	close(ready)
	for c := range master.calls {
		c.done <- runOne(c)
	}
}

// runOne calls c.f and returns what it panicked with (nil when it
// returned). When f calls runtime.Goexit the master goroutine ends, and
// its thread with it (it is locked): runOne then answers errGoexit and
// starts a new master.
func runOne(c masterCall) (p any) {
	returned := false
	defer func() {
		if returned {
			return
		}
		if p = recover(); p == nil {
			newMaster()
			c.done <- errGoexit
		}
	}()
	c.f()
	returned = true
	return nil
}

// Do calls f on the master thread and returns when f has returned; a
// panic in f is raised again in the caller. From the master thread itself
// (inside Do) it calls f directly. f must not wait for other goroutines
// that call Do (they would wait for f). Wrap a sequence of calls into this
// package (a flow's pass, a benchmark's loop) in one Do: each Do from
// another goroutine is a hand-off between threads, a few microseconds to
// tens of them. f must not call runtime.Goexit (t.Fatal): Do then panics
// with errGoexit, and the next call starts a new thread pool.
func Do(f func()) {
	if onMaster() {
		f()
		return
	}
	c := masterCall{f: f, done: replies.Get().(chan any)}
	master.calls <- c
	p := <-c.done
	replies.Put(c.done)
	if p != nil {
		panic(p)
	}
}

// doErr runs f on the master thread and returns its error.
func doErr(f func() error) error {
	var err error
	Do(func() { err = f() })
	return err
}

// replies recycles the channels on which the master answers, so that a
// pass handed to it allocates nothing.
var replies = sync.Pool{New: func() any { return make(chan any, 1) }}

// onMaster starts the master if needed and reports whether the caller runs
// on it. The exported calls that run C begin with
//
//	if !onMaster() { return doErr(func() error { return <the call itself> }) }
//
// so that a call made on the master allocates nothing (a variable that a
// closure assigns would be on the heap in every call).
func onMaster() bool {
	startMaster()
	return int64(syscall.Gettid()) == master.tid.Load()
}

// ScratchBytes returns the size of the scratchpad that every primitive of
// the process shares (they run one at a time on the master thread): the
// largest any has asked for so far, 0 before the first call.
func ScratchBytes() int { return int(C.nf_scratch_bytes()) }

// MasterThreads returns the number of OS threads that have executed this
// package's primitives or parallel regions so far: 1 once any has run,
// whatever the goroutines that called (0 before).
func MasterThreads() int { return int(C.nf_masters()) }
