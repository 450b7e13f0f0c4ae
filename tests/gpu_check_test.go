package tests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGPUCheck prepares the device check as `make gpu-check` does — the
// test binaries of internal/cuda and nf/gpu built without cgo, beside
// tests/gpu-check.sh — and runs it. On a machine without a CUDA device
// (CI) it must fail, saying so in its report: the check cannot pass
// without the real device. Where a device exists it must pass. The build
// without cgo is itself the point: it is what lets the binaries run on a
// GPU machine that has none of Debian's libraries.
func TestGPUCheck(t *testing.T) {
	dir := t.TempDir()
	for _, b := range []struct{ out, pkg string }{{"cuda.test", "nfschwinger/internal/cuda"}, {"gpu.test", "nfschwinger/nf/gpu"}} {
		cmd := exec.Command("go", "test", "-c", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s without cgo: %v\n%s", b.pkg, err, out)
		}
	}
	script, err := os.ReadFile("gpu-check.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, "gpu-check.sh").CombinedOutput(); err != nil {
			t.Errorf("shellcheck gpu-check.sh: %v\n%s", err, out)
		}
	}
	out := filepath.Join(dir, "out")
	cmd := exec.Command("bash", filepath.Join(dir, "run.sh"), out)
	cmd.Env = append(os.Environ(), "NFSCHWINGER_CUDA_TEST=") // run.sh sets it
	log, runErr := cmd.CombinedOutput()
	report, err := os.ReadFile(filepath.Join(out, "gpu-check.txt"))
	if err != nil {
		t.Fatalf("no report: %v\n%s", err, log)
	}
	_, noDriver := os.Stat("/dev/nvidiactl")
	var exit *exec.ExitError
	switch {
	case noDriver != nil:
		if !errors.As(runErr, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(report), "no CUDA device") {
			t.Fatalf("without a device: exit %v, report:\n%s", runErr, report)
		}
	case runErr != nil:
		t.Fatalf("with a device: %v, report:\n%s", runErr, report)
	}
	if !strings.Contains(string(report), "gpu-check: exit status") {
		t.Errorf("report lacks the exit status:\n%s", report)
	}
}
