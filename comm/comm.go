package comm

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
)

// Comm is the communicator of the data-parallel run. Ranks are numbered
// 0..Size()-1; rank 0 is the one that writes files. Every method marked
// collective must be called by all ranks in the same order with buffers of
// equal length (see the package documentation).
type Comm interface {
	// Rank is this process's rank in [0, Size()).
	Rank() int
	// Size is the number of ranks in the job.
	Size() int
	// LocalRank is this process's rank among the ranks on the same node
	// (shared-memory domain), in [0, LocalSize()). It selects the GPU and
	// the share of the node's cores.
	LocalRank() int
	// LocalSize is the number of ranks on this node.
	LocalSize() int

	// AllreduceSum replaces buf on every rank by the element-wise sum of
	// buf over all ranks. Collective.
	AllreduceSum(buf []float64)
	// AllreduceSum32 is AllreduceSum for float32 (summed in float32).
	// Collective.
	AllreduceSum32(buf []float32)
	// AllreduceMax replaces buf on every rank by the element-wise maximum
	// over all ranks. Collective.
	AllreduceMax(buf []float64)
	// Bcast copies root's buf into buf on every other rank. Collective.
	Bcast(buf []float64, root int)
	// Bcast32 is Bcast for float32. Collective.
	Bcast32(buf []float32, root int)
	// BcastBytes sends root's buf to every rank. The lengths need not
	// agree: root gets buf back, the other ranks a new slice holding
	// root's bytes (their buf is ignored and may be nil). Collective.
	BcastBytes(buf []byte, root int) []byte
	// Barrier returns when every rank has entered it. Collective.
	Barrier()

	// AgreeError tells every rank whether any rank failed: it returns nil
	// when err is nil on all ranks, and otherwise a *RankError naming every
	// failing rank with its message (on a failing rank it also wraps that
	// rank's own err, so errors.As and errors.Is see it). Collective.
	AgreeError(err error) error
	// Guard runs fn, turning a panic into a *PanicError. With one rank it
	// returns fn's error. With several ranks a failure ends the whole job:
	// Guard calls Abort with exit code ExitCode(err) and the error's
	// message, and does not return — except for an error that every rank
	// returns together (Agreed(err), a stop on a signal): that one is
	// returned, so that the ranks can finalize MPI and exit with its code.
	// Not collective by itself (fn usually is).
	Guard(fn func() error) error
	// Abort prints "rank R: msg" to stderr and ends the whole job with the
	// given exit code (MPI_Abort; os.Exit for one process). It does not
	// return and may be called from any goroutine, also while another one
	// is inside a collective.
	Abort(code int, msg string)
	// Close finalises MPI (MPI_Finalize). Collective. No method may be
	// called after Close; a second Close is a no-op.
	Close() error
}

// RankError is the combined failure of a job returned by AgreeError:
// the failing ranks in increasing order with their messages.
type RankError struct {
	Ranks    []int    // failing ranks, increasing
	Messages []string // Messages[i] is the error text of Ranks[i]
	Local    error    // this rank's own error, nil if this rank did not fail
}

// Error lists the failing ranks: "rank 1: msg; rank 3: msg".
func (e *RankError) Error() string {
	var b strings.Builder
	for i, r := range e.Ranks {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "rank %d: %s", r, e.Messages[i])
	}
	return b.String()
}

// Unwrap returns this rank's own error (nil when only other ranks failed).
func (e *RankError) Unwrap() error { return e.Local }

// PanicError is a panic caught by Guard.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the goroutine's stack at the panic
}

// Error is "panic: VALUE"; the stack is in the Stack field.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error (for example a
// runtime.Error), so errors.As can inspect it.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// ExitCode is the exit status Guard aborts with for err: the value of the
// first error in err's chain with a method ExitCode() int, else 1.
func ExitCode(err error) int {
	var c interface{ ExitCode() int }
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return 1
}

// Agreed reports whether err's chain holds an error with a method
// Agreed() bool that returns true: an outcome every rank reaches together
// (such as a stop on a signal), not a failure to abort the job on.
func Agreed(err error) bool {
	var a interface{ Agreed() bool }
	return errors.As(err, &a) && a.Agreed()
}

// callRecover runs fn and returns its error, or a *PanicError if fn
// panicked.
func callRecover(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// guard implements Comm.Guard on top of the other methods.
func guard(c Comm, fn func() error) error {
	err := callRecover(fn)
	if err == nil || c.Size() == 1 || Agreed(err) {
		return err
	}
	msg := err.Error()
	var pe *PanicError
	if errors.As(err, &pe) {
		msg += "\n" + string(pe.Stack)
	}
	c.Abort(ExitCode(err), msg)
	panic("comm: Abort returned") // unreachable
}

// agreeError implements Comm.AgreeError on top of AllreduceMax and
// BcastBytes: one allreduce of a per-rank failure flag, then one byte
// broadcast per failing rank.
func agreeError(c Comm, err error) error {
	flags := make([]float64, c.Size())
	if err != nil {
		flags[c.Rank()] = 1
	}
	c.AllreduceMax(flags)
	var re RankError
	for r, f := range flags {
		if f == 0 {
			continue
		}
		var msg []byte
		if r == c.Rank() {
			msg = []byte(err.Error())
		}
		re.Ranks = append(re.Ranks, r)
		re.Messages = append(re.Messages, string(c.BcastBytes(msg, r)))
	}
	if len(re.Ranks) == 0 {
		return nil
	}
	re.Local = err
	return &re
}

// printAbort prints the abort message of rank to stderr.
func printAbort(rank int, msg string) {
	fmt.Fprintf(os.Stderr, "rank %d: %s\n", rank, msg)
}

// checkRoot panics if root is not a rank of a job of size ranks.
func checkRoot(root, size int) {
	if root < 0 || root >= size {
		panic(fmt.Sprintf("comm: root %d out of range [0, %d)", root, size))
	}
}

// single is the communicator of one process.
type single struct{}

// Single returns the communicator of a single process: rank 0 of 1,
// reductions and broadcasts leave the buffers unchanged, Abort exits the
// process. It makes no MPI call.
func Single() Comm { return single{} }

func (single) Rank() int                       { return 0 }
func (single) Size() int                       { return 1 }
func (single) LocalRank() int                  { return 0 }
func (single) LocalSize() int                  { return 1 }
func (single) AllreduceSum(buf []float64)      {}
func (single) AllreduceSum32(buf []float32)    {}
func (single) AllreduceMax(buf []float64)      {}
func (single) Bcast(buf []float64, root int)   { checkRoot(root, 1) }
func (single) Bcast32(buf []float32, root int) { checkRoot(root, 1) }
func (single) BcastBytes(buf []byte, root int) []byte {
	checkRoot(root, 1)
	return buf
}
func (single) Barrier()                      {}
func (s single) AgreeError(err error) error  { return agreeError(s, err) }
func (s single) Guard(fn func() error) error { return guard(s, fn) }
func (single) Close() error                  { return nil }
func (single) Abort(code int, msg string) {
	printAbort(0, msg)
	os.Exit(code)
}
