package nfio

import (
	"math"
	"path/filepath"
	"testing"

	"nfschwinger/internal/golden"
)

// Golden files of the formats users read (`go test ./io/ -update` rewrites
// them): the h5dump header — groups, datasets, types, shapes and every
// attribute — of a small history.h5 and chain.h5 written by the program's
// writers, so that a change of layout, name, type or description shows as
// a diff to review.

// TestHistoryGolden: history.h5 with three rows.
func TestHistoryGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.h5")
	h, err := CreateHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Append(rows(1, 3, 1)...); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "history.h5.txt", golden.H5Header(t, path))
}

// TestChainGolden: chain.h5 with three steps, configurations kept, and a
// summary.
func TestChainGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.h5")
	meta := ChainMeta{L: 4, Beta: 2, Kappa: 0.276, Seed: 5, SaveConfigs: true, Precision: "float32",
		ModelHash: "0123abcd", Source: "run/checkpoint.h5"}
	c, err := CreateChain(path, meta)
	if err != nil {
		t.Fatal(err)
	}
	obs := ChainObservables{Condensate: 0.5, Sign: 1, TopologicalCharge: 0, Plaquette: 0.75}
	rows := []ChainRow{
		{Accepted: true, LogQ: -50, LogP: 20, LogW: 70, State: obs, Proposal: obs},
		{Accepted: false, LogQ: -51, LogP: 18, LogW: 69, State: obs, Proposal: ChainObservables{Sign: -1}},
		{Accepted: true, LogQ: -49, LogP: 21, LogW: 70, State: obs, Proposal: obs},
	}
	if err := c.Append(rows, make([]float32, 3*2*16)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteSummary([]string{"condensate_mean", "n_steps"}, []float64{0.5, 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "chain.h5.txt", golden.H5Header(t, path))
}

// TestHMCChainGolden: an HMC chain.h5 with two trajectories: the dH
// column, the hmc/ state datasets and the HMC root attributes.
func TestHMCChainGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.h5")
	meta := ChainMeta{L: 4, Beta: 2, Kappa: 0.276, Seed: 5, Precision: "float64",
		Method: MethodHMC, TrajectoryLength: 1, MDSteps: 10, Start: "cold"}
	c, err := CreateChain(path, meta)
	if err != nil {
		t.Fatal(err)
	}
	obs := ChainObservables{Condensate: 0.5, Sign: 1, TopologicalCharge: 0, Plaquette: 0.75}
	nan := math.NaN()
	rows := []ChainRow{
		{Accepted: true, LogQ: nan, LogP: 20, LogW: nan, DH: 0.01, State: obs, Proposal: obs},
		{Accepted: false, LogQ: nan, LogP: 18, LogW: nan, DH: 2.5, State: obs, Proposal: obs},
	}
	if err := c.AppendHMC(rows, nil, make([]float64, 2*16)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "chain_hmc.h5.txt", golden.H5Header(t, path))
}
