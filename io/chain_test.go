package nfio

import (
	"math"
	"path/filepath"
	"testing"

	"nfschwinger/internal/h5"
)

func testMeta(save bool) ChainMeta {
	return ChainMeta{L: 4, Beta: 2, Kappa: 0.276, Seed: 7, SaveConfigs: save, Precision: "float32",
		ModelHash: "abc123", Source: "run/checkpoint.h5", Method: MethodNMCMC}
}

// testRows returns n rows with distinct values; every third is rejected
// (and repeats the previous state).
func testRows(first, n int) []ChainRow {
	rows := make([]ChainRow, n)
	for i := range rows {
		k := float64(first + i)
		acc := (first+i)%3 != 1 || first+i == 0
		rows[i] = ChainRow{Accepted: acc, LogQ: -k, LogP: -2 * k, LogW: -k,
			State:    ChainObservables{0.1 * k, 1, k, 0.5},
			Proposal: ChainObservables{0.2 * k, -1, -k, 0.25}}
	}
	return rows
}

func testConfigs(first, n, L int) []float32 {
	c := make([]float32, n*2*L*L)
	for i := range c {
		c[i] = float32(first*2*L*L+i) * 1e-3
	}
	return c
}

func TestChainRoundTrip(t *testing.T) {
	for _, save := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "chain.h5")
		meta := testMeta(save)
		c, err := CreateChain(path, meta)
		if err != nil {
			t.Fatal(err)
		}
		var cfg1, cfg2 []float32
		if save {
			cfg1, cfg2 = testConfigs(0, 5, 4), testConfigs(5, 3, 4)
		}
		if err := c.Append(testRows(0, 5), cfg1); err != nil {
			t.Fatal(err)
		}
		if err := c.Append(testRows(5, 3), cfg2); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteSummary([]string{"condensate_mean", "ess"}, []float64{0.25, 0.5}); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		d, err := ReadChain(path)
		if err != nil {
			t.Fatal(err)
		}
		if d.Meta != meta {
			t.Errorf("meta %+v, want %+v", d.Meta, meta)
		}
		want := testRows(0, 8)
		if d.Len() != 8 {
			t.Fatalf("%d rows, want 8", d.Len())
		}
		nacc := 0
		for i, r := range want {
			got := ChainRow{Accepted: d.Accepted[i], LogQ: d.LogQ[i], LogP: d.LogP[i], LogW: d.LogW[i],
				State:    ChainObservables{d.State.Condensate[i], d.State.Sign[i], d.State.TopologicalCharge[i], d.State.Plaquette[i]},
				Proposal: ChainObservables{d.Proposal.Condensate[i], d.Proposal.Sign[i], d.Proposal.TopologicalCharge[i], d.Proposal.Plaquette[i]}}
			if got != r {
				t.Errorf("row %d: %+v, want %+v", i, got, r)
			}
			if r.Accepted {
				nacc++
			}
		}
		if d.Summary["condensate_mean"] != 0.25 || d.Summary["ess"] != 0.5 || len(d.Summary) != 2 {
			t.Errorf("summary %v", d.Summary)
		}
		f, err := h5.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		rate, _ := h5.ReadScalarAttr[float64](f, "/", "acceptance_rate")
		steps, _ := h5.ReadScalarAttr[int64](f, "/", "n_steps")
		f.Close()
		if steps != 8 || math.Abs(rate-float64(nacc)/8) > 1e-15 {
			t.Errorf("attributes n_steps %d acceptance_rate %g, want 8 and %g", steps, rate, float64(nacc)/8)
		}
		if save {
			got, err := ReadChainConfigs(path, 2, 4)
			if err != nil {
				t.Fatal(err)
			}
			wantc := testConfigs(2, 4, 4)
			for i := range wantc {
				if got[i] != wantc[i] {
					t.Fatalf("config value %d: %g, want %g", i, got[i], wantc[i])
				}
			}
		} else if _, err := ReadChainConfigs(path, 0, 1); err == nil {
			t.Error("ReadChainConfigs without configurations: no error")
		}
	}
}

// TestChainKilledAppend: a run killed in the middle of an append leaves
// columns of unequal length; OpenChain cuts them to whole steps and Resume
// finds the state after the last whole step.
func TestChainKilledAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.h5")
	c, err := CreateChain(path, testMeta(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Append(testRows(0, 6), testConfigs(0, 6, 4)); err != nil {
		t.Fatal(err)
	}
	// Simulate the kill: half of the columns of the next block written.
	extra := testRows(6, 2)
	if err := h5.Append(c.f, "accepted", []uint8{1, 1}); err != nil {
		t.Fatal(err)
	}
	if err := h5.Append(c.f, "logq", []float64{extra[0].LogQ, extra[1].LogQ}); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c, err = OpenChain(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 6 {
		t.Fatalf("reopened chain has %d steps, want 6", c.Len())
	}
	r, err := c.Resume()
	if err != nil {
		t.Fatal(err)
	}
	// Rows 0..5: accepted except 1 and 4; the state is step 5's proposal.
	rows := testRows(0, 6)
	if r.Steps != 6 || r.Accepted != 4 || r.Current != 5 || r.LogW != rows[5].LogW || r.State != rows[5].State {
		t.Errorf("resume %+v", r)
	}
	if want := testConfigs(5, 1, 4); len(r.Config) != len(want) || r.Config[3] != want[3] {
		t.Errorf("resume config %v, want %v", r.Config, want)
	}
	// Continue: the file grows from 6 steps.
	if err := c.Append(testRows(6, 2), testConfigs(6, 2, 4)); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(ChainColumns(), "configs") {
		if n, _ := h5.Rows(c.f, name); n != 8 {
			t.Errorf("dataset %s has %d rows, want 8", name, n)
		}
	}
}

func TestChainResumeRejectedTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.h5")
	c, err := CreateChain(path, testMeta(false))
	if err != nil {
		t.Fatal(err)
	}
	rows := testRows(0, 3)
	rows[2].Accepted = false // steps 1 and 2 rejected: the state is step 0's proposal
	if err := c.Append(rows, nil); err != nil {
		t.Fatal(err)
	}
	r, err := c.Resume()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r.Current != 0 || r.LogW != rows[0].LogW || r.State != rows[2].State || r.Config != nil {
		t.Errorf("resume %+v, want current 0, logw %g", r, rows[0].LogW)
	}
}

func TestChainMeta(t *testing.T) {
	m := testMeta(false)
	o := m
	o.Source = "elsewhere.h5"
	if !m.Same(o) {
		t.Error("metas differing in Source only are not Same")
	}
	for _, mod := range []func(*ChainMeta){
		func(c *ChainMeta) { c.Seed++ },
		func(c *ChainMeta) { c.ModelHash = "x" },
		func(c *ChainMeta) { c.SaveConfigs = true },
		func(c *ChainMeta) { c.L = 8 },
	} {
		o := m
		mod(&o)
		if m.Same(o) {
			t.Errorf("%+v and %+v are Same", m, o)
		}
	}
	path := filepath.Join(t.TempDir(), "h.h5")
	h, err := CreateHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := OpenChain(path); err == nil {
		t.Error("OpenChain of a history file: no error")
	}
	if _, err := ReadChainMeta(path); err == nil {
		t.Error("ReadChainMeta of a history file: no error")
	}
}
