// Package bench times training steps of the paper's flow, one process on
// all cores, for `nfschwinger bench`: per lattice size, estimator (and
// REINFORCE form) and convolution engine, the median time of a gradient
// step split into the loss part (flow passes, action) and the backward
// part, the peak memory, the bytes kept for the backward pass and the
// convolutions' rate beside an sgemm and oneDNN's 64→64 primitive
// measured in the same run; and the action with its force per
// configuration, even–odd against dense. It prints markdown tables or JSON
// lines (StepRow, ActionRow) and plots step time against L. The command
// layer (app) parses the flags and supplies the device flows
// (Options.Device), so that the cuda rows run what training runs.
package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"nfschwinger/internal/dnnl"
	"nfschwinger/lgt"
	"nfschwinger/nf"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// Options are the settings of a benchmark (`nfschwinger bench`'s flags).
type Options struct {
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
	Convs      []ConvMode     // how the conditioner's convolutions run, one set of rows each
	// Hidden overrides the hidden channels (-hidden), nil: the paper's
	// [64, 64]; the dilations stay the paper's [1, 2, 3] when there are two.
	Hidden []int
	// Device builds a row of the "cuda" engine, as the program's train
	// command would: a flow of architecture a on the CUDA device for
	// micro-batches of micro with a tape (bf16 products with bf16), and
	// its training target for est on pool (the action with its log det,
	// and the force, on the device); close frees both. Nil: the cuda
	// engine is refused (Validate).
	Device func(a nf.Arch, micro int, bf16 bool, est nf.Estimator, pool *lgt.Pool) (flow *nf.Flow[float32], target nf.Target, close func(), err error)
}

// ConvMode is how a benchmarked flow runs its conditioners' convolutions:
// Engine "dnnl" (oneDNN primitives, nf.OneDNN), "openblas" (im2col and
// OpenBLAS sgemm) or "cuda" (the whole flow on the device, Options.Device),
// Precision "float32" or "bf16" (dnnl and cuda only), Algorithm "auto"
// or "direct" (dnnl only, nf.ConvAlgorithms; "" elsewhere).
type ConvMode struct{ Engine, Precision, Algorithm string }

// String is the mode as the tables print it: "dnnl bf16", "dnnl float32
// direct" (the algorithm only when it is not auto).
func (m ConvMode) String() string {
	s := m.Engine + " " + m.Precision
	if m.Algorithm != "" && m.Algorithm != "auto" {
		s += " " + m.Algorithm
	}
	return s
}

// StepRow is one line of the step benchmark: one lattice size,
// estimator (and REINFORCE form) and convolution mode. JSON names are
// the interface of `nfschwinger bench -json`.
type StepRow struct {
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
	ConvAlgorithm   string  `json:"conv_algorithm"`   // dnnl: "winograd" (some convolution ran Winograd) or "direct"; "" elsewhere
	PrimitiveGFLOPs float64 `json:"primitive_gflops"` // the oneDNN 64→64 dilation-2 convolution alone, this L, micro-batch and precision
	PeakRSSMethod   string  `json:"peak_rss_method"`  // "VmHWM reset per row" or "maxrss of the process"
}

// ActionRow is one line of the action benchmark (-json: "kind":
// "action").
type ActionRow struct {
	Kind           string  `json:"kind"` // "action"
	L              int     `json:"L"`
	EvenOddSeconds float64 `json:"evenodd_seconds"` // action and force of one configuration, even–odd
	DenseSeconds   float64 `json:"dense_seconds"`   // the same through the dense LU and inverse
	Configs        int     `json:"configs"`         // configurations timed per method
}

// DefaultSgemmN is the default order of the sgemm reference: 2·2048³ =
// 17 GFLOP, about 0.1 s on two cores.
const DefaultSgemmN = 2048

// The benchmark's repetitions and minimum times.
const (
	sgemmRepeats     = 3 // the best of these is reported
	actionMinTime    = 300 * time.Millisecond
	primitiveMinTime = 300 * time.Millisecond
	actionMaxConfigs = 16
)

// Validate checks the options; its errors name the flag at fault.
func (o *Options) Validate() error {
	switch {
	case len(o.Ls) == 0:
		return fmt.Errorf("-L: no lattice size")
	case o.Batch < 1 || o.Micro < 1 || o.Batch%o.Micro != 0:
		return fmt.Errorf("-batch %d, -micro-batch %d: need positive values, the micro-batch dividing the batch", o.Batch, o.Micro)
	case o.Layers < 1:
		return fmt.Errorf("-layers %d: need at least 1", o.Layers)
	case o.Steps < 1 || o.Warmup < 0:
		return fmt.Errorf("-steps %d, -warmup %d: need at least one timed step", o.Steps, o.Warmup)
	case o.SgemmN < 1:
		return fmt.Errorf("-sgemm-n %d: must be positive", o.SgemmN)
	case len(o.Convs) == 0:
		return errors.New("-conv-engine: no convolution mode")
	}
	if o.Device == nil && slices.ContainsFunc(o.Convs, func(m ConvMode) bool { return m.Engine == "cuda" }) {
		return errors.New("-conv-engine cuda: no CUDA device to build the flow on")
	}
	if o.Plot != "" {
		if d, err := os.Stat(filepath.Dir(o.Plot)); err != nil || !d.IsDir() {
			return fmt.Errorf("-plot %s: directory %s does not exist", o.Plot, filepath.Dir(o.Plot))
		}
	}
	for _, L := range o.Ls {
		if err := o.Arch(L).Validate(); err != nil {
			return fmt.Errorf("-L %d: %v", L, err)
		}
	}
	return nil
}

// Arch is the benchmarked architecture at L: the paper's with o.Layers
// layers (and o.Hidden's channels).
func (o *Options) Arch(L int) nf.Arch {
	a := nf.DefaultArch(L)
	a.NLayers = o.Layers
	if o.Hidden != nil {
		a.Hidden = o.Hidden
	}
	return a
}

// Run runs the benchmark of the options (Validate's) and prints the
// tables (or with o.JSON the JSON lines) to w, and to progress a line
// as each row starts, with one process on all cores; with o.Plot it
// writes the plot.
func Run(o Options, w, progress io.Writer) error {
	be := nf.CPU(0) // sets OpenBLAS to one thread: the backend parallelizes
	if l := loadAverage(); l > float64(runtime.NumCPU()) {
		fmt.Fprintf(progress, "bench: warning: load average %.1f on %d CPUs: other processes compete for the cores, the times are not representative\n", l, runtime.NumCPU())
	}
	// bf16 where this CPU cannot run it fast is left out with one line,
	// the other rows are still measured.
	if slices.ContainsFunc(o.Convs, func(m ConvMode) bool { return m.Engine == "dnnl" && m.Precision == "bf16" }) {
		if err := checkBF16(o.Arch(o.Ls[0])); err != nil {
			fmt.Fprintf(progress, "bench: no bf16 rows: %v\n", err)
			o.Convs = slices.DeleteFunc(slices.Clone(o.Convs), func(m ConvMode) bool { return m.Precision == "bf16" })
		}
	}
	var rows []StepRow
	for _, L := range o.Ls {
		r, err := size(o, be, L, w, progress)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	var actions []ActionRow
	if o.Action {
		for _, L := range o.Ls {
			fmt.Fprintf(progress, "bench: action at L = %d ...\n", L)
			a, err := action(L, o.Seed)
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
		printTables(w, o, rows, actions)
	}
	if o.Plot != "" {
		if err := writeStepPlot(o.Plot, rows); err != nil {
			return fmt.Errorf("bench: plot: %w", err)
		}
	}
	return nil
}

// size measures the step rows of lattice size L — every convolution
// mode and estimator, REINFORCE in both forms when the batch is one
// micro-batch — beside the sgemm and oneDNN primitive references of the
// same run, writing each row as a JSON line with o.JSON.
func size(o Options, be nf.Backend, L int, w, progress io.Writer) ([]StepRow, error) {
	sg := sgemmGFLOPs(be, o.SgemmN)
	prim := map[string]float64{}
	for _, m := range o.Convs {
		if _, ok := prim[m.Precision]; !ok && m.Engine != "cuda" {
			g, err := dnnl.ReferenceGFLOPs(L, o.Micro, be.Workers(), m.Precision == "bf16", primitiveMinTime)
			if err != nil {
				return nil, fmt.Errorf("bench: L = %d: oneDNN reference convolution: %w", L, err)
			}
			prim[m.Precision] = g
		}
	}
	var rows []StepRow
	for _, m := range o.Convs {
		for _, est := range o.Estimators {
			fmt.Fprintf(progress, "bench: L = %d, %s, %s convolutions ...\n", L, est, m)
			forms := []bool{false}
			if est == nf.REINFORCE && o.Batch == o.Micro {
				forms = append(forms, true) // the Trainer runs three-pass: show four-pass too
			}
			for _, four := range forms {
				r, err := step(o, be, L, est, four, m)
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
