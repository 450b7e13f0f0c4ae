package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gonum.org/v1/hdf5"

	"nfschwinger/internal/h5"
	"nfschwinger/internal/params"
	nfio "nfschwinger/io"
)

// TestSlurm starts a real single-node Slurm (Debian's slurm-wlm with its
// own munged) in a temporary directory, as root, and runs nfschwinger
// through the scripts of slurm/, the batch script rendered by
// `nfschwinger slurm params.toml`:
//
//   - srun -n 2 of tests/cmd/commcheck: two MPI ranks launched via PMIx;
//   - time limit: a 2-rank run far longer than its one-minute job gets
//     Slurm's signal (#SBATCH --signal=USR1@55) before the limit, writes a
//     checkpoint and stops with status 75; with max_requeues = 0 the job
//     is not requeued;
//   - a chain whose first job fails (bad parameters) cancels the rest;
//   - requeue: a run stopped twice by the signal is requeued twice and
//     finishes in its third job;
//   - chain: the same run submitted with slurm/submit_chain.sh, stopped in
//     its first job, finishes in the second; the later jobs find the run
//     complete and end at once.
//
// The requeued and the chained run must end with exactly (bit for bit)
// the parameters, optimizer state and history of the same run done
// uninterrupted. Every daemon the test started is stopped by its pid at
// the end, also when the test fails.
//
// Why the last two scenarios send the signal themselves: Slurm's shortest
// time limit is one minute and slurmctld looks at time limits only every
// 30 s, so a signal from the limit comes anywhere from 5 to 35 s into the
// job. A run sure to be caught by it would need well over 35 s of training
// on an idle machine, several minutes on a busy one, three times over (the
// uninterrupted reference and two runs). So "time limit" shows, once, that
// the --signal of the rendered script reaches the ranks; "requeue" and
// "chain" then deliver the same signal the same way, with
// `scancel --signal=USR1 JOB` (Slurm signals every task of the job's
// steps, not the batch shell, exactly as for --signal=USR1@S without B:),
// as soon as the job's output shows it is some way into the run. That
// makes the interruption certain at any machine speed and keeps the test
// at 1 to 2 minutes.
func TestSlurm(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the Slurm cluster test (1 to 2 minutes)")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: the Slurm test starts munged, slurmctld and slurmd as root")
	}
	for _, b := range []string{"munged", "slurmctld", "slurmd", "srun", "sbatch", "scontrol", "scancel", "sinfo", "squeue"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install slurm-wlm munge, or make deps): skipping the Slurm test", b)
		}
	}
	start := time.Now()
	work := t.TempDir()
	commcheck := filepath.Join(work, "commcheck")
	if out, err := exec.Command("go", "build", "-o", commcheck, "./cmd/commcheck").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/commcheck: %v\n%s", err, out)
	}
	chainScript, err := filepath.Abs("../slurm/submit_chain.sh")
	if err != nil {
		t.Fatal(err)
	}

	cl := startSlurm(t, filepath.Join(work, "cluster"))
	t.Logf("cluster up after %v", time.Since(start).Round(time.Millisecond))

	t.Run("srun commcheck", func(t *testing.T) {
		out, errOut, err := cl.run(work, "srun", "-n", "2", commcheck)
		if err != nil {
			t.Fatalf("srun -n 2 commcheck: %v\n%s", err, errOut)
		}
		checkReports(t, parseReports(t, out), 2, "*comm.mpiComm")
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("time limit", func(t *testing.T) {
		// Ten million steps: hours. The failing chain runs beside it.
		dir := newRunDir(t, work, "timelimit", slurmParams(10_000_000, "00:01:00", 55, 0).TOML())
		id := cl.sbatch(t, dir, "run.sbatch")
		bad := newRunDir(t, work, "badchain", slurmParams(100, "00:01:00", 55, 0).TOML())
		cl.renderScript(t, bad)
		badParams := slurmParams(100, "00:01:00", 55, 0).With("train.seed", -7).TOML()
		if err := os.WriteFile(filepath.Join(bad, "params.toml"), []byte(badParams), 0o644); err != nil {
			t.Fatal(err)
		}
		badJobs := cl.submitChain(t, bad, chainScript, 3)

		jobs := cl.waitJobs(t, append([]string{id}, badJobs...), 3*time.Minute)
		j := jobs[id]
		log := readFile(t, filepath.Join(dir, "nfschwinger-"+id+".out"))
		if j["JobState"] != "FAILED" || j["ExitCode"] != "75:0" || j["Restarts"] != "0" {
			t.Errorf("job %s: %s, exit code %s, %s restarts; want FAILED 75:0 (stopped, to be continued), not requeued",
				id, j["JobState"], j["ExitCode"], j["Restarts"])
		}
		if el := jobElapsed(j); el >= time.Minute {
			t.Errorf("job %s ran %v: not stopped before its time limit of 1 minute", id, el)
		}
		if !strings.Contains(log, "not requeued: max_requeues = 0 reached") || strings.Contains(log, "SIGTERM") {
			t.Errorf("job %s: want a stop by the --signal before the limit (no SIGTERM), not requeued for max_requeues = 0", id)
		}
		hist, err := nfio.ReadHistory(filepath.Join(dir, "run", "history.h5"))
		if err != nil || len(hist) == 0 {
			t.Errorf("no history of the stopped run: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "run", "checkpoint.h5")); err != nil {
			t.Errorf("no checkpoint after the signal: %v", err)
		}
		if t.Failed() {
			t.Logf("job %s: %v\noutput:\n%s", id, j, log)
		} else {
			t.Logf("job %s: signal, checkpoint and exit 75 after %v, at step %d", id, jobElapsed(j), hist[len(hist)-1].Step)
		}

		t.Run("failed chain", func(t *testing.T) {
			first := jobs[badJobs[0]]
			if first["JobState"] != "FAILED" || first["ExitCode"] != "2:0" {
				t.Errorf("job 1 (%s) with bad parameters: %s %s, want FAILED 2:0", badJobs[0], first["JobState"], first["ExitCode"])
			}
			for _, id := range badJobs[1:] {
				if st := jobs[id]["JobState"]; st != "CANCELLED" {
					t.Errorf("job %s after the failed job: %s, want CANCELLED", id, st)
				}
			}
			if t.Failed() {
				t.Logf("output of job 1:\n%s", readFile(t, filepath.Join(bad, "nfschwinger-"+badJobs[0]+".out")))
			}
		})
	})

	// The reference: the same run uninterrupted (srun, no time limit).
	// The runs go one after the other: MPI ranks sharing cores with other
	// ranks wait for each other in every allreduce.
	params := slurmParams(slurmSteps, "00:10:00", 300, 3).TOML()
	ref := newRunDir(t, work, "reference", params)
	refStart := time.Now()
	out, errOut, err := cl.runFor(slurmWaitLimit, ref, "srun", "-n", "2", "./nfschwinger", "params.toml")
	if err != nil || !strings.Contains(out, "training done") {
		t.Fatalf("reference run: %v\n%s%s", err, out, errOut)
	}
	refState := readRunState(t, ref)
	if n := len(refState.history); n == 0 || refState.history[n-1].Step != slurmSteps {
		t.Fatalf("reference history does not end at step %d", slurmSteps)
	}
	t.Logf("reference run: %d steps in %v", slurmSteps, time.Since(refStart).Round(100*time.Millisecond))

	t.Run("requeue", func(t *testing.T) {
		dir := newRunDir(t, work, "requeue", params)
		id := cl.sbatch(t, dir, "run.sbatch")
		out := filepath.Join(dir, "nfschwinger-"+id+".out")
		cl.signalAt(t, id, out, 0, slurmSteps/6)
		cl.signalAt(t, id, out, 1, slurmSteps/2)
		j := cl.waitJobs(t, []string{id}, slurmWaitLimit)[id]
		log := readFile(t, out)
		defer func() {
			if t.Failed() {
				t.Logf("job %s: %v\noutput:\n%s", id, j, log)
			}
		}()
		if j["JobState"] != "COMPLETED" || j["ExitCode"] != "0:0" || j["Restarts"] != "2" {
			t.Errorf("job %s: %s, exit code %s, %s restarts; want COMPLETED 0:0 after 2", id, j["JobState"], j["ExitCode"], j["Restarts"])
		}
		for _, want := range []string{"requeue 1 of at most 3", "requeue 2 of at most 3", "run complete"} {
			if !strings.Contains(log, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if n := checkContinued(t, log); n != 2 {
			t.Errorf("the run continued %d times from a checkpoint, want 2", n)
		}
		compareRuns(t, refState, readRunState(t, dir))
	})

	t.Run("chain", func(t *testing.T) {
		dir := newRunDir(t, work, "chain", params)
		cl.renderScript(t, dir)
		ids := cl.submitChain(t, dir, chainScript, slurmChainJobs)
		cl.signalAt(t, ids[0], filepath.Join(dir, "nfschwinger-"+ids[0]+".out"), 0, slurmSteps/3)
		jobs := cl.waitJobs(t, ids, slurmWaitLimit)
		var logs []string
		for i, id := range ids {
			j, log := jobs[id], readFile(t, filepath.Join(dir, "nfschwinger-"+id+".out"))
			logs = append(logs, fmt.Sprintf("job %d, %s: %v\n%s", i+1, id, j, log))
			var want string
			switch i {
			case 0:
				want = "the next job of chain"
				if j["JobState"] != "FAILED" || j["ExitCode"] != "75:0" {
					t.Errorf("job 1 (%s): %s %s, want FAILED 75:0 (stopped, to be continued)", id, j["JobState"], j["ExitCode"])
				}
			case 1:
				want = "run complete"
				if n := checkContinued(t, log); n != 1 {
					t.Errorf("job 2 (%s) continued %d times from a checkpoint, want once", id, n)
				}
			default:
				want = "run complete: "
				if el := jobElapsed(j); el > slurmQuickJob {
					t.Errorf("job %d (%s) after the end of the run took %v, want < %v", i+1, id, el, slurmQuickJob)
				}
			}
			if i > 0 && (j["JobState"] != "COMPLETED" || j["ExitCode"] != "0:0") {
				t.Errorf("job %d (%s): %s %s, want COMPLETED 0:0", i+1, id, j["JobState"], j["ExitCode"])
			}
			if j["Restarts"] != "0" {
				t.Errorf("job %d (%s) of a chain was requeued", i+1, id)
			}
			if !strings.Contains(log, want) {
				t.Errorf("job %d (%s): output lacks %q", i+1, id, want)
			}
		}
		if t.Failed() {
			t.Logf("%s", strings.Join(logs, "\n"))
		}
		compareRuns(t, refState, readRunState(t, dir))
	})
	t.Logf("TestSlurm took %v", time.Since(start).Round(time.Second))
}

const (
	// slurmSteps is the length of the requeued and chained runs: 5 to 15
	// s of training on 2 busy cores.
	slurmSteps = 3000
	// slurmChainJobs is the length of the chain: the run needs two jobs,
	// the other two find it complete.
	slurmChainJobs = 4
	// slurmWaitLimit bounds the wait for a run.
	slurmWaitLimit = 3 * time.Minute
	// slurmQuickJob is how long a job may take that finds the run
	// complete (start-up of two ranks, reading the checkpoint).
	slurmQuickJob = 15 * time.Second
)

// slurmParams is the params.toml of the test runs: a tiny lattice and
// flow (a step takes milliseconds), two ranks, checkpoints only at the end
// and on signals (so a continued run must start from the one the signal
// wrote), and the given [slurm] time limit, signal_seconds and
// max_requeues.
func slurmParams(steps int, limit string, signal, requeues int) params.Params {
	return params.Tiny().With("model.hidden_channels", []int{4}, "model.dilation", []int{1, 2},
		"train.steps", steps, "train.batch_size", 16, "train.micro_batch", 8, "train.log_every", 10,
		"train.checkpoint_every", 0, "slurm.ntasks", 2, "slurm.time", limit,
		"slurm.signal_seconds", signal, "slurm.max_requeues", requeues)
}

// renderScript writes dir/run.sbatch with `nfschwinger slurm params.toml`.
func (cl *slurmCluster) renderScript(t *testing.T, dir string) {
	t.Helper()
	script, errOut, err := cl.run(dir, "./nfschwinger", "slurm", "params.toml")
	if err != nil {
		t.Fatalf("nfschwinger slurm params.toml: %v\n%s%s", err, script, errOut)
	}
	for _, want := range []string{"#SBATCH --ntasks=2", "#SBATCH --signal=USR1@", "#SBATCH --requeue", "srun --mpi=pmix --kill-on-bad-exit=1"} {
		if !strings.Contains(script, want) {
			t.Fatalf("rendered script lacks %q:\n%s", want, script)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "run.sbatch"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// sbatch renders the script in dir and submits it; it returns the job id.
func (cl *slurmCluster) sbatch(t *testing.T, dir, script string) string {
	t.Helper()
	cl.renderScript(t, dir)
	out, errOut, err := cl.run(dir, "sbatch", "--parsable", script)
	if err != nil {
		t.Fatalf("sbatch: %v\n%s", err, errOut)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(out), ";")
	return id
}

// submitChain runs slurm/submit_chain.sh n params.toml run.sbatch in dir
// and returns the job ids it printed.
func (cl *slurmCluster) submitChain(t *testing.T, dir, chainScript string, n int) []string {
	t.Helper()
	out, errOut, err := cl.run(dir, chainScript, strconv.Itoa(n), "params.toml", "run.sbatch")
	if err != nil {
		t.Fatalf("submit_chain.sh: %v\n%s", err, errOut)
	}
	ids := strings.Fields(out)
	if len(ids) != n {
		t.Fatalf("submit_chain.sh printed %q, want %d job ids", out, n)
	}
	return ids
}

// progressRe matches the program's progress lines, "step 120/3000 ...".
var progressRe = regexp.MustCompile(`(?m)^step (\d+)/\d+ `)

// signalAt waits until job id, in its instance after `restarts` requeues,
// has printed progress at step minStep or later to its output file out,
// and then sends it SIGUSR1 with scancel as Slurm's --signal would. The
// test fails if the job ends first.
func (cl *slurmCluster) signalAt(t *testing.T, id, out string, restarts, minStep int) {
	t.Helper()
	marker := fmt.Sprintf(", restart %d, ", restarts) // the script's start line
	deadline := time.Now().Add(slurmWaitLimit)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(out)
		s := string(b)
		if i := strings.LastIndex(s, marker); i >= 0 {
			s = s[i:]
			if strings.Contains(s, "nfschwinger.sbatch: job "+id+": run complete") || strings.Contains(s, "stopped with a checkpoint") {
				t.Fatalf("job %s (restart %d) ended before the test could signal it at step %d:\n%s", id, restarts, minStep, b)
			}
			steps := progressRe.FindAllStringSubmatch(s, -1)
			if len(steps) > 0 {
				if n, _ := strconv.Atoi(steps[len(steps)-1][1]); n >= minStep {
					if _, errOut, err := cl.run(cl.dir, "scancel", "--signal=USR1", id); err != nil {
						t.Fatalf("scancel --signal=USR1 %s: %v\n%s", id, err, errOut)
					}
					t.Logf("job %s (restart %d): SIGUSR1 at step %d", id, restarts, n)
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s (restart %d) did not reach step %d within %v", id, restarts, minStep, slurmWaitLimit)
}

// newRunDir makes dir/name with params.toml and a link to the binary, as
// a user's run directory.
func newRunDir(t *testing.T, dir, name, params string) string {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "params.toml"), []byte(params), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(nfBinary, filepath.Join(d, "nfschwinger")); err != nil {
		t.Fatal(err)
	}
	return d
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
	}
	return string(b)
}

// restartRe matches the program's line when it continues a run.
var restartRe = regexp.MustCompile(`restarting from \S+ at step (\d+)`)

// checkContinued returns how often a job's output shows the run continue
// from a checkpoint, and checks that it always continued past step 0:
// from the checkpoint the signal wrote (checkpoint_every = 0).
func checkContinued(t *testing.T, log string) int {
	t.Helper()
	ms := restartRe.FindAllStringSubmatch(log, -1)
	for _, m := range ms {
		if s, _ := strconv.Atoi(m[1]); s <= 0 {
			t.Errorf("continued from step %s, want the step the signal stopped at", m[1])
		}
	}
	return len(ms)
}

// runState is what must agree between runs: every dataset under /model and
// /optimizer of checkpoint.h5, and the history.
type runState struct {
	datasets map[string][]float64
	history  []nfio.HistoryRow
}

// readRunState reads dir/run/checkpoint.h5 and dir/run/history.h5.
func readRunState(t *testing.T, dir string) runState {
	t.Helper()
	f, err := h5.Open(filepath.Join(dir, "run", "checkpoint.h5"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st := runState{datasets: map[string][]float64{}}
	for _, g := range []string{"/model", "/optimizer"} {
		for _, p := range h5Datasets(t, f, g) {
			d, _, err := h5.Read[float64](f, p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			st.datasets[p] = d
		}
	}
	if len(st.datasets) == 0 {
		t.Fatalf("%s/run/checkpoint.h5 has no datasets under /model and /optimizer", dir)
	}
	st.history, err = nfio.ReadHistory(filepath.Join(dir, "run", "history.h5"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// h5Datasets lists the paths of the datasets under group, recursively.
func h5Datasets(t *testing.T, f *h5.File, group string) []string {
	t.Helper()
	if !f.Exists(group) {
		return nil
	}
	g, err := f.Raw().OpenGroup(group)
	if err != nil {
		t.Fatalf("open %s: %v", group, err)
	}
	defer g.Close()
	n, err := g.NumObjects()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for i := range n {
		name, err := g.ObjectNameByIndex(i)
		if err != nil {
			t.Fatal(err)
		}
		typ, err := g.ObjectTypeByIndex(i)
		if err != nil {
			t.Fatal(err)
		}
		switch p := group + "/" + name; typ {
		case hdf5.H5G_GROUP:
			paths = append(paths, h5Datasets(t, f, p)...)
		case hdf5.H5G_DATASET:
			paths = append(paths, p)
		}
	}
	return paths
}

// compareRuns requires got to equal want bit for bit: the same datasets
// with the same values, and the same history apart from the wall time.
func compareRuns(t *testing.T, want, got runState) {
	t.Helper()
	for p, w := range want.datasets {
		g, ok := got.datasets[p]
		switch {
		case !ok:
			t.Errorf("checkpoint lacks %s", p)
		case len(g) != len(w):
			t.Errorf("%s: %d values, want %d", p, len(g), len(w))
		default:
			for i := range w {
				if math.Float64bits(g[i]) != math.Float64bits(w[i]) {
					t.Errorf("%s[%d] = %v, uninterrupted run %v (and maybe more)", p, i, g[i], w[i])
					break
				}
			}
		}
	}
	if len(got.datasets) != len(want.datasets) {
		t.Errorf("checkpoint has %d datasets, the uninterrupted run's %d", len(got.datasets), len(want.datasets))
	}
	if len(got.history) != len(want.history) {
		t.Errorf("history has %d rows, the uninterrupted run's %d", len(got.history), len(want.history))
		return
	}
	for i, w := range want.history {
		g := got.history[i]
		g.WallTime, w.WallTime = 0, 0
		// %v prints a float64 exactly (shortest round-trip form), and NaN
		// (a column not measured) as NaN in both.
		if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
			t.Errorf("history row %d = %+v, uninterrupted run %+v (and maybe more)", i, g, w)
			return
		}
	}
}

// jobElapsed is the run time of a job from its RunTime field ("[D-]HH:MM:SS").
func jobElapsed(j map[string]string) time.Duration {
	s := j["RunTime"]
	var d, h, m, sec int
	if _, err := fmt.Sscanf(s, "%d-%d:%d:%d", &d, &h, &m, &sec); err != nil {
		d = 0
		if _, err := fmt.Sscanf(s, "%d:%d:%d", &h, &m, &sec); err != nil {
			return math.MaxInt64
		}
	}
	return time.Duration(((d*24+h)*60+m)*60+sec) * time.Second
}

// slurmCluster is a running single-node Slurm: its configuration and the
// environment its commands need.
type slurmCluster struct {
	dir, conf string
	env       []string
}

// startSlurm writes a configuration into dir and starts munged, slurmctld
// and slurmd, waiting until the node is idle. A cleanup cancels every job
// and stops the daemons by pid (SIGTERM, then SIGKILL after 10 s); on
// failure it logs the daemons' logs.
//
// Configuration: one node "nf1" with 2 CPUs on this host, a partition
// that may be oversubscribed 4 times, PMIx as the default MPI plugin,
// processes tracked by /proc (no cgroups), its own TmpFS (the PMIx plugin
// keeps /tmp/spmix_appdir_UID_JOB.STEP there, and a stale one of another
// cluster with the same job id makes a step fail to launch), credentials that expire after
// 5 s so a requeued job may start again 5 s later (default 120 s), and a
// scheduler that looks at pending jobs every second.
func startSlurm(t *testing.T, dir string) *slurmCluster {
	t.Helper()
	for _, d := range []string{"munge", "state", "spool", "log", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ = strings.Cut(host, ".")
	ports := freePorts(t, 2)
	key := make([]byte, 1024)
	rand.Read(key)
	keyFile := filepath.Join(dir, "munge", "munge.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "munge", "munge.sock")
	conf := filepath.Join(dir, "slurm.conf")
	text := fmt.Sprintf(`# Single-node Slurm of nfschwinger's tests/slurm_test.go
ClusterName=nftest
SlurmctldHost=%[1]s(127.0.0.1)
SlurmctldPort=%[2]d
SlurmdPort=%[3]d
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=%[4]s,cred_expire=5
StateSaveLocation=%[5]s/state
SlurmdSpoolDir=%[5]s/spool
SlurmctldPidFile=%[5]s/slurmctld.pid
SlurmdPidFile=%[5]s/slurmd.pid
SlurmctldLogFile=%[5]s/log/slurmctld.log
SlurmdLogFile=%[5]s/log/slurmd.log
TmpFS=%[5]s/tmp
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
InactiveLimit=0
KillWait=10
MinJobAge=600
NodeName=nf1 NodeAddr=127.0.0.1 NodeHostname=%[1]s CPUs=2 State=UNKNOWN
PartitionName=test Nodes=nf1 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
`, host, ports[0], ports[1], socket, dir)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cl := &slurmCluster{dir: dir, conf: conf, env: slurmEnv(conf)}

	var daemons []*exec.Cmd
	t.Cleanup(func() {
		cl.shutdown(t, daemons)
		if t.Failed() {
			for _, f := range []string{"slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"} {
				b, _ := os.ReadFile(filepath.Join(dir, "log", f))
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("%s (end):\n%s", f, b)
			}
		}
	})
	startDaemon := func(name string, args ...string) {
		out, err := os.Create(filepath.Join(dir, "log", name+".out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd := exec.Command(name, args...)
		cmd.Env = cl.env
		cmd.Stdout, cmd.Stderr = out, out
		// Should the test process die before its cleanup (a panic, the
		// go test timeout), the kernel sends the daemon SIGTERM.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", name, err)
		}
		daemons = append(daemons, cmd)
	}

	startDaemon("munged", "--foreground", "--force", "--key-file="+keyFile, "--socket="+socket,
		"--pid-file="+filepath.Join(dir, "munge", "munged.pid"), "--seed-file="+filepath.Join(dir, "munge", "munged.seed"),
		"--log-file="+filepath.Join(dir, "log", "munged.log"))
	waitFor(t, 10*time.Second, "munged's socket", func() bool {
		_, err := os.Stat(socket)
		return err == nil
	})
	startDaemon("slurmctld", "-D", "-i", "-f", conf)
	startDaemon("slurmd", "-D", "-N", "nf1", "-f", conf)
	waitFor(t, 30*time.Second, "the node to be idle", func() bool {
		out, _, err := cl.run(dir, "sinfo", "-h", "-n", "nf1", "-o", "%T")
		return err == nil && strings.TrimSpace(out) == "idle"
	})
	return cl
}

// shutdown cancels every job of the cluster, waits for them to end, and
// stops the daemons in reverse order of their start, by pid.
func (cl *slurmCluster) shutdown(t *testing.T, daemons []*exec.Cmd) {
	if len(daemons) >= 2 { // slurmctld runs
		cl.run(cl.dir, "scancel", "--user=root")
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			out, _, err := cl.run(cl.dir, "squeue", "-h", "-o", "%i")
			if err != nil || strings.TrimSpace(out) == "" {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	for i := len(daemons) - 1; i >= 0; i-- {
		cmd := daemons[i]
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not stop within 10 s of SIGTERM: killing it", cmd.Path, cmd.Process.Pid)
			cmd.Process.Kill()
			<-done
		}
	}
}

// slurmEnv is the environment of the cluster's daemons and commands: this
// process's without anything of an enclosing Slurm job, MPI launch or
// thread setting, plus SLURM_CONF and what lets Open MPI run as root.
func slurmEnv(conf string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "SLURM_"), strings.HasPrefix(k, "SBATCH_"), strings.HasPrefix(k, "SRUN_"),
			strings.HasPrefix(k, "SALLOC_"), strings.HasPrefix(k, "PMI"), strings.HasPrefix(k, "OMPI_COMM_WORLD"),
			strings.HasPrefix(k, "NFSCHWINGER"), k == "GOMAXPROCS", k == "OPENBLAS_NUM_THREADS":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "SLURM_CONF="+conf, "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
}

// run runs argv in dir with the cluster's environment, for at most a
// minute, and returns its stdout and stderr.
func (cl *slurmCluster) run(dir string, argv ...string) (stdout, stderr string, err error) {
	return cl.runFor(time.Minute, dir, argv...)
}

// runFor is run with a time limit.
func (cl *slurmCluster) runFor(limit time.Duration, dir string, argv ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = cl.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%v: timed out: %w", argv, ctx.Err())
	}
	return out.String(), errb.String(), err
}

// jobFinal lists the states in which a job has ended for good (a requeued
// job passes through REQUEUED and PENDING instead).
var jobFinal = []string{"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}

// waitJobs waits until every job in ids has ended for good and returns
// their `scontrol show job` fields.
func (cl *slurmCluster) waitJobs(t *testing.T, ids []string, limit time.Duration) map[string]map[string]string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		jobs := map[string]map[string]string{}
		pending := []string{}
		for _, id := range ids {
			out, errOut, err := cl.run(cl.dir, "scontrol", "-o", "show", "job", id)
			if err != nil {
				t.Fatalf("scontrol show job %s: %v\n%s", id, err, errOut)
			}
			j := map[string]string{}
			for _, f := range strings.Fields(out) {
				if k, v, ok := strings.Cut(f, "="); ok {
					j[k] = v
				}
			}
			jobs[id] = j
			if !slices.Contains(jobFinal, j["JobState"]) {
				pending = append(pending, id+" "+j["JobState"])
			}
		}
		if len(pending) == 0 {
			return jobs
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not ended within %v: %v", limit, pending)
		}
		time.Sleep(time.Second)
	}
}

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// waitFor polls cond every 200 ms until it holds, failing the test after
// limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
