package slurm

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"nfschwinger/internal/golden"
	"nfschwinger/internal/params"
	nfio "nfschwinger/io"
)

// minimalParams is a valid params.toml; tests append a [slurm] section.
var minimalParams = params.Params{"lattice.L": 4, "train.steps": 10, "train.batch_size": 8,
	"train.micro_batch": 1, "train.seed": 1}.TOML()

// parseSlurm returns the [slurm] section of minimalParams + section as
// nfio parses it (defaults filled in, validated).
func parseSlurm(t *testing.T, section string) nfio.SlurmConfig {
	t.Helper()
	c, err := nfio.Parse(minimalParams + "[slurm]\n" + section)
	if err != nil {
		t.Fatalf("nfio.Parse([slurm] %q): %v", section, err)
	}
	return *c.Slurm
}

// sbatchLines returns the active #SBATCH directives of a script.
func sbatchLines(script string) []string {
	var d []string
	for _, l := range strings.Split(script, "\n") {
		if strings.HasPrefix(l, "#SBATCH ") {
			d = append(d, strings.TrimPrefix(l, "#SBATCH "))
		}
	}
	return d
}

// TestRenderDefaults: rendering the defaults of the [slurm] section gives
// back the template, apart from the two header lines naming the file, so
// the file in slurm/ and the defaults of params.toml agree.
func TestRenderDefaults(t *testing.T) {
	got, err := Render(parseSlurm(t, ""), "params.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(got, "\n")
	if len(lines) < 3 || !strings.Contains(lines[1], "nfschwinger slurm params.toml") {
		t.Fatalf("rendered script lacks the header:\n%s", got)
	}
	without := strings.Join(append(lines[:1:1], lines[3:]...), "\n")
	if without != Template {
		t.Errorf("defaults rendered differ from the template:\n%s", got)
	}
}

// TestRender checks the directives and variables of rendered scripts.
func TestRender(t *testing.T) {
	tests := []struct {
		name, section, params string
		want                  []string // #SBATCH directives, in order
		wantParams            string   // the value of $params in the job
		wantMaxRequeues       string
	}{
		{
			name:    "everything",
			section: "partition = \"gpu-long\"\naccount = \"lqcd_7\"\nnodes = 2\nntasks = 8\ncpus_per_task = 6\ngpus_per_task = 1\ntime = \"23:59:00\"\nsignal_seconds = 600\nmax_requeues = 4\n",
			params:  "l16.toml",
			want: []string{"--job-name=nfschwinger", "--nodes=2", "--ntasks=8", "--cpus-per-task=6", "--time=23:59:00",
				"--signal=USR1@600", "--requeue", "--open-mode=append", "--output=nfschwinger-%j.out",
				"--gpus-per-task=1", "--partition=gpu-long", "--account=lqcd_7"},
			wantParams: "l16.toml", wantMaxRequeues: "4",
		},
		{
			name:    "no partition, account or GPU; hours above 99",
			section: "ntasks = 4\ntime = \"120:00:00\"\nsignal_seconds = 90\nmax_requeues = 0\n",
			params:  "my run's params.toml",
			want: []string{"--job-name=nfschwinger", "--nodes=1", "--ntasks=4", "--cpus-per-task=1", "--time=120:00:00",
				"--signal=USR1@90", "--requeue", "--open-mode=append", "--output=nfschwinger-%j.out"},
			wantParams: "my run's params.toml", wantMaxRequeues: "0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(parseSlurm(t, tc.section), tc.params)
			if err != nil {
				t.Fatal(err)
			}
			if d := sbatchLines(got); strings.Join(d, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("#SBATCH directives\n%s\nwant\n%s", strings.Join(d, "\n"), strings.Join(tc.want, "\n"))
			}
			// Evaluate the variable lines as the job would, without
			// arguments and without the environment overrides.
			vars := regexp.MustCompile(`(?m)^(params|max_requeues)=.*$`).FindAllString(got, -1)
			if len(vars) != 2 {
				t.Fatalf("variable lines %q", vars)
			}
			out, err := exec.Command("bash", "-c", "unset NFSCHWINGER_MAX_REQUEUES; "+strings.Join(vars, "; ")+
				`; printf '%s\n%s' "$params" "$max_requeues"`).Output()
			if err != nil {
				t.Fatalf("bash: %v", err)
			}
			if want := tc.wantParams + "\n" + tc.wantMaxRequeues; string(out) != want {
				t.Errorf("params, max_requeues in the job = %q, want %q", out, want)
			}
		})
	}
}

// TestRenderRefuses: values that would break the script are errors.
func TestRenderRefuses(t *testing.T) {
	ok := parseSlurm(t, "")
	tests := []struct {
		name   string
		edit   func(*nfio.SlurmConfig)
		params string
	}{
		{"partition with a blank", func(s *nfio.SlurmConfig) { s.Partition = "a b" }, "p.toml"},
		{"account with a newline", func(s *nfio.SlurmConfig) { s.Account = "a\n#SBATCH --x" }, "p.toml"},
		{"signal as long as the limit", func(s *nfio.SlurmConfig) { s.Time, s.SignalSeconds = "00:05:00", 300 }, "p.toml"},
		{"time not HH:MM:SS", func(s *nfio.SlurmConfig) { s.Time = "1-00:00" }, "p.toml"},
		{"no tasks", func(s *nfio.SlurmConfig) { s.NTasks = 0 }, "p.toml"},
		{"negative requeues", func(s *nfio.SlurmConfig) { s.MaxRequeues = -1 }, "p.toml"},
		{"empty params", func(*nfio.SlurmConfig) {}, ""},
		{"params with a newline", func(*nfio.SlurmConfig) {}, "a\nb.toml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.edit(&s)
			if got, err := Render(s, tc.params); err == nil {
				t.Errorf("Render accepted it:\n%s", got)
			}
		})
	}
}

// TestShellcheck runs Debian's shellcheck on every script in this
// directory and on rendered scripts.
func TestShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed (apt-get install shellcheck, or make deps)")
	}
	scripts, err := filepath.Glob("*.sh")
	if err != nil {
		t.Fatal(err)
	}
	scripts = append(scripts, "nfschwinger.sbatch")
	dir := t.TempDir()
	for i, section := range []string{"", "partition = \"p\"\naccount = \"a\"\ngpus_per_task = 2\nntasks = 2\n"} {
		s, err := Render(parseSlurm(t, section), "odd name's.toml")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "rendered"+string(rune('0'+i))+".sbatch")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		scripts = append(scripts, p)
	}
	if len(scripts) < 4 {
		t.Fatalf("found only %v", scripts)
	}
	for _, s := range scripts {
		if out, err := exec.Command(sc, "--shell=bash", "--severity=style", s).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", s, err, out)
		}
	}
}

// TestRenderGolden: the script rendered for a production-like [slurm]
// section equals testdata/production.sbatch (`go test ./slurm/ -update`
// rewrites it; review the diff): every directive, the requeue logic and the
// srun line, as a user submits them.
func TestRenderGolden(t *testing.T) {
	s := parseSlurm(t, `partition = "gpu"
account = "lqcd"
nodes = 2
ntasks = 8
cpus_per_task = 8
gpus_per_task = 1
time = "24:00:00"
signal_seconds = 600
max_requeues = 20
`)
	got, err := Render(s, "params.toml")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "production.sbatch", []byte(got))
}
