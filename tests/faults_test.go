package tests

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	nfio "nfschwinger/io"
)

// Fault tests. Each scenario is a function that runs its trials,
// fails the test on any violation and returns a faultResult for the report
// (faults_report_test.go, `make faults`). Runs are tiny (L = 4, 12 steps,
// float32, a checkpoint after every step: about 0.15 s each), so that the
// scenarios together take well under a minute.

// faultResult is one row of the fault report.
type faultResult struct {
	Scenario string
	Trials   int             // runs disturbed by the fault
	Survived int             // trials that ended as they must (continued to the right result, or refused cleanly)
	Lost     int             // trials whose final state differs from the undisturbed run's, or that loaded bad data silently
	Recover  []time.Duration // per recovery: relaunch to the first new step (or to the refusal)
	Note     string
}

// faultSteps is the length of the runs of the fault tests.
const faultSteps = 12

// faultCase is the run of the fault tests.
func faultCase() trainCase { return trainCase{Steps: faultSteps, CheckpointEvery: 1} }

// reference is an undisturbed run of c: its final checkpoint and history.
type reference struct {
	ck   ckpt
	hist []nfio.HistoryRow
	wall time.Duration // wall time of the whole run
}

var (
	refMu    sync.Mutex
	refCache = map[string]reference{}
)

// undisturbed runs c on n ranks (0: no launcher) once per test binary and
// returns its final state.
func undisturbed(t *testing.T, c trainCase, n int) reference {
	t.Helper()
	refMu.Lock()
	defer refMu.Unlock()
	key := fmt.Sprintf("%d %v %s", n, c.Emulate, c.config())
	if r, ok := refCache[key]; ok {
		return r
	}
	dir, err := os.MkdirTemp("", "nfschwinger-ref-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	res := train(t, dir, c, n, 0)
	r := reference{
		ck:   readCkpt(t, filepath.Join(dir, "run", "checkpoint.h5"), c),
		hist: readHistory(t, filepath.Join(dir, "run", "history.h5")),
		wall: res.Elapsed,
	}
	refCache[key] = r
	return r
}

// checkSame compares the final state in dir/run with ref, bit for bit
// (parameters, Adam moments, counters, every history value but the wall
// time), and reports the differences through t. It returns whether they
// are equal.
func checkSame(t *testing.T, dir string, c trainCase, ref reference) bool {
	t.Helper()
	k, err := loadCkpt(filepath.Join(dir, "run", "checkpoint.h5"), c.arch(t), c.Precision)
	if err != nil {
		t.Errorf("final checkpoint: %v", err)
		return false
	}
	if d := sameBits(k, ref.ck); d != "" {
		t.Errorf("final checkpoint differs from the undisturbed run's: %s", d)
		return false
	}
	rows, err := nfio.ReadHistory(filepath.Join(dir, "run", "history.h5"))
	if err != nil {
		t.Errorf("history: %v", err)
		return false
	}
	bad := false
	if len(rows) != len(ref.hist) {
		t.Errorf("history has %d rows, the undisturbed run %d", len(rows), len(ref.hist))
		return false
	}
	for i, w := range ref.hist {
		g := rows[i]
		g.WallTime, w.WallTime = 0, 0
		// %v prints the shortest decimal that reads back to the same
		// float64: equal strings are equal bits (and NaN equals NaN).
		if fmt.Sprintf("%v", g) != fmt.Sprintf("%v", w) {
			t.Errorf("history row %d = %+v, want %+v", i, g, w)
			bad = true
		}
	}
	return !bad
}

// stepLineRe matches a progress line of the training run.
var stepLineRe = regexp.MustCompile(`(?m)^(?:\x1b\[K|\r)*step (\d+)/\d+ `)

// stampWriter collects a process's output and notes when the first progress
// line arrived.
type stampWriter struct {
	mu        sync.Mutex
	start     time.Time
	buf       bytes.Buffer
	firstStep time.Duration // 0 until a progress line arrived
}

func (w *stampWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.firstStep == 0 && stepLineRe.Match(w.buf.Bytes()) {
		w.firstStep = time.Since(w.start)
	}
	return len(p), nil
}

func (w *stampWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// launched is a training process started by launch.
type launched struct {
	events   string // its events file (NFSCHWINGER_EVENTS)
	cmd      *exec.Cmd
	out, err *stampWriter
	done     chan struct{}
	status   int
	signaled bool
}

// launch starts the binary on c in dir (one process, no launcher) with the
// extra environment.
func launch(t *testing.T, dir string, c trainCase, extra ...string) *launched {
	t.Helper()
	cfg := c.write(t, dir)
	return launchArgs(t, dir, c.env(extra), cfg)
}

// launchArgs starts the binary with args in dir (one process, no launcher),
// the job environment plus env and an events file.
func launchArgs(t *testing.T, dir string, env []string, args ...string) *launched {
	t.Helper()
	events, eventsEnv := newEventsFile(dir)
	cmd := exec.Command(nfBinary, args...)
	cmd.Dir, cmd.Env = dir, jobEnv(append(env, eventsEnv)...)
	now := time.Now()
	l := &launched{events: events, cmd: cmd, out: &stampWriter{start: now}, err: &stampWriter{start: now}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = l.out, l.err
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			l.status = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				l.signaled = true
			}
		}
		close(l.done)
	}()
	return l
}

// wait waits for the process, killing it after trainLimit.
func (l *launched) wait(t *testing.T) {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(trainLimit):
		l.cmd.Process.Kill()
		<-l.done
		t.Fatalf("the run hung; stdout:\n%s", tail(l.out.String()))
	}
}

// tmpLeft reports whether a checkpoint write was in progress in dir/run.
func tmpLeft(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "run", nfio.TempPath("checkpoint.h5")))
	return err == nil
}

// killTrial runs c in dir to the end, killing it with SIGKILL kills times:
// at the moments after(i) returns (timed kills) or, when after is nil,
// through the kill@k fault at the steps of at. Every relaunch must continue
// from the last checkpoint. It returns the recovery times and how many kills
// hit a checkpoint write.
func killTrial(t *testing.T, dir string, c trainCase, after func(i int) time.Duration, at []int, kills int) (recover []time.Duration, inWrite int) {
	t.Helper()
	var relaunch bool
	lastDone := 0 // steps surely completed before the last kill (a progress line was printed)
	for i := 0; ; i++ {
		var extra []string
		if after == nil && i < kills {
			extra = append(extra, fmt.Sprintf("NFSCHWINGER_FAULT=kill@%d", at[i]))
		}
		onDisk := -1 // step of the checkpoint the relaunch must continue from
		if relaunch {
			if _, err := os.Stat(filepath.Join(dir, "run", "checkpoint.h5")); err == nil {
				k, err := loadCkpt(filepath.Join(dir, "run", "checkpoint.h5"), c.arch(t), c.Precision)
				if err != nil {
					t.Fatalf("the kill left a bad checkpoint.h5: %v", err)
				}
				onDisk = int(k.Step)
			}
		}
		l := launch(t, dir, c, extra...)
		if after != nil && i < kills {
			select {
			case <-l.done:
			case <-time.After(after(i)):
				l.cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		l.wait(t)
		out := l.out.String()
		if relaunch {
			from := restartedAt(t, l.events)
			// A relaunch killed again before it restored says nothing.
			informed := !l.signaled || from >= 0 || lastStep(t, l.events) > 0
			switch {
			case !informed:
			case from != onDisk:
				t.Fatalf("relaunch %d continues from step %d, the checkpoint on disk is at step %d (-1: none):\n%s", i, from, onDisk, tail(out))
			case from >= 0 && from < lastDone-c.CheckpointEvery:
				t.Errorf("relaunch %d continues from step %d, but step %d was done and checkpoints are %d steps apart",
					i, from, lastDone, c.CheckpointEvery)
			}
			if l.out.firstStep > 0 {
				recover = append(recover, l.out.firstStep)
			}
		}
		if l.signaled {
			if tmpLeft(dir) {
				inWrite++
			}
			lastDone = max(lastDone, lastStep(t, l.events))
			relaunch = true
			continue
		}
		if l.status != 0 {
			t.Fatalf("launch %d: exit status %d\nstdout:\n%s\nstderr:\n%s", i, l.status, tail(out), tail(l.err.String()))
		}
		return recover, inWrite
	}
}

// faultKillRandom: kill -9 at random moments of the run (seeded), twice per
// trial, then a relaunch to the end: the result is the undisturbed run's,
// bit for bit. With a checkpoint after every step, most of a run is spent
// writing checkpoints and history rows, so many kills land in writes.
func faultKillRandom(t *testing.T) faultResult {
	c := faultCase()
	ref := undisturbed(t, c, 0)
	res := faultResult{Scenario: "kill -9 at a random time (2 per trial)", Trials: 10}
	rng := rand.New(rand.NewPCG(9, 1))
	// Kill times: uniform over the undisturbed run's wall time, past the
	// program's start-up (about a fifth of it).
	span := ref.wall
	for trial := range res.Trials {
		dir := t.TempDir()
		delays := []time.Duration{span/5 + time.Duration(rng.Int64N(int64(span*4/5))), span/5 + time.Duration(rng.Int64N(int64(span*4/5)))}
		rec, inWrite := killTrial(t, dir, c, func(i int) time.Duration { return delays[i] }, nil, 2)
		res.Recover = append(res.Recover, rec...)
		ok := checkSame(t, dir, c, ref)
		if ok {
			res.Survived++
		} else {
			res.Lost++
		}
		t.Logf("trial %d: kills after %v and %v, %d in a checkpoint write, equal %v", trial, delays[0].Round(time.Millisecond),
			delays[1].Round(time.Millisecond), inWrite, ok)
		res.Note = fmt.Sprintf("%s%d", sep(res.Note), inWrite)
	}
	res.Note = "kills inside a checkpoint write per trial: " + res.Note
	return res
}

func sep(s string) string {
	if s == "" {
		return ""
	}
	return s + ","
}

// faultKillAtStep: the kill@k fault (SIGKILL at the start of step k, seeded
// random k), twice per trial.
func faultKillAtStep(t *testing.T) faultResult {
	c := faultCase()
	ref := undisturbed(t, c, 0)
	res := faultResult{Scenario: "kill -9 at step k (kill@k, 2 per trial)", Trials: 4}
	rng := rand.New(rand.NewPCG(9, 2))
	for trial := range res.Trials {
		dir := t.TempDir()
		k1 := 1 + rng.IntN(faultSteps-2)
		k2 := k1 + 1 + rng.IntN(faultSteps-1-k1)
		rec, _ := killTrial(t, dir, c, nil, []int{k1, k2}, 2)
		res.Recover = append(res.Recover, rec...)
		if checkSame(t, dir, c, ref) {
			res.Survived++
		} else {
			res.Lost++
		}
		t.Logf("trial %d: killed at steps %d and %d", trial, k1, k2)
	}
	return res
}

// TestFaultKill: ≥ 10 seeded kill -9 trials; every relaunch continues and
// the final state is the undisturbed run's, bit for bit.
func TestFaultKill(t *testing.T) {
	t.Run("random time", func(t *testing.T) { faultKillRandom(t) })
	t.Run("kill@k", func(t *testing.T) { faultKillAtStep(t) })
}

// faultSignal: SIGTERM (the requeue signal) stops the run with status 75
// after a checkpoint; the relaunch continues to the undisturbed result.
func faultSignal(t *testing.T) faultResult {
	c := faultCase()
	ref := undisturbed(t, c, 0)
	res := faultResult{Scenario: "SIGTERM, exit 75 and requeue", Trials: 2}
	for trial, k := range []int{3, 8} {
		dir := t.TempDir()
		r := train(t, dir, c, 0, 75, fmt.Sprintf("NFSCHWINGER_FAULT=signal@%d", k))
		if got := stoppedAt(t, r.Events); got != k+1 {
			t.Errorf("trial %d: stopped after step %d, want %d:\n%s", trial, got, k+1, tail(r.Stdout))
		}
		l := launch(t, dir, c)
		l.wait(t)
		if l.status != 0 || restartedAt(t, l.events) != k+1 {
			t.Errorf("trial %d: relaunch status %d, restart step %d, want 0 and %d", trial, l.status, restartedAt(t, l.events), k+1)
		}
		res.Recover = append(res.Recover, l.out.firstStep)
		if checkSame(t, dir, c, ref) && l.status == 0 {
			res.Survived++
		} else {
			res.Lost++
		}
	}
	return res
}

// TestFaultSignal: see faultSignal.
func TestFaultSignal(t *testing.T) { faultSignal(t) }

// faultDamagedHistory: a run stopped by a signal whose history.h5 is then
// damaged (bytes flipped in its metadata, cut short, or replaced by
// garbage) continues from the checkpoint to the undisturbed run's final
// state and history: the restart rebuilds history.h5 from the rows the
// checkpoint holds without reading the damaged file, which is kept as
// history.prev.h5.
func faultDamagedHistory(t *testing.T) faultResult {
	c := faultCase()
	ref := undisturbed(t, c, 0)
	res := faultResult{Scenario: "damaged history.h5 (flipped, truncated, garbage)", Trials: 3}
	damages := []func([]byte) []byte{
		func(b []byte) []byte { // flip the bytes of the superblock and the first object header
			for i := 8; i < min(len(b), 512); i += 3 {
				b[i] ^= 0xff
			}
			return b
		},
		func(b []byte) []byte { return b[:len(b)/3] },
		func(b []byte) []byte { return bytes.Repeat([]byte{0x5a}, len(b)) },
	}
	for trial, damage := range damages {
		dir := t.TempDir()
		train(t, dir, c, 0, 75, "NFSCHWINGER_FAULT=signal@4")
		hp := filepath.Join(dir, "run", "history.h5")
		b, err := os.ReadFile(hp)
		if err != nil {
			t.Fatal(err)
		}
		bad := damage(b)
		if err := os.WriteFile(hp, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		l := launch(t, dir, c)
		l.wait(t)
		res.Recover = append(res.Recover, l.out.firstStep)
		kept, err := os.ReadFile(filepath.Join(dir, "run", "history.prev.h5"))
		if err != nil || !bytes.Equal(kept, bad) {
			t.Errorf("trial %d: the damaged history is not kept as history.prev.h5 (%v)", trial, err)
		}
		if l.status == 0 && checkSame(t, dir, c, ref) {
			res.Survived++
		} else {
			t.Errorf("trial %d: relaunch status %d\n%s", trial, l.status, tail(l.out.String()))
			res.Lost++
		}
	}
	return res
}

// TestFaultDamagedHistory: see faultDamagedHistory.
func TestFaultDamagedHistory(t *testing.T) { faultDamagedHistory(t) }

// corruption is a damage done to a checkpoint file.
type corruption struct {
	name   string
	damage func(t *testing.T, path string, k ckpt)
}

// truncate cuts the file to frac of its length.
func truncate(frac float64) func(*testing.T, string, ckpt) {
	return func(t *testing.T, path string, _ ckpt) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, int64(float64(fi.Size())*frac)); err != nil {
			t.Fatal(err)
		}
	}
}

// flipParam flips one bit of the stored float32 value of parameter i, found
// by its bytes in the file (the datasets are stored contiguously).
func flipParam(i int) func(*testing.T, string, ckpt) {
	return func(t *testing.T, path string, k ckpt) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var pat [4]byte
		binary.LittleEndian.PutUint32(pat[:], math.Float32bits(float32(k.Params[i])))
		at := bytes.Index(b, pat[:])
		if at < 0 {
			t.Fatalf("parameter %d (%v) not found in %s", i, k.Params[i], path)
		}
		b[at] ^= 1 // the last bit of the mantissa: a tiny, plausible change
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// flipAt flips the bits of one byte at offset at (modulo the length).
func flipAt(at int) func(*testing.T, string, ckpt) {
	return func(t *testing.T, path string, _ ckpt) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[at%len(b)] ^= 0xff
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// faultCorrupt: a damaged checkpoint.h5 makes the relaunch fall back to
// checkpoint.prev.h5 with a warning (and then reach the undisturbed result),
// or, when both are damaged or the previous one is missing, refuse with exit
// status 2 and leave the files as they are. Random byte flips (seeded) may
// hit bytes HDF5 does not use: the load is then correct, never silently
// wrong.
func faultCorrupt(t *testing.T) faultResult {
	c := faultCase()
	ref := undisturbed(t, c, 0)
	half := faultCase()
	half.Steps = faultSteps / 2
	res := faultResult{Scenario: "corrupt checkpoint (truncated, flipped bytes)"}
	rng := rand.New(rand.NewPCG(9, 3))
	cases := []struct {
		corruption
		prev string // what happens to checkpoint.prev.h5: "" kept, "damage" damaged too, "remove" removed
	}{
		{corruption{"truncated to 1/2", truncate(0.5)}, ""},
		{corruption{"truncated to 0 bytes", truncate(0)}, ""},
		{corruption{"superblock byte flipped", flipAt(3)}, ""},
		{corruption{"one parameter bit flipped", flipParam(7)}, ""},
		{corruption{"both truncated", truncate(0.7)}, "damage"},
		{corruption{"bit flipped, no previous checkpoint", flipParam(3)}, "remove"},
	}
	for i := range 6 {
		off := rng.IntN(1 << 20)
		cases = append(cases, struct {
			corruption
			prev string
		}{corruption{fmt.Sprintf("random byte %d flipped", i), flipAt(off)}, ""})
	}
	for _, tc := range cases {
		res.Trials++
		ok := t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			train(t, dir, half, 0, 0)
			path := filepath.Join(dir, "run", "checkpoint.h5")
			prev := nfio.PrevPath(path)
			good := readCkpt(t, path, c)
			tc.damage(t, path, good)
			switch tc.prev {
			case "damage":
				tc.damage(t, prev, readCkpt(t, prev, c))
			case "remove":
				os.Remove(prev)
			}
			before := snapshot(t, filepath.Join(dir, "run"))
			// Did the damage change anything the reader sees?
			_, readErr := loadCkpt(path, c.arch(t), c.Precision)
			l := launch(t, dir, c)
			l.wait(t)
			errOut := l.err.String()
			switch {
			case tc.prev != "":
				if l.status != 2 || !strings.Contains(errOut, "checkpoint is corrupt") {
					t.Errorf("exit status %d, want 2 with a message on the corrupt checkpoint; stderr:\n%s", l.status, tail(errOut))
				}
				if after := snapshot(t, filepath.Join(dir, "run")); after != before {
					t.Errorf("the refused run changed its output directory:\nbefore %s\nafter  %s", before, after)
				}
				res.Recover = append(res.Recover, time.Since(l.out.start))
				return
			case readErr != nil:
				if !strings.Contains(errOut, "warning") || !strings.Contains(errOut, "continuing from the previous checkpoint") {
					t.Errorf("no warning about the fallback on stderr:\n%s", tail(errOut))
				}
				if from := restartedAt(t, l.events); from != half.Steps-1 {
					t.Errorf("continued from step %d, want the previous checkpoint's %d", from, half.Steps-1)
				}
			default: // the damage hit unused bytes: a normal restart
				if from := restartedAt(t, l.events); from != half.Steps {
					t.Errorf("continued from step %d, want %d", from, half.Steps)
				}
			}
			if l.status != 0 {
				t.Fatalf("exit status %d; stderr:\n%s", l.status, tail(errOut))
			}
			res.Recover = append(res.Recover, l.out.firstStep)
			if !checkSame(t, dir, c, ref) {
				res.Lost++
			}
		})
		if ok {
			res.Survived++
		}
	}
	return res
}

// snapshot describes the files of dir (names, sizes, modification times).
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range es {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%d:%d ", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// TestFaultCorruptCheckpoint: see faultCorrupt.
func TestFaultCorruptCheckpoint(t *testing.T) { faultCorrupt(t) }

// faultNaN: a NaN gradient (on the only rank, or on rank 1 of 2) skips the
// step: the parameters and Adam's state after it equal those before it,
// and history.h5 counts the skip.
func faultNaN(t *testing.T) faultResult {
	res := faultResult{Scenario: "NaN in a gradient"}
	for _, n := range []int{0, 2} {
		if n > 0 {
			if _, err := exec.LookPath("mpirun"); err != nil {
				continue
			}
		}
		res.Trials++
		ok := t.Run(fmt.Sprintf("%d ranks", max(n, 1)), func(t *testing.T) {
			before := trainCase{Steps: 3}
			dir := t.TempDir()
			train(t, dir, before, n, 0)
			want := readCkpt(t, filepath.Join(dir, "run", "checkpoint.h5"), before)
			rank := min(n, 1) // rank 1 under mpirun
			skip := trainCase{Steps: 4}
			dir = t.TempDir()
			train(t, dir, skip, n, 0, fmt.Sprintf("NFSCHWINGER_FAULT=nan@3:%d", rank))
			got := readCkpt(t, filepath.Join(dir, "run", "checkpoint.h5"), skip)
			want.Step, want.Skipped = 4, 1
			if d := sameBits(got, want); d != "" {
				t.Errorf("after the skipped step 4: %s", d)
			}
			rows := readHistory(t, filepath.Join(dir, "run", "history.h5"))
			var skipped []int64
			for _, r := range rows {
				skipped = append(skipped, r.Skipped)
			}
			if fmt.Sprint(skipped) != "[0 0 0 1]" {
				t.Errorf("history skipped = %v, want [0 0 0 1]", skipped)
			}
		})
		if ok {
			res.Survived++
		} else {
			res.Lost++
		}
	}
	// A run whose gradients stay non-finite, with recovery off, gives up
	// with the last checkpoint intact.
	res.Trials++
	ok := t.Run("non-finite in a row", func(t *testing.T) {
		var fs []string
		for k := 2; k < 40; k++ {
			fs = append(fs, fmt.Sprintf("nan@%d", k))
		}
		c := trainCase{Steps: 40, CheckpointEvery: 5, Extra: []any{"train.max_recoveries", 0}}
		dir := t.TempDir()
		r := train(t, dir, c, 0, 1, "NFSCHWINGER_FAULT="+strings.Join(fs, ","))
		if !strings.Contains(r.Stderr, "20 gradient steps in a row were non-finite") {
			t.Errorf("stderr does not explain the stop:\n%s", tail(r.Stderr))
		}
		if k := readCkpt(t, filepath.Join(dir, "run", "checkpoint.h5"), c); k.Step != 20 || k.Skipped != 18 || k.AdamStep != 2 {
			t.Errorf("checkpoint at step %d with %d skipped, %d Adam steps; want 20, 18, 2", k.Step, k.Skipped, k.AdamStep)
		}
	})
	if ok {
		res.Survived++
	} else {
		res.Lost++
	}
	res.Note = "parameters and Adam state after the skipped step = before it"
	return res
}

// TestFaultNaNGradient: see faultNaN.
func TestFaultNaNGradient(t *testing.T) { faultNaN(t) }

// faultRankKilled: rank 1 of 2 is killed (kill@k:1) in the middle of an
// MPI run: the job ends within commJobLimit (no rank hangs), and a relaunch
// on 2 ranks continues to the undisturbed 2-rank result, bit for bit.
func faultRankKilled(t *testing.T) faultResult {
	res := faultResult{Scenario: "rank 1 of 2 killed (kill@k:1)"}
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun is not on PATH")
	}
	c := faultCase()
	ref := undisturbed(t, c, 2)
	for _, k := range []int{4, 9} {
		res.Trials++
		ok := t.Run(fmt.Sprintf("kill@%d:1", k), func(t *testing.T) {
			dir := t.TempDir()
			cfg := c.write(t, dir)
			r := runJob(t, dir, jobEnv(fmt.Sprintf("NFSCHWINGER_FAULT=kill@%d:1", k)), commJobLimit, trainArgv(t, 2, cfg)...)
			t.Logf("job ended after %v with status %d", r.Elapsed.Round(time.Millisecond), r.Status)
			if r.Hung {
				t.Fatalf("the job did not end within %v:\n%s", commJobLimit, tail(r.Stderr))
			}
			if r.Status == 0 {
				t.Fatal("exit status 0 after a rank was killed")
			}
			r = train(t, dir, c, 2, 0)
			if from := restartedAt(t, r.Events); from != k {
				t.Errorf("the relaunch continues from step %d, want %d", from, k)
			}
			res.Recover = append(res.Recover, r.Elapsed)
			if !checkSame(t, dir, c, ref) {
				res.Lost++
			}
		})
		if ok {
			res.Survived++
		}
	}
	res.Note = "recovery: whole relaunch under mpirun"
	return res
}

// TestFaultRankKilled: see faultRankKilled.
func TestFaultRankKilled(t *testing.T) { faultRankKilled(t) }

// faultDiskFull: out_dir is a small tmpfs that fills up in the middle of
// the run. The failing write leaves the last checkpoint (and the previous
// one) intact and no temporary file, the run stops with exit status 1 and a
// message naming the full disk; after space is freed, the relaunch
// continues to the undisturbed result. Needs root (mount); skipped
// otherwise.
func faultDiskFull(t *testing.T) faultResult {
	res := faultResult{Scenario: "disk full during a write (tmpfs out_dir)"}
	c := faultCase()
	ref := undisturbed(t, c, 0)
	half := faultCase()
	half.Steps = faultSteps / 2
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", run).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", run).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", run, err, out)
		}
	})
	train(t, dir, half, 0, 0)
	path := filepath.Join(run, "checkpoint.h5")
	good := readCkpt(t, path, c)
	goodPrev := readCkpt(t, nfio.PrevPath(path), c)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Leave room for less than half a checkpoint.
	var st syscall.Statfs_t
	if err := syscall.Statfs(run, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	filler := filepath.Join(run, "filler")
	if err := os.WriteFile(filler, make([]byte, max(0, free-fi.Size()/2)), 0o644); err != nil {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	res.Trials++
	l := launch(t, dir, c)
	l.wait(t)
	errOut := l.err.String()
	t.Logf("with the disk full: exit status %d, stderr:\n%s", l.status, tail(errOut))
	survived := true
	if l.status != 1 || !strings.Contains(errOut, "no space left on device") {
		t.Errorf("exit status %d, want 1 and a message saying \"no space left on device\"", l.status)
		survived = false
	}
	for _, p := range []struct {
		path string
		want ckpt
	}{{path, good}, {nfio.PrevPath(path), goodPrev}} {
		k, err := loadCkpt(p.path, c.arch(t), c.Precision)
		if err != nil {
			t.Errorf("%s after the failed write: %v", filepath.Base(p.path), err)
			survived = false
			res.Lost++
			continue
		}
		if d := sameBits(k, p.want); d != "" {
			t.Errorf("%s changed by the failed write: %s", filepath.Base(p.path), d)
			survived = false
		}
	}
	if tmpLeft(dir) {
		t.Error("the failed write left its temporary file")
		survived = false
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	l = launch(t, dir, c)
	l.wait(t)
	if l.status != 0 {
		t.Fatalf("relaunch with space freed: exit status %d\n%s", l.status, tail(l.err.String()))
	}
	res.Recover = append(res.Recover, l.out.firstStep)
	if !checkSame(t, dir, c, ref) {
		res.Lost++
		survived = false
	}
	if survived {
		res.Survived++
	}
	res.Note = "stops with exit 1; continues once space is freed"
	return res
}

// TestFaultDiskFull: see faultDiskFull.
func TestFaultDiskFull(t *testing.T) { faultDiskFull(t) }

// TestOneDNNSignalRestart: a float32 run whose conditioner is wide enough
// for oneDNN (hidden [16]: `check` says so), stopped by SIGTERM and
// continued, equals the undisturbed run bit for bit — oneDNN's kernels are
// deterministic for a fixed shape and thread count — and so does a bf16
// run where the CPU runs bf16 natively (AVX512-BF16 or AMX; elsewhere its
// refusal is tested).
func TestOneDNNSignalRestart(t *testing.T) {
	for _, prec := range []string{"float32", "bf16"} {
		t.Run(prec, func(t *testing.T) {
			c := trainCase{Steps: 6, Hidden: []int{16}, ConvPrecision: prec}
			dir := t.TempDir()
			name := c.write(t, dir)
			out, errOut, status := runNF(t, dir, "check", name)
			if prec == "bf16" && status == 2 && strings.Contains(errOut, "native bf16") {
				t.Skipf("this CPU refuses bf16: %s", strings.TrimSpace(errOut))
			}
			if status != 0 || !strings.Contains(out, "convolutions oneDNN, "+prec+" inputs") {
				t.Fatalf("check: status %d, the convolutions are not on oneDNN in %s:\n%s%s", status, prec, out, errOut)
			}
			signalRestart(t, dir, c)
		})
	}
}

// signalRestart runs c in dir stopped by a signal after step 2, continues
// it, and checks that the result equals the undisturbed run bit for bit.
func signalRestart(t *testing.T, dir string, c trainCase) {
	t.Helper()
	ref := undisturbed(t, c, 0)
	train(t, dir, c, 0, 75, "NFSCHWINGER_FAULT=signal@2")
	l := launch(t, dir, c)
	l.wait(t)
	if l.status != 0 || restartedAt(t, l.events) != 3 {
		t.Fatalf("relaunch status %d, restart step %d, want 0 and 3:\n%s", l.status, restartedAt(t, l.events), tail(l.out.String()))
	}
	if !checkSame(t, dir, c, ref) {
		t.Error("the continued run differs from the undisturbed one")
	}
}

// TestBF16RefusedWhereEmulated: with oneDNN capped to plain AVX-512
// (ONEDNN_MAX_CPU_ISA=AVX512_CORE: the kernels of an AVX-512 CPU without
// bf16 instructions, where oneDNN emulates bf16 several times slower than
// float32), `check` and a run of conv_precision = "bf16" stop with exit
// status 2, one line naming model.conv_precision and the reason, and the
// run writes no file. Where this CPU has bf16 instructions, check without
// the cap accepts bf16 and names a native kernel.
func TestBF16RefusedWhereEmulated(t *testing.T) {
	c := trainCase{Steps: 2, Hidden: []int{16}, ConvPrecision: "bf16"}
	dir := t.TempDir()
	name := c.write(t, dir)
	for _, args := range [][]string{{"check", name}, {name}} {
		cmd := exec.Command(nfBinary, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "ONEDNN_MAX_CPU_ISA=AVX512_CORE")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("%v: %v, want exit status 2\n%s", args, err, errb.String())
		}
		msg := strings.TrimSpace(errb.String())
		if !strings.Contains(msg, "model.conv_precision") || !strings.Contains(msg, "native bf16") || strings.Count(msg, "\n") > 0 {
			t.Errorf("%v: want one line naming model.conv_precision and native bf16, got:\n%s", args, msg)
		}
	}
	for _, f := range []string{"checkpoint.h5", "history.h5", "chain.h5"} {
		if _, err := os.Stat(filepath.Join(dir, "run", f)); err == nil {
			t.Errorf("the refused run wrote run/%s", f)
		}
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	native := strings.Contains(string(cpuinfo), " avx512_bf16") || strings.Contains(string(cpuinfo), " amx_bf16")
	out, stderr, status := runNF(t, dir, "check", name)
	switch {
	case native && (status != 0 || !strings.Contains(out, "bf16")):
		t.Errorf("a CPU with bf16 instructions: check exit %d\n%s%s", status, out, stderr)
	case !native && status != 2:
		t.Errorf("a CPU without bf16 instructions: check exit %d, want 2\n%s%s", status, out, stderr)
	}
	t.Logf("this CPU (native bf16: %v): check exit %d %s", native, status, strings.TrimSpace(stderr))
}
