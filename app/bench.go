package app

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"

	"nfschwinger/internal/bench"
	"nfschwinger/internal/threads"
	"nfschwinger/lgt"
	"nfschwinger/nf"
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

// cmdBench parses the command line of `nfschwinger bench` and runs it.
func cmdBench(args []string, stdout, stderr io.Writer) error {
	opts := bench.Options{}
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
	fs.IntVar(&opts.SgemmN, "sgemm-n", bench.DefaultSgemmN, "order of the square sgemm reference")
	var engines, precs, hidden string
	fs.StringVar(&hidden, "hidden", "64,64", "hidden channels of the conditioner, comma-separated (two: the dilations are 1, 2, 3)")
	fs.StringVar(&engines, "conv-engine", "dnnl", "convolution engines, comma-separated: dnnl (oneDNN), openblas (im2col + sgemm), cuda (the whole flow on CUDA device 0 of this process, compute.device = \"cuda\")")
	fs.StringVar(&precs, "conv-precision", "float32", "precisions of the convolutions' inputs, comma-separated: float32, bf16 (dnnl and cuda)")
	var algs string
	fs.StringVar(&algs, "conv-algorithm", "auto", "oneDNN's float32 convolution algorithms, comma-separated: auto (Winograd where it fits), direct (dnnl only; bf16 is always direct)")
	seed := fs.Uint64("seed", 1, "seed of the initialization and the prior samples")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole benchmark to this file (go tool pprof)")
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
	if opts.Estimators, err = parseEstimators(ests); err != nil {
		return err
	}
	if hidden != "64,64" {
		if opts.Hidden, err = parseInts(hidden); err != nil || len(opts.Hidden) != 2 {
			return usagef("bench: -hidden %q: need two channel counts", hidden)
		}
	}
	if opts.Convs, err = parseConvModes(engines, precs, algs); err != nil {
		return err
	}
	if opts.Device, err = benchDevice(opts.Convs, stderr); err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		return usagef("bench: %v", err)
	}
	plan := threads.Configure(1)
	fmt.Fprintf(stderr, "bench: %s\n", plan)
	stop, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	return bench.Run(opts, stdout, stderr)
}

// parseEstimators parses -estimators, a comma-separated list.
func parseEstimators(s string) ([]nf.Estimator, error) {
	var out []nf.Estimator
	for _, f := range strings.Split(s, ",") {
		e, err := nf.ParseEstimator(strings.TrimSpace(f))
		if err != nil {
			return nil, usagef("bench: -estimators: %v", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// startCPUProfile starts Go's CPU profile into path ("": none) and
// returns what stops it and closes the file. It samples the goroutines'
// Go and cgo time; oneDNN's own OpenMP threads show as the cgo calls that
// wait for them.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, usagef("bench: -cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: -cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// benchDevice opens the device of the cuda rows, once, when modes has
// one (nil otherwise), saying which on progress, and returns what builds
// those rows as train does: newFlow's device flow, deviceTarget's action.
func benchDevice(modes []bench.ConvMode, progress io.Writer) (func(nf.Arch, int, bool, nf.Estimator, *lgt.Pool) (*nf.Flow[float32], nf.Target, func(), error), error) {
	if !slices.ContainsFunc(modes, func(m bench.ConvMode) bool { return m.Engine == "cuda" }) {
		return nil, nil
	}
	p, err := placeRank("cuda", 0)
	if err != nil {
		return nil, fmt.Errorf("bench: -conv-engine cuda: %w", err)
	}
	fmt.Fprintf(progress, "bench: %s\n", p)
	return func(a nf.Arch, micro int, bf16 bool, est nf.Estimator, pool *lgt.Pool) (*nf.Flow[float32], nf.Target, func(), error) {
		dev, err := onDevice(p, micro, true)
		if err != nil {
			return nil, nil, nil, err
		}
		prec := "float32"
		if bf16 {
			prec = "bf16"
		}
		flow, err := newFlow[float32](a, prec, "auto", dev)
		if err != nil {
			return nil, nil, nil, err
		}
		target, closeTarget, err := deviceTarget(dev.kernels, flow, est, pool)
		if err != nil {
			flow.Close()
			return nil, nil, nil, err
		}
		return flow, target, func() { closeTarget(); flow.Close() }, nil
	}, nil
}

// parseConvModes returns every valid combination of the comma-separated
// engines, precisions and algorithms (bf16 runs on oneDNN and CUDA only,
// the algorithms are oneDNN's).
func parseConvModes(engines, precs, algs string) ([]bench.ConvMode, error) {
	var out []bench.ConvMode
	algList := strings.Split(algs, ",")
	for i, a := range algList {
		if algList[i] = strings.TrimSpace(a); !slices.Contains(nf.ConvAlgorithms, algList[i]) {
			return nil, usagef("bench: -conv-algorithm %q: allowed: %s", a, strings.Join(nf.ConvAlgorithms, ", "))
		}
	}
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
			if e != "dnnl" {
				out = append(out, bench.ConvMode{Engine: e, Precision: p})
				continue
			}
			if p == "bf16" { // always direct: one row
				out = append(out, bench.ConvMode{Engine: e, Precision: p, Algorithm: "direct"})
				continue
			}
			for _, a := range algList {
				out = append(out, bench.ConvMode{Engine: e, Precision: p, Algorithm: a})
			}
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
