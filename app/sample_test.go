package app

import (
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nfschwinger/comm"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
	"nfschwinger/sample"
)

// writeTestChain samples a chain of n steps with a small random flow at
// L = 4 into path.
func writeTestChain(t *testing.T, path string, n int64) {
	t.Helper()
	a := nf.DefaultArch(4)
	a.NLayers, a.Hidden, a.Dilation = 2, []int{4}, []int{1, 1}
	f, err := nf.NewFlow[float32](a, nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	f.Init(nf.Stream(3, nf.DomainInit, 0, 0))
	pool := lgt.NewPool(lgt.Paper(4), 1)
	defer pool.Close()
	meta := nfio.ChainMeta{L: 4, Beta: lgt.PaperBeta, Kappa: lgt.PaperKappa, Seed: 5, Precision: "float32", ModelHash: sample.ModelHash(f)}
	src := sample.NewFlowSource(comm.Single(), f, pool, 5, 256, false)
	if err := sample.Run(context.Background(), comm.Single(), src, sample.Options{Path: path, N: n, Seed: 5, Meta: meta}); err != nil {
		t.Fatal(err)
	}
}

// TestAnalyze runs analyze on a directory with history and chain, with
// each alone, and on an empty one.
func TestAnalyze(t *testing.T) {
	dir := t.TempDir()
	h, err := nfio.CreateHistory(filepath.Join(dir, "history.h5"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []nfio.HistoryRow
	for s := int64(1); s <= 300; s++ {
		rows = append(rows, nfio.HistoryRow{Step: s, ESS: 0.5 + 0.001*float64(s%10), Loss: -1, WallTime: 0.5 * float64(s), Acceptance: math.NaN()})
	}
	if err := h.Append(rows...); err != nil {
		t.Fatal(err)
	}
	h.Close()
	writeTestChain(t, filepath.Join(dir, sample.ChainFile), 3000)
	var out strings.Builder
	if err := runAnalyze(analyzeOptions{Dir: dir, JSON: true, Plots: true, Window: 100, Excerpt: 500, LongRun: 3}, &out); err != nil {
		t.Fatal(err)
	}
	var a struct {
		Training struct {
			Steps       int64
			FinalESS    float64 `json:"final_ess"`
			TimePerStep float64 `json:"time_per_step"`
		}
		Chain struct {
			Steps       int
			Acceptance  float64
			Observables []struct {
				Name   string
				Mean   float64
				TauInt float64 `json:"tau_int"`
			}
			FreeEnergyNIS struct{ Value, Err float64 } `json:"free_energy_nis"`
		}
		Plots []string
	}
	if err := json.Unmarshal([]byte(out.String()), &a); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, out.String())
	}
	// The final ESS averages the last quarter of the 300 rows (window 100
	// capped at 75): s = 226 … 300, mean of s mod 10 = 345/75 = 4.6.
	if a.Training.Steps != 300 || math.Abs(a.Training.FinalESS-0.5046) > 1e-12 || a.Training.TimePerStep != 0.5 {
		t.Errorf("training summary %+v, want 300 steps, ESS 0.5046, 0.5 s/step", a.Training)
	}
	if a.Chain.Steps != 3000 || len(a.Chain.Observables) != 5 || a.Chain.FreeEnergyNIS.Err <= 0 {
		t.Errorf("chain summary %+v", a.Chain)
	}
	if len(a.Plots) != 2 { // no acceptance column in this history
		t.Errorf("plots %v, want ess.png and chain_history.png", a.Plots)
	}
	for _, p := range a.Plots {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		f.Close()
	}
	out.Reset()
	if err := runAnalyze(analyzeOptions{Dir: dir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Training", "final ESS", "NMCMC chain", "longest rejection run", "F_q"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tables lack %q:\n%s", want, out.String())
		}
	}
	// History only, chain only, nothing.
	for _, keep := range []string{"history.h5", sample.ChainFile} {
		d := t.TempDir()
		data, _ := os.ReadFile(filepath.Join(dir, keep))
		os.WriteFile(filepath.Join(d, keep), data, 0o644)
		out.Reset()
		if err := runAnalyze(analyzeOptions{Dir: d}, &out); err != nil {
			t.Errorf("only %s: %v", keep, err)
		}
	}
	err = runAnalyze(analyzeOptions{Dir: t.TempDir()}, &out)
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Errorf("empty directory: %v, want a UsageError", err)
	}
}
