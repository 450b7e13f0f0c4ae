package comm

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

func TestSingle(t *testing.T) {
	c := Single()
	if c.Rank() != 0 || c.Size() != 1 || c.LocalRank() != 0 || c.LocalSize() != 1 {
		t.Fatalf("Single: rank %d size %d local %d/%d, want 0 1 0/1", c.Rank(), c.Size(), c.LocalRank(), c.LocalSize())
	}
	// Reductions over one rank are the identity, exactly.
	f64 := []float64{1.5, -2, 3e300}
	want := slices.Clone(f64)
	c.AllreduceSum(f64)
	c.AllreduceMax(f64)
	c.Bcast(f64, 0)
	if !slices.Equal(f64, want) {
		t.Errorf("float64 collectives changed %v into %v", want, f64)
	}
	f32 := []float32{1.25, -7}
	want32 := slices.Clone(f32)
	c.AllreduceSum32(f32)
	c.Bcast32(f32, 0)
	if !slices.Equal(f32, want32) {
		t.Errorf("float32 collectives changed %v into %v", want32, f32)
	}
	b := []byte("payload")
	if got := c.BcastBytes(b, 0); string(got) != "payload" {
		t.Errorf("BcastBytes = %q, want %q", got, "payload")
	}
	c.Barrier()
	// Empty buffers are allowed.
	c.AllreduceSum(nil)
	c.Bcast(nil, 0)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestSingleBadRootPanics(t *testing.T) {
	for _, root := range []int{-1, 1} {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, "comm: root") {
					t.Errorf("Bcast root %d: recovered %v, want a comm: root panic", root, r)
				}
			}()
			Single().Bcast([]float64{1}, root)
		}()
	}
}

func TestAgreeErrorSingle(t *testing.T) {
	c := Single()
	if err := c.AgreeError(nil); err != nil {
		t.Fatalf("AgreeError(nil) = %v, want nil", err)
	}
	local := fmt.Errorf("reading checkpoint: %w", fs.ErrNotExist)
	err := c.AgreeError(local)
	var re *RankError
	if !errors.As(err, &re) {
		t.Fatalf("AgreeError = %T %v, want *RankError", err, err)
	}
	if !slices.Equal(re.Ranks, []int{0}) || re.Messages[0] != local.Error() {
		t.Errorf("RankError = %+v, want rank 0 with %q", re, local.Error())
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("AgreeError result does not wrap the local error")
	}
	if got, want := err.Error(), "rank 0: "+local.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRankErrorMessage(t *testing.T) {
	e := &RankError{Ranks: []int{1, 3}, Messages: []string{"a", "b"}}
	if got, want := e.Error(), "rank 1: a; rank 3: b"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if e.Unwrap() != nil {
		t.Errorf("Unwrap of a RankError without local error = %v, want nil", e.Unwrap())
	}
}

type codeErr struct{ code int }

func (e codeErr) Error() string { return "coded" }
func (e codeErr) ExitCode() int { return e.code }

func TestGuardSingle(t *testing.T) {
	c := Single()
	if err := c.Guard(func() error { return nil }); err != nil {
		t.Errorf("Guard(ok) = %v", err)
	}
	sentinel := errors.New("boom")
	if err := c.Guard(func() error { return sentinel }); err != sentinel {
		t.Errorf("Guard(error) = %v, want %v", err, sentinel)
	}
	err := c.Guard(func() error {
		var m map[string]int
		m["x"] = 1 // nil map write: a runtime panic
		return nil
	})
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("Guard(panic) = %T %v, want *PanicError", err, err)
	}
	if !strings.Contains(pe.Error(), "nil map") || !strings.Contains(string(pe.Stack), "TestGuardSingle") {
		t.Errorf("PanicError %q with stack lacking the test function", pe.Error())
	}
	var rerr interface{ RuntimeError() }
	if !errors.As(err, &rerr) {
		t.Errorf("PanicError does not unwrap to the runtime.Error")
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{errors.New("plain"), 1},
		{codeErr{2}, 2},
		{fmt.Errorf("wrapped: %w", codeErr{3}), 3},
		{&RankError{Ranks: []int{0}, Messages: []string{"x"}, Local: codeErr{2}}, 2},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestLaunched(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Launch
		wantErr bool
	}{
		{"no launcher", nil, Launch{By: "no launcher"}, false},
		{"mpirun", map[string]string{"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "1"}, Launch{MPI: true, Size: 3, By: "OMPI_COMM_WORLD_SIZE"}, false},
		{"mpirun one rank", map[string]string{"OMPI_COMM_WORLD_SIZE": "1"}, Launch{MPI: true, Size: 1, By: "OMPI_COMM_WORLD_SIZE"}, false},
		{"hydra", map[string]string{"PMI_RANK": "0", "PMI_SIZE": "4"}, Launch{MPI: true, Size: 4, By: "PMI_SIZE"}, false},
		{"srun pmix", map[string]string{"PMIX_RANK": "2", "SLURM_STEP_NUM_TASKS": "8"}, Launch{MPI: true, Size: 8, By: "PMIX_RANK"}, false},
		{"srun no plugin", map[string]string{"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5"}, Launch{MPI: true, Size: 8, By: "SLURM_STEP_NUM_TASKS"}, false},
		{"srun one task", map[string]string{"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}, Launch{By: "no launcher"}, false},
		{"batch script", map[string]string{"SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_ID": "12"}, Launch{By: "no launcher"}, false},
		{"forced single", map[string]string{EnvComm: "single", "OMPI_COMM_WORLD_SIZE": "2"}, Launch{By: EnvComm + "=single"}, false},
		{"forced mpi", map[string]string{EnvComm: "mpi"}, Launch{MPI: true, By: EnvComm + "=mpi"}, false},
		{"bad override", map[string]string{EnvComm: "yes"}, Launch{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Launched(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("Launched error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Launched = %+v, want %+v", got, tt.want)
			}
		})
	}
}

type agreedErr struct{}

func (agreedErr) Error() string { return "agreed stop" }
func (agreedErr) Agreed() bool  { return true }
func (agreedErr) ExitCode() int { return 75 }

// TestAgreed: Agreed finds the marker through wrapping, and ExitCode the
// code of the same error.
func TestAgreed(t *testing.T) {
	err := fmt.Errorf("step 3: %w", agreedErr{})
	if !Agreed(err) || Agreed(errors.New("plain")) || Agreed(nil) {
		t.Error("Agreed wrong")
	}
	if ExitCode(err) != 75 || ExitCode(errors.New("plain")) != 1 {
		t.Error("ExitCode wrong")
	}
}
