package slurm

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// These tests run the scripts with bash against stand-ins for srun,
// scontrol, scancel and sbatch that log their arguments, so every branch
// of the scripts' logic is exercised on any machine. tests/slurm_test.go
// runs them on a real Slurm.

// fakeSlurm writes the stand-ins into a new directory and returns it and
// the log file they append "command args..." lines to. The fake srun
// runs its command (what follows srun's options) once for each of
// FAKE_NTASKS ranks (default 1) with SLURM_PROCID set, as srun does, and
// returns the highest of their statuses; with FAKE_NOLAUNCH=1 it runs
// nothing and returns 0 (a step that failed to launch), with FAKE_TERM=1
// it then sends SIGTERM to the batch shell (as Slurm does at the time
// limit or on scancel). fakeProgram is the program the ranks run. The
// fake sbatch prints job ids 101, 102, ... in the --parsable form
// "id;cluster".
func fakeSlurm(t *testing.T) (bin, log string) {
	t.Helper()
	bin = t.TempDir()
	log = filepath.Join(bin, "calls.log")
	fakes := map[string]string{
		"srun": `echo "srun $*" >> "$FAKE_LOG"
while [ "$#" -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
[ "${FAKE_NOLAUNCH:-0}" = 1 ] && exit 0
max=0
for ((r = 0; r < ${FAKE_NTASKS:-1}; r++)); do
	SLURM_PROCID=$r "$@"
	s=$?
	[ "$s" -gt "$max" ] && max=$s
done
[ "${FAKE_TERM:-0}" = 1 ] && kill -TERM "$PPID"
exit "$max"`,
		"scontrol": `echo "scontrol $*" >> "$FAKE_LOG"`,
		"scancel":  `echo "scancel $*" >> "$FAKE_LOG"`,
		"sbatch": `echo "sbatch $*" >> "$FAKE_LOG"
n=$(grep -c '^sbatch' "$FAKE_LOG")
echo "$((100 + n));cluster"`,
	}
	for name, body := range fakes {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin, log
}

// fakeProgram stands in for nfschwinger in the job's directory: rank N
// exits with FAKE_STATUS_N, else FAKE_STATUS (default 0); a value "TERM"
// kills it with SIGTERM, as srun --kill-on-bad-exit ends the other ranks
// when one fails.
const fakeProgram = `#!/bin/bash
v=FAKE_STATUS_$SLURM_PROCID
s=${!v:-${FAKE_STATUS:-0}}
[ "$s" = TERM ] && kill -TERM $$
exit "$s"
`

// runScript runs bash script args with the fakes first on PATH and env
// added; it returns the exit status, the output and the logged calls.
func runScript(t *testing.T, script string, args, env []string) (status int, out string, calls []string) {
	t.Helper()
	bin, log := fakeSlurm(t)
	script, err := filepath.Abs(script)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Dir = t.TempDir()
	for _, name := range []string{"nfschwinger", "other-nfschwinger"} {
		if err := os.WriteFile(filepath.Join(cmd.Dir, name), []byte(fakeProgram), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Env = append([]string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE_LOG=" + log, "HOME=" + cmd.Dir}, env...)
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status = ee.ExitCode()
	case err != nil:
		t.Fatalf("bash %s: %v", script, err)
	}
	logged, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(string(logged)); s != "" {
		calls = strings.Split(s, "\n")
	}
	return status, string(b), calls
}

// rankScript returns the script each rank's bash runs, as
// nfschwinger.sbatch defines it (rank='...').
func rankScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("nfschwinger.sbatch")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^rank='([^']*)'$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("nfschwinger.sbatch: no rank='...' line")
	}
	return string(m[1])
}

// TestBatchScript checks what nfschwinger.sbatch does for each exit
// status of the program: requeue only after 75, not beyond max_requeues,
// not in a chain, not when the job is being cancelled; a failure in a
// chain cancels the chain's pending jobs.
func TestBatchScript(t *testing.T) {
	launch := "srun --mpi=pmix --kill-on-bad-exit=1 --cpus-per-task=3 bash -c " + rankScript(t) + " "
	srun := launch + ".nfschwinger-started-42-0 ./nfschwinger params.toml"
	job := []string{"SLURM_JOB_ID=42", "SLURM_CPUS_PER_TASK=3", "SLURM_JOB_NODELIST=n1", "USER=u"}
	tests := []struct {
		name       string
		env        []string
		args       []string
		wantStatus int
		wantCalls  []string
		wantOut    string
	}{
		{"finished", []string{"FAKE_STATUS=0"}, nil, 0, []string{srun}, "run complete"},
		{"stopped: requeue", []string{"FAKE_STATUS=75"}, nil, 75,
			[]string{srun, "scontrol requeue 42"}, "requeue 1 of at most 10"},
		{"stopped after 9 requeues: requeue", []string{"FAKE_STATUS=75", "SLURM_RESTART_COUNT=9"}, nil, 75,
			[]string{launch + ".nfschwinger-started-42-9 ./nfschwinger params.toml", "scontrol requeue 42"}, "requeue 10 of at most 10"},
		{"stopped after 10 requeues: no more", []string{"FAKE_STATUS=75", "SLURM_RESTART_COUNT=10"}, nil, 75,
			[]string{launch + ".nfschwinger-started-42-10 ./nfschwinger params.toml"}, "max_requeues = 10 reached"},
		{"max_requeues 0 from the environment", []string{"FAKE_STATUS=75", "NFSCHWINGER_MAX_REQUEUES=0"}, nil, 75,
			[]string{srun}, "max_requeues = 0 reached"},
		{"stopped in a chain: no requeue", []string{"FAKE_STATUS=75", "NFSCHWINGER_CHAIN=c1"}, nil, 75,
			[]string{srun}, "next job of chain c1 continues"},
		{"cancelled or out of time: no requeue", []string{"FAKE_STATUS=75", "FAKE_TERM=1"}, nil, 75,
			[]string{srun}, "not requeued (cancelled or out of time)"},
		{"failed", []string{"FAKE_STATUS=1"}, nil, 1, []string{srun}, "failed with exit status 1"},
		{"bad configuration", []string{"FAKE_STATUS=2"}, nil, 2, []string{srun}, "failed with exit status 2"},
		{"killed", []string{"FAKE_STATUS=137"}, nil, 137, []string{srun}, "failed with exit status 137"},
		{"srun 0 but the step never launched", []string{"FAKE_STATUS=0", "FAKE_NOLAUNCH=1"}, nil, 1, []string{srun},
			"the program never started"},
		{"failed in a chain: cancel the rest", []string{"FAKE_STATUS=1", "NFSCHWINGER_CHAIN=c1"}, nil, 1,
			[]string{srun, "scancel --state=PENDING --name=c1 --user=" + currentUser(t)}, "cancelling the pending jobs of chain c1"},
		{"other parameter file and program", []string{"FAKE_STATUS=0", "NFSCHWINGER=./other-nfschwinger"}, []string{"l16 run.toml"}, 0,
			[]string{launch + ".nfschwinger-started-42-0 ./other-nfschwinger l16 run.toml"}, "run complete"},
		{"two ranks stopped: requeue", []string{"SLURM_NTASKS=2", "FAKE_NTASKS=2", "FAKE_STATUS=75"}, nil, 75,
			[]string{srun, "scontrol requeue 42"}, "requeue 1 of at most 10"},
		{"bad configuration on rank 0, rank 1 ended by srun", []string{"SLURM_NTASKS=2", "FAKE_NTASKS=2", "FAKE_STATUS_0=2", "FAKE_STATUS_1=TERM"},
			nil, 2, []string{srun}, "rank 0 failed with exit status 2; srun returned 143"},
		{"rank 1 failed, rank 0 checkpointed: no requeue", []string{"SLURM_NTASKS=2", "FAKE_NTASKS=2", "FAKE_STATUS_0=75", "FAKE_STATUS_1=1"},
			nil, 1, []string{srun}, "rank 1 failed with exit status 1; srun returned 75"},
		{"rank 1 killed, rank 0 ended by srun", []string{"SLURM_NTASKS=2", "FAKE_NTASKS=2", "FAKE_STATUS_0=TERM", "FAKE_STATUS_1=137"},
			nil, 143, []string{srun}, "failed with exit status 143"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out, calls := runScript(t, "nfschwinger.sbatch", tc.args, append(job[:len(job):len(job)], tc.env...))
			if status != tc.wantStatus {
				t.Errorf("exit status %d, want %d", status, tc.wantStatus)
			}
			if strings.Join(calls, "\n") != strings.Join(tc.wantCalls, "\n") {
				t.Errorf("calls\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(tc.wantCalls, "\n"))
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, out)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
	t.Run("outside Slurm", func(t *testing.T) {
		status, out, calls := runScript(t, "nfschwinger.sbatch", nil, nil)
		if status == 0 || len(calls) != 0 || !strings.Contains(out, "not inside a Slurm job") {
			t.Errorf("status %d, calls %q, output:\n%s", status, calls, out)
		}
	})
}

func currentUser(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestSubmitChain checks that submit_chain.sh submits N jobs, each after
// the previous one with afterany, without requeue, under one chain name
// that the jobs see, and prints their ids.
func TestSubmitChain(t *testing.T) {
	script, err := filepath.Abs("submit_chain.sh")
	if err != nil {
		t.Fatal(err)
	}
	bin, log := fakeSlurm(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.toml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script, "3", "p.toml", "run.sbatch", "--partition=long")
	cmd.Dir = dir
	if err := os.WriteFile(filepath.Join(dir, "run.sbatch"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE_LOG=" + log, "NFSCHWINGER_CHAIN=ch"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("submit_chain.sh: %v", err)
	}
	if got := string(out); got != "101\n102\n103\n" {
		t.Errorf("printed %q, want the three job ids", got)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	common := "sbatch --parsable --no-requeue --job-name=ch --export=ALL,NFSCHWINGER_CHAIN=ch "
	want := common + "--partition=long run.sbatch p.toml\n" +
		common + "--dependency=afterany:101 --partition=long run.sbatch p.toml\n" +
		common + "--dependency=afterany:102 --partition=long run.sbatch p.toml\n"
	if string(calls) != want {
		t.Errorf("sbatch calls\n%s\nwant\n%s", calls, want)
	}

	for _, args := range [][]string{{}, {"0"}, {"x"}, {"2", "missing.toml"}} {
		c := exec.Command("bash", append([]string{script}, args...)...)
		c.Dir = dir
		c.Env = cmd.Env
		if err := c.Run(); err == nil {
			t.Errorf("submit_chain.sh %q succeeded, want a usage error", args)
		}
	}
}
