package h5

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAttrWriteRoundTrip writes scalar, array and string attributes on the
// root, a new group and a dataset, replaces one, and reads them back.
func TestAttrWriteRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "attr.h5")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(f, "/d/x", []float64{1, 2}, []int{2}); err != nil {
		t.Fatal(err)
	}
	steps := []error{
		WriteScalarAttr(f, "/", "L", int64(8)),
		WriteScalarAttr(f, "/model", "slope", 0.01), // creates /model
		WriteAttr(f, "/model", "hidden", []int64{64, 32}),
		WriteAttr(f, "/model", "empty", []float64{}),
		WriteStringAttr(f, "/model", "masking", "2x1"),
		WriteStringAttr(f, "/model", "masking", "2x1 — ünïcode"), // replaces
		WriteStringAttr(f, "/d/x", "unit", ""),
		WriteScalarAttr(f, "/d/x", "n", int32(-3)),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := WriteStringAttr(f, "/", "bad", "a\x00b"); err == nil {
		t.Error("NUL in a string attribute accepted")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if L, err := ReadScalarAttr[int64](f, "/", "L"); err != nil || L != 8 {
		t.Errorf("L = %v, %v", L, err)
	}
	if s, err := ReadScalarAttr[float64](f, "/model", "slope"); err != nil || s != 0.01 {
		t.Errorf("slope = %v, %v", s, err)
	}
	if h, err := ReadAttr[int64](f, "/model", "hidden"); err != nil || !slices.Equal(h, []int64{64, 32}) {
		t.Errorf("hidden = %v, %v", h, err)
	}
	if e, err := ReadAttr[float64](f, "/model", "empty"); err != nil || len(e) != 0 {
		t.Errorf("empty = %v, %v", e, err)
	}
	if m, err := ReadStringAttr(f, "/model", "masking"); err != nil || m != "2x1 — ünïcode" {
		t.Errorf("masking = %q, %v", m, err)
	}
	if u, err := ReadStringAttr(f, "/d/x", "unit"); err != nil || u != "" {
		t.Errorf("unit = %q, %v", u, err)
	}
	if n, err := ReadScalarAttr[int64](f, "/d/x", "n"); err != nil || n != -3 {
		t.Errorf("n = %v, %v", n, err)
	}
	if _, err := ReadStringAttr(f, "/", "L"); err == nil || !strings.Contains(err.Error(), "not a scalar string") {
		t.Errorf("numeric attribute read as string: %v", err)
	}
	if _, err := ReadStringAttr(f, "/model", "missing"); err == nil {
		t.Error("missing attribute read")
	}
	if _, err := ReadStringAttr(f, "/nope", "x"); err == nil {
		t.Error("attribute of a missing object read")
	}
	if !HasAttr(f, "/model", "masking") || HasAttr(f, "/model", "missing") || HasAttr(f, "/nope", "x") {
		t.Error("HasAttr wrong")
	}
	// h5dump (hdf5-tools) sees the string as h5py writes it.
	if out, err := exec.Command("h5dump", "-a", "/model/masking", p).CombinedOutput(); err == nil {
		if s := string(out); !strings.Contains(s, "H5T_VARIABLE") || !strings.Contains(s, "H5T_CSET_UTF8") {
			t.Errorf("h5dump of the string attribute:\n%s", s)
		}
	}
}

// TestReadStringAttrVectors reads the variable-length string that h5py
// wrote into the reference vectors.
func TestReadStringAttrVectors(t *testing.T) {
	f, err := Open("../../../shared/vectors/flow_L8.h5")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m, err := ReadStringAttr(f, "/", "masking"); err != nil || m != "2x1" {
		t.Errorf("masking = %q, %v", m, err)
	}
}
