package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// commJobLimit is how long a failing job may take to end ("ends
// the whole job within 30 s").
const commJobLimit = 30 * time.Second

// commReport mirrors the JSON line tests/cmd/commcheck prints per rank.
type commReport struct {
	Impl                 string
	Rank, Size           int
	LocalRank, LocalSize int
	Procs, BLASThreads   int
	Sum                  []float64
	Sum32                []float32
	Max                  []float64
	Bcast                []float64
	Bcast32              []float32
	Bytes                string
	AgreeNone, AgreeOdd  string
}

// commEnv is the environment of a commcheck run: this process's, without
// anything that would make the child think it is an MPI rank or fix its
// thread counts, plus extra and the variables that let Open MPI run as root
// (as `make env` does).
func commEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "OMPI_COMM_WORLD"), strings.HasPrefix(k, "PMI"),
			k == "SLURM_STEP_NUM_TASKS", k == "NFSCHWINGER_COMM",
			k == "GOMAXPROCS", k == "OPENBLAS_NUM_THREADS":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
	return append(env, extra...)
}

// commRun runs argv with env, killing its whole process group if it has
// not ended within commJobLimit. It returns stdout, stderr, the exit
// status, the wall time, and whether it hung.
func commRun(t *testing.T, env []string, argv ...string) (stdout, stderr string, status int, elapsed time.Duration, hung bool) {
	t.Helper()
	r := runJob(t, t.TempDir(), env, commJobLimit, argv...)
	return r.Stdout, r.Stderr, r.Status, r.Elapsed, r.Hung
}

// parseReports decodes the JSON lines of stdout, one per rank.
func parseReports(t *testing.T, stdout string) []commReport {
	t.Helper()
	var rs []commReport
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r commReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad report line %q: %v", line, err)
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b commReport) int { return a.Rank - b.Rank })
	return rs
}

// checkReports compares every rank's report with the values the
// collectives must give on n ranks. All values are small integers or
// halves, exact in binary floating point, so equality is exact.
func checkReports(t *testing.T, rs []commReport, n int, impl string) {
	t.Helper()
	if len(rs) != n {
		t.Fatalf("got %d reports, want one per rank (%d)", len(rs), n)
	}
	tri := float64(n * (n + 1) / 2)
	var odd []string
	for r := 1; r < n; r += 2 {
		odd = append(odd, fmt.Sprintf("rank %d: bad file on rank %d", r, r))
	}
	wantOdd := strings.Join(odd, "; ")
	for i, r := range rs {
		if r.Rank != i || r.Size != n || r.Impl != impl {
			t.Errorf("report %d: rank %d of %d, %s; want rank %d of %d, %s", i, r.Rank, r.Size, r.Impl, i, n, impl)
		}
		// One node: the local communicator is the world.
		if r.LocalRank != r.Rank || r.LocalSize != n {
			t.Errorf("rank %d: local rank %d of %d, want %d of %d", i, r.LocalRank, r.LocalSize, i, n)
		}
		// The plan: the rank's share of the cores for the goroutines, one
		// OpenBLAS thread (every BLAS call runs inside a goroutine).
		if r.Procs < 1 || r.BLASThreads != 1 || r.Procs*n > max(runtime.NumCPU(), n) {
			t.Errorf("rank %d: %d goroutine threads and %d BLAS threads (want 1) for %d ranks on %d CPUs: oversubscribed",
				i, r.Procs, r.BLASThreads, n, runtime.NumCPU())
		}
		for j := range 5 {
			k := float64(j + 1)
			wantMax := float64(n - 1)
			if j%2 == 1 {
				wantMax = 0
			}
			if got, want := r.Sum[j], k*tri+0.5*float64(n); got != want {
				t.Errorf("rank %d: AllreduceSum[%d] = %v, want %v", i, j, got, want)
			}
			if got, want := r.Sum32[j], float32(k*tri); got != want {
				t.Errorf("rank %d: AllreduceSum32[%d] = %v, want %v", i, j, got, want)
			}
			if got := r.Max[j]; got != wantMax {
				t.Errorf("rank %d: AllreduceMax[%d] = %v, want %v", i, j, got, wantMax)
			}
			if got, want := r.Bcast[j], float64(10*(n-1)+j); got != want {
				t.Errorf("rank %d: Bcast[%d] = %v, want %v", i, j, got, want)
			}
			if got, want := r.Bcast32[j], float32(j)/4; got != want {
				t.Errorf("rank %d: Bcast32[%d] = %v, want %v", i, j, got, want)
			}
		}
		if want := fmt.Sprintf("hello from rank %d", n-1); r.Bytes != want {
			t.Errorf("rank %d: BcastBytes = %q, want %q", i, r.Bytes, want)
		}
		if r.AgreeNone != "" {
			t.Errorf("rank %d: AgreeError(nil) everywhere = %q, want nil", i, r.AgreeNone)
		}
		if r.AgreeOdd != wantOdd {
			t.Errorf("rank %d: AgreeError with odd ranks failing = %q, want %q", i, r.AgreeOdd, wantOdd)
		}
	}
}

// TestComm runs tests/cmd/commcheck without a launcher and under mpirun
// with 1, 2 and 3 ranks, checks every collective's result exactly, and
// checks that a failure on rank 1 ends the whole job in time with a
// non-zero status and a message naming rank 1. The program is built once
// into the test's temporary directory.
func TestComm(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "commcheck")
	build := exec.Command("go", "build", "-o", bin, "./cmd/commcheck")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/commcheck (run the tests with `eval $(make -s env)` or `make test`): %v\n%s", err, out)
	}

	t.Run("no launcher", func(t *testing.T) {
		out, errOut, status, _, hung := commRun(t, commEnv(), bin)
		if hung || status != 0 {
			t.Fatalf("status %d (hung %v)\n%s", status, hung, errOut)
		}
		checkReports(t, parseReports(t, out), 1, "comm.single")
	})
	t.Run("MPI singleton without launcher", func(t *testing.T) {
		out, errOut, status, _, hung := commRun(t, commEnv("NFSCHWINGER_COMM=mpi"), bin)
		if hung || status != 0 {
			t.Fatalf("status %d (hung %v)\n%s", status, hung, errOut)
		}
		checkReports(t, parseReports(t, out), 1, "*comm.mpiComm")
	})
	t.Run("failure without launcher", func(t *testing.T) {
		_, errOut, status, _, hung := commRun(t, commEnv(), bin, "-fail-rank", "0", "-fail-mode", "error")
		if hung || status != 1 || !strings.Contains(errOut, "injected failure on rank 0") {
			t.Errorf("status %d (hung %v), want 1 and the error\nstderr:\n%s", status, hung, errOut)
		}
	})

	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun is not on PATH: skipping the multi-rank tests")
	}
	for _, n := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("mpirun n=%d", n), func(t *testing.T) {
			out, errOut, status, _, hung := commRun(t, commEnv(), mpirun, "--oversubscribe", "-n", fmt.Sprint(n), bin)
			if hung || status != 0 {
				t.Fatalf("status %d (hung %v)\n%s", status, hung, errOut)
			}
			checkReports(t, parseReports(t, out), n, "*comm.mpiComm")
		})
	}

	// Rank 1 of 3 fails while ranks 0 and 2 wait for it in an allreduce.
	// Inside Guard the rank prints "rank 1: ..." and calls MPI_Abort;
	// outside it (os.Exit, a panic in another goroutine) mpirun ends the
	// job and names the process [[job,1],1].
	mpirunNamesRank1 := regexp.MustCompile(`Process name: \[\[\d+,\d+\],1\]`)
	failures := []struct {
		mode string
		want *regexp.Regexp
	}{
		{"error", regexp.MustCompile(`(?m)^rank 1: injected failure on rank 1$`)},
		{"panic", regexp.MustCompile(`(?m)^rank 1: panic: injected panic on rank 1$`)},
		{"nilderef", regexp.MustCompile(`(?m)^rank 1: panic: runtime error: invalid memory address or nil pointer dereference`)},
		{"exit", mpirunNamesRank1},
		{"gopanic", mpirunNamesRank1},
	}
	for _, f := range failures {
		t.Run("failure "+f.mode, func(t *testing.T) {
			out, errOut, status, elapsed, hung := commRun(t, commEnv(), mpirun, "--oversubscribe", "-n", "3",
				bin, "-fail-rank", "1", "-fail-mode", f.mode)
			if hung {
				t.Fatalf("the job did not end within %v\nstderr:\n%s", commJobLimit, errOut)
			}
			if status == 0 {
				t.Errorf("exit status 0, want non-zero")
			}
			if !f.want.MatchString(errOut) {
				t.Errorf("stderr does not match %q\nstderr:\n%s", f.want, errOut)
			}
			// The failure comes after the checks: every rank reported first.
			if n := len(parseReports(t, out)); n != 3 {
				t.Errorf("%d ranks reported before the failure, want 3", n)
			}
			t.Logf("job ended after %v with status %d", elapsed.Round(time.Millisecond), status)
		})
	}
}
