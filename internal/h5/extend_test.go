package h5

import (
	"path/filepath"
	"slices"
	"testing"
)

// TestExtendibleAppend appends rows in uneven batches to 1-D and 3-D
// extendible datasets, closes, reopens for writing, appends more, and reads
// everything back exactly (the values are small integers, exact in float32).
func TestExtendibleAppend(t *testing.T) {
	tests := []struct {
		name      string
		rowShape  []int
		chunkRows int
		batches   []int // rows per Append call
	}{
		{"scalar rows", nil, 4, []int{1, 3, 5, 0, 2}},
		{"matrix rows", []int{2, 3}, 2, []int{3, 1, 4}},
		{"chunk of one", []int{5}, 1, []int{2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "ext.h5")
			f, err := Create(p)
			if err != nil {
				t.Fatal(err)
			}
			const ds = "/g/h/data"
			if err := CreateExtendible[float32](f, ds, tc.rowShape, tc.chunkRows); err != nil {
				t.Fatal(err)
			}
			rowSize := 1
			for _, v := range tc.rowShape {
				rowSize *= v
			}
			var want []float64
			next := 0.0
			appendBatch := func(f *File, rows int) {
				t.Helper()
				batch := make([]float64, rows*rowSize)
				for i := range batch {
					batch[i] = next
					next++
				}
				want = append(want, batch...)
				if err := Append(f, ds, batch); err != nil {
					t.Fatal(err)
				}
			}
			half := len(tc.batches) / 2
			for _, n := range tc.batches[:half] {
				appendBatch(f, n)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			f, err = OpenRW(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.batches[half:] {
				appendBatch(f, n)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			f, err = Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			total := len(want) / rowSize
			n, err := Rows(f, ds)
			if err != nil || n != total {
				t.Fatalf("Rows = %d, %v; want %d", n, err, total)
			}
			got, shape, err := Read[float64](f, ds)
			if err != nil {
				t.Fatal(err)
			}
			wantShape := append([]int{total}, tc.rowShape...)
			if !slices.Equal(shape, wantShape) {
				t.Fatalf("shape %v, want %v", shape, wantShape)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("data %v, want %v", got, want)
			}
			// A window in the middle through ReadRows.
			if total >= 3 {
				sub, subShape, err := ReadRows[float64](f, ds, 1, 2)
				if err != nil {
					t.Fatal(err)
				}
				if subShape[0] != 2 || !slices.Equal(sub, want[rowSize:3*rowSize]) {
					t.Fatalf("ReadRows(1, 2) = %v %v, want %v", sub, subShape, want[rowSize:3*rowSize])
				}
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "trunc.h5")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateExtendible[int64](f, "step", nil, 8); err != nil {
		t.Fatal(err)
	}
	if err := Append(f, "step", []int64{10, 20, 30, 40, 50}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ to, want int }{{7, 5}, {3, 3}, {3, 3}, {0, 0}} {
		if err := Truncate(f, "step", tc.to); err != nil {
			t.Fatal(err)
		}
		if n, err := Rows(f, "step"); err != nil || n != tc.want {
			t.Fatalf("after Truncate(%d): %d rows, %v; want %d", tc.to, n, err, tc.want)
		}
	}
	// Appending after truncation overwrites the dropped rows.
	if err := Append(f, "step", []int64{60, 70}); err != nil {
		t.Fatal(err)
	}
	got, _, err := Read[int64](f, "step")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int64{60, 70}) {
		t.Fatalf("after truncate and append: %v", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestExtendibleErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "err.h5")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Write(f, "fixed", []float64{1, 2}, []int{2}); err != nil {
		t.Fatal(err)
	}
	if err := Append(f, "fixed", []float64{3}); err == nil {
		t.Error("Append to a fixed-size dataset succeeded")
	}
	if err := Append(f, "missing", []float64{3}); err == nil {
		t.Error("Append to a missing dataset succeeded")
	}
	if _, _, err := ReadRows[float64](f, "fixed", 1, 2); err == nil {
		t.Error("ReadRows beyond the end succeeded")
	}
	if _, err := Rows(f, "missing"); err == nil {
		t.Error("Rows of a missing dataset succeeded")
	}
	if err := CreateExtendible[float64](f, "rows", []int{3}, 2); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Append of a partial row did not panic")
			}
		}()
		_ = Append(f, "rows", []float64{1, 2})
	}()
	if _, err := OpenRW(filepath.Join(t.TempDir(), "missing.h5")); err == nil {
		t.Error("OpenRW of a missing file succeeded")
	}
}
