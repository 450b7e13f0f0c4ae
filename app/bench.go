package app

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"nfschwinger/internal/dnnl"
	"nfschwinger/internal/stats"
	"nfschwinger/internal/threads"
	"nfschwinger/lgt"
	"nfschwinger/nf"
	"nfschwinger/nf/gpu"
)

const benchUsage = `usage: nfschwinger bench [flags]

Times training steps of the paper's flow (float32, one process, all cores)
for every lattice size and gradient estimator: the median time of one
gradient step after warm-up, split into the loss part (flow passes and
action) and the backward part; the peak memory of the process; the bytes and
buffers kept for the backward pass; the achieved GFLOP/s of the
convolutions next to a large OpenBLAS sgemm measured in the same run. Then
the action with its force per configuration, even–odd against dense.
Prints markdown tables, or with -json one JSON object per line: "kind":
"step" objects with L, estimator, form (REINFORCE: three-pass or four-pass),
batch, micro_batch, layers, step_seconds, loss_seconds, backward_seconds,
flow_seconds, action_seconds, peak_rss_bytes, kept_bytes, kept_buffers,
conv_gflops, conv_step_gflops, sgemm_gflops; "kind": "action" objects with
L, evenodd_seconds, dense_seconds. With a batch of one micro-batch the
REINFORCE row appears twice, in the trainer's three-pass form and in the
four-pass form.

flags:
`

// benchOptions are the settings of `nfschwinger bench`.
type benchOptions struct {
	Ls         []int          // lattice sizes
	Estimators []nf.Estimator // gradient estimators
	Batch      int            // configurations per step
	Micro      int            // configurations per micro-batch
	Layers     int            // coupling layers
	Steps      int            // timed steps (the median is reported)
	Warmup     int            // untimed steps before them
	JSON       bool           // JSON lines instead of tables
	Plot       string         // PNG of step time against L, "" for none
	Seed       uint64         // initialization and prior streams
	Action     bool           // also time the action alone
	SgemmN     int            // order of the square sgemm reference
	Convs      []convMode     // how the conditioner's convolutions run, one set of rows each
	// Hidden overrides the hidden channels (-hidden), nil: the paper's
	// [64, 64]; the dilations stay the paper's [1, 2, 3] when there are two.
	Hidden []int
	device placement // the CUDA device of the cuda rows
}

// convMode is how a benchmarked flow runs its conditioners' convolutions:
// Engine "dnnl" (oneDNN primitives, nf.OneDNN) or "openblas" (im2col
// and OpenBLAS sgemm), Precision "float32" or "bf16" (oneDNN only).
type convMode struct{ Engine, Precision string }

func (m convMode) String() string { return m.Engine + " " + m.Precision }

// benchRow is one line of the step benchmark: one lattice size and
// estimator. JSON names are the interface of -json.
type benchRow struct {
	Kind            string  `json:"kind"` // "step"
	L               int     `json:"L"`
	Estimator       string  `json:"estimator"`
	Form            string  `json:"form,omitempty"` // REINFORCE: "three-pass" or "four-pass"
	Batch           int     `json:"batch"`
	MicroBatch      int     `json:"micro_batch"`
	Layers          int     `json:"layers"`
	StepSeconds     float64 `json:"step_seconds"`     // median wall time of a step
	LossSeconds     float64 `json:"loss_seconds"`     // median of step − backward
	BackwardSeconds float64 `json:"backward_seconds"` // median time in the backward passes
	FlowSeconds     float64 `json:"flow_seconds"`     // median time in forward/reverse passes
	ActionSeconds   float64 `json:"action_seconds"`   // median time in the action (and force)
	PeakRSSBytes    int64   `json:"peak_rss_bytes"`   // peak resident memory while this row ran
	KeptBytes       int64   `json:"kept_bytes"`       // kept for the backward passes (Trainer.KeptBytes)
	KeptBuffers     *int    `json:"kept_buffers"`     // buffers kept (Tape.Buffers); null: not reported
	ConvGFLOPs      float64 `json:"conv_gflops"`      // conv flops / time of the flow and backward passes
	ConvStepGFLOPs  float64 `json:"conv_step_gflops"` // conv flops / step time
	SgemmGFLOPs     float64 `json:"sgemm_gflops"`     // the sgemm reference of this L
	ConvEngine      string  `json:"conv_engine"`      // "dnnl" or "openblas"
	ConvPrecision   string  `json:"conv_precision"`   // "float32" or "bf16"
	PrimitiveGFLOPs float64 `json:"primitive_gflops"` // the oneDNN 64→64 dilation-2 convolution alone, this L, micro-batch and precision
	PeakRSSMethod   string  `json:"peak_rss_method"`  // "VmHWM reset per row" or "maxrss of the process"
}

// actionRow is one line of the action benchmark.
type actionRow struct {
	Kind           string  `json:"kind"` // "action"
	L              int     `json:"L"`
	EvenOddSeconds float64 `json:"evenodd_seconds"` // action and force of one configuration, even–odd
	DenseSeconds   float64 `json:"dense_seconds"`   // the same through the dense LU and inverse
	Configs        int     `json:"configs"`         // configurations timed per method
}

// Defaults of the benchmark.
const (
	benchSgemmN       = 2048 // sgemm reference: 2·2048³ = 17 GFLOP, ~0.1 s on two cores
	benchSgemmRepeats = 3    // the best of these is reported
	actionMinTime     = 300 * time.Millisecond
	primitiveMinTime  = 300 * time.Millisecond
	actionMaxConfigs  = 16
)

// cmdBench parses the command line of `nfschwinger bench` and runs it.
func cmdBench(args []string, stdout, stderr io.Writer) error {
	opts := benchOptions{}
	var ls, ests string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&ls, "L", "8,12,16", "lattice sizes, comma-separated, multiples of 4")
	fs.StringVar(&ests, "estimators", "reinforce,rt,path", "gradient estimators, comma-separated")
	fs.IntVar(&opts.Batch, "batch", 64, "configurations per gradient step")
	fs.IntVar(&opts.Micro, "micro-batch", 64, "configurations per micro-batch (divides -batch)")
	fs.IntVar(&opts.Layers, "layers", 48, "coupling layers")
	fs.IntVar(&opts.Steps, "steps", 3, "timed steps per row (median reported)")
	fs.IntVar(&opts.Warmup, "warmup", 1, "untimed steps before the timed ones")
	fs.BoolVar(&opts.JSON, "json", false, "print one JSON object per line instead of tables")
	fs.StringVar(&opts.Plot, "plot", "", "write a PNG of step time against L per estimator")
	fs.BoolVar(&opts.Action, "action", true, "also time the action and force alone, even–odd and dense")
	fs.IntVar(&opts.SgemmN, "sgemm-n", benchSgemmN, "order of the square sgemm reference")
	var engines, precs, hidden string
	fs.StringVar(&hidden, "hidden", "64,64", "hidden channels of the conditioner, comma-separated (two: the dilations are 1, 2, 3)")
	fs.StringVar(&engines, "conv-engine", "dnnl", "convolution engines, comma-separated: dnnl (oneDNN), openblas (im2col + sgemm), cuda (the whole flow on CUDA device 0 of this process, compute.device = \"cuda\")")
	fs.StringVar(&precs, "conv-precision", "float32", "precisions of the convolutions' inputs, comma-separated: float32, bf16 (dnnl and cuda)")
	seed := fs.Uint64("seed", 1, "seed of the initialization and the prior samples")
	pos, err := parseFlags(fs, args, benchUsage, stdout)
	if err != nil || pos == nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("bench: unexpected arguments %q (see nfschwinger bench -h)", pos)
	}
	opts.Seed = *seed
	if opts.Ls, err = parseInts(ls); err != nil {
		return usagef("bench: -L %q: %v", ls, err)
	}
	for _, s := range strings.Split(ests, ",") {
		e, err := nf.ParseEstimator(strings.TrimSpace(s))
		if err != nil {
			return usagef("bench: -estimators: %v", err)
		}
		opts.Estimators = append(opts.Estimators, e)
	}
	if hidden != "64,64" {
		if opts.Hidden, err = parseInts(hidden); err != nil || len(opts.Hidden) != 2 {
			return usagef("bench: -hidden %q: need two channel counts", hidden)
		}
	}
	if opts.Convs, err = parseConvModes(engines, precs); err != nil {
		return err
	}
	if err := opts.validate(); err != nil {
		return err
	}
	plan := threads.Configure(1)
	fmt.Fprintf(stderr, "bench: %s\n", plan)
	return runBench(opts, stdout, stderr)
}

// parseConvModes returns every valid combination of the comma-separated
// engines and precisions (bf16 runs on oneDNN only).
func parseConvModes(engines, precs string) ([]convMode, error) {
	var out []convMode
	for _, e := range strings.Split(engines, ",") {
		e = strings.TrimSpace(e)
		if e != "dnnl" && e != "openblas" && e != "cuda" {
			return nil, usagef("bench: -conv-engine %q: allowed: dnnl, openblas, cuda", e)
		}
		for _, p := range strings.Split(precs, ",") {
			p = strings.TrimSpace(p)
			if !slices.Contains(nf.ConvPrecisions, p) {
				return nil, usagef("bench: -conv-precision %q: allowed: %s", p, strings.Join(nf.ConvPrecisions, ", "))
			}
			if p == "bf16" && e == "openblas" {
				continue
			}
			out = append(out, convMode{e, p})
		}
	}
	if len(out) == 0 {
		return nil, usagef("bench: -conv-engine %s with -conv-precision %s: bf16 needs the dnnl or cuda engine", engines, precs)
	}
	return out, nil
}

// parseInts parses a comma-separated list of integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func (o *benchOptions) validate() error {
	switch {
	case len(o.Ls) == 0:
		return usagef("bench: -L: no lattice size")
	case o.Batch < 1 || o.Micro < 1 || o.Batch%o.Micro != 0:
		return usagef("bench: -batch %d, -micro-batch %d: need positive values, the micro-batch dividing the batch", o.Batch, o.Micro)
	case o.Layers < 1:
		return usagef("bench: -layers %d: need at least 1", o.Layers)
	case o.Steps < 1 || o.Warmup < 0:
		return usagef("bench: -steps %d, -warmup %d: need at least one timed step", o.Steps, o.Warmup)
	case o.SgemmN < 1:
		return usagef("bench: -sgemm-n %d: must be positive", o.SgemmN)
	}
	if o.Plot != "" {
		if d, err := os.Stat(filepath.Dir(o.Plot)); err != nil || !d.IsDir() {
			return usagef("bench: -plot %s: directory %s does not exist", o.Plot, filepath.Dir(o.Plot))
		}
	}
	for _, L := range o.Ls {
		if err := o.arch(L).Validate(); err != nil {
			return usagef("bench: -L %d: %v", L, err)
		}
	}
	return nil
}

// arch is the benchmarked architecture at L: the paper's with o.Layers layers.
func (o *benchOptions) arch(L int) nf.Arch {
	a := nf.DefaultArch(L)
	a.NLayers = o.Layers
	if o.Hidden != nil {
		a.Hidden = o.Hidden
	}
	return a
}

// runBench runs the benchmark and prints the tables (or JSON lines) to w;
// progress goes to progress.
func runBench(o benchOptions, w, progress io.Writer) error {
	be := nf.CPU(0) // sets OpenBLAS to one thread: the backend parallelizes
	if l := loadAverage(); l > float64(runtime.NumCPU()) {
		fmt.Fprintf(progress, "bench: warning: load average %.1f on %d CPUs: other processes compete for the cores, the times are not representative\n", l, runtime.NumCPU())
	}
	// bf16 where this CPU cannot run it fast is left out with one line,
	// the other rows are still measured.
	if slices.Contains(o.Convs, convMode{"dnnl", "bf16"}) {
		if err := checkBF16(o.arch(o.Ls[0])); err != nil {
			fmt.Fprintf(progress, "bench: no bf16 rows: %v\n", err)
			o.Convs = slices.DeleteFunc(slices.Clone(o.Convs), func(m convMode) bool { return m.Precision == "bf16" })
		}
	}
	// The device of the cuda rows, opened once.
	if slices.ContainsFunc(o.Convs, func(m convMode) bool { return m.Engine == "cuda" }) {
		p, err := placeRank("cuda", 0)
		if err != nil {
			return fmt.Errorf("bench: -conv-engine cuda: %w", err)
		}
		o.device = p
		fmt.Fprintf(progress, "bench: %s\n", p)
	}
	var rows []benchRow
	for _, L := range o.Ls {
		r, err := benchSize(o, be, L, w, progress)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	var actions []actionRow
	if o.Action {
		for _, L := range o.Ls {
			fmt.Fprintf(progress, "bench: action at L = %d ...\n", L)
			a, err := benchAction(L, o.Seed)
			if err != nil {
				return err
			}
			actions = append(actions, a)
			if o.JSON {
				if err := writeJSONLine(w, a); err != nil {
					return err
				}
			}
		}
	}
	if !o.JSON {
		printBenchTables(w, o, rows, actions)
	}
	if o.Plot != "" {
		if err := writeStepPlot(o.Plot, rows); err != nil {
			return fmt.Errorf("bench: plot: %w", err)
		}
	}
	return nil
}

// benchSize measures the step rows of lattice size L — every convolution
// mode and estimator, REINFORCE in both forms when the batch is one
// micro-batch — beside the sgemm and oneDNN primitive references of the
// same run, writing each row as a JSON line with o.JSON.
func benchSize(o benchOptions, be nf.Backend, L int, w, progress io.Writer) ([]benchRow, error) {
	sg := sgemmGFLOPs(be, o.SgemmN)
	prim := map[string]float64{}
	for _, m := range o.Convs {
		if _, ok := prim[m.Precision]; !ok && m.Engine != "cuda" {
			g, err := dnnl.ReferenceGFLOPs(L, o.Micro, m.Precision == "bf16", primitiveMinTime)
			if err != nil {
				return nil, fmt.Errorf("bench: L = %d: oneDNN reference convolution: %w", L, err)
			}
			prim[m.Precision] = g
		}
	}
	var rows []benchRow
	for _, m := range o.Convs {
		for _, est := range o.Estimators {
			fmt.Fprintf(progress, "bench: L = %d, %s, %s convolutions ...\n", L, est, m)
			forms := []bool{false}
			if est == nf.REINFORCE && o.Batch == o.Micro {
				forms = append(forms, true) // the Trainer runs three-pass: show four-pass too
			}
			for _, four := range forms {
				r, err := benchStep(o, be, L, est, four, m)
				if err != nil {
					return nil, err
				}
				r.SgemmGFLOPs = sg
				if m.Engine != "cuda" {
					r.PrimitiveGFLOPs = prim[m.Precision]
				}
				rows = append(rows, r)
				if o.JSON {
					if err := writeJSONLine(w, r); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return rows, nil
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// benchStep builds a fresh flow and trainer for (L, est) and times
// o.Warmup + o.Steps gradient steps on the whole batch, in one process.
// With four (REINFORCE only) the trainer runs the four-pass form
// (nf.Trainer.FourPass) where it would run the three-pass one.
func benchStep(o benchOptions, be nf.Backend, L int, est nf.Estimator, four bool, m convMode) (benchRow, error) {
	r := benchRow{Kind: "step", L: L, Estimator: string(est), Batch: o.Batch, MicroBatch: o.Micro, Layers: o.Layers,
		ConvEngine: m.Engine, ConvPrecision: m.Precision}
	// Give memory from the previous rows back before the high-water mark
	// is reset, so that it measures this row alone.
	runtime.GC()
	debug.FreeOSMemory()
	peakReset := resetPeakRSS()

	flow, kernels, err := benchFlow(o, be, L, m)
	if err != nil {
		return r, fmt.Errorf("bench: L = %d: %w", L, err)
	}
	defer flow.Close()
	pool := lgt.NewPool(lgt.Paper(L), 0)
	target, closeTarget, err := deviceTarget(kernels, flow, est, pool)
	if err != nil {
		return r, fmt.Errorf("bench: L = %d: %w", L, err)
	}
	defer closeTarget()
	tr := nf.NewTrainer(flow, target, est, o.Micro, o.Seed)
	tr.FourPass = four
	var step, loss, bwd, fl, act, gconv, gstep []float64
	for i := 0; i < o.Warmup+o.Steps; i++ {
		flow.Params.ZeroGrad()
		tr.Timings.Reset()
		t0 := time.Now()
		st, err := tr.Step(nf.Local{}, uint64(i), 0, o.Batch, o.Batch)
		if est == nf.REINFORCE {
			r.Form = map[bool]string{true: "three-pass", false: "four-pass"}[st.ThreePass]
		}
		if err != nil {
			return r, fmt.Errorf("bench: L = %d, %s, step %d: %w", L, est, i, err)
		}
		dt := time.Since(t0).Seconds()
		if i < o.Warmup {
			continue
		}
		tm := tr.Timings
		step = append(step, dt)
		bwd = append(bwd, tm.Backward.Seconds())
		loss = append(loss, dt-tm.Backward.Seconds())
		fl = append(fl, tm.Flow.Seconds())
		act = append(act, tm.Action.Seconds())
		gconv = append(gconv, tm.ConvFLOPs/(tm.Flow+tm.Backward).Seconds()/1e9)
		gstep = append(gstep, tm.ConvFLOPs/dt/1e9)
	}
	r.StepSeconds, r.LossSeconds, r.BackwardSeconds = stats.Median(step), stats.Median(loss), stats.Median(bwd)
	r.FlowSeconds, r.ActionSeconds = stats.Median(fl), stats.Median(act)
	r.ConvGFLOPs, r.ConvStepGFLOPs = stats.Median(gconv), stats.Median(gstep)
	r.KeptBytes = int64(tr.KeptBytes())
	if n := tr.KeptBuffers(); n >= 0 {
		r.KeptBuffers = &n
	}
	r.PeakRSSBytes, r.PeakRSSMethod = peakRSS(peakReset)
	return r, nil
}

// benchFlow builds the benchmark's flow at L with the row's convolutions:
// im2col and OpenBLAS, oneDNN (float32 or bf16), or the whole flow on the
// CUDA device of o.device, whose kernels it returns (nil on the CPU).
func benchFlow(o benchOptions, be nf.Backend, L int, m convMode) (*nf.Flow[float32], *gpu.Kernels, error) {
	var eng nf.Engine[float32]
	switch m.Engine {
	case "dnnl":
		eng = nf.OneDNN[float32](be, m.Precision == "bf16")
	case "cuda":
		dev, err := onDevice(o.device, o.Micro, true)
		if err != nil {
			return nil, nil, err
		}
		flow, err := newFlow[float32](o.arch(L), m.Precision, dev)
		if err != nil {
			return nil, nil, err
		}
		flow.Init(nf.Stream(o.Seed, nf.DomainInit, 0, 0))
		return flow, dev.kernels, nil
	default:
		eng = nf.OpenBLAS[float32](be)
	}
	flow, err := nf.NewFlowOn(o.arch(L), eng)
	if err != nil {
		return nil, nil, err
	}
	flow.Init(nf.Stream(o.Seed, nf.DomainInit, 0, 0))
	return flow, nil, nil
}

// sgemmGFLOPs times C = A·B for n×n float32 matrices through the backend's
// Gemm32 (sequential OpenBLAS on one block per worker, as the flow's
// products run) and returns the best of benchSgemmRepeats, in GFLOP/s.
func sgemmGFLOPs(be nf.Backend, n int) float64 {
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i] = float32(i%17) / 17
		b[i] = float32(i%13) / 13
	}
	be.Gemm32(false, false, n, n, n, 1, a, n, b, n, 0, c, n) // warm-up
	best := math.Inf(1)
	for range benchSgemmRepeats {
		t0 := time.Now()
		be.Gemm32(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
		best = min(best, time.Since(t0).Seconds())
	}
	return 2 * float64(n) * float64(n) * float64(n) / best / 1e9
}

// checkBF16 returns why bf16 convolutions are refused on this CPU (nil
// when oneDNN runs them natively: AVX512-BF16 or AMX).
func checkBF16(a nf.Arch) error {
	a.NLayers = 1
	f, err := nf.NewFlowOn(a, nf.OneDNN[float32](nf.CPU(0), true))
	if err != nil {
		return err
	}
	f.Close()
	return nil
}

// benchAction times the action with its force for random configurations
// on one Evaluator (one core, single-threaded OpenBLAS): the even–odd path
// (Evaluator.Action) and the dense one (Evaluator.MeasureDense, which also
// computes the observables from the same LU and inverse). Each method runs
// on at least two configurations and until actionMinTime has passed (at
// most actionMaxConfigs); the mean time per configuration is reported.
func benchAction(L int, seed uint64) (actionRow, error) {
	p := lgt.Paper(L)
	ev := lgt.NewEvaluator(p)
	n := 2 * p.V()
	links := make([]float64, actionMaxConfigs*n)
	nf.SamplePrior(links, actionMaxConfigs, seed, nf.DomainProbe, 0, 0)
	force := make([]float64, n)
	row := actionRow{Kind: "action", L: L}
	methods := []struct {
		dst *float64
		fn  func(x []float64) error
	}{
		{&row.EvenOddSeconds, func(x []float64) error { _, err := ev.Action(x, force); return err }},
		{&row.DenseSeconds, func(x []float64) error { _, err := ev.MeasureDense(x, force); return err }},
	}
	for _, m := range methods {
		if err := m.fn(links[:n]); err != nil { // warm-up: workspaces
			return row, fmt.Errorf("bench: action at L = %d: %w", L, err)
		}
		t0 := time.Now()
		k := 0
		for k < actionMaxConfigs && (k < 2 || time.Since(t0) < actionMinTime) {
			if err := m.fn(links[k*n : (k+1)*n]); err != nil {
				return row, fmt.Errorf("bench: action at L = %d: %w", L, err)
			}
			k++
		}
		*m.dst = time.Since(t0).Seconds() / float64(k)
		row.Configs = k
	}
	return row, nil
}

// resetPeakRSS resets the kernel's resident-set high-water mark of this
// process (VmHWM, by writing 5 to /proc/self/clear_refs, Linux ≥ 4.0) and
// reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns the peak resident memory in bytes: VmHWM of
// /proc/self/status when the mark was reset for this row, else the
// process's maxrss since its start (getrusage), with the method used.
func peakRSS(reset bool) (int64, string) {
	if reset {
		if b, err := os.ReadFile("/proc/self/status"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
					if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
						return v << 10, "VmHWM reset per row"
					}
				}
			}
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, "unavailable"
	}
	return ru.Maxrss << 10, "maxrss of the process" // Linux: KiB
}

// printBenchTables prints the markdown tables of the step and action
// benchmarks.
func printBenchTables(w io.Writer, o benchOptions, rows []benchRow, actions []actionRow) {
	const mib = 1 << 20
	fmt.Fprintf(w, "## Gradient step: batch %d, micro-batch %d, %d layers, float32 flow, one process on %d cores; median of %d steps after %d warm-up\n\n",
		o.Batch, o.Micro, o.Layers, runtime.GOMAXPROCS(0), o.Steps, o.Warmup)
	if l := loadAverage(); l >= 0 {
		fmt.Fprintf(w, "Load average (1 min) at the end: %.1f on %d CPUs.\n\n", l, runtime.NumCPU())
	}
	fmt.Fprintln(w, "| L | estimator | convolutions | step s | loss s | backward s | flow s | action s | peak RSS MiB | kept MiB | kept KiB/cfg | kept buffers | conv GFLOP/s | sgemm GFLOP/s | conv/sgemm | primitive GFLOP/s | conv/primitive |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	method := ""
	for _, r := range rows {
		bufs := "n/a"
		if r.KeptBuffers != nil {
			bufs = strconv.Itoa(*r.KeptBuffers)
		}
		prim, primRatio := "n/a", "n/a" // the oneDNN reference is the CPU's
		if r.PrimitiveGFLOPs > 0 {
			prim, primRatio = fmt.Sprintf("%.0f", r.PrimitiveGFLOPs), fmt.Sprintf("%.0f%%", 100*r.ConvGFLOPs/r.PrimitiveGFLOPs)
		}
		fmt.Fprintf(w, "| %d | %s | %s %s | %.4g | %.4g | %.4g | %.4g | %.4g | %.1f | %.1f | %.1f | %s | %.1f | %.1f | %.0f%% | %s | %s |\n",
			r.L, r.label(), r.ConvEngine, r.ConvPrecision, r.StepSeconds, r.LossSeconds, r.BackwardSeconds, r.FlowSeconds, r.ActionSeconds,
			float64(r.PeakRSSBytes)/mib, float64(r.KeptBytes)/mib, float64(r.KeptBytes)/float64(r.MicroBatch)/1024,
			bufs, r.ConvGFLOPs, r.SgemmGFLOPs, 100*r.ConvGFLOPs/r.SgemmGFLOPs, prim, primRatio)
		method = r.PeakRSSMethod
	}
	fmt.Fprintf(w, `
loss = step − backward: flow passes, action, prior sampling, reductions. flow: forward
and reverse passes; action: action and force (lgt.Pool). backward: the flows' backward
passes. peak RSS: %s. kept: the tape of one micro-batch (and REINFORCE's φ of the
batch) held for the backward pass; KiB/cfg per configuration of a micro-batch.
conv GFLOP/s: flops of the convolutions' matrix products in every flow and backward
pass (backward = 2× forward) / time of those passes, which also includes the spline,
plaquette, im2col and activation kernels (a lower bound on the convolutions' rate).
sgemm: the best of %d products of %d×%d float32 matrices through the same backend.
convolutions: dnnl (oneDNN primitives, NHWC activations, LeakyReLU fused; the last
convolution at every site, counted at the active sites only), openblas (im2col +
sgemm), with float32 or bf16 inputs, or cuda (the whole flow on the CUDA device:
im2col kernels and cuBLAS; the action stays on the CPU; sgemm is then still the
CPU's). primitive: oneDNN's 64→64 dilation-2 convolution
alone at this L and micro-batch, in its blocked layouts and the row's precision, the
best of %v of repetitions (the reference rate of the convolutions).
`, method, benchSgemmRepeats, o.SgemmN, o.SgemmN, primitiveMinTime)
	if len(actions) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Action and force per configuration, one core\n\n")
	fmt.Fprintln(w, "| L | even–odd s | dense s | dense / even–odd |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, a := range actions {
		fmt.Fprintf(w, "| %d | %.4g | %.4g | %.1f |\n", a.L, a.EvenOddSeconds, a.DenseSeconds, a.DenseSeconds/a.EvenOddSeconds)
	}
	fmt.Fprintln(w, "\neven–odd: Evaluator.Action with the force (LU of the Schur complement). dense:")
	fmt.Fprintln(w, "Evaluator.MeasureDense (LU and inverse of the whole D, observables included).")
}

// loadAverage returns the one-minute load average of the machine
// (/proc/loadavg), −1 when unknown. A value above the number of CPUs means
// the benchmark shared the cores with other work.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// label names the row's estimator, with the REINFORCE form when there is one.
func (r benchRow) label() string {
	if r.Form != "" {
		return r.Estimator + " " + r.Form
	}
	return r.Estimator
}
