package tests

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraph checks the package boundaries (docs/conventions.md, Layout):
// the physics (lgt) and the flow (nf) never import the communicator, the
// files or the command layer; only comm imports MPI; the command layer
// (app) and the sampler (sample) reach HDF5 only through io, which owns
// every file format; nothing below app imports sample; oneDNN is the
// flow's (nf) and the benchmark's, not the physics', files' or sampler's;
// the benchmark (internal/bench) imports neither the command layer nor
// the device packages, which reach it through app.
func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-f", "{{.ImportPath}}: {{join .Imports \" \"}}", "nfschwinger/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := map[string][]string{
		"nfschwinger/lgt":    {"nfschwinger/comm", "nfschwinger/io", "nfschwinger/app", "nfschwinger/nf", "nfschwinger/sample", "nfschwinger/internal/dnnl"},
		"nfschwinger/nf":     {"nfschwinger/comm", "nfschwinger/io", "nfschwinger/app", "nfschwinger/sample"},
		"nfschwinger/io":     {"nfschwinger/comm", "nfschwinger/app", "nfschwinger/sample", "nfschwinger/internal/dnnl"},
		"nfschwinger/sample": {"nfschwinger/app", "nfschwinger/internal/h5", "gonum.org/v1/hdf5", "nfschwinger/internal/dnnl"},
		"nfschwinger/app":    {"nfschwinger/internal/h5", "gonum.org/v1/hdf5"},
		// The benchmark gets its device flows from the command layer.
		"nfschwinger/internal/bench": {"nfschwinger/app", "nfschwinger/comm", "nfschwinger/io", "nfschwinger/sample", "nfschwinger/nf/gpu", "nfschwinger/nf/device", "nfschwinger/internal/cuda"},
	}
	const mpi = "github.com/sbromberger/gompi"
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imps, _ := strings.Cut(line, ": ")
		imports := strings.Fields(imps)
		for _, bad := range forbidden[pkg] {
			for _, imp := range imports {
				if imp == bad || strings.HasPrefix(imp, bad+"/") {
					t.Errorf("%s imports %s", pkg, imp)
				}
			}
		}
		if _, ok := forbidden[pkg]; ok {
			seen++
		}
		for _, imp := range imports {
			if imp == mpi && pkg != "nfschwinger/comm" {
				t.Errorf("%s imports MPI (%s); only nfschwinger/comm may", pkg, mpi)
			}
		}
	}
	if seen != len(forbidden) {
		t.Fatalf("go list listed %d of the %d checked packages:\n%s", seen, len(forbidden), out)
	}
}
