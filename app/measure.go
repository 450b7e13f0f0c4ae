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
	"time"

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
	in, err := nfio.OpenLinks(opts.In)
	if err != nil {
		return usagef("measure: %v", err)
	}
	defer in.Close()
	p := lgt.Params{L: in.L, Beta: opts.Beta, Kappa: opts.Kappa}
	if err := p.Validate(); err != nil {
		return usagef("measure: %v", err)
	}
	var model reverseModel
	if opts.Checkpoint != "" {
		if opts.Precision == "" {
			opts.Precision = "float32"
		}
		if model, err = loadReverseModel(opts.Checkpoint, opts.Precision, in.L, opts.In); err != nil {
			return err
		}
	}
	// Scan every angle before any work: a NaN in the last configuration
	// should not cost the whole run.
	if err := in.CheckFinite(opts.Chunk); err != nil {
		return usagef("measure: %v", err)
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
			in.N, in.L, el.Seconds(), el.Seconds()/float64(in.N), pool.Workers(), opts.Out)
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

// measureInto measures the input chunk by chunk and writes the file tmp;
// with a model (nil: none) also logq and z.
func measureInto(ctx context.Context, tmp string, in *nfio.LinksFile, pool *lgt.Pool, model reverseModel, opts measureOptions, start time.Time) (err error) {
	meta := nfio.MeasureMeta{Params: pool.Params(), Source: opts.In, Force: opts.Force}
	if model != nil {
		meta.Model = model.Describe()
	}
	out, err := nfio.CreateMeasure(tmp, meta, min(opts.Chunk, in.N))
	if err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("measure: %w", cerr)
		}
	}()
	c := newMeasureBuf(opts.Chunk, 2*in.L*in.L, opts.Force, model != nil)
	lastReport := start
	for b0 := 0; b0 < in.N; b0 += opts.Chunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("measure: interrupted after %d of %d configurations: %w", b0, in.N, err)
		}
		nb := min(opts.Chunk, in.N-b0)
		if err := c.run(in, pool, model, out, b0, nb); err != nil {
			return fmt.Errorf("measure: configurations %d to %d: %w", b0, b0+nb-1, err)
		}
		if now := time.Now(); opts.Progress != nil && now.Sub(start) > progressAfter && now.Sub(lastReport) > progressEvery {
			lastReport = now
			done := b0 + nb
			rate := float64(done) / now.Sub(start).Seconds()
			eta := time.Duration(float64(in.N-done) / rate * float64(time.Second)).Round(time.Second)
			fmt.Fprintf(opts.Progress, "measure: %d/%d configurations, %.3g per second, %v left\n", done, in.N, rate, eta)
		}
	}
	return nil
}

// measureBuf holds the buffers of one chunk of measure: observables,
// force, log q and z (nil when not wanted).
type measureBuf struct {
	v2             int
	obs            []lgt.Observables
	force, logq, z []float64
}

func newMeasureBuf(chunk, v2 int, force, model bool) *measureBuf {
	c := &measureBuf{v2: v2, obs: make([]lgt.Observables, chunk)}
	if force {
		c.force = make([]float64, chunk*v2)
	}
	if model {
		c.logq, c.z = make([]float64, chunk), make([]float64, chunk*v2)
	}
	return c
}

// run reads configurations [b0, b0+nb), measures them (and runs the model)
// and appends the rows to out.
func (c *measureBuf) run(in *nfio.LinksFile, pool *lgt.Pool, model reverseModel, out *nfio.MeasureWriter, b0, nb int) error {
	links, err := in.Read(b0, nb)
	if err != nil {
		return err
	}
	var force, logq, z []float64
	if c.force != nil {
		force = c.force[:nb*c.v2]
	}
	if err := pool.Measure(c.obs[:nb], force, links); err != nil {
		return err
	}
	if model != nil {
		logq, z = c.logq[:nb], c.z[:nb*c.v2]
		model.Reverse(z, logq, links)
		for b, v := range logq {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("log q of configuration %d is %v", b0+b, v)
			}
		}
	}
	return out.Append(c.obs[:nb], force, logq, z)
}
