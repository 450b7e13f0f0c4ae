package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"nfschwinger/internal/h5"
	nfio "nfschwinger/io"
)

const vectorsL4 = "../../shared/vectors/schwinger_L4.h5"

func readDataset(t *testing.T, path, name string) []float64 {
	t.Helper()
	f, err := h5.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, _, err := h5.Read[float64](f, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRunMeasureChunks: the chunk size (here 3, not dividing the 8
// configurations, against one chunk) changes no bit of the output.
func TestRunMeasureChunks(t *testing.T) {
	dir := t.TempDir()
	var progress bytes.Buffer
	for _, tc := range []struct {
		out   string
		chunk int
	}{{"a.h5", 3}, {"b.h5", 0}} {
		opts := measureOptions{In: vectorsL4, Out: filepath.Join(dir, tc.out), Beta: 2, Kappa: 0.276,
			Force: true, Workers: 2, Chunk: tc.chunk, Progress: &progress}
		if err := runMeasure(context.Background(), opts); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range nfio.MeasureColumns() {
		a := readDataset(t, filepath.Join(dir, "a.h5"), name)
		b := readDataset(t, filepath.Join(dir, "b.h5"), name)
		if len(a) != 8 || !slices.Equal(a, b) {
			t.Errorf("%s: chunked %v, unchunked %v", name, a, b)
		}
	}
	if a, b := readDataset(t, filepath.Join(dir, "a.h5"), "force"), readDataset(t, filepath.Join(dir, "b.h5"), "force"); len(a) != 8*2*16 || !slices.Equal(a, b) {
		t.Error("force differs between chunk sizes")
	}
	if lines := strings.Split(strings.TrimSpace(progress.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[0], "measure: 8 configurations, L = 4") {
		t.Errorf("summary lines %q", progress.String())
	}
}

// TestRunMeasureCancelled: a cancelled run returns the context's error (a
// runtime failure, not a usage error) and leaves no output.
func TestRunMeasureCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(dir, "out.h5")
	err := runMeasure(ctx, measureOptions{In: vectorsL4, Out: out, Beta: 2, Kappa: 0.276})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		t.Error("cancellation reported as a usage error")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}
