package nfio

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// Config is the content of params.toml: every setting of a run. Parse and
// Load fill the defaults listed on each field, resolve the defaults that
// refer to other keys, and validate, so a Config they return is complete and
// consistent. Field comments give the TOML key in brackets.
type Config struct {
	// Lat is the [lattice] section (named Lat because the method Lattice
	// returns it as lgt.Params).
	Lat    LatticeConfig `toml:"lattice"`
	Model  ModelConfig   `toml:"model"`
	Train  TrainConfig   `toml:"train"`
	IO     IOConfig      `toml:"io"`
	Sample SampleConfig  `toml:"sample"`
	// Compute is the [compute] section: where each rank computes the flow.
	Compute ComputeConfig `toml:"compute"`
	// Slurm is the optional [slurm] section (nfschwinger slurm renders the
	// batch script from it); nil when params.toml has none.
	Slurm *SlurmConfig `toml:"slurm"`

	// Text is the TOML text the Config was parsed from, stored verbatim in
	// checkpoints as /config.
	Text string `toml:"-"`

	// microDefault records that micro_batch was not given: a rank then
	// processes its whole share of the batch in one pass.
	microDefault bool
}

// LatticeConfig is the [lattice] section: the physics.
type LatticeConfig struct {
	L     int     `toml:"L"`     // [L] lattice extent, required, a multiple of 4
	Beta  float64 `toml:"beta"`  // [beta] gauge coupling β, default 2
	Kappa float64 `toml:"kappa"` // [kappa] hopping parameter κ, default 0.276
}

// ModelConfig is the [model] section: the flow's architecture and its
// floating-point precision.
type ModelConfig struct {
	NLayers        int    `toml:"n_layers"`        // [n_layers] coupling layers, default 48
	NKnots         int    `toml:"n_knots"`         // [n_knots] spline knots (bins + 1), default 9
	HiddenChannels []int  `toml:"hidden_channels"` // [hidden_channels] conditioner hidden channels, default [64, 64]
	KernelSize     int    `toml:"kernel_size"`     // [kernel_size] odd convolution kernel size, default 3
	Dilation       []int  `toml:"dilation"`        // [dilation] one per convolution, default [1, 2, 3]
	Masking        string `toml:"masking"`         // [masking] conditioner input, "2x1" (the only one)
	Precision      string `toml:"precision"`       // [precision] "float32" (default) or "float64"
	// ConvPrecision [conv_precision] is the precision of the convolutions'
	// inputs and weights on the oneDNN path of a float32 flow: "float32"
	// (default) or "bf16" (accumulation and outputs float32; CPUs with
	// native bf16, AVX512-BF16 or AMX, only: see nf.OneDNN).
	ConvPrecision string `toml:"conv_precision"`
	// ConvAlgorithm [conv_algorithm] is how the oneDNN path runs its
	// float32 convolutions: "auto" (default: Winograd for those that fit,
	// where the CPU has AVX-512) or "direct" (see nf.ConvAlgorithms).
	ConvAlgorithm string `toml:"conv_algorithm"`
}

// TrainConfig is the [train] section: the gradient estimator and the
// optimizer.
type TrainConfig struct {
	Estimator    string    `toml:"estimator"`     // [estimator] "reinforce" (default), "rt" or "path"
	Steps        int       `toml:"steps"`         // [steps] total optimizer steps of the run, required, ≥ 0
	BatchSize    int       `toml:"batch_size"`    // [batch_size] configurations per step over all ranks, required
	MicroBatch   int       `toml:"micro_batch"`   // [micro_batch] configurations per rank per pass, default batch_size (on several ranks: batch_size/ranks)
	LearningRate float64   `toml:"learning_rate"` // [learning_rate] Adam step size, default 2.5e-4
	AdamBetas    []float64 `toml:"adam_betas"`    // [adam_betas] Adam's β₁, β₂, default [0.9, 0.999]
	AdamEps      float64   `toml:"adam_eps"`      // [adam_eps] Adam's ε (outside the square root), default 1e-8
	GradClip     float64   `toml:"grad_clip"`     // [grad_clip] maximal global gradient norm, 0 = no clipping (default)
	// GradClipValue [grad_clip_value] clamps every gradient component to
	// ±value before the norm clip; 0 = off (default). The configs/ files
	// set 0.1 with grad_clip = 10 (the paper's code does not clip). See
	// nf.ClipGrad.
	GradClipValue   float64 `toml:"grad_clip_value"`
	Seed            int64   `toml:"seed"`             // [seed] key of the prior-sample streams, required, ≥ 0
	LogEvery        int     `toml:"log_every"`        // [log_every] steps between history rows and progress lines, default 10
	CheckpointEvery int     `toml:"checkpoint_every"` // [checkpoint_every] steps between checkpoints, 0 = only at the end and on signals; default 500
	// AcceptanceEvery is the number of steps between MCMC
	// acceptance measurements recorded in the history, 0 = never (default).
	AcceptanceEvery int `toml:"acceptance_every"`
	// AcceptanceSamples is the number of proposals per acceptance
	// measurement; default batch_size.
	AcceptanceSamples int `toml:"acceptance_samples"`
	// InitFrom [init_from] is a checkpoint or model file whose model
	// (same architecture, any L) starts a new run: weights loaded, Adam
	// fresh, step 0; "" (default): a random initialization. A checkpoint in
	// out_dir (restart = "auto") still wins.
	InitFrom string `toml:"init_from"`

	// LRSchedule [lr_schedule] shapes the learning rate over the run
	// (nf.LRSchedule): "constant" (default), "cosine" (from learning_rate
	// down to lr_min at train.steps) or "step" (× lr_step_factor every
	// lr_step_every steps).
	LRSchedule   string  `toml:"lr_schedule"`
	LRWarmup     int     `toml:"lr_warmup_steps"` // [lr_warmup_steps] linear warm-up steps before the schedule, default 0
	LRMin        float64 `toml:"lr_min"`          // [lr_min] the cosine schedule's final learning rate, default 0
	LRStepEvery  int     `toml:"lr_step_every"`   // [lr_step_every] steps between the step schedule's decays (required for it)
	LRStepFactor float64 `toml:"lr_step_factor"`  // [lr_step_factor] the step schedule's factor, default 0.5

	// Recovery from divergence (nf.DivergenceGuard). MaxRecoveries
	// [max_recoveries] is how many times a run may roll back to its last
	// good parameters and Adam state before it ends, default 5; 0 turns
	// recovery off (the run then stops after 20 non-finite steps in a row).
	MaxRecoveries int `toml:"max_recoveries"`
	// DivergenceThreshold [divergence_threshold]: a step whose variational
	// free energy mean(log q − log p) lies this many median absolute
	// deviations above the median of the last healthy steps has exploded;
	// default 20; 0 detects only non-finite steps.
	DivergenceThreshold float64 `toml:"divergence_threshold"`
	// DivergencePatience [divergence_patience] bad steps in a row (exploded
	// or non-finite) make a divergence, default 3.
	DivergencePatience int `toml:"divergence_patience"`
	// DivergenceLRFactor [divergence_lr_factor] multiplies the learning
	// rate at every recovery, default 0.5.
	DivergenceLRFactor float64 `toml:"divergence_lr_factor"`
}

// LRSchedules are the allowed values of [train] lr_schedule.
var LRSchedules = []string{"constant", "cosine", "step"}

// validateSchedule checks the learning-rate schedule and the recovery
// keys of [train].
func (t TrainConfig) validateSchedule() error {
	switch {
	case !slices.Contains(LRSchedules, t.LRSchedule):
		return bad("train.lr_schedule", t.LRSchedule, "allowed: %s", quoteList(LRSchedules))
	case t.LRWarmup < 0:
		return bad("train.lr_warmup_steps", t.LRWarmup, "must be ≥ 0")
	case !finite(t.LRMin) || t.LRMin < 0 || t.LRMin > t.LearningRate:
		return bad("train.lr_min", t.LRMin, "must be in [0, train.learning_rate]")
	case t.LRSchedule == "step" && t.LRStepEvery < 1:
		return bad("train.lr_step_every", t.LRStepEvery, "must be ≥ 1 with lr_schedule = \"step\"")
	case !finite(t.LRStepFactor) || t.LRStepFactor <= 0 || t.LRStepFactor > 1:
		return bad("train.lr_step_factor", t.LRStepFactor, "must be in (0, 1]")
	case t.MaxRecoveries < 0:
		return bad("train.max_recoveries", t.MaxRecoveries, "must be ≥ 0 (0 = no recovery)")
	case !finite(t.DivergenceThreshold) || t.DivergenceThreshold < 0:
		return bad("train.divergence_threshold", t.DivergenceThreshold, "must be ≥ 0 (0 = non-finite steps only)")
	case t.DivergencePatience < 1:
		return bad("train.divergence_patience", t.DivergencePatience, "must be ≥ 1")
	case !finite(t.DivergenceLRFactor) || t.DivergenceLRFactor <= 0 || t.DivergenceLRFactor > 1:
		return bad("train.divergence_lr_factor", t.DivergenceLRFactor, "must be in (0, 1]")
	}
	return nil
}

// IOConfig is the [io] section: where the run writes and how it restarts.
type IOConfig struct {
	// OutDir [out_dir] is the directory of checkpoint.h5, history.h5 and
	// chain.h5, relative to the working directory; default "run".
	OutDir string `toml:"out_dir"`
	// Restart [restart] is "auto" (default: continue from
	// out_dir/checkpoint.h5 when it exists), "never" (refuse to run over an
	// existing checkpoint) or the path of a checkpoint to start from.
	Restart string `toml:"restart"`
}

// ComputeConfig is the [compute] section.
type ComputeConfig struct {
	// Device [device] is where each rank computes the flow: "auto" (the
	// default: its CUDA device when the driver loads and a device is
	// visible, else the CPU), "cpu", or "cuda" (a device is required). A
	// rank takes the device of its node-local rank among the visible ones.
	Device string `toml:"device"`
}

// Devices are the allowed values of [compute] device.
var Devices = []string{"auto", "cpu", "cuda"}

func (c ComputeConfig) validate() error {
	if !slices.Contains(Devices, c.Device) {
		return bad("compute.device", c.Device, "allowed: %s", quoteList(Devices))
	}
	return nil
}

// SampleConfig is the [sample] section: the Markov chain after
// training. The default n_samples = 0 turns sampling off. With method
// "hmc" the run trains no flow: the chain is the HMC baseline
// on the exact action, and [train] and [model] must be absent.
type SampleConfig struct {
	Method      string `toml:"method"`       // [method] "nmcmc" (default: the flow as independence proposal) or "hmc"
	NSamples    int    `toml:"n_samples"`    // [n_samples] chain length (proposals, or HMC trajectories), 0 = no sampling (default)
	BatchSize   int    `toml:"batch_size"`   // [batch_size] proposals generated per pass and rank, default train.micro_batch (nmcmc only)
	SaveConfigs bool   `toml:"save_configs"` // [save_configs] store the chain's configurations in chain.h5, default false
	Seed        int64  `toml:"seed"`         // [seed] key of the proposal (or momentum) streams, ≥ 0, default train.seed (required for hmc)
	// TrajectoryLength [trajectory_length] is the molecular-dynamics time
	// of one HMC trajectory, default 1 (hmc only).
	TrajectoryLength float64 `toml:"trajectory_length"`
	// MDSteps [md_steps] is the number of leapfrog steps per trajectory,
	// step size trajectory_length/md_steps, default 10 (hmc only).
	MDSteps int `toml:"md_steps"`
	// Start [start] is where the HMC chain starts: "cold" (every link
	// angle 0, the default) or the path of a chain file that keeps
	// configurations (its last state). Ignored when chain.h5 is continued.
	Start string `toml:"start"`
}

// Sampling methods of [sample] method.
const (
	MethodNMCMC = "nmcmc" // Metropolis independence sampler with the flow as proposal
	MethodHMC   = "hmc"   // hybrid Monte Carlo on the exact action, no flow
)

// Methods are the allowed values of [sample] method.
var Methods = []string{MethodNMCMC, MethodHMC}

// HMC reports whether the run is the HMC baseline (no training).
func (c Config) HMC() bool { return c.Sample.Method == MethodHMC }

// SlurmConfig is the optional [slurm] section: the resources of
// the batch script that `nfschwinger slurm` renders.
type SlurmConfig struct {
	Partition     string `toml:"partition"`      // [partition] default: the cluster's default partition
	Account       string `toml:"account"`        // [account] default: the user's default account
	Nodes         int    `toml:"nodes"`          // [nodes] default 1
	NTasks        int    `toml:"ntasks"`         // [ntasks] MPI ranks, default 1
	CPUsPerTask   int    `toml:"cpus_per_task"`  // [cpus_per_task] default 1
	GPUsPerTask   int    `toml:"gpus_per_task"`  // [gpus_per_task] default 0
	Time          string `toml:"time"`           // [time] job time limit "HH:MM:SS", default "01:00:00"
	SignalSeconds int    `toml:"signal_seconds"` // [signal_seconds] stop signal this long before the limit, default 300
	MaxRequeues   int    `toml:"max_requeues"`   // [max_requeues] jobs after the first, default 10
}

// Allowed values of the string keys.
var (
	Precisions = []string{"float32", "float64"}
)

// LeakyReLUSlope is the negative slope of the conditioner's LeakyReLU, fixed
// as in the paper (not a params.toml key).
const LeakyReLUSlope = 0.01

// DefaultConfig returns the defaults of every key; the required keys
// (lattice.L, train.steps, train.batch_size, train.seed) are zero, and
// defaults referring to other keys are unresolved (zero).
func DefaultConfig() Config {
	return Config{
		Lat: LatticeConfig{Beta: lgt.PaperBeta, Kappa: lgt.PaperKappa},
		Model: ModelConfig{NLayers: 48, NKnots: 9, HiddenChannels: []int{64, 64}, KernelSize: 3,
			Dilation: []int{1, 2, 3}, Masking: "2x1", Precision: "float32", ConvPrecision: "float32", ConvAlgorithm: "auto"},
		Train: TrainConfig{Estimator: "reinforce", LearningRate: 2.5e-4, AdamBetas: []float64{0.9, 0.999},
			AdamEps: 1e-8, LogEvery: 10, CheckpointEvery: 500,
			LRSchedule: "constant", LRStepFactor: 0.5,
			MaxRecoveries: 5, DivergenceThreshold: 20, DivergencePatience: 3, DivergenceLRFactor: 0.5},
		IO:      IOConfig{OutDir: "run", Restart: "auto"},
		Sample:  SampleConfig{Method: MethodNMCMC, TrajectoryLength: 1, MDSteps: 10, Start: "cold"},
		Compute: ComputeConfig{Device: "auto"},
	}
}

// defaultSlurm returns the defaults of the [slurm] section.
func defaultSlurm() SlurmConfig {
	return SlurmConfig{Nodes: 1, NTasks: 1, CPUsPerTask: 1, Time: "01:00:00", SignalSeconds: 300, MaxRequeues: 10}
}

// requiredKeys have no default.
var requiredKeys = [][2]string{{"lattice", "L"}, {"train", "steps"}, {"train", "batch_size"}, {"train", "seed"}}

// KeyError is a configuration error attributed to one key; its message
// names the key, the value and what is allowed, e.g.
// "train.learning_rate = -1: must be > 0".
type KeyError struct {
	Key string // dotted key, "train.learning_rate"; a section name for section errors
	Msg string // the rest of the message, starting with " = value: " or ": "
}

// Error returns the key followed by what is wrong with it.
func (e *KeyError) Error() string { return e.Key + e.Msg }

// bad returns a KeyError for key with value v (formatted as TOML would
// show it) and the explanation.
func bad(key string, v any, format string, args ...any) error {
	return &KeyError{Key: key, Msg: " = " + tomlValue(v) + ": " + fmt.Sprintf(format, args...)}
}

func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case []int:
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.Itoa(x)
		}
		return "[" + strings.Join(s, ", ") + "]"
	case []float64:
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.FormatFloat(x, 'g', -1, 64)
		}
		return "[" + strings.Join(s, ", ") + "]"
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// Load reads and parses the parameter file at path (see Parse). Errors name
// the file.
func Load(path string) (Config, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read parameters: %w", err)
	}
	c, err := Parse(string(text))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse parses params.toml text: defaults for absent keys, then the file's
// values; unknown keys, wrong types, missing required keys and values out of
// range are errors that name the key (a *KeyError where the key is known).
// Defaults that refer to other keys (train.micro_batch, sample.batch_size,
// sample.seed, train.acceptance_samples) are resolved.
func Parse(text string) (Config, error) {
	c := DefaultConfig()
	slurm := defaultSlurm()
	c.Slurm = &slurm
	md, err := toml.Decode(text, &c)
	if err != nil {
		return Config{}, decodeError(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return Config{}, unknownKey(und[0])
	}
	required := requiredKeys
	if c.HMC() {
		// The HMC baseline trains no flow: [train] and [model] would be
		// ignored, which is an error, and the seed is the sample's own.
		for _, sec := range []string{"train", "model"} {
			if md.IsDefined(sec) {
				return Config{}, &KeyError{Key: sec, Msg: `: sample.method = "hmc" trains no flow; remove [` + sec + `] (or set method = "nmcmc")`}
			}
		}
		required = [][2]string{{"lattice", "L"}, {"sample", "seed"}}
		c.Train.Steps, c.Train.BatchSize, c.Train.Seed = 0, 1, c.Sample.Seed
	}
	for _, k := range required {
		if !md.IsDefined(k[0], k[1]) {
			return Config{}, &KeyError{Key: k[0] + "." + k[1], Msg: ": required, no default (add it to [" + k[0] + "])"}
		}
	}
	if !md.IsDefined("slurm") {
		c.Slurm = nil
	}
	if !md.IsDefined("train", "micro_batch") {
		c.Train.MicroBatch = c.Train.BatchSize
		c.microDefault = true
	}
	if !md.IsDefined("train", "acceptance_samples") {
		c.Train.AcceptanceSamples = c.Train.BatchSize
	}
	if !md.IsDefined("sample", "batch_size") {
		c.Sample.BatchSize = c.Train.MicroBatch
	}
	if !md.IsDefined("sample", "seed") {
		c.Sample.Seed = c.Train.Seed
	}
	c.Text = text
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var (
	// "toml: line 3 (last key "train.lr"): incompatible types: ..."
	decodeRe = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)
	// "... expected table but found int64"
	tableRe = regexp.MustCompile(`expected table but found (\w+)`)
)

// decodeError turns the TOML library's errors into one line naming the line
// and the key.
func decodeError(err error) error {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	m := decodeRe.FindStringSubmatch(msg)
	if m == nil {
		return errors.New(strings.TrimPrefix(msg, "toml: "))
	}
	line, key, what := m[1], m[2], m[3]
	if t := tableRe.FindStringSubmatch(what); t != nil {
		what = "must be a section [" + key + "], not a value of type " + t[1]
	} else {
		what = strings.Replace(what, "incompatible types: ", "wrong type: ", 1)
		what = strings.Replace(what, "; destination has type", ", expected", 1)
	}
	return &KeyError{Key: key, Msg: ": " + what + " (line " + line + ")"}
}

// unknownKey explains an undecoded key: an unknown section, or an unknown
// key of a known section with the list of allowed keys.
func unknownKey(k toml.Key) error {
	sections := tomlKeys(reflect.TypeFor[Config]())
	if len(k) == 1 {
		if slices.Contains(sections, k[0]) {
			return &KeyError{Key: k[0], Msg: ": must be a section [" + k[0] + "]"}
		}
		return &KeyError{Key: k[0], Msg: ": unknown key or section (sections: " + strings.Join(sections, ", ") + ")"}
	}
	for f := range reflect.TypeFor[Config]().Fields() {
		// A "-" tag marks a field that is not in the file (Config.Text): a
		// key "-.x" is an unknown section, not a key of that field.
		if tag := f.Tag.Get("toml"); tag == "-" || tag != k[0] {
			continue
		}
		t := f.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		return &KeyError{Key: k.String(), Msg: ": unknown key (allowed in [" + k[0] + "]: " + strings.Join(tomlKeys(t), ", ") + ")"}
	}
	return &KeyError{Key: k.String(), Msg: ": unknown section [" + k[0] + "] (sections: " + strings.Join(sections, ", ") + ")"}
}

// tomlKeys lists the TOML names of a struct's fields.
func tomlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		if name := f.Tag.Get("toml"); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// Validate checks every value against its allowed range and the relations
// between keys; the error names the first offending key.
func (c Config) Validate() error {
	for _, check := range []func() error{c.Lat.validate, c.validateModel,
		c.Train.validate, c.IO.validate, c.Sample.validate, c.Compute.validate} {
		if err := check(); err != nil {
			return err
		}
	}
	if c.Slurm != nil {
		if err := c.Slurm.validate(); err != nil {
			return err
		}
		if err := c.CheckRanks(c.Slurm.NTasks); err != nil {
			return fmt.Errorf("slurm.ntasks = %d: %w", c.Slurm.NTasks, err)
		}
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func (l LatticeConfig) validate() error {
	switch {
	case !finite(l.Beta) || l.Beta < 0:
		return bad("lattice.beta", l.Beta, "must be finite and ≥ 0")
	case !finite(l.Kappa) || l.Kappa < 0:
		return bad("lattice.kappa", l.Kappa, "must be finite and ≥ 0")
	}
	return nil
}

// validateModel checks [model] and lattice.L with the rules of the flow
// (nf.Arch.Validate), naming the offending key; the precision is the
// configuration's own.
func (c Config) validateModel() error {
	if !slices.Contains(Precisions, c.Model.Precision) {
		return bad("model.precision", c.Model.Precision, "allowed: %s", quoteList(Precisions))
	}
	if !slices.Contains(nf.ConvPrecisions, c.Model.ConvPrecision) {
		return bad("model.conv_precision", c.Model.ConvPrecision, "allowed: %s", quoteList(nf.ConvPrecisions))
	}
	if !slices.Contains(nf.ConvAlgorithms, c.Model.ConvAlgorithm) {
		return bad("model.conv_algorithm", c.Model.ConvAlgorithm, "allowed: %s", quoteList(nf.ConvAlgorithms))
	}
	if c.Model.ConvPrecision == "bf16" && c.Model.Precision != "float32" {
		return bad("model.conv_precision", c.Model.ConvPrecision, "needs model.precision = \"float32\" (here %q)", c.Model.Precision)
	}
	err := c.Arch().Validate()
	var ae *nf.ArchError
	if !errors.As(err, &ae) {
		return err
	}
	key := "model." + ae.Field
	if ae.Field == "L" {
		key = "lattice.L"
	}
	return bad(key, ae.Value, "%s", ae.Rule)
}

// validEstimator reports whether nf knows the estimator name.
func validEstimator(s string) bool {
	_, err := nf.ParseEstimator(s)
	return err == nil
}

// estimatorNames lists nf's estimators.
func estimatorNames() []string {
	names := make([]string, len(nf.Estimators))
	for i, e := range nf.Estimators {
		names[i] = string(e)
	}
	return names
}

func (t TrainConfig) validate() error {
	switch {
	case !validEstimator(t.Estimator):
		return bad("train.estimator", t.Estimator, "allowed: %s", quoteList(estimatorNames()))
	case t.Steps < 0:
		return bad("train.steps", t.Steps, "must be ≥ 0")
	case t.BatchSize < 1:
		return bad("train.batch_size", t.BatchSize, "must be ≥ 1")
	case t.MicroBatch < 1:
		return bad("train.micro_batch", t.MicroBatch, "must be ≥ 1")
	case t.BatchSize%t.MicroBatch != 0:
		return bad("train.micro_batch", t.MicroBatch, "must divide train.batch_size = %d", t.BatchSize)
	case !finite(t.LearningRate) || t.LearningRate <= 0:
		return bad("train.learning_rate", t.LearningRate, "must be > 0")
	case len(t.AdamBetas) != 2:
		return bad("train.adam_betas", t.AdamBetas, "must be two numbers [β₁, β₂]")
	case !(t.AdamBetas[0] >= 0 && t.AdamBetas[0] < 1 && t.AdamBetas[1] >= 0 && t.AdamBetas[1] < 1):
		return bad("train.adam_betas", t.AdamBetas, "each must be in [0, 1)")
	case !finite(t.AdamEps) || t.AdamEps <= 0:
		return bad("train.adam_eps", t.AdamEps, "must be > 0")
	case !finite(t.GradClip) || t.GradClip < 0:
		return bad("train.grad_clip", t.GradClip, "must be ≥ 0 (0 = no clipping)")
	case !finite(t.GradClipValue) || t.GradClipValue < 0:
		return bad("train.grad_clip_value", t.GradClipValue, "must be ≥ 0 (0 = no clipping)")
	case t.Seed < 0:
		return bad("train.seed", t.Seed, "must be ≥ 0")
	case t.LogEvery < 1:
		return bad("train.log_every", t.LogEvery, "must be ≥ 1")
	case t.CheckpointEvery < 0:
		return bad("train.checkpoint_every", t.CheckpointEvery, "must be ≥ 0 (0 = only at the end)")
	case t.AcceptanceEvery < 0:
		return bad("train.acceptance_every", t.AcceptanceEvery, "must be ≥ 0 (0 = never)")
	case t.AcceptanceSamples < 1:
		return bad("train.acceptance_samples", t.AcceptanceSamples, "must be ≥ 1")
	}
	return t.validateSchedule()
}

func (o IOConfig) validate() error {
	switch {
	case strings.TrimSpace(o.OutDir) == "":
		return bad("io.out_dir", o.OutDir, "must name a directory")
	case strings.TrimSpace(o.Restart) == "":
		return bad("io.restart", o.Restart, `allowed: "auto", "never" or the path of a checkpoint`)
	}
	return nil
}

func (s SampleConfig) validate() error {
	switch {
	case !slices.Contains(Methods, s.Method):
		return bad("sample.method", s.Method, "allowed: %s", quoteList(Methods))
	case !finite(s.TrajectoryLength) || s.TrajectoryLength <= 0:
		return bad("sample.trajectory_length", s.TrajectoryLength, "must be > 0")
	case s.MDSteps < 1:
		return bad("sample.md_steps", s.MDSteps, "must be ≥ 1")
	case strings.TrimSpace(s.Start) == "":
		return bad("sample.start", s.Start, `allowed: "cold" or the path of a chain file with configurations`)
	case s.NSamples < 0:
		return bad("sample.n_samples", s.NSamples, "must be ≥ 0 (0 = no sampling)")
	case s.BatchSize < 1:
		return bad("sample.batch_size", s.BatchSize, "must be ≥ 1")
	case s.Seed < 0:
		return bad("sample.seed", s.Seed, "must be ≥ 0")
	}
	return nil
}

// timeRe matches a Slurm time limit "HH:MM:SS" (hours may exceed 99).
var timeRe = regexp.MustCompile(`^(\d+):([0-5]\d):([0-5]\d)$`)

func (s SlurmConfig) validate() error {
	switch {
	case s.Nodes < 1:
		return bad("slurm.nodes", s.Nodes, "must be ≥ 1")
	case s.NTasks < s.Nodes:
		return bad("slurm.ntasks", s.NTasks, "must be ≥ slurm.nodes = %d", s.Nodes)
	case s.CPUsPerTask < 1:
		return bad("slurm.cpus_per_task", s.CPUsPerTask, "must be ≥ 1")
	case s.GPUsPerTask < 0:
		return bad("slurm.gpus_per_task", s.GPUsPerTask, "must be ≥ 0")
	case !timeRe.MatchString(s.Time):
		return bad("slurm.time", s.Time, `must be "HH:MM:SS"`)
	case s.SignalSeconds < 1:
		return bad("slurm.signal_seconds", s.SignalSeconds, "must be ≥ 1")
	case s.SignalSeconds >= s.TimeLimitSeconds():
		return bad("slurm.signal_seconds", s.SignalSeconds, "must be shorter than slurm.time = %q", s.Time)
	case s.MaxRequeues < 0:
		return bad("slurm.max_requeues", s.MaxRequeues, "must be ≥ 0")
	case strings.ContainsAny(s.Partition, " \t\n'\"$`\\"):
		return bad("slurm.partition", s.Partition, "must not contain blanks, quotes or shell characters")
	case strings.ContainsAny(s.Account, " \t\n'\"$`\\"):
		return bad("slurm.account", s.Account, "must not contain blanks, quotes or shell characters")
	}
	return nil
}

// TimeLimitSeconds returns the job time limit in seconds (0 if Time is not
// "HH:MM:SS").
func (s SlurmConfig) TimeLimitSeconds() int {
	m := timeRe.FindStringSubmatch(s.Time)
	if m == nil {
		return 0
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	sec, _ := strconv.Atoi(m[3])
	return 3600*h + 60*mi + sec
}

// CheckRanks reports whether the batch splits over ranks MPI ranks: every
// rank gets batch_size/ranks configurations, a whole number of
// micro-batches; the HMC baseline runs on one rank only. Errors name the
// key to change.
func (c Config) CheckRanks(ranks int) error {
	if ranks < 1 {
		panic(fmt.Sprintf("nfio: CheckRanks(%d)", ranks))
	}
	if c.HMC() { // one independent chain per rank
		return nil
	}
	b, mb := c.Train.BatchSize, c.Train.MicroBatch
	if b%ranks != 0 {
		return bad("train.batch_size", b, "must be divisible by the number of ranks, %d", ranks)
	}
	if c.microDefault {
		mb = b / ranks // one pass per rank
	}
	if (b/ranks)%mb != 0 {
		return bad("train.micro_batch", mb, "must divide the per-rank batch, batch_size/ranks = %d/%d = %d", b, ranks, b/ranks)
	}
	return nil
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// Arch returns the flow architecture the configuration describes.
func (c Config) Arch() nf.Arch {
	return nf.Arch{
		L:              c.Lat.L,
		NLayers:        c.Model.NLayers,
		NKnots:         c.Model.NKnots,
		Hidden:         slices.Clone(c.Model.HiddenChannels),
		KernelSize:     c.Model.KernelSize,
		Dilation:       slices.Clone(c.Model.Dilation),
		Masking:        c.Model.Masking,
		LeakyReLUSlope: LeakyReLUSlope,
	}
}

// Lattice returns the lattice parameters L, β, κ.
func (c Config) Lattice() lgt.Params {
	return lgt.Params{L: c.Lat.L, Beta: c.Lat.Beta, Kappa: c.Lat.Kappa}
}
