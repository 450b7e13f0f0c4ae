package nfio

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"nfschwinger/internal/h5"
	"nfschwinger/nf"
)

// modelParams declares the parameters of arch as the flow does
// (nf.ParamName order: per layer, per convolution, weight then bias),
// allocated and filled with seeded random values.
func modelParams[T nf.Float](arch nf.Arch, seed uint64) *nf.ParamSet[T] {
	ps := &nf.ParamSet[T]{}
	ch := arch.Channels()
	for k := range arch.NLayers {
		for j := 0; j+1 < len(ch); j++ {
			ps.Declare(nf.ParamName(k, j, "weight"), ch[j+1], ch[j], arch.KernelSize, arch.KernelSize)
			ps.Declare(nf.ParamName(k, j, "bias"), ch[j+1])
		}
	}
	ps.Alloc()
	rng := rand.New(rand.NewPCG(seed, 0))
	for i := range ps.Data {
		ps.Data[i] = T(rng.NormFloat64())
	}
	return ps
}

func smallModelArch() nf.Arch {
	return nf.Arch{L: 8, NLayers: 3, NKnots: 5, Hidden: []int{4, 3}, KernelSize: 3,
		Dilation: []int{1, 2, 3}, Masking: "2x1", LeakyReLUSlope: 0.02}
}

func writeModelFile[T nf.Float](t *testing.T, arch nf.Arch, ps *nf.ParamSet[T]) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.h5")
	f, err := h5.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteModel(f, arch, ps); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func openT(t *testing.T, p string) *h5.File {
	t.Helper()
	f, err := h5.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestModelRoundTrip writes a model and reads it back exactly, in both
// precisions, and across precisions (float32 on file into float64 is exact).
func TestModelRoundTrip(t *testing.T) {
	arch := smallModelArch()
	t.Run("float32", func(t *testing.T) { roundTrip[float32, float32](t, arch) })
	t.Run("float64", func(t *testing.T) { roundTrip[float64, float64](t, arch) })
	t.Run("float32 file into float64", func(t *testing.T) { roundTrip[float32, float64](t, arch) })
}

func roundTrip[W, R nf.Float](t *testing.T, arch nf.Arch) {
	ps := modelParams[W](arch, 1)
	f := openT(t, writeModelFile(t, arch, ps))
	got, err := ReadArch(f, ModelGroup)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, arch) {
		t.Fatalf("architecture %+v, want %+v", got, arch)
	}
	back := modelParams[R](arch, 2)
	if err := ReadModelInto(f, ModelGroup, back); err != nil {
		t.Fatal(err)
	}
	for i := range ps.Data {
		if float64(back.Data[i]) != float64(ps.Data[i]) {
			t.Fatalf("parameter %d: read %v, wrote %v", i, back.Data[i], ps.Data[i])
		}
	}
	// The layout documented in docs/commands.md (Model files), with the shapes declared.
	shape, err := f.Shape("/model/layers/02/conv1/weight")
	if err != nil || !reflect.DeepEqual(shape, []int{3, 4, 3, 3}) {
		t.Errorf("/model/layers/02/conv1/weight shape %v, %v", shape, err)
	}
}

// TestModelErrors: a missing tensor, a wrong shape and a non-finite weight
// are refused with the tensor's name; a missing attribute names it.
func TestModelErrors(t *testing.T) {
	arch := smallModelArch()
	f := openT(t, writeModelFile(t, arch, modelParams[float64](arch, 1)))

	more := arch
	more.NLayers = 4
	err := ReadModelInto(f, ModelGroup, modelParams[float64](more, 1))
	if err == nil || !strings.Contains(err.Error(), "layers/03/conv0/weight") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing tensor: %v", err)
	}
	wider := arch
	wider.Hidden = []int{5, 3}
	err = ReadModelInto(f, ModelGroup, modelParams[float64](wider, 1))
	if err == nil || !strings.Contains(err.Error(), "layers/00/conv0/weight") || !strings.Contains(err.Error(), "shape") {
		t.Errorf("shape mismatch: %v", err)
	}
	if _, err := ReadArch(f, "/"); err == nil || !strings.Contains(err.Error(), "L") {
		t.Errorf("architecture of a group without attributes: %v", err)
	}

	bad := modelParams[float32](arch, 1)
	bad.Data[7] = float32(math.NaN())
	g := openT(t, writeModelFile(t, arch, bad))
	err = ReadModelInto(g, ModelGroup, modelParams[float32](arch, 1))
	if err == nil || !strings.Contains(err.Error(), "layers/00/conv0/weight") || !strings.Contains(err.Error(), "NaN") {
		t.Errorf("NaN weight: %v", err)
	}

	invalid := arch
	invalid.L = 6
	p := filepath.Join(t.TempDir(), "x.h5")
	h, err := h5.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := WriteModel(h, invalid, modelParams[float32](arch, 1)); err == nil {
		t.Error("invalid architecture written")
	}
}

// TestReadVectorsModel reads the architecture and the weights of the
// reference vectors (root attributes, weights at /layers/KK/convJ).
func TestReadVectorsModel(t *testing.T) {
	f := openT(t, "../../shared/vectors/flow_L8.h5")
	arch, err := ReadArch(f, "/")
	if err != nil {
		t.Fatal(err)
	}
	want := nf.Arch{L: 8, NLayers: 8, NKnots: 9, Hidden: []int{64, 64}, KernelSize: 3,
		Dilation: []int{1, 2, 3}, Masking: "2x1", LeakyReLUSlope: 0.01}
	if !reflect.DeepEqual(arch, want) {
		t.Fatalf("architecture %+v, want %+v", arch, want)
	}
	ps := modelParams[float64](arch, 3)
	if err := ReadModelInto(f, "/", ps); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"layers/00/conv0/weight", "layers/07/conv2/bias"} {
		ref, _, err := h5.Read[float64](f, "/"+name)
		if err != nil {
			t.Fatal(err)
		}
		ti, _ := ps.Lookup(name)
		if !reflect.DeepEqual(ps.Data[ti.Offset:ti.Offset+ti.Size], ref) {
			t.Errorf("%s differs from the file", name)
		}
	}
	// float32 reading of the same file converts every value.
	ps32 := modelParams[float32](arch, 3)
	if err := ReadModelInto(f, "/", ps32); err != nil {
		t.Fatal(err)
	}
	for i := range ps.Data {
		if ps32.Data[i] != float32(ps.Data[i]) {
			t.Fatalf("float32 parameter %d: %v, want %v", i, ps32.Data[i], float32(ps.Data[i]))
		}
	}
}

// TestOpenModelFile: the reference weight file (model at the root) and a
// checkpoint (model in /model) open with their architecture; a file that is
// no HDF5 file, and an HDF5 file without a model, give ErrNotHDF5 and
// ErrNoModel.
func TestOpenModelFile(t *testing.T) {
	m, err := OpenModelFile("../../shared/vectors/flow_L8.h5")
	if err != nil {
		t.Fatal(err)
	}
	if m.Group != "/" || m.Arch.L != 8 || m.Arch.NLayers != 8 {
		t.Errorf("vectors: group %s, arch %+v", m.Group, m.Arch)
	}
	m.Close()
	dir := t.TempDir()
	ck := filepath.Join(dir, "checkpoint.h5")
	arch := smallArch()
	ps, st := testParams(t, arch, 1)
	if err := WriteCheckpoint(ck, arch, ps, st); err != nil {
		t.Fatal(err)
	}
	if m, err := OpenModelFile(ck); err != nil || m.Group != ModelGroup || !reflect.DeepEqual(m.Arch, arch) {
		t.Errorf("checkpoint: %v", err)
	} else {
		m.Close()
	}
	junk := filepath.Join(dir, "junk.h5")
	os.WriteFile(junk, []byte("no HDF5"), 0o644)
	if _, err := OpenModelFile(junk); !errors.Is(err, ErrNotHDF5) {
		t.Errorf("junk: %v, want ErrNotHDF5", err)
	}
	hist := filepath.Join(dir, "history.h5")
	h, err := CreateHistory(hist)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := OpenModelFile(hist); !errors.Is(err, ErrNoModel) {
		t.Errorf("history file: %v, want ErrNoModel", err)
	}
}
