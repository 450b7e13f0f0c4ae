// Package tests holds the end-to-end tests: they build the nfschwinger
// binary once (TestMain) and run it as a user would.
package tests

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	nfio "nfschwinger/io"
)

// nfBinary is the path of the nfschwinger binary built by TestMain.
var nfBinary string

// TestMain builds the binary into a temporary directory with the cgo flags
// of the environment (run the tests through `make test`, or after
// `eval $(make -s env)`), runs the tests and removes the directory.
func TestMain(m *testing.M) {
	nfio.ServeProbe() // the probes of the tests run this binary as a child
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nfschwinger-tests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	nfBinary = filepath.Join(dir, "nfschwinger")
	build := exec.Command("go", "build", "-o", nfBinary, "nfschwinger")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "tests: building nfschwinger: %v (are the cgo flags of `make env` set?)\n", err)
		return 1
	}
	return m.Run()
}

// runNF runs the binary with args in dir (the test's working directory when
// dir is "") and returns its output and exit status. A failure to start it
// ends the test.
func runNF(t *testing.T, dir string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(nfBinary, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		status = ee.ExitCode()
	default:
		t.Fatalf("running %v: %v", args, err)
	}
	return out.String(), errb.String(), status
}
