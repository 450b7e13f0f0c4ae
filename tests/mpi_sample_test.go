package tests

import (
	"fmt"
	"math"
	"nfschwinger/internal/params"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// mpiSampleConfig trains a tiny flow in float64 for two steps and samples a
// chain of 600 steps, 50 proposals per rank and block.
var mpiSampleConfig = params.Tiny().With("model.dilation", []int{1, 2}, "model.precision", "float64",
	"train.steps", 2, "train.micro_batch", nil, "train.seed", 5, "train.checkpoint_every", nil,
	"sample.n_samples", 600, "sample.batch_size", 50).TOML()

// TestMPISampleRanksAgree samples the chain on 1, 2 and 3 ranks: the
// proposals are keyed by their global index, so the chains must agree —
// the accept decisions exactly, log w to rounding (the flow's parameters
// after training agree to ~1e-16 across rank counts).
func TestMPISampleRanksAgree(t *testing.T) {
	mpirunPath(t)
	const tol = 1e-10
	chains := make(map[int]map[string][]float64)
	for _, n := range []int{0, 2, 3} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "p.toml"), []byte(mpiSampleConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runJob(t, dir, jobEnv(), trainLimit, trainArgv(t, n, "p.toml")...)
		if r.Hung || r.Status != 0 {
			t.Fatalf("%d rank(s): exit status %d (hung %v)\n%s\n%s", n, r.Status, r.Hung, tail(r.Stdout), tail(r.Stderr))
		}
		chains[n] = readChain(t, dir)
		if got := len(chains[n]["logw"]); got != 600 {
			t.Fatalf("%d rank(s): %d chain steps, want 600", n, got)
		}
	}
	want := chains[0]
	for _, n := range []int{2, 3} {
		got := chains[n]
		if !slices.Equal(got["accepted"], want["accepted"]) {
			t.Errorf("%d ranks: accept decisions differ from one process", n)
		}
		for _, c := range []string{"logq", "logp", "logw", "condensate", "plaquette", "topological_charge", "sign"} {
			if d := relDiff(got[c], want[c]); d > tol || math.IsNaN(d) {
				t.Errorf("%d ranks: %s differs from one process by %g (relative)", n, c, d)
			}
		}
	}
	acc := 0.0
	for _, a := range want["accepted"] {
		acc += a
	}
	t.Log(fmt.Sprintf("acceptance %.3f on 1, 2 and 3 ranks", acc/600))
}
