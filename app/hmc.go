package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"nfschwinger/comm"
	nfio "nfschwinger/io"
	"nfschwinger/sample"
)

// runHMC is `nfschwinger PARAMS.toml` with [sample] method = "hmc": the
// HMC baseline on the exact action, no training. Every rank runs an
// independent chain, its replica (sample.HMC.Replica = rank), into
// out_dir/sample.ReplicaFile(rank): chain.h5 for rank 0, the chain of a
// one-process run. When every chain is complete, rank 0 prints the
// estimates combined over the replicas. A stop signal ends each chain
// after its current block; every rank then returns errStopped, and the
// chains continue on the next start.
func runHMC(cfg nfio.Config, c comm.Comm, stdout io.Writer, stop <-chan os.Signal) error {
	s := cfg.Sample
	if s.NSamples == 0 {
		if c.Rank() == 0 {
			fmt.Fprintln(stdout, "hmc: sample.n_samples = 0, nothing to do")
		}
		return nil
	}
	err := os.MkdirAll(cfg.IO.OutDir, 0o755)
	var start []float64
	if err == nil {
		start, err = hmcStart(s.Start, cfg.Lat.L)
		if err != nil {
			err = &UsageError{Err: err}
		}
	}
	if err := c.AgreeError(err); err != nil {
		return err
	}
	meta := nfio.ChainMeta{L: cfg.Lat.L, Beta: cfg.Lat.Beta, Kappa: cfg.Lat.Kappa, Seed: s.Seed, SaveConfigs: s.SaveConfigs,
		Precision: "float64", Method: nfio.MethodHMC, TrajectoryLength: s.TrajectoryLength, MDSteps: s.MDSteps, Start: s.Start,
		Replica: c.Rank()}
	h := sample.NewHMC(cfg.Lattice(), s.TrajectoryLength, s.MDSteps, uint64(s.Seed))
	h.Replica = uint64(c.Rank())
	path := filepath.Join(cfg.IO.OutDir, sample.ReplicaFile(c.Rank()))
	ctx, cancel := stopContext(context.Background(), stop)
	defer cancel()
	opts := sample.Options{Path: path, N: int64(s.NSamples), Seed: uint64(s.Seed), Meta: meta}
	if c.Rank() == 0 {
		opts.Progress = stdout
		if c.Size() > 1 {
			fmt.Fprintf(stdout, "hmc: %d independent chains, one per rank (rank 0's progress below)\n", c.Size())
		}
	}
	err = sample.RunHMC(ctx, h, start, opts)
	stopped := errors.Is(err, context.Canceled)
	if stopped {
		err = nil
	}
	if err := c.AgreeError(err); err != nil {
		return err
	}
	flag := []float64{0}
	if stopped {
		flag[0] = 1
	}
	c.AllreduceMax(flag)
	if flag[0] != 0 {
		if c.Rank() == 0 {
			fmt.Fprintf(stdout, "hmc stopped by signal; the chains in %s continue on restart\n", cfg.IO.OutDir)
		}
		return errStopped
	}
	if c.Size() == 1 || c.Rank() != 0 {
		return nil
	}
	return printReplicas(cfg.IO.OutDir, c.Size(), stdout)
}

// printReplicas prints the estimates of the n replica chains in dir
// combined (rank 0, after every chain is complete).
func printReplicas(dir string, n int, w io.Writer) error {
	reps := make([]*sample.Report, n)
	for r := range reps {
		d, err := nfio.ReadChain(filepath.Join(dir, sample.ReplicaFile(r)))
		if err != nil {
			return fmt.Errorf("hmc: %w", err)
		}
		reps[r] = sample.Summarize(d, sample.DefaultBootstrapReps, sample.DefaultLongRun)
	}
	sample.PrintCombined(w, sample.Combine(reps))
	return nil
}

// hmcStart returns the start configuration of an HMC chain on an L×L
// lattice: every angle 0 for "cold", else the last state of the chain file
// at start, which must keep configurations of the same L.
func hmcStart(start string, L int) ([]float64, error) {
	links := make([]float64, 2*L*L)
	if start == "cold" {
		return links, nil
	}
	if err := nfio.ProbeChain(start); err != nil {
		return nil, fmt.Errorf("sample.start = %q: %w", start, err)
	}
	d, err := nfio.ReadChain(start)
	if err != nil {
		return nil, fmt.Errorf("sample.start = %q: %w", start, err)
	}
	if d.Meta.L != L {
		return nil, fmt.Errorf("sample.start = %q: a chain of L = %d, this run has L = %d", start, d.Meta.L, L)
	}
	if d.Len() == 0 {
		return nil, fmt.Errorf("sample.start = %q: the chain is empty", start)
	}
	c, err := nfio.ReadChainConfigs(start, d.Len()-1, 1)
	if err != nil {
		return nil, fmt.Errorf("sample.start = %q: %w (start from a chain sampled with save_configs = true)", start, err)
	}
	for i, v := range c {
		links[i] = float64(v)
	}
	return links, nil
}
