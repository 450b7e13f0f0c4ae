// Package golden compares test output with golden files in a package's
// testdata directory: `go test ./pkg/ -update` rewrites them (review the
// diff before committing it). For HDF5 files the compared text is the
// header and attributes that `h5dump -A` prints — groups, datasets with
// types and shapes, attributes with their values (not the datasets'
// values) — which is what a user's h5py or h5dump sees of the format.
package golden

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Check compares got with testdata/name, or writes it there with -update.
func Check(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update and review the diff if the change is intended):\n%s", path, firstDiff(want, got))
	}
}

// firstDiff shows the first differing line of want and got.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n  golden: %q\n  got:    %q", i+1, a, b)
		}
	}
	return "(same lines, different line endings)"
}

// H5Header returns the header and the attributes of the HDF5 file at path
// as `h5dump -A` prints them, with the file's name replaced by its base
// name.
func H5Header(t testing.TB, path string) []byte {
	t.Helper()
	out, err := exec.Command("h5dump", "-A", path).Output()
	if err != nil {
		t.Fatalf("h5dump -A %s (make deps installs hdf5-tools): %v", path, err)
	}
	return bytes.Replace(out, []byte(path), []byte(filepath.Base(path)), 1)
}
