package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	nfio "nfschwinger/io"
	"nfschwinger/nf"
)

// TestDivergenceRecovery: a divergence injected in the middle of a run
// (the parameters multiplied by 100 after a step) is detected, rolled back
// to the last good parameters and Adam state with the learning rate
// halved, recorded in history.h5, the log and the events, and the run
// finishes its steps; on one rank and on two.
func TestDivergenceRecovery(t *testing.T) {
	for _, n := range []int{0, 2} {
		t.Run(fmt.Sprintf("%d ranks", max(n, 1)), func(t *testing.T) {
			if n > 0 {
				mpirunPath(t)
			}
			c := trainCase{Steps: 60, CheckpointEvery: 20, Extra: []any{"train.learning_rate", 1e-3}}
			dir := t.TempDir()
			r := train(t, dir, c, n, 0, "NFSCHWINGER_FAULT=diverge@30")
			if !strings.Contains(r.Stderr, "divergence (") || !strings.Contains(r.Stderr, "rolled back to the parameters and Adam state of step 20") ||
				!strings.Contains(r.Stderr, "recovery 1 of 5") {
				t.Errorf("stderr does not report the recovery:\n%s", tail(r.Stderr))
			}
			rows := readHistory(t, filepath.Join(dir, "run", "history.h5"))
			last := rows[len(rows)-1]
			if last.Step != 60 || last.Recoveries != 1 || last.LearningRate != 5e-4 {
				t.Errorf("last row: step %d, %d recoveries, learning rate %g; want 60, 1, 5e-4", last.Step, last.Recoveries, last.LearningRate)
			}
			if !(last.LogqMean-last.LogpMean < rows[0].LogqMean-rows[0].LogpMean+50) {
				t.Errorf("F_q at the end %g, at the start %g: not recovered", last.LogqMean-last.LogpMean, rows[0].LogqMean-rows[0].LogpMean)
			}
			k := readCkpt(t, filepath.Join(dir, "run", "checkpoint.h5"), c)
			if k.Recoveries != 1 || k.LRScale != 0.5 || k.Step != 60 {
				t.Errorf("checkpoint: %d recoveries, scale %g, step %d; want 1, 0.5, 60", k.Recoveries, k.LRScale, k.Step)
			}
		})
	}
}

// TestDivergenceLimit: a run that keeps diverging ends after
// train.max_recoveries recoveries with exit status 1, a message that says
// what to do, and a checkpoint of the last good parameters.
func TestDivergenceLimit(t *testing.T) {
	c := trainCase{Steps: 60, CheckpointEvery: 50, Extra: []any{"train.max_recoveries", 1}}
	dir := t.TempDir()
	r := train(t, dir, c, 0, 1, "NFSCHWINGER_FAULT=diverge@20,diverge@30")
	if !strings.Contains(r.Stderr, "training diverged 2 times, more than train.max_recoveries = 1") {
		t.Errorf("stderr does not explain the stop:\n%s", tail(r.Stderr))
	}
	k := readCkpt(t, filepath.Join(dir, "run", "checkpoint.h5"), c)
	if k.Recoveries != 2 || k.Step < 30 || k.Step > 40 {
		t.Errorf("checkpoint at step %d with %d recoveries; want 31–40 and 2", k.Step, k.Recoveries)
	}
}

// TestScheduleRestart: a cosine schedule with warm-up, stopped by a signal
// and continued, ends bit for bit where the undisturbed run does, and the
// history records the schedule's learning rate at every step.
func TestScheduleRestart(t *testing.T) {
	c := faultCase()
	c.Extra = []any{"train.lr_schedule", "cosine", "train.lr_warmup_steps", 2, "train.lr_min", 1e-5}
	dir := t.TempDir()
	signalRestart(t, dir, c)
	cfg, err := nfio.Parse(c.config())
	if err != nil {
		t.Fatal(err)
	}
	sched := nf.LRSchedule{Kind: "cosine", Base: cfg.Train.LearningRate, Warmup: 2, Steps: int64(c.Steps), Min: 1e-5}
	rows := readHistory(t, filepath.Join(dir, "run", "history.h5"))
	if len(rows) != c.Steps {
		t.Fatalf("%d history rows, want %d", len(rows), c.Steps)
	}
	for _, r := range rows {
		if want := sched.At(r.Step - 1); r.LearningRate != want {
			t.Errorf("step %d: learning rate %g, want %g", r.Step, r.LearningRate, want)
		}
	}
}
