package tests

import (
	"encoding/json"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nfschwinger/internal/params"
	nfio "nfschwinger/io"
	"nfschwinger/sample"
)

// hmcTOML is an HMC baseline run of n trajectories at L = 4.
func hmcTOML(n int) string {
	return "[lattice]\nL = 4\n[io]\nout_dir = \"run\"\n[sample]\nmethod = \"hmc\"\nseed = 3\nmd_steps = 8\nsave_configs = true\nn_samples = " +
		strconv.Itoa(n) + "\n"
}

// TestHMCBaseline: `nfschwinger params.toml` with
// sample.method = "hmc" trains nothing and writes an HMC chain that
// analyze reads like an NMCMC one (⟨e^{−ΔH}⟩ instead of importance
// sampling) and h5py reads with its dH column; stopped by SIGTERM it exits
// 75 and continues on the next start; a start from the chain file works;
// under mpirun with two ranks it runs two independent chains, combined.
func TestHMCBaseline(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "params.toml"), []byte(hmcTOML(3000)), 0o644)

	// Stopped by a signal after the first blocks, then continued.
	cmd := exec.Command(nfBinary, "params.toml")
	cmd.Dir, cmd.Env = dir, jobEnv()
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	chain := filepath.Join(dir, "run", "chain.h5")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(chain); err == nil {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 75) {
		t.Fatalf("stopped HMC run: %v\n%s", err, out.String())
	} else if err == nil {
		t.Log("the run finished before the signal; continuing a complete chain instead")
	}
	if o, e, st := runNF(t, dir, "params.toml"); st != 0 {
		t.Fatalf("continued HMC run: status %d\n%s\n%s", st, o, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "run", "checkpoint.h5")); err == nil {
		t.Error("the HMC baseline wrote a checkpoint: it trains no flow")
	}

	o, e, st := runNF(t, dir, "analyze", "-json", "-no-plots", "run")
	if st != 0 {
		t.Fatalf("analyze: status %d\n%s", st, e)
	}
	var a struct {
		Chain struct {
			Steps      int      `json:"steps"`
			Method     string   `json:"method"`
			ESS        *float64 `json:"ess"`
			ExpMinusDH struct {
				Value, Err float64
			} `json:"exp_minus_dH"`
		} `json:"chain"`
	}
	if err := json.Unmarshal([]byte(o), &a); err != nil {
		t.Fatalf("analyze -json: %v\n%s", err, o)
	}
	c := a.Chain
	if c.Steps != 3000 || c.Method != "hmc" || c.ESS != nil || !(c.ExpMinusDH.Err > 0) ||
		c.ExpMinusDH.Value < 1-5*c.ExpMinusDH.Err || c.ExpMinusDH.Value > 1+5*c.ExpMinusDH.Err {
		t.Errorf("analyze: %+v; want 3000 hmc steps, no ESS, <exp(-dH)> = 1 within 5σ", c)
	}
	py := `import h5py, math, sys
f = h5py.File(sys.argv[1], "r")
assert f.attrs["method"] == "hmc", f.attrs["method"]
dH = f["dH"][:]
assert len(dH) == f.attrs["n_steps"] == 3000, len(dH)
assert f["hmc/state"].shape[1:] == (2, 4, 4)
assert all(math.isnan(x) for x in f["logq"][:10])
print(len(dH))`
	if out, err := exec.Command(python, "-c", py, chain).CombinedOutput(); err != nil {
		t.Errorf("h5py: %v\n%s", err, out)
	}

	// A new chain from the last state of this one.
	dir2 := t.TempDir()
	toml := strings.Replace(hmcTOML(200), "seed = 3", "seed = 4\nstart = \""+chain+"\"", 1)
	os.WriteFile(filepath.Join(dir2, "params.toml"), []byte(toml), 0o644)
	if o, e, st := runNF(t, dir2, "params.toml"); st != 0 {
		t.Errorf("HMC from a chain file: status %d\n%s\n%s", st, o, e)
	}

	// Two ranks: two independent chains. Rank 0's is the one-process
	// chain step for step (replica 0 draws the same streams), rank 1's
	// another, and the combined estimates are printed.
	mp := mpirunPath(t)
	dir3 := t.TempDir()
	os.WriteFile(filepath.Join(dir3, "params.toml"), []byte(hmcTOML(3000)), 0o644)
	r := runJob(t, dir3, jobEnv(), trainLimit, mp, "--oversubscribe", "-n", "2", nfBinary, "params.toml")
	if r.Status != 0 || !strings.Contains(r.Stdout, "Combined over 2 independent chains (6000 steps") {
		t.Fatalf("HMC on 2 ranks: status %d\n%s\n%s", r.Status, tail(r.Stdout), tail(r.Stderr))
	}
	one, err := nfio.ReadChain(chain)
	if err != nil {
		t.Fatal(err)
	}
	var reps [2]*nfio.ChainData
	for i := range reps {
		if reps[i], err = nfio.ReadChain(filepath.Join(dir3, "run", sample.ReplicaFile(i))); err != nil {
			t.Fatal(err)
		}
		if reps[i].Len() != 3000 || reps[i].Meta.Replica != i {
			t.Errorf("replica %d: %d steps, meta replica %d", i, reps[i].Len(), reps[i].Meta.Replica)
		}
	}
	if !slices.Equal(reps[0].State.Plaquette, one.State.Plaquette) || !slices.Equal(reps[0].DH, one.DH) {
		t.Error("rank 0's chain differs from the one-process chain")
	}
	if slices.Equal(reps[1].State.Plaquette, one.State.Plaquette) {
		t.Error("rank 1's chain is rank 0's: the replicas are not independent")
	}
	a0 := sample.Summarize(reps[0], 10, sample.DefaultLongRun)
	a1 := sample.Summarize(reps[1], 10, sample.DefaultLongRun)
	for k, o := range a0.Observables {
		p := a1.Observables[k]
		if sigma := math.Hypot(float64(o.Err), float64(p.Err)); math.Abs(float64(o.Mean-p.Mean)) > 5*sigma {
			t.Errorf("%s: replica 0 %s, replica 1 %s: more than 5σ apart", o.Name, sample.FormatPM(o.Mean, o.Err), sample.FormatPM(p.Mean, p.Err))
		}
	}
	if o, e, st := runNF(t, dir3, "analyze", "-no-plots", "run"); st != 0 || !strings.Contains(o, "Combined over 2 independent chains") {
		t.Errorf("analyze of a two-chain HMC run: status %d\n%s%s", st, o, e)
	}
	// The combined estimate against what is known exactly: ⟨e^{−ΔH}⟩ = 1
	// for a reversible, area-preserving integrator; and its error is that
	// of 2 × 3000 steps, below each chain's own.
	o, e, st = runNF(t, dir3, "analyze", "-json", "-no-plots", "run")
	var comb struct {
		Replicas struct {
			Replicas   int
			Steps      int
			ExpMinusDH struct{ Value, Err float64 } `json:"exp_minus_dH"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal([]byte(o), &comb); st != 0 || err != nil {
		t.Fatalf("analyze -json of a two-chain HMC run: status %d, %v\n%s%s", st, err, o, e)
	}
	x := comb.Replicas.ExpMinusDH
	if comb.Replicas.Replicas != 2 || comb.Replicas.Steps != 6000 || !(x.Err > 0) || math.Abs(x.Value-1) > 5*x.Err ||
		!(x.Err < float64(a0.ExpMinusDH.Err)) || !(x.Err < float64(a1.ExpMinusDH.Err)) {
		t.Errorf("combined over the chains: %+v; want 2 replicas, 6000 steps, ⟨e^{−ΔH}⟩ = 1 within 5σ with an error below each chain's (%v, %v)",
			comb.Replicas, a0.ExpMinusDH.Err, a1.ExpMinusDH.Err)
	}
}

// TestAnalyzeCompare: `nfschwinger analyze DIR1 DIR2 …` reads
// the histories of several runs, labels them by estimator and seed from
// their checkpoints, groups them by estimator and draws the overlays
// against step and wall time next to the runs.
func TestAnalyzeCompare(t *testing.T) {
	root := t.TempDir()
	var dirs []string
	for _, r := range []struct {
		name, est string
		seed      int
	}{{"re_s1", "reinforce", 1}, {"re_s2", "reinforce", 2}, {"rt_s1", "rt", 1}} {
		dir := filepath.Join(root, "study", r.name)
		os.MkdirAll(dir, 0o755)
		p := params.Tiny().With("train.steps", 12, "train.estimator", r.est, "train.seed", r.seed, "train.checkpoint_every", 0)
		os.WriteFile(filepath.Join(dir, "params.toml"), []byte(p.TOML()), 0o644)
		if o, e, st := runNF(t, dir, "params.toml"); st != 0 {
			t.Fatalf("%s: status %d\n%s\n%s", r.name, st, o, e)
		}
		dirs = append(dirs, filepath.Join(dir, "run"))
	}
	o, e, st := runNF(t, root, append([]string{"analyze", "-json", "-window", "4"}, dirs...)...)
	if st != 0 {
		t.Fatalf("analyze: status %d\n%s", st, e)
	}
	var cmp struct {
		Runs []struct {
			Label    string
			Training struct {
				Steps    int64   `json:"steps"`
				FinalESS float64 `json:"final_ess"`
			}
		}
		Estimators []struct {
			Estimator    string
			Runs         int
			FinalESSMean float64 `json:"final_ess_mean"`
		}
		Plots []string
	}
	if err := json.Unmarshal([]byte(o), &cmp); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	want := []string{"reinforce, seed 1", "reinforce, seed 2", "rt, seed 1"}
	for i, r := range cmp.Runs {
		if r.Label != want[i] || r.Training.Steps != 12 || !(r.Training.FinalESS > 0) {
			t.Errorf("run %d: %+v, want label %q, 12 steps, an ESS", i, r, want[i])
		}
	}
	if len(cmp.Estimators) != 2 || cmp.Estimators[0].Estimator != "reinforce" || cmp.Estimators[0].Runs != 2 ||
		cmp.Estimators[1].Runs != 1 || !(cmp.Estimators[0].FinalESSMean > 0) {
		t.Errorf("estimators %+v", cmp.Estimators)
	}
	if len(cmp.Plots) != 2 {
		t.Fatalf("plots %v, want compare_ess_step.png and compare_ess_time.png", cmp.Plots)
	}
	for _, p := range cmp.Plots {
		if filepath.Dir(p) != filepath.Join(root, "study") {
			t.Errorf("plot %s: want it in the directory that holds the runs", p)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		f.Close()
	}
	// A directory without a history is refused with status 2.
	if _, e, st := runNF(t, root, "analyze", dirs[0], t.TempDir()); st != 2 || !strings.Contains(e, "history.h5") {
		t.Errorf("a run without history: status %d, %q", st, e)
	}
}
