package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nfschwinger/internal/h5"
	"nfschwinger/internal/params"
)

// TestTransferInitFrom: a run on L = 8 with train.init_from
// naming the checkpoint of an L = 4 run starts from its weights with a
// fresh Adam at step 0 (with a learning rate of 1e-12 its parameters after
// one step are the source's to 1e-9), records the source in the checkpoint
// and the history; a model of another architecture is refused with exit
// status 2 naming the attribute; and an existing checkpoint in out_dir
// wins over init_from.
func TestTransferInitFrom(t *testing.T) {
	src := t.TempDir()
	small := trainCase{Steps: 3}
	train(t, src, small, 0, 0)
	srcCkpt := filepath.Join(src, "run", "checkpoint.h5")
	from := readCkpt(t, srcCkpt, small)

	dir := t.TempDir()
	big := trainCase{L: 8, Steps: 1}
	p := params.Tiny().With("lattice.L", 8, "train.steps", 1, "train.learning_rate", 1e-12, "train.init_from", srcCkpt)
	if err := os.WriteFile(filepath.Join(dir, "params.toml"), []byte(p.TOML()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, stderr, st := runNF(t, dir, "params.toml"); st != 0 || !strings.Contains(out, "starting from the model of") {
		t.Fatalf("transfer run: status %d\n%s\n%s", st, out, stderr)
	}
	got := readCkpt(t, filepath.Join(dir, "run", "checkpoint.h5"), big)
	if got.Step != 1 || got.AdamStep != 1 {
		t.Errorf("step %d, Adam step %d: want 1, 1 (a fresh start)", got.Step, got.AdamStep)
	}
	if d := relDiff(got.Params, from.Params); !(d <= 1e-9) {
		t.Errorf("parameters differ from the source's by %.3g relative: not loaded", d)
	}
	for _, c := range []struct{ file, group string }{{"run/checkpoint.h5", "/train"}, {"run/history.h5", "/"}} {
		f, err := h5.Open(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		if v, err := h5.ReadStringAttr(f, c.group, "init_from"); err != nil || v != srcCkpt {
			t.Errorf("%s: init_from = %q (%v), want %q", c.file, v, err, srcCkpt)
		}
		f.Close()
	}

	// An existing checkpoint wins: two more steps continue from step 1.
	p2 := p.With("train.steps", 3)
	os.WriteFile(filepath.Join(dir, "params.toml"), []byte(p2.TOML()), 0o644)
	events, env := newEventsFile(dir)
	if r := runJob(t, dir, jobEnv(env), trainLimit, nfBinary, "params.toml"); r.Status != 0 || restartedAt(t, events) != 1 {
		t.Errorf("status %d, restart at %d: want 0 and step 1\n%s", r.Status, restartedAt(t, events), r.Stderr)
	}

	// Another architecture: exit status 2, the attribute named, nothing written.
	bad := t.TempDir()
	pb := params.Tiny().With("lattice.L", 8, "train.steps", 1, "model.hidden_channels", []int{4}, "train.init_from", srcCkpt)
	os.WriteFile(filepath.Join(bad, "params.toml"), []byte(pb.TOML()), 0o644)
	_, stderr, st := runNF(t, bad, "params.toml")
	if st != 2 || !strings.Contains(stderr, "hidden_channels") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("mismatched model: status %d, stderr %q; want 2 and one line naming hidden_channels", st, stderr)
	}
	if _, err := os.Stat(filepath.Join(bad, "run", "checkpoint.h5")); err == nil {
		t.Error("a refused run wrote a checkpoint")
	}
}
