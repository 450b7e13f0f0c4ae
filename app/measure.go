package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"nfschwinger/internal/h5"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
)

const measureUsage = `usage: nfschwinger measure [flags] IN.h5 OUT.h5

Reads the configurations of dataset "links", shape (N, 2, L, L), float32 or
float64 angles, from IN.h5 and writes to OUT.h5 one value per configuration in
the datasets gauge_action, fermion_action, action, log_abs_det_D, sign_det_D,
condensate, topological_charge, mean_cos_plaquette (shape (N)), and with
-force the force dS/dθ (N, 2, L, L); L, beta and kappa as attributes.

With -checkpoint FILE (a training checkpoint, model in /model, or a bare
weight file with the model at the root, as shared/vectors/flow_L8.h5) every
configuration φ also gets logq = log q(φ) = log prior + log J of the reverse
flow (N) and z = f⁻¹(φ), the reverse image (N, 2, L, L), computed in the
precision of -precision. The model's L must be the configurations' L.
Conventions: shared/vectors/README.md. OUT.h5 appears only when complete.

flags:
`

// measureOptions are the settings of `nfschwinger measure`.
type measureOptions struct {
	In, Out string  // input file (dataset "links") and output file
	Beta    float64 // gauge coupling β
	Kappa   float64 // hopping parameter κ
	Force   bool    // also write the force dS/dθ
	Workers int     // worker goroutines, ≤ 0: GOMAXPROCS
	Chunk   int     // configurations read, measured and written at a time, ≤ 0: measureChunk
	// Progress receives progress lines (runs longer than progressAfter)
	// and a final summary line; nil: silent.
	Progress io.Writer
	// Checkpoint is a model file (training checkpoint or bare weight
	// file); when set, every configuration also gets log q through the
	// reverse flow and its reverse image z (datasets "logq" and "z").
	Checkpoint string
	// Precision of the flow with a checkpoint: "float32" (default when
	// empty) or "float64".
	Precision string
}

// measureChunk is the default number of configurations per chunk: it bounds
// the memory (links and force of 64 configurations at L = 64 are 8 MiB
// each) and sets the granularity of progress and cancellation.
const measureChunk = 64

// progressAfter is how long a run goes before progress lines appear, and
// progressEvery the interval between them.
const (
	progressAfter = 2 * time.Second
	progressEvery = 5 * time.Second
)

// observableColumns are the per-configuration output datasets, named as in
// the reference vectors, with the field of lgt.Observables each holds.
var observableColumns = []struct {
	name string
	get  func(*lgt.Observables) float64
}{
	{"gauge_action", func(o *lgt.Observables) float64 { return o.GaugeAction }},
	{"fermion_action", func(o *lgt.Observables) float64 { return o.FermionAction }},
	{"action", func(o *lgt.Observables) float64 { return o.Action }},
	{"log_abs_det_D", func(o *lgt.Observables) float64 { return o.LogAbsDetD }},
	{"sign_det_D", func(o *lgt.Observables) float64 { return o.SignDetD }},
	{"condensate", func(o *lgt.Observables) float64 { return o.Condensate }},
	{"topological_charge", func(o *lgt.Observables) float64 { return o.TopologicalCharge }},
	{"mean_cos_plaquette", func(o *lgt.Observables) float64 { return o.MeanCosPlaquette }},
}

// cmdMeasure parses the command line of `nfschwinger measure` and runs it.
func cmdMeasure(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts := measureOptions{Progress: stderr}
	fs := flag.NewFlagSet("measure", flag.ContinueOnError)
	fs.Float64Var(&opts.Beta, "beta", lgt.PaperBeta, "gauge coupling β")
	fs.Float64Var(&opts.Kappa, "kappa", lgt.PaperKappa, "hopping parameter κ")
	fs.BoolVar(&opts.Force, "force", false, "also write the force dS/dθ, shape (N, 2, L, L)")
	fs.IntVar(&opts.Workers, "workers", 0, "worker goroutines (default: all cores)")
	fs.StringVar(&opts.Checkpoint, "checkpoint", "", "model file: also write logq (N) and z (N, 2, L, L) through the reverse flow")
	fs.StringVar(&opts.Precision, "precision", "float32", "precision of the flow with -checkpoint: float32 or float64")
	pos, err := parseFlags(fs, args, measureUsage, stdout)
	if err != nil || pos == nil {
		return err
	}
	precisionSet := false
	fs.Visit(func(f *flag.Flag) { precisionSet = precisionSet || f.Name == "precision" })
	if precisionSet && opts.Checkpoint == "" {
		return usagef("measure: -precision applies only with -checkpoint")
	}
	if len(pos) != 2 {
		return usagef("measure: need IN.h5 and OUT.h5, got %d file arguments (see nfschwinger measure -h)", len(pos))
	}
	opts.In, opts.Out = pos[0], pos[1]
	return runMeasure(ctx, opts)
}

// parseFlags parses flags anywhere among the arguments ("measure in.h5
// out.h5 -force" works) and returns the positional arguments. With -h it
// prints the usage to stdout and returns nil, nil. A bad flag is a
// one-line UsageError.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	pos := []string{}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				fmt.Fprint(stdout, usage)
				fs.PrintDefaults()
				return nil, nil
			}
			return nil, usagef("%s: %v (see nfschwinger %s -h)", fs.Name(), err, fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// measureInput is the validated input of a measurement.
type measureInput struct {
	f    *h5.File
	n, l int
}

// runMeasure measures every configuration of opts.In and writes the results
// to opts.Out through a temporary file renamed into place at the end; on
// any error or cancellation nothing is left at opts.Out (an existing file
// there stays as it was). Bad input is a *UsageError.
func runMeasure(ctx context.Context, opts measureOptions) error {
	if opts.Chunk <= 0 {
		opts.Chunk = measureChunk
	}
	if err := checkInOut(opts.In, opts.Out); err != nil {
		return err
	}
	in, err := openLinks(opts.In)
	if err != nil {
		return err
	}
	defer in.f.Close()
	p := lgt.Params{L: in.l, Beta: opts.Beta, Kappa: opts.Kappa}
	if err := p.Validate(); err != nil {
		return usagef("measure: %v", err)
	}
	var model reverseModel
	if opts.Checkpoint != "" {
		if opts.Precision == "" {
			opts.Precision = "float32"
		}
		if model, err = loadReverseModel(opts.Checkpoint, opts.Precision, in.l, opts.In); err != nil {
			return err
		}
	}
	// Scan every angle before any work: a NaN in the last configuration
	// should not cost the whole run.
	if err := scanFinite(in, opts.Chunk, opts.In); err != nil {
		return err
	}

	start := time.Now()
	pool := lgt.NewPool(p, opts.Workers)
	err = nfio.WriteAtomic(opts.Out, false, func(tmp string) error {
		return measureInto(ctx, tmp, in, pool, model, opts, start)
	})
	if err != nil {
		return err
	}
	if opts.Progress != nil {
		el := time.Since(start)
		fmt.Fprintf(opts.Progress, "measure: %d configurations, L = %d, in %.2f s (%.3g s each, %d workers) -> %s\n",
			in.n, in.l, el.Seconds(), el.Seconds()/float64(in.n), pool.Workers(), opts.Out)
	}
	return nil
}

// checkInOut refuses a missing input, an output equal to the input (same
// cleaned absolute path, or the same file through a link), an output that
// is a directory or lies in a missing directory.
func checkInOut(in, out string) error {
	si, err := os.Stat(in)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return usagef("measure: %s: no such file", in)
		}
		return usagef("measure: %v", err)
	}
	if si.IsDir() {
		return usagef("measure: %s is a directory, not an HDF5 file", in)
	}
	ai, err1 := filepath.Abs(in)
	ao, err2 := filepath.Abs(out)
	if err1 != nil || err2 != nil {
		return usagef("measure: cannot resolve the paths %s and %s", in, out)
	}
	if filepath.Clean(ai) == filepath.Clean(ao) {
		return usagef("measure: output %s is the input file: choose another name", out)
	}
	if so, err := os.Stat(out); err == nil {
		if os.SameFile(si, so) {
			return usagef("measure: output %s is the input file %s (a link to it): choose another name", out, in)
		}
		if so.IsDir() {
			return usagef("measure: output %s is a directory", out)
		}
	}
	if d, err := os.Stat(filepath.Dir(ao)); err != nil || !d.IsDir() {
		return usagef("measure: output directory %s does not exist", filepath.Dir(out))
	}
	return nil
}

// openLinks opens the input and checks the dataset "links": shape
// (N, 2, L, L) with N ≥ 1 and L even, ≥ 2.
func openLinks(path string) (measureInput, error) {
	f, err := h5.Open(path)
	if err != nil {
		return measureInput{}, usagef("measure: %s: not an HDF5 file", path)
	}
	fail := func(format string, args ...any) (measureInput, error) {
		f.Close()
		return measureInput{}, usagef("measure: %s: "+format, append([]any{path}, args...)...)
	}
	if !f.Exists("links") {
		return fail(`no dataset "links"`)
	}
	n, err := h5.Rows(f, "links")
	if err != nil {
		return fail(`dataset "links" must have shape (N, 2, L, L), it is a scalar`)
	}
	shape, err := f.Shape("links")
	if err != nil {
		return fail(`dataset "links": %v`, err)
	}
	if len(shape) != 4 || shape[1] != 2 || shape[2] != shape[3] {
		return fail(`dataset "links" has shape %s, want (N, 2, L, L)`, shapeString(shape))
	}
	l := shape[2]
	switch {
	case n == 0:
		return fail(`dataset "links" holds no configurations`)
	case l < 2 || l%2 != 0:
		return fail(`dataset "links" has L = %d: L must be even and at least 2`, l)
	}
	return measureInput{f: f, n: n, l: l}, nil
}

func shapeString(shape []int) string {
	s := make([]string, len(shape))
	for i, v := range shape {
		s[i] = fmt.Sprint(v)
	}
	if len(s) == 1 {
		return "(" + s[0] + ",)"
	}
	return "(" + strings.Join(s, ", ") + ")"
}

// scanFinite reports the first non-finite angle of the input.
func scanFinite(in measureInput, chunk int, path string) error {
	l := in.l
	for b0 := 0; b0 < in.n; b0 += chunk {
		nb := min(chunk, in.n-b0)
		links, _, err := h5.ReadRows[float64](in.f, "links", b0, nb)
		if err != nil {
			return usagef("measure: %v", err)
		}
		for k, v := range links {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				b, r := b0+k/(2*l*l), k%(2*l*l)
				return usagef("measure: %s: links[%d, %d, %d, %d] = %v: angles must be finite",
					path, b, r/(l*l), r/l%l, r%l, v)
			}
		}
	}
	return nil
}

// measureInto measures the input chunk by chunk and writes the file tmp;
// with a model (nil: none) also logq and z.
func measureInto(ctx context.Context, tmp string, in measureInput, pool *lgt.Pool, model reverseModel, opts measureOptions, start time.Time) (err error) {
	out, err := h5.Create(tmp)
	if err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("measure: %w", cerr)
		}
	}()
	l, v2 := in.l, 2*in.l*in.l
	chunkRows := min(opts.Chunk, in.n)
	for _, c := range observableColumns {
		if err := h5.CreateExtendible[float64](out, c.name, nil, chunkRows); err != nil {
			return fmt.Errorf("measure: %w", err)
		}
	}
	if opts.Force {
		if err := h5.CreateExtendible[float64](out, "force", []int{2, l, l}, chunkRows); err != nil {
			return fmt.Errorf("measure: %w", err)
		}
	}
	var logq, z []float64
	if model != nil {
		if err := h5.CreateExtendible[float64](out, "logq", nil, chunkRows); err != nil {
			return fmt.Errorf("measure: %w", err)
		}
		if err := h5.CreateExtendible[float64](out, "z", []int{2, l, l}, chunkRows); err != nil {
			return fmt.Errorf("measure: %w", err)
		}
		if err := h5.WriteStringAttr(out, "/", "model", model.Describe()); err != nil {
			return fmt.Errorf("measure: %w", err)
		}
		logq, z = make([]float64, opts.Chunk), make([]float64, opts.Chunk*v2)
	}
	if err := writeMeasureAttrs(out, pool.Params(), opts); err != nil {
		return fmt.Errorf("measure: %w", err)
	}

	obs := make([]lgt.Observables, opts.Chunk)
	col := make([]float64, opts.Chunk)
	var force []float64
	if opts.Force {
		force = make([]float64, opts.Chunk*v2)
	}
	lastReport := start
	for b0 := 0; b0 < in.n; b0 += opts.Chunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("measure: interrupted after %d of %d configurations: %w", b0, in.n, err)
		}
		nb := min(opts.Chunk, in.n-b0)
		links, _, err := h5.ReadRows[float64](in.f, "links", b0, nb)
		if err != nil {
			return fmt.Errorf("measure: %w", err)
		}
		var fc []float64
		if opts.Force {
			fc = force[:nb*v2]
		}
		if err := pool.Measure(obs[:nb], fc, links); err != nil {
			return fmt.Errorf("measure: configurations %d to %d: %w", b0, b0+nb-1, err)
		}
		for _, c := range observableColumns {
			for i := range nb {
				col[i] = c.get(&obs[i])
			}
			if err := h5.Append(out, c.name, col[:nb]); err != nil {
				return fmt.Errorf("measure: %w", err)
			}
		}
		if opts.Force {
			if err := h5.Append(out, "force", fc); err != nil {
				return fmt.Errorf("measure: %w", err)
			}
		}
		if model != nil {
			if err := writeModelColumns(out, model, links, logq[:nb], z[:nb*v2]); err != nil {
				return fmt.Errorf("measure: configurations %d to %d: %w", b0, b0+nb-1, err)
			}
		}
		if now := time.Now(); opts.Progress != nil && now.Sub(start) > progressAfter && now.Sub(lastReport) > progressEvery {
			lastReport = now
			done := b0 + nb
			rate := float64(done) / now.Sub(start).Seconds()
			eta := time.Duration(float64(in.n-done) / rate * float64(time.Second)).Round(time.Second)
			fmt.Fprintf(opts.Progress, "measure: %d/%d configurations, %.3g per second, %v left\n", done, in.n, rate, eta)
		}
	}
	return nil
}

// writeMeasureAttrs stores L, β, κ and the input's name as attributes of
// the output's root group.
func writeMeasureAttrs(out *h5.File, p lgt.Params, opts measureOptions) error {
	if err := h5.WriteScalarAttr(out, "/", "L", int64(p.L)); err != nil {
		return err
	}
	if err := h5.WriteScalarAttr(out, "/", "beta", p.Beta); err != nil {
		return err
	}
	if err := h5.WriteScalarAttr(out, "/", "kappa", p.Kappa); err != nil {
		return err
	}
	if err := h5.WriteStringAttr(out, "/", "source", opts.In); err != nil {
		return err
	}
	return h5.WriteStringAttr(out, "/", "description",
		"nfschwinger measure: one value per configuration of source:/links; force = dS/dtheta; "+
			"with a model: logq = log q(links) = log prior + log J of the reverse flow, z = its reverse image; "+
			"conventions of shared/vectors/README.md")
}
