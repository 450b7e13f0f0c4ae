package nfio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"nfschwinger/nf"
)

// testParams returns a small parameter set with the flow's tensor names and
// random values, and an optimizer state for it.
func testParams(t *testing.T, arch nf.Arch, seed uint64) (*nf.ParamSet[float32], TrainState) {
	t.Helper()
	fl, err := nf.NewFlow[float32](arch, nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	fl.Init(rand.New(rand.NewPCG(seed, 1)))
	n := fl.Params.Len()
	st := TrainState{Step: 17, Skipped: 2, AdamStep: 15, M: make([]float64, n), V: make([]float64, n), Config: "[lattice]\nL = 4\n"}
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range st.M {
		st.M[i] = r.NormFloat64()
		st.V[i] = r.Float64()
	}
	return fl.Params, st
}

func smallArch() nf.Arch {
	return nf.Arch{L: 4, NLayers: 2, NKnots: 4, Hidden: []int{3}, KernelSize: 3, Dilation: []int{1, 1}, Masking: "2x1", LeakyReLUSlope: 0.01}
}

func TestCheckpointRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.h5")
	arch := smallArch()
	ps, st := testParams(t, arch, 1)
	if err := WriteCheckpoint(path, arch, ps, st); err != nil {
		t.Fatal(err)
	}
	// A second write keeps the first as checkpoint.prev.h5.
	ps2, st2 := testParams(t, arch, 2)
	st2.Step = 18
	st2.History = []HistoryRow{
		{Step: 9, Loss: -1.5, ESS: 0.25, GradNorm: 3, LearningRate: 1e-3, WallTime: 2, Acceptance: math.NaN(), ThreePass: 1},
		{Step: 18, Loss: -2.5, ESS: 0.5, Skipped: 2, WallTime: 4, Acceptance: 0.125},
	}
	if err := WriteCheckpoint(path, arch, ps2, st2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		ps   *nf.ParamSet[float32]
		st   TrainState
	}{{path, ps2, st2}, {PrevPath(path), ps, st}} {
		got, _ := testParams(t, arch, 99)
		gst, err := ReadCheckpoint(c.path, arch, got)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got.Data {
			if got.Data[i] != c.ps.Data[i] {
				t.Fatalf("%s: param %d: %v want %v", c.path, i, got.Data[i], c.ps.Data[i])
			}
		}
		for i := range gst.M {
			if gst.M[i] != c.st.M[i] || gst.V[i] != c.st.V[i] {
				t.Fatalf("%s: moment %d differs", c.path, i)
			}
		}
		if gst.Step != c.st.Step || gst.Skipped != c.st.Skipped || gst.AdamStep != c.st.AdamStep || gst.Config != c.st.Config {
			t.Fatalf("%s: state %+v want %+v", c.path, gst, c.st)
		}
		// The history rows come back exactly (NaN included); none written, none read.
		if len(gst.History) != len(c.st.History) {
			t.Fatalf("%s: %d history rows, want %d", c.path, len(gst.History), len(c.st.History))
		}
		for i, w := range c.st.History {
			g := gst.History[i]
			if g.Step != w.Step || g.Loss != w.Loss || g.ESS != w.ESS || g.Skipped != w.Skipped || g.WallTime != w.WallTime ||
				g.ThreePass != w.ThreePass || math.Float64bits(g.Acceptance) != math.Float64bits(w.Acceptance) {
				t.Errorf("%s: history row %d = %+v, want %+v", c.path, i, g, w)
			}
		}
	}
}

func TestCheckpointRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.h5")
	arch := smallArch()
	ps, st := testParams(t, arch, 1)
	if err := WriteCheckpoint(path, arch, ps, st); err != nil {
		t.Fatal(err)
	}
	other := arch
	other.Hidden = []int{5}
	if _, err := ReadCheckpoint(path, other, ps); !errors.Is(err, ErrCheckpointMismatch) {
		t.Fatalf("mismatched architecture: err = %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Truncation, and a flipped byte inside a stored weight: both must be
	// refused, never loaded silently.
	w := math.Float32bits(ps.Data[len(ps.Data)/2])
	at := bytes.Index(data, binary.LittleEndian.AppendUint32(nil, w))
	if at < 0 {
		t.Fatal("weight not found in the file")
	}
	cases := map[string][]byte{
		"truncated": data[:len(data)/2],
		"flipped":   flip(data, at+1),
		"empty":     {},
	}
	for name, b := range cases {
		p := filepath.Join(dir, name+".h5")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		got, _ := testParams(t, arch, 3)
		if _, err := ReadCheckpoint(p, arch, got); !errors.Is(err, ErrCheckpointCorrupt) {
			t.Errorf("%s checkpoint: err = %v, want ErrCheckpointCorrupt", name, err)
		}
	}
}

// TestCheckpointNeverSilentlyCorrupt flips one byte at a time at positions
// spread over the whole file: every read either fails or returns exactly
// what was written (a flip in unused space or in a name may be harmless).
func TestCheckpointNeverSilentlyCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.h5")
	arch := smallArch()
	ps, st := testParams(t, arch, 1)
	if err := WriteCheckpoint(path, arch, ps, st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const trials = 60
	refused := 0
	for k := 0; k < trials; k++ {
		i := (k*len(data))/trials + k%7
		p := filepath.Join(dir, "c.h5")
		if err := os.WriteFile(p, flip(data, i), 0o644); err != nil {
			t.Fatal(err)
		}
		got, _ := testParams(t, arch, 3)
		gst, err := ReadCheckpoint(p, arch, got)
		if err != nil {
			refused++
			continue
		}
		for j := range got.Data {
			if math.Float32bits(got.Data[j]) != math.Float32bits(ps.Data[j]) {
				t.Fatalf("byte %d flipped: parameter %d loaded silently as %v (was %v)", i, j, got.Data[j], ps.Data[j])
			}
		}
		if gst.Step != st.Step || gst.AdamStep != st.AdamStep || gst.Config != st.Config {
			t.Fatalf("byte %d flipped: state loaded silently as %+v", i, gst)
		}
	}
	t.Logf("%d of %d single-byte corruptions refused, the rest harmless", refused, trials)
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x40
	return c
}
