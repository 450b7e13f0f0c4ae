package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	nfio "nfschwinger/io"
	"nfschwinger/sample"
)

// runHMC is `nfschwinger PARAMS.toml` with [sample] method = "hmc": the
// HMC baseline on the exact action into out_dir/chain.h5, no training.
// One process (CheckRanks refuses more). A stop signal ends it after the
// current block of trajectories with errStopped; the chain continues on
// the next start.
func runHMC(cfg nfio.Config, stdout io.Writer, stop <-chan os.Signal) error {
	s := cfg.Sample
	if s.NSamples == 0 {
		fmt.Fprintln(stdout, "hmc: sample.n_samples = 0, nothing to do")
		return nil
	}
	if err := os.MkdirAll(cfg.IO.OutDir, 0o755); err != nil {
		return fmt.Errorf("hmc: %w", err)
	}
	start, err := hmcStart(s.Start, cfg.Lat.L)
	if err != nil {
		return &UsageError{Err: err}
	}
	meta := nfio.ChainMeta{L: cfg.Lat.L, Beta: cfg.Lat.Beta, Kappa: cfg.Lat.Kappa, Seed: s.Seed, SaveConfigs: s.SaveConfigs,
		Precision: "float64", Method: nfio.MethodHMC, TrajectoryLength: s.TrajectoryLength, MDSteps: s.MDSteps, Start: s.Start}
	h := sample.NewHMC(cfg.Lattice(), s.TrajectoryLength, s.MDSteps, uint64(s.Seed))
	path := filepath.Join(cfg.IO.OutDir, sample.ChainFile)
	ctx, cancel := stopContext(context.Background(), stop)
	defer cancel()
	err = sample.RunHMC(ctx, h, start, sample.Options{Path: path, N: int64(s.NSamples), Seed: uint64(s.Seed), Meta: meta, Progress: stdout})
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stdout, "hmc stopped by signal; %s continues on restart\n", path)
		return errStopped
	}
	return err
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
