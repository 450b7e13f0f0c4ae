package h5

import (
	"path/filepath"
	"testing"
)

func TestReadVectors(t *testing.T) {
	f, err := Open("../../../shared/vectors/schwinger_L4.h5")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	links, shape, err := Read[float64](f, "links")
	if err != nil {
		t.Fatal(err)
	}
	if len(shape) != 4 || shape[0] != 8 || shape[1] != 2 || shape[2] != 4 || len(links) != 8*2*16 {
		t.Fatalf("links shape %v len %d", shape, len(links))
	}
	L, err := ReadScalarAttr[int64](f, "/", "L")
	if err != nil || L != 4 {
		t.Fatalf("L = %d, %v", L, err)
	}
	beta, err := ReadScalarAttr[float64](f, "/", "beta")
	if err != nil || beta != 2 {
		t.Fatalf("beta = %v, %v", beta, err)
	}
	if !f.Exists("/force") || f.Exists("/nope/x") {
		t.Fatal("Exists wrong")
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.h5")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1, 2, 3, 4, 5, 6}
	if err := Write(f, "/a/b/c", want, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, shape, err := Read[float64](f, "/a/b/c")
	if err != nil {
		t.Fatal(err)
	}
	if len(shape) != 2 || shape[0] != 2 || shape[1] != 3 {
		t.Fatalf("shape %v", shape)
	}
	for i := range want {
		if got[i] != float64(want[i]) {
			t.Fatalf("got %v want %v", got, want)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.h5")); err == nil {
		t.Fatal("opening a missing file succeeded")
	}
}

func TestReadScalarDataset(t *testing.T) {
	f, err := Open("../../../shared/vectors/flow_L8.h5")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, shape, err := Read[float64](f, "/grad_rt/loss")
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || len(shape) != 0 {
		t.Fatalf("scalar dataset: %v shape %v", v, shape)
	}
}
