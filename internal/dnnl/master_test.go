package dnnl

import (
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
)

// TestMasterThread calls one convolution from goroutines locked to eight
// different OS threads: its primitives and parallel regions must still
// run on one OS thread (one libgomp pool), with the same results.
func TestMasterThread(t *testing.T) {
	s := CircShape{N: 2, Cin: 16, Cout: 16, L: 8, K: 3, Dilation: 2}
	cv, err := NewCircConv(s, CircOptions{Backward: true, Threads: 2, LeakyReLUSlope: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	defer cv.Close()
	n := s.N * s.L * s.L * 16
	in, gout := make([]float32, n), make([]float32, n)
	for i := range in {
		in[i], gout[i] = float32(i%7)-3, float32(i%5)-2
	}
	w, b := make([]float32, 16*16*9), make([]float32, 16)
	for i := range w {
		w[i] = float32(i%3) - 1
	}
	// Earlier tests may have started the master (or, TestDo, a second
	// one): the count must not grow here.
	want := max(MasterThreads(), 1)
	var first []float32
	tids := map[int]bool{}
	for k := range 8 {
		out, gin := make([]float32, n), make([]float32, n)
		gw, gb := make([]float32, len(w)), make([]float32, 16)
		var tid int
		var errs [2]error
		var wg sync.WaitGroup
		wg.Go(func() {
			runtime.LockOSThread() // a thread no other caller has: it exits with the goroutine
			tid = syscall.Gettid()
			errs[0] = cv.Forward(out, in, w, b)
			errs[1] = cv.Backward(gin, gout, in, w, gw, gb)
		})
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		tids[tid] = true
		if k == 0 {
			first = slices.Concat(out, gin, gw, gb)
		} else if got := slices.Concat(out, gin, gw, gb); !slices.Equal(got, first) {
			t.Errorf("call %d from another thread: results differ from the first call's", k)
		}
	}
	if len(tids) < 2 {
		t.Fatalf("the callers ran on %d OS threads: the test needs several", len(tids))
	}
	if got := MasterThreads(); got != want {
		t.Errorf("primitives ran on %d OS threads, want %d (callers on %d threads)", got, want, len(tids))
	}
}

// TestDo checks Do's contract: f runs on one thread however deep the
// nesting, its panics reach the caller, and a runtime.Goexit inside it is
// reported without losing the master.
func TestDo(t *testing.T) {
	var outer, inner int
	Do(func() {
		outer = syscall.Gettid()
		Do(func() { inner = syscall.Gettid() })
	})
	if outer != inner {
		t.Errorf("nested Do ran on threads %d and %d, want one", outer, inner)
	}
	catch := func(f func()) (p any) {
		defer func() { p = recover() }()
		Do(f)
		return nil
	}
	if p := catch(func() { panic("boom") }); p != "boom" {
		t.Errorf("Do(panic(\"boom\")) raised %v", p)
	}
	if p := catch(runtime.Goexit); p != errGoexit {
		t.Errorf("Do(runtime.Goexit) raised %v, want errGoexit", p)
	}
	ran := false
	Do(func() { ran = true })
	if !ran {
		t.Error("Do after a Goexit did not run f")
	}
}
