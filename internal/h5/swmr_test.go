package h5

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// swmrChildEnv makes the test binary a writer that grows a file in SWMR
// mode and is killed (SIGKILL, so that nothing closes the file): the reader
// side of TestSWMR runs in the parent.
const swmrChildEnv = "NFSCHWINGER_H5_SWMR_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(swmrChildEnv); path != "" {
		if err := swmrWriter(path, 3); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		// Killed, not exited: os.Exit under the race detector goes through
		// libc's exit, whose atexit handlers let HDF5 close the file cleanly.
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	os.Exit(m.Run())
}

// swmrWriter creates path in the latest format with a dataset "x" and an
// attribute "n", starts SWMR writing and appends blocks of 10 rows, each
// flushed, with n the row count.
func swmrWriter(path string, blocks int) error {
	f, err := CreateLatest(path)
	if err != nil {
		return err
	}
	if err := CreateExtendible[float64](f, "x", nil, 16); err != nil {
		return err
	}
	if err := WriteScalarAttr[int64](f, "/", "n", 0); err != nil {
		return err
	}
	if err := f.StartSWMR(); err != nil {
		return err
	}
	for b := range blocks {
		v := make([]float64, 10)
		for i := range v {
			v[i] = float64(10*b + i)
		}
		if err := Append(f, "x", v); err != nil {
			return err
		}
		if err := WriteScalarAttr(f, "/", "n", int64(10*(b+1))); err != nil {
			return err
		}
		if err := f.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// TestSWMR: a file left by a writer killed in SWMR mode reads with every
// row and attribute it flushed; once its status is cleared it opens for
// writing again and grows.
func TestSWMR(t *testing.T) {
	path := filepath.Join(t.TempDir(), "swmr.h5")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), swmrChildEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("writer: want it killed by SIGKILL, got %v: %s", err, out)
	}
	check := func(want int) {
		t.Helper()
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n, err := Rows(f, "x")
		if err != nil || n != want {
			t.Fatalf("rows %d, %v; want %d", n, err, want)
		}
		v, _, err := ReadRows[float64](f, "x", 0, n)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range v {
			if x != float64(i) {
				t.Fatalf("x[%d] = %v", i, x)
			}
		}
		a, err := ReadScalarAttr[int64](f, "/", "n")
		if err != nil || a != int64(want) {
			t.Fatalf("attribute n = %d, %v; want %d", a, err, want)
		}
	}
	check(30)
	if f, err := OpenRW(path); err == nil {
		f.Close()
		t.Fatal("a file left in SWMR write mode opened for writing before ClearStatus")
	}
	if err := ClearStatus(path); err != nil {
		t.Fatal(err)
	}
	f, err := OpenRW(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.StartSWMR(); err != nil {
		t.Fatal(err)
	}
	if err := Append(f, "x", []float64{30, 31}); err != nil {
		t.Fatal(err)
	}
	if err := WriteScalarAttr[int64](f, "/", "n", 32); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	check(32) // read while the writer has it open
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	check(32)
}
