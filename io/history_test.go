package nfio

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"nfschwinger/internal/h5"
)

// row returns a history row whose every field is a distinct function of step
// (exact in float64), so a row in the wrong place or column is caught.
func row(step int64) HistoryRow {
	s := float64(step)
	return HistoryRow{Step: step, Loss: -s, ESS: s / 1024, LogqMean: 10 + s, LogpMean: 20 + s,
		GradNorm: 30 + s, LearningRate: 1e-4 * s, Skipped: step / 3, WallTime: 0.5 * s}
}

func rows(from, to, every int64) []HistoryRow {
	var r []HistoryRow
	for s := from; s <= to; s += every {
		r = append(r, row(s))
	}
	return r
}

func TestHistoryAppendRestart(t *testing.T) {
	p := filepath.Join(t.TempDir(), "history.h5")
	h, err := CreateHistory(p)
	if err != nil {
		t.Fatal(err)
	}
	// Steps 10, 20, …, 70 in three appends, more than a chunk in total.
	want := rows(10, 70, 10)
	if err := h.Append(want[:2]...); err != nil {
		t.Fatal(err)
	}
	if err := h.Append(want[2:]...); err != nil {
		t.Fatal(err)
	}
	if err := h.Append(); err != nil {
		t.Fatal(err)
	}
	if h.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", h.Len(), len(want))
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
	}
	f, err := h5.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := h5.ReadStringAttr(f, "/", "format"); err != nil || s != HistoryFormat {
		t.Errorf("format attribute %q, %v", s, err)
	}
	if v, err := h5.ReadScalarAttr[int64](f, "/", "version"); err != nil || v != HistoryVersion {
		t.Errorf("version attribute %d, %v", v, err)
	}
	if s, err := h5.ReadStringAttr(f, "ess", "description"); err != nil || s != historyColumns[2].doc {
		t.Errorf("ess description %q, %v", s, err)
	}
	f.Close()

	// Restart from the checkpoint of step 40: rows 50, 60, 70 are dropped,
	// then the restarted run logs 50, 60 again.
	tests := []struct {
		after int64
		keep  int
	}{{100, 7}, {45, 4}, {40, 4}, {5, 0}}
	for _, tc := range tests {
		q := filepath.Join(t.TempDir(), "h.h5")
		h, err := CreateHistory(q)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Append(want...); err != nil {
			t.Fatal(err)
		}
		h.Close()
		h, err = OpenHistory(q, tc.after)
		if err != nil {
			t.Fatal(err)
		}
		if h.Len() != tc.keep {
			t.Errorf("OpenHistory(after %d): %d rows, want %d", tc.after, h.Len(), tc.keep)
		}
		more := rows(int64(10*tc.keep+10), int64(10*tc.keep+20), 10)
		if err := h.Append(more...); err != nil {
			t.Fatal(err)
		}
		h.Close()
		got, err := ReadHistory(q)
		if err != nil {
			t.Fatal(err)
		}
		exp := append(append([]HistoryRow{}, want[:tc.keep]...), more...)
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("after restart at %d:\n%+v\nwant\n%+v", tc.after, got, exp)
		}
	}
}

// TestHistoryRagged simulates a crash between the appends of two columns:
// reopening cuts every column to the shortest.
func TestHistoryRagged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "history.h5")
	h, err := CreateHistory(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Append(rows(1, 3, 1)...); err != nil {
		t.Fatal(err)
	}
	h.Close()
	f, err := h5.OpenRW(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := h5.Append(f, "step", []int64{4}); err != nil { // only the first column
		t.Fatal(err)
	}
	f.Close()
	h, err = OpenHistory(p, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if h.Len() != 3 {
		t.Fatalf("ragged file reopened with %d rows, want 3", h.Len())
	}
	if err := h.Append(row(4)); err != nil {
		t.Fatal(err)
	}
	h.Close()
	got, err := ReadHistory(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows(1, 4, 1)) {
		t.Fatalf("got %+v", got)
	}
}

func TestOpenHistoryErrors(t *testing.T) {
	dir := t.TempDir()
	// Missing: created.
	h, err := OpenHistory(filepath.Join(dir, "new.h5"), 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	// Not HDF5.
	bad := filepath.Join(dir, "bad.h5")
	os.WriteFile(bad, []byte("not hdf5"), 0o644)
	if _, err := OpenHistory(bad, 0); err == nil {
		t.Error("opened a non-HDF5 file")
	}
	// HDF5 but not a history file.
	other := filepath.Join(dir, "other.h5")
	f, err := h5.Create(other)
	if err != nil {
		t.Fatal(err)
	}
	h5.Write(f, "x", []float64{1}, []int{1})
	f.Close()
	if _, err := OpenHistory(other, 0); err == nil {
		t.Error("opened an HDF5 file without history datasets")
	}
	if _, err := ReadHistory(other); err == nil {
		t.Error("read an HDF5 file without history datasets")
	}
}

// TestHistoryH5py reads history.h5 with Python's h5py: every documented
// dataset, one-dimensional, with the rows written, and the unit attribute.
func TestHistoryH5py(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import h5py").Run(); err != nil {
		t.Skipf("%s has no h5py: %v", python, err)
	}
	p := filepath.Join(t.TempDir(), "history.h5")
	h, err := CreateHistory(p)
	if err != nil {
		t.Fatal(err)
	}
	want := rows(10, 50, 10)
	if err := h.Append(want...); err != nil {
		t.Fatal(err)
	}
	h.Close()
	script := `
import h5py, json, sys
with h5py.File(sys.argv[1], "r") as f:
    out = {}
    for name, ds in f.items():
        a = ds.attrs.get("unit")
        if isinstance(a, bytes):
            a = a.decode()
        out[name] = {"shape": list(ds.shape), "kind": ds.dtype.kind, "data": ds[()].tolist(),
                     "unit": a, "maxshape": [m if m is not None else -1 for m in ds.maxshape]}
    print(json.dumps(out))
`
	outb, err := exec.Command(python, "-c", script, p).Output()
	if err != nil {
		t.Fatalf("h5py: %v", err)
	}
	var got map[string]struct {
		Shape    []int
		Kind     string
		Data     []float64
		Unit     *string
		MaxShape []int
	}
	if err := json.Unmarshal(outb, &got); err != nil {
		t.Fatalf("%v: %s", err, outb)
	}
	if len(got) != len(historyColumns) {
		t.Errorf("h5py sees %d datasets, want %d: %v", len(got), len(historyColumns), reflect.ValueOf(got).MapKeys())
	}
	for _, c := range historyColumns {
		g, ok := got[c.name]
		if !ok {
			t.Errorf("h5py: no dataset %s", c.name)
			continue
		}
		if !reflect.DeepEqual(g.Shape, []int{len(want)}) || !reflect.DeepEqual(g.MaxShape, []int{-1}) {
			t.Errorf("%s: shape %v maxshape %v, want [%d] and unlimited", c.name, g.Shape, g.MaxShape, len(want))
		}
		wantKind := "f"
		if c.i64 != nil {
			wantKind = "i"
		}
		if g.Kind != wantKind {
			t.Errorf("%s: dtype kind %q, want %q", c.name, g.Kind, wantKind)
		}
		for i, r := range want {
			var v float64
			if c.i64 != nil {
				v = float64(*c.i64(&r))
			} else {
				v = *c.f64(&r)
			}
			if g.Data[i] != v {
				t.Errorf("%s[%d] = %v, want %v", c.name, i, g.Data[i], v)
			}
		}
		if g.Unit == nil || *g.Unit != c.unit {
			t.Errorf("%s: unit attribute %v, want %q", c.name, g.Unit, c.unit)
		}
	}
}

// TestRestoreHistory: RestoreHistory replaces a history file — here one
// that HDF5 cannot parse — by one with the given rows without opening it,
// keeps the old bytes as history.prev.h5, and appends after the rows.
func TestRestoreHistory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "history.h5")
	damaged := []byte("\x89HDF\r\n\x1a\n this is not a history file any more")
	if err := os.WriteFile(path, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := RestoreHistory(path, rows(1, 3, 1))
	if err != nil {
		t.Fatal(err)
	}
	if h.Len() != 3 {
		t.Errorf("restored file has %d rows, want 3", h.Len())
	}
	if err := h.Append(rows(4, 4, 1)...); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows(1, 4, 1)) {
		t.Errorf("rows after restore and append: %+v", got)
	}
	if b, err := os.ReadFile(PrevPath(path)); err != nil || !bytes.Equal(b, damaged) {
		t.Errorf("the old file is not kept as %s: %v", PrevPath(path), err)
	}
	// Without an old file, and with no rows.
	empty := filepath.Join(dir, "empty.h5")
	if h, err := RestoreHistory(empty, nil); err != nil || h.Len() != 0 {
		t.Fatalf("restore of no rows: %v", err)
	} else {
		h.Close()
	}
}
