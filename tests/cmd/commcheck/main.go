// Command commcheck exercises the communicator of package comm on every
// rank of a job and prints one JSON line per rank with what it saw; the
// end-to-end test tests/comm_test.go runs it under mpirun and checks the
// numbers. With -fail-rank it injects a failure on one rank while the others
// wait in a collective, to check that the whole job ends.
//
//	mpirun -n 3 commcheck
//	mpirun -n 2 commcheck -fail-rank 1 -fail-mode panic
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"nfschwinger/comm"
	"nfschwinger/internal/threads"
)

// Report is what one rank saw; the test recomputes every value.
type Report struct {
	Impl                 string // the communicator's Go type
	Rank, Size           int
	LocalRank, LocalSize int
	Procs, BLASThreads   int
	Sum                  []float64 // AllreduceSum of (rank+1)(i+1)+0.5
	Sum32                []float32 // AllreduceSum32 of (rank+1)(i+1)
	Max                  []float64 // AllreduceMax of rank·(−1)^i
	Bcast                []float64 // Bcast from the last rank of 10·root+i
	Bcast32              []float32 // Bcast32 from rank 0 of i/4
	Bytes                string    // BcastBytes from the last rank
	AgreeNone            string    // AgreeError(nil) on every rank ("" if nil)
	AgreeOdd             string    // AgreeError with odd ranks failing
}

func main() {
	failRank := flag.Int("fail-rank", -1, "rank that fails after the checks (-1: none)")
	failMode := flag.String("fail-mode", "error", "how it fails: error, panic, nilderef (inside Guard), exit, gopanic (outside Guard)")
	benchN := flag.Int("bench", 0, "instead of the checks, time AllreduceSum and AllreduceSum32 of this many elements (rank 0 prints)")
	flag.Parse()

	c, err := comm.Init()
	if err != nil {
		fmt.Fprintln(os.Stderr, "commcheck:", err)
		os.Exit(1)
	}
	plan := threads.Configure(c.LocalSize())
	if *benchN > 0 {
		bench(c, *benchN)
		c.Close()
		return
	}
	r := check(c)
	r.Procs, r.BLASThreads = plan.Procs, plan.BLASThreads
	line, _ := json.Marshal(r)
	os.Stdout.Write(append(line, '\n'))

	if *failRank >= 0 {
		err := c.Guard(func() error { return fail(c, *failRank, *failMode) })
		if err != nil { // one rank: Guard returned
			fmt.Fprintln(os.Stderr, "commcheck:", err)
			c.Close()
			os.Exit(comm.ExitCode(err))
		}
	}
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "commcheck:", err)
		os.Exit(1)
	}
}

// check runs every collective once with rank-dependent data.
func check(c comm.Comm) Report {
	const n = 5
	rank, size := c.Rank(), c.Size()
	r := Report{Impl: fmt.Sprintf("%T", c), Rank: rank, Size: size, LocalRank: c.LocalRank(), LocalSize: c.LocalSize()}
	r.Sum = make([]float64, n)
	r.Sum32 = make([]float32, n)
	r.Max = make([]float64, n)
	r.Bcast = make([]float64, n)
	r.Bcast32 = make([]float32, n)
	last := size - 1
	for i := range n {
		r.Sum[i] = float64((rank+1)*(i+1)) + 0.5
		r.Sum32[i] = float32((rank + 1) * (i + 1))
		r.Max[i] = float64(rank)
		if i%2 == 1 {
			r.Max[i] = -float64(rank)
		}
		if rank == last {
			r.Bcast[i] = float64(10*last + i)
		} else {
			r.Bcast[i] = -1
		}
		if rank == 0 {
			r.Bcast32[i] = float32(i) / 4
		}
	}
	c.AllreduceSum(r.Sum)
	c.AllreduceSum32(r.Sum32)
	c.AllreduceMax(r.Max)
	c.Bcast(r.Bcast, last)
	c.Bcast32(r.Bcast32, 0)
	var msg []byte
	if rank == last {
		msg = fmt.Appendf(nil, "hello from rank %d", rank)
	}
	r.Bytes = string(c.BcastBytes(msg, last))
	c.Barrier()
	if err := c.AgreeError(nil); err != nil {
		r.AgreeNone = err.Error()
	}
	var mine error
	if rank%2 == 1 {
		mine = fmt.Errorf("bad file on rank %d", rank)
	}
	if err := c.AgreeError(mine); err != nil {
		r.AgreeOdd = err.Error()
		if mine != nil && !errors.Is(err, mine) {
			r.AgreeOdd += " (does not wrap the local error)"
		}
	}
	return r
}

// fail makes rank failRank fail in the given mode while the other ranks
// wait for it in an allreduce.
func fail(c comm.Comm, failRank int, mode string) error {
	buf := []float64{1}
	if c.Rank() != failRank {
		c.AllreduceSum(buf) // blocks: failRank never joins
		return nil
	}
	time.Sleep(200 * time.Millisecond) // let the others block first
	switch mode {
	case "error":
		return fmt.Errorf("injected failure on rank %d", failRank)
	case "panic":
		panic(fmt.Sprintf("injected panic on rank %d", failRank))
	case "nilderef":
		var p *Report
		_ = p.Rank // nil dereference: SIGSEGV turned into a panic by the Go runtime
	case "exit":
		fmt.Fprintf(os.Stderr, "commcheck: rank %d exits with status 3\n", failRank)
		os.Exit(3)
	case "gopanic":
		done := make(chan struct{})
		go func() {
			defer close(done)
			panic(fmt.Sprintf("injected goroutine panic on rank %d", failRank))
		}()
		<-done
	default:
		return fmt.Errorf("unknown -fail-mode %q", mode)
	}
	return nil
}

// bench times the in-place allreduces of an n-element gradient-sized
// buffer and prints the mean time per call on rank 0.
func bench(c comm.Comm, n int) {
	const reps = 20
	b64 := make([]float64, n)
	b32 := make([]float32, n)
	c.AllreduceSum(b64) // warm up the connections
	c.Barrier()
	t0 := time.Now()
	for range reps {
		c.AllreduceSum(b64)
	}
	d64 := time.Since(t0) / reps
	c.Barrier()
	t0 = time.Now()
	for range reps {
		c.AllreduceSum32(b32)
	}
	d32 := time.Since(t0) / reps
	if c.Rank() == 0 {
		fmt.Printf("ranks %d, n %d: AllreduceSum %v (%.2f GB/s), AllreduceSum32 %v (%.2f GB/s)\n",
			c.Size(), n, d64, float64(8*n)/d64.Seconds()/1e9, d32, float64(4*n)/d32.Seconds()/1e9)
	}
}
