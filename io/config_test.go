package nfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// minimal is the smallest valid params.toml: the required keys only.
const minimal = `
[lattice]
L = 8
[train]
steps = 100
batch_size = 64
seed = 7
`

// TestCheckRanksDefaultMicroBatch: without micro_batch every rank takes its
// whole share in one pass, so any rank count that divides the batch works;
// with an explicit micro_batch it must divide the share.
func TestCheckRanksDefaultMicroBatch(t *testing.T) {
	c, err := Parse(minimal) // batch_size = 64, no micro_batch
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{1, 2, 4, 64} {
		if err := c.CheckRanks(r); err != nil {
			t.Errorf("%d ranks: %v", r, err)
		}
	}
	if err := c.CheckRanks(3); err == nil {
		t.Error("3 ranks for a batch of 64 accepted")
	}
	e, err := Parse(minimal + "micro_batch = 32\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.CheckRanks(4); err == nil {
		t.Error("micro_batch 32 accepted for a per-rank batch of 16")
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse(minimal)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Lat.L = 8
	want.Train.Steps, want.Train.BatchSize, want.Train.Seed = 100, 64, 7
	// Defaults that follow other keys.
	want.Train.MicroBatch = 64
	want.Train.AcceptanceSamples = 64
	want.Sample.BatchSize = 64
	want.Sample.Seed = 7
	want.Text = minimal
	want.microDefault = true
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Parse(minimal) =\n%+v\nwant\n%+v", c, want)
	}
	if c.Slurm != nil {
		t.Error("no [slurm] section, but Slurm is set")
	}
	if got, want := c.Lattice(), (lgt.Params{L: 8, Beta: 2, Kappa: 0.276}); got != want {
		t.Errorf("Lattice() = %+v, want %+v", got, want)
	}
	if got, want := c.Arch(), nf.DefaultArch(8); !reflect.DeepEqual(got, want) {
		t.Errorf("Arch() = %+v, want the paper's %+v", got, want)
	}
}

// TestParseHMC: an HMC baseline file needs [lattice] and [sample] only;
// it runs on any number of ranks (one chain each), whatever the batch
// keys of [train] would say.
func TestParseHMC(t *testing.T) {
	c, err := Parse("[lattice]\nL = 8\n[sample]\nmethod = \"hmc\"\nn_samples = 100\nseed = 4\nmd_steps = 12\nstart = \"cold\"")
	if err != nil {
		t.Fatal(err)
	}
	if !c.HMC() || c.Sample.Seed != 4 || c.Sample.MDSteps != 12 || c.Sample.TrajectoryLength != 1 || c.Train.Steps != 0 {
		t.Errorf("sample %+v, train steps %d", c.Sample, c.Train.Steps)
	}
	for _, r := range []int{1, 2, 7} {
		if err := c.CheckRanks(r); err != nil {
			t.Errorf("%d ranks: %v", r, err)
		}
	}
	d, _ := Parse(minimal)
	if d.HMC() || d.Sample.Method != MethodNMCMC {
		t.Errorf("default method %q", d.Sample.Method)
	}
}

func TestParseFull(t *testing.T) {
	text := `
[lattice]
L = 16
beta = 2.5
kappa = 0.25
[model]
n_layers = 8
n_knots = 5
hidden_channels = [32]
kernel_size = 5
dilation = [1, 2]
masking = "2x1"
precision = "float64"
[train]
estimator = "rt"
steps = 10
batch_size = 1536
micro_batch = 512
learning_rate = 1      # an integer where a float is expected is fine
adam_betas = [0.8, 0.99]
adam_eps = 1e-6
grad_clip = 5.0
grad_clip_value = 0.1
seed = 123
log_every = 1
checkpoint_every = 0
acceptance_every = 5
acceptance_samples = 32
[io]
out_dir = "out/L16"
restart = "never"
[sample]
n_samples = 1000
batch_size = 100
save_configs = true
seed = 9
[slurm]
partition = "gpu"
ntasks = 3
time = "48:00:00"
`
	c, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if c.Lat != (LatticeConfig{L: 16, Beta: 2.5, Kappa: 0.25}) {
		t.Errorf("lattice %+v", c.Lat)
	}
	m := c.Model
	if m.NLayers != 8 || m.NKnots != 5 || !reflect.DeepEqual(m.HiddenChannels, []int{32}) || m.KernelSize != 5 ||
		!reflect.DeepEqual(m.Dilation, []int{1, 2}) || m.Precision != "float64" {
		t.Errorf("model %+v", m)
	}
	tr := c.Train
	if tr.Estimator != "rt" || tr.MicroBatch != 512 || tr.LearningRate != 1 || tr.AdamBetas[0] != 0.8 ||
		tr.AdamEps != 1e-6 || tr.GradClip != 5 || tr.GradClipValue != 0.1 || tr.Seed != 123 || tr.CheckpointEvery != 0 ||
		tr.AcceptanceEvery != 5 || tr.AcceptanceSamples != 32 {
		t.Errorf("train %+v", tr)
	}
	if c.IO != (IOConfig{OutDir: "out/L16", Restart: "never"}) {
		t.Errorf("io %+v", c.IO)
	}
	if c.Sample != (SampleConfig{Method: MethodNMCMC, NSamples: 1000, BatchSize: 100, SaveConfigs: true, Seed: 9, TrajectoryLength: 1, MDSteps: 10, Start: "cold"}) {
		t.Errorf("sample %+v", c.Sample)
	}
	want := defaultSlurm()
	want.Partition, want.NTasks, want.Time = "gpu", 3, "48:00:00"
	if c.Slurm == nil || *c.Slurm != want {
		t.Errorf("slurm %+v, want %+v", c.Slurm, want)
	}
	if c.Slurm.TimeLimitSeconds() != 48*3600 {
		t.Errorf("time limit %d s", c.Slurm.TimeLimitSeconds())
	}
	if c.Text != text {
		t.Error("Text is not the parsed text")
	}
}

// TestParseErrors checks that every kind of bad input is refused with a
// message that names the key (and, for values, what is allowed).
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		edit   string // merged into minimal by mergeTOML; used as is after a leading "!"
		want   string // substring of the error
		keyErr bool   // the error is a *KeyError
	}{
		{"L not multiple of 4", "[lattice]\nL = 6", "lattice.L = 6: must be a positive multiple of 4", true},
		{"L zero", "[lattice]\nL = 0", "lattice.L = 0", true},
		{"beta negative", "[lattice]\nL = 8\nbeta = -1.0", "lattice.beta = -1: must be finite", true},
		{"kappa nan", "[lattice]\nL = 8\nkappa = nan", "lattice.kappa = NaN", true},
		{"unknown key", "[lattice]\nL = 8\nbta = 2.0", "lattice.bta: unknown key (allowed in [lattice]: L, beta, kappa)", true},
		{"unknown section", "[lattice]\nL = 8\n[optimiser]\nlr = 1.0", "optimiser: unknown key or section", true},
		{"key under the untagged field", "!-.00 = 0", "-.00: unknown section [-]", true}, // found by FuzzParse: panicked
		{"top-level key", "L = 8\n[lattice]\nL = 8", "L: unknown key or section", true},
		{"section as value", "!lattice = 8\n[train]\nsteps = 1", "lattice: must be a section [lattice]", true},
		{"wrong type string", "[lattice]\nL = 8\n[model]\nn_layers = \"48\"", "model.n_layers: wrong type", true},
		{"wrong type float for int", "[lattice]\nL = 8.5", "lattice.L: wrong type", true},
		{"wrong type scalar for list", "[lattice]\nL = 8\n[model]\nhidden_channels = 64", "model.hidden_channels: wrong type", true},
		{"syntax", "[lattice\nL = 8", "line", false},
		{"duplicate key", "!" + minimal + "[lattice]\nL = 12", "already been defined", false},
		{"missing L", "!" + strings.Replace(minimal, "L = 8", "beta = 2.0", 1), "lattice.L: required", true},
		{"missing seed", "!" + strings.Replace(minimal, "seed = 7", "", 1), "train.seed: required", true},
		{"n_layers", "[lattice]\nL = 8\n[model]\nn_layers = 0", "model.n_layers = 0: must be ≥ 1", true},
		{"n_knots", "[lattice]\nL = 8\n[model]\nn_knots = 1", "model.n_knots = 1", true},
		{"kernel even", "[lattice]\nL = 8\n[model]\nkernel_size = 4", "model.kernel_size = 4: must be odd", true},
		{"dilation length", "[lattice]\nL = 8\n[model]\ndilation = [1, 2]", "model.dilation = [1, 2]: needs one entry per convolution, len(hidden_channels) + 1 = 3", true},
		{"dilation zero", "[lattice]\nL = 8\n[model]\ndilation = [1, 0, 3]", "model.dilation = [1, 0, 3]: every entry must be ≥ 1", true},
		{"dilation too wide", "[lattice]\nL = 4\n[model]\ndilation = [1, 2, 4]", "padding 4", true},
		{"hidden zero", "[lattice]\nL = 8\n[model]\nhidden_channels = [64, 0]", "model.hidden_channels = [64, 0]", true},
		{"masking", "[lattice]\nL = 8\n[model]\nmasking = \"plaq\"", `model.masking = "plaq": allowed: "2x1"`, true},
		{"precision", "[lattice]\nL = 8\n[model]\nprecision = \"float16\"", `model.precision = "float16": allowed: "float32", "float64"`, true},
		{"conv_precision", "[lattice]\nL = 8\n[model]\nconv_precision = \"fp16\"", `model.conv_precision = "fp16": allowed: "float32", "bf16"`, true},
		{"conv_algorithm", "[lattice]\nL = 8\n[model]\nconv_algorithm = \"winograd\"", `model.conv_algorithm = "winograd": allowed: "auto", "direct"`, true},
		{"bf16 float64", "[lattice]\nL = 8\n[model]\nprecision = \"float64\"\nconv_precision = \"bf16\"", `model.conv_precision = "bf16": needs model.precision = "float32" (here "float64")`, true},
		{"estimator", "[lattice]\nL = 8\n[train]\nestimator = \"sgd\"", `train.estimator = "sgd": allowed: "reinforce", "rt", "path"`, true},
		{"micro batch does not divide", "[lattice]\nL = 8\n[train]\nmicro_batch = 48", "train.micro_batch = 48: must divide train.batch_size = 64", true},
		{"micro batch zero", "[lattice]\nL = 8\n[train]\nmicro_batch = 0", "train.micro_batch = 0: must be ≥ 1", true},
		{"batch zero", "[lattice]\nL = 8\n[train]\nsteps = 1\nbatch_size = 0\nseed = 1", "train.batch_size = 0", true},
		{"learning rate negative", "[lattice]\nL = 8\n[train]\nlearning_rate = -1", "train.learning_rate = -1: must be > 0", true},
		{"learning rate inf", "[lattice]\nL = 8\n[train]\nlearning_rate = inf", "train.learning_rate = +Inf: must be > 0", true},
		{"betas length", "[lattice]\nL = 8\n[train]\nadam_betas = [0.9]", "train.adam_betas = [0.9]: must be two numbers", true},
		{"betas range", "[lattice]\nL = 8\n[train]\nadam_betas = [0.9, 1.0]", "train.adam_betas = [0.9, 1]: each must be in [0, 1)", true},
		{"eps", "[lattice]\nL = 8\n[train]\nadam_eps = 0.0", "train.adam_eps = 0", true},
		{"grad clip", "[lattice]\nL = 8\n[train]\ngrad_clip = -0.5", "train.grad_clip = -0.5", true},
		{"grad clip value", "[lattice]\nL = 8\n[train]\ngrad_clip_value = nan", "train.grad_clip_value = NaN", true},
		{"seed negative", "[lattice]\nL = 8\n[train]\nsteps = 1\nbatch_size = 4\nseed = -3", "train.seed = -3: must be ≥ 0", true},
		{"steps negative", "[lattice]\nL = 8\n[train]\nsteps = -1\nbatch_size = 4\nseed = 1", "train.steps = -1", true},
		{"log every", "[lattice]\nL = 8\n[train]\nlog_every = 0", "train.log_every = 0", true},
		{"checkpoint every", "[lattice]\nL = 8\n[train]\ncheckpoint_every = -1", "train.checkpoint_every = -1", true},
		{"out dir empty", "[lattice]\nL = 8\n[io]\nout_dir = \"\"", `io.out_dir = "": must name a directory`, true},
		{"restart empty", "[lattice]\nL = 8\n[io]\nrestart = \" \"", `io.restart = " "`, true},
		{"sample negative", "[lattice]\nL = 8\n[sample]\nn_samples = -5", "sample.n_samples = -5", true},
		{"sample method", "[lattice]\nL = 8\n[sample]\nmethod = \"metropolis\"", `sample.method = "metropolis": allowed: "nmcmc", "hmc"`, true},
		{"hmc with train", "[lattice]\nL = 8\n[sample]\nmethod = \"hmc\"\nseed = 1", `train: sample.method = "hmc" trains no flow; remove [train]`, true},
		{"hmc without seed", "![lattice]\nL = 8\n[sample]\nmethod = \"hmc\"", "sample.seed: required", true},
		{"hmc md steps", "![lattice]\nL = 8\n[sample]\nmethod = \"hmc\"\nseed = 1\nmd_steps = 0", "sample.md_steps = 0: must be ≥ 1", true},
		{"hmc trajectory", "![lattice]\nL = 8\n[sample]\nmethod = \"hmc\"\nseed = 1\ntrajectory_length = -1.0", "sample.trajectory_length = -1: must be > 0", true},
		{"compute device", "[lattice]\nL = 8\n[compute]\ndevice = \"gpu\"", `compute.device = "gpu": allowed: "auto", "cpu", "cuda"`, true},
		{"compute unknown key", "[lattice]\nL = 8\n[compute]\ngpus = 1", `compute.gpus: unknown key (allowed in [compute]: device)`, true},
		{"slurm time", "[lattice]\nL = 8\n[slurm]\ntime = \"2h\"", `slurm.time = "2h": must be "HH:MM:SS"`, true},
		{"slurm minutes", "[lattice]\nL = 8\n[slurm]\ntime = \"01:75:00\"", `slurm.time = "01:75:00"`, true},
		{"slurm signal", "[lattice]\nL = 8\n[slurm]\ntime = \"00:04:00\"", "slurm.signal_seconds = 300: must be shorter than slurm.time", true},
		{"slurm ranks", "[lattice]\nL = 8\n[slurm]\nntasks = 3", "slurm.ntasks = 3: train.batch_size = 64: must be divisible by the number of ranks, 3", true},
		{"slurm unknown", "[lattice]\nL = 8\n[slurm]\nqueue = \"x\"", "slurm.queue: unknown key (allowed in [slurm]: partition, account", true},
		{"slurm partition", "[lattice]\nL = 8\n[slurm]\npartition = \"a b\"", `slurm.partition = "a b"`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text, raw := strings.CutPrefix(tc.edit, "!")
			if !raw {
				text = mergeTOML(minimal, tc.edit)
			}
			_, err := Parse(text)
			if err == nil {
				t.Fatalf("Parse accepted\n%s", text)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is more than one line", msg)
			}
			var ke *KeyError
			if got := errors.As(err, &ke); got != tc.keyErr {
				t.Errorf("errors.As(KeyError) = %v, want %v (%q)", got, tc.keyErr, msg)
			}
		})
	}
}

// mergeTOML returns base with the sections of edit merged in: keys of edit
// replace keys of the same name in the same section of base, new sections are
// appended. Lines before any section header in edit go to the top.
func mergeTOML(base, edit string) string {
	type section struct {
		name  string
		lines []string
	}
	parse := func(s string) []*section {
		secs := []*section{{name: ""}}
		for _, line := range strings.Split(s, "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
				secs = append(secs, &section{name: line})
				continue
			}
			cur := secs[len(secs)-1]
			cur.lines = append(cur.lines, line)
		}
		return secs
	}
	key := func(line string) string { return strings.TrimSpace(strings.SplitN(line, "=", 2)[0]) }
	out := parse(base)
	for _, e := range parse(edit) {
		var target *section
		for _, s := range out {
			if s.name == e.name {
				target = s
			}
		}
		if target == nil || !strings.HasPrefix(e.name, "[") && e.name != "" {
			out = append(out, e)
			continue
		}
	lines:
		for _, l := range e.lines {
			for i, old := range target.lines {
				if key(old) == key(l) && strings.Contains(l, "=") {
					target.lines[i] = l
					continue lines
				}
			}
			target.lines = append(target.lines, l)
		}
	}
	var b strings.Builder
	for _, s := range out {
		if s.name != "" {
			b.WriteString(s.name + "\n")
		}
		for _, l := range s.lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestListDefaultsReplaced(t *testing.T) {
	c, err := Parse(mergeTOML(minimal, "[model]\nhidden_channels = [16]\ndilation = [1, 1]"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Model.HiddenChannels, []int{16}) || !reflect.DeepEqual(c.Model.Dilation, []int{1, 1}) {
		t.Fatalf("lists not replaced: %+v", c.Model)
	}
	// The defaults of a fresh Config are not aliased by an earlier parse.
	if d := DefaultConfig(); !reflect.DeepEqual(d.Model.HiddenChannels, []int{64, 64}) {
		t.Fatalf("defaults changed: %v", d.Model.HiddenChannels)
	}
}

func TestCheckRanks(t *testing.T) {
	c, err := Parse(mergeTOML(minimal, "[train]\nbatch_size = 1536\nmicro_batch = 512"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ranks int
		want  string // "" = ok
	}{
		{1, ""}, {3, ""}, {2, "train.micro_batch = 512: must divide the per-rank batch"},
		{5, "train.batch_size = 1536: must be divisible by the number of ranks, 5"},
	}
	for _, tc := range tests {
		err := c.CheckRanks(tc.ranks)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckRanks(%d) = %v, want %q", tc.ranks, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "params.toml")
	if err := os.WriteFile(p, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.Lat.L != 8 || c.Text != minimal {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if err := os.WriteFile(p, []byte(minimal+"[train]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.HasPrefix(err.Error(), p+": ") {
		t.Errorf("Load of a bad file: %v, want an error starting with the file name", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

// FuzzParse checks that Parse never panics and that an accepted text parses
// to a Config that validates, keeps the text, and has a valid architecture.
func FuzzParse(f *testing.F) {
	f.Add(minimal)
	f.Add(mergeTOML(minimal, "[model]\nhidden_channels = []\ndilation = [1]"))
	f.Add(mergeTOML(minimal, "[slurm]\ntime = \"10:00:00\"\nntasks = 2"))
	f.Add("[lattice]\nL = -4")
	f.Add("[train]\nadam_betas = []")
	f.Add("[[lattice]]\nL = 8")
	f.Add("[lattice.sub]\nx = 1")
	f.Add("lattice.L = 8\ntrain = { steps = 1, batch_size = 1, seed = 0 }")
	f.Add("[model]\ndilation = [1, 2, 99999999999]\n[lattice]\nL = 8")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(text)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
		if err := c.Arch().Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid architecture: %v", err)
		}
		if c.Text != text {
			t.Fatal("Text differs from the input")
		}
	})
}

// TestShippedConfigs: params.toml and every file of configs/ parse; the
// study's nine runs differ only in estimator, seed and out_dir, and train
// the model of params.toml (as their comments say).
func TestShippedConfigs(t *testing.T) {
	files, _ := filepath.Glob("../configs/*.toml")
	study, _ := filepath.Glob("../configs/study/*.toml")
	if len(study) != 9 {
		t.Errorf("configs/study has %d files, want 9 (3 estimators × 3 seeds)", len(study))
	}
	def, err := Load("../params.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(files, study...) {
		if _, err := Load(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	seen := map[string]bool{}
	for _, f := range study {
		c, err := Load(f)
		if err != nil {
			continue
		}
		key := fmt.Sprintf("%s/%d", c.Train.Estimator, c.Train.Seed)
		if seen[key] || c.IO.OutDir != "study/"+strings.TrimSuffix(filepath.Base(f), ".toml") {
			t.Errorf("%s: %s (out_dir %s) repeats a run or names another directory", f, key, c.IO.OutDir)
		}
		seen[key] = true
		if !reflect.DeepEqual(c.Model, def.Model) || c.Lat != def.Lat {
			t.Errorf("%s: model %+v on %+v, want params.toml's %+v on %+v", f, c.Model, c.Lat, def.Model, def.Lat)
		}
		c0, _ := Load(study[0])
		c.Train.Estimator, c.Train.Seed, c.IO.OutDir = c0.Train.Estimator, c0.Train.Seed, c0.IO.OutDir
		c.Text, c0.Text = "", ""
		c.Sample.Seed, c0.Sample.Seed = 0, 0
		if !reflect.DeepEqual(c, c0) {
			t.Errorf("%s differs from %s in more than estimator, seed and out_dir", f, study[0])
		}
	}
	checkClippingConfigs(t)
}

// checkClippingConfigs: the six runs of configs/clipping are the study's
// r.t. run of the same seed with acceptance probes, clipped (0.1, 10) or
// not, each into clipping/<file name>.
func checkClippingConfigs(t *testing.T) {
	files, _ := filepath.Glob("../configs/clipping/*.toml")
	if len(files) != 6 {
		t.Errorf("configs/clipping has %d files, want 6 (clipped and unclipped × 3 seeds)", len(files))
	}
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		study, err := Load(fmt.Sprintf("../configs/study/rt_s%d.toml", c.Train.Seed))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		clipped := strings.HasPrefix(name, "rt_clip_")
		if want := [2]float64{0.1, 10}; clipped != (c.Train.GradClipValue == want[0] && c.Train.GradClip == want[1]) ||
			!clipped && (c.Train.GradClipValue != 0 || c.Train.GradClip != 0) {
			t.Errorf("%s: grad_clip_value %g, grad_clip %g", f, c.Train.GradClipValue, c.Train.GradClip)
		}
		if c.IO.OutDir != "clipping/"+name || c.Train.AcceptanceEvery == 0 {
			t.Errorf("%s: out_dir %s, acceptance_every %d", f, c.IO.OutDir, c.Train.AcceptanceEvery)
		}
		c.Train.GradClipValue, c.Train.GradClip = study.Train.GradClipValue, study.Train.GradClip
		c.Train.AcceptanceEvery, c.Train.AcceptanceSamples = study.Train.AcceptanceEvery, study.Train.AcceptanceSamples
		c.IO.OutDir, c.Text, study.Text = study.IO.OutDir, "", ""
		if !reflect.DeepEqual(c, study) {
			t.Errorf("%s differs from configs/study/rt_s%d.toml in more than clipping, probes and out_dir", f, c.Train.Seed)
		}
	}
}
