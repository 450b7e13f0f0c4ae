package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nfschwinger/internal/params"
	nfio "nfschwinger/io"
)

// h5pyCount prints the length of dataset argv[2] of the HDF5 file argv[1],
// opened as a user would: plainly, or with swmr=True when argv[3] is "swmr".
const h5pyCount = `
import sys, h5py
with h5py.File(sys.argv[1], "r", swmr=sys.argv[3] == "swmr") as f:
    print(len(f[sys.argv[2]]))
`

// h5pyLen runs h5pyCount, returning its output or the error.
func h5pyLen(t *testing.T, path, dataset string, swmr bool) (string, error) {
	t.Helper()
	mode := "plain"
	if swmr {
		mode = "swmr"
	}
	out, err := exec.Command(python, "-c", h5pyCount, path, dataset, mode).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// whileRunning is cond, failing the test when the run l has ended (a
// condition for waitFor).
func whileRunning(t *testing.T, l *launched, cond func() bool) func() bool {
	return func() bool {
		select {
		case <-l.done:
			t.Fatalf("the run ended (exit %d) too early; stderr:\n%s", l.status, tail(l.err.String()))
		default:
		}
		return cond()
	}
}

// analyzeSteps runs `nfschwinger analyze -json run` in dir and returns the
// history's last step and the chain's length.
func analyzeSteps(t *testing.T, dir string) (train int64, chain int) {
	t.Helper()
	out, stderr, status := runNF(t, dir, "analyze", "-json", "run")
	if status != 0 {
		t.Fatalf("analyze of a running job: exit %d\n%s", status, stderr)
	}
	var a struct {
		Training struct{ Steps int64 }
		Chain    struct{ Steps int }
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("analyze -json: %v\n%s", err, out)
	}
	return a.Training.Steps, a.Chain.Steps
}

// TestReadWhileRunning: while a run trains, history.h5 reads with h5py
// (plainly, as a new user opens it) and with analyze, up to the last
// logged step; while it samples, chain.h5 reads with h5py (swmr=True) and
// analyze; `watch -once` shows both. A run killed while sampling leaves chain.h5 readable, a
// restart continues it, and once closed cleanly it opens plainly again.
func TestReadWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	if err := exec.Command(python, "-c", "import h5py").Run(); err != nil {
		t.Fatalf("%s with h5py is needed (Debian package python3-h5py, make deps): %v", python, err)
	}
	dir := t.TempDir()
	write := func(steps, samples int) {
		p := params.Tiny().With("model.hidden_channels", []int{4}, "train.steps", steps, "train.batch_size", 8,
			"train.micro_batch", nil, "train.checkpoint_every", 50,
			"sample.n_samples", samples, "sample.batch_size", 16)
		if err := os.WriteFile(filepath.Join(dir, "params.toml"), []byte(p.TOML()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := func() *launched { return launchArgs(t, dir, nil, "params.toml") }
	hist := filepath.Join(dir, "run", "history.h5")
	chain := filepath.Join(dir, "run", "chain.h5")

	// Training: far more steps than the test waits for.
	write(1_000_000, 100)
	l := start()
	waitFor(t, 2*time.Minute, "20 history rows", whileRunning(t, l, func() bool {
		rows, err := nfio.ReadHistory(hist)
		return err == nil && len(rows) >= 20
	}))
	for i := range 3 { // three reads, at three moments of the run
		n, err := h5pyLen(t, hist, "step", false)
		if err != nil {
			t.Fatalf("h5py.File(history.h5) while training, read %d: %v\n%s", i, err, n)
		}
		train, _ := analyzeSteps(t, dir)
		if train < 20 {
			t.Errorf("analyze while training: last step %d, want ≥ 20", train)
		}
		if rows, err := nfio.ReadHistory(hist); err != nil || int64(len(rows)) < train {
			t.Errorf("history after analyze: %d rows, %v; analyze saw step %d", len(rows), err, train)
		}
		out, stderr, status := runNF(t, dir, "watch", "-once", "run")
		if status != 0 || !strings.Contains(out, "/1000000 (") || !strings.Contains(out, "steps/s  ETA ") {
			t.Errorf("watch -once while training: exit %d\n%s%s", status, out, stderr)
		}
	}
	if _, stderr, status := runNF(t, dir, "params.toml"); status != 2 || !strings.Contains(stderr, "another run is writing") {
		t.Errorf("a second run on the same directory: exit %d, want 2 naming the other run\n%s", status, stderr)
	}
	l.cmd.Process.Signal(syscall.SIGTERM)
	l.wait(t)
	if l.status != 75 {
		t.Fatalf("SIGTERM while training: exit %d, want 75\n%s", l.status, tail(l.err.String()))
	}

	// Sampling: a long chain, read while it grows, then killed.
	write(1, 10_000_000)
	os.RemoveAll(filepath.Join(dir, "run"))
	l = start()
	waitFor(t, 2*time.Minute, "chain rows", whileRunning(t, l, func() bool {
		d, err := nfio.ReadChain(chain)
		return err == nil && d.Len() >= 64
	}))
	for i := range 3 {
		n, err := h5pyLen(t, chain, "accepted", true)
		if err != nil {
			t.Fatalf("h5py.File(chain.h5, swmr=True) while sampling, read %d: %v\n%s", i, err, n)
		}
		if _, steps := analyzeSteps(t, dir); steps < 64 {
			t.Errorf("analyze while sampling: %d chain steps, want ≥ 64", steps)
		}
		if out, stderr, status := runNF(t, dir, "watch", "-once", "run"); status != 0 || !strings.Contains(out, "step 1/1 (100.0%)") || !strings.Contains(out, "  chain ") {
			t.Errorf("watch -once while sampling: exit %d\n%s%s", status, out, stderr)
		}
	}
	l.cmd.Process.Kill()
	<-l.done
	killed, err := nfio.ReadChain(chain)
	if err != nil {
		t.Fatalf("chain.h5 after the writer was killed: %v", err)
	}
	if n, err := h5pyLen(t, chain, "accepted", true); err != nil {
		t.Fatalf("h5py (swmr=True) after the writer was killed: %v\n%s", err, n)
	}
	l = start() // continues the chain in place
	waitFor(t, 2*time.Minute, "the continued chain to grow", whileRunning(t, l, func() bool {
		d, err := nfio.ReadChain(chain)
		return err == nil && d.Len() > killed.Len()+64
	}))
	l.cmd.Process.Signal(syscall.SIGTERM)
	l.wait(t)
	if l.status != 75 {
		t.Fatalf("SIGTERM while sampling: exit %d, want 75\n%s", l.status, tail(l.err.String()))
	}
	n, err := h5pyLen(t, chain, "accepted", false)
	if err != nil {
		t.Fatalf("h5py.File(chain.h5) after a clean stop: %v\n%s", err, n)
	}
	d, err := nfio.ReadChain(chain)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() <= killed.Len() || n != strconv.Itoa(d.Len()) {
		t.Errorf("after the restart: %d rows, h5py %s; killed at %d", d.Len(), n, killed.Len())
	}
}
