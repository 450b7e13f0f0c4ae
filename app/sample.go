package app

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"nfschwinger/comm"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
	"nfschwinger/sample"
)

// runSample runs the NMCMC chain of cfg's [sample] section with the flow
// as proposal, into out_dir/chain.h5 (see Run): up to
// sample.n_samples steps, sample.batch_size proposals per rank and block,
// proposals and accept decisions keyed by sample.seed. n_samples = 0 does
// nothing. The flow must hold the same parameters on every rank. Progress
// and the final estimates go to stdout on rank 0. Collective.
func runSample[T nf.Float](ctx context.Context, cfg nfio.Config, c comm.Comm, flow *nf.Flow[T], pool *lgt.Pool, stdout io.Writer) error {
	if cfg.Sample.NSamples == 0 {
		return nil
	}
	source := ""
	if ck := filepath.Join(cfg.IO.OutDir, "checkpoint.h5"); fileExists(ck) {
		source = ck
	}
	if r := cfg.IO.Restart; r != "auto" && r != "never" && r != "" && source == "" {
		source = r
	}
	var zero T
	prec := "float64"
	if _, ok := any(zero).(float32); ok {
		prec = "float32"
	}
	meta := nfio.ChainMeta{L: cfg.Lat.L, Beta: cfg.Lat.Beta, Kappa: cfg.Lat.Kappa, Seed: cfg.Sample.Seed,
		SaveConfigs: cfg.Sample.SaveConfigs, Precision: prec, ModelHash: sample.ModelHash(flow), Source: source}
	seed := uint64(cfg.Sample.Seed)
	src := sample.NewFlowSource(c, flow, pool, seed, cfg.Sample.BatchSize, cfg.Sample.SaveConfigs)
	var progress io.Writer
	if c.Rank() == 0 {
		progress = stdout
	}
	return sample.Run(ctx, c, src, sample.Options{Path: filepath.Join(cfg.IO.OutDir, sample.ChainFile),
		N: int64(cfg.Sample.NSamples), Seed: seed, Meta: meta, Progress: progress})
}

// fileExists reports whether path names an existing file.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
