package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"nfschwinger/internal/params"
	nfio "nfschwinger/io"
)

// python is Debian's interpreter with python3-h5py.
const python = "/usr/bin/python3"

// h5pyDump is a Python program that prints, as JSON, every dataset of the
// HDF5 file argv[1] with its dtype, shape and string attributes, and the
// root's attributes.
const h5pyDump = `
import sys, json, math, h5py
out = {"datasets": {}, "attrs": {}}
def conv(v):
    if isinstance(v, bytes): return v.decode()
    try: v = v.item()
    except Exception: return str(v)
    if isinstance(v, float) and not math.isfinite(v): return None  # JSON has no NaN
    return v
with h5py.File(sys.argv[1], "r") as f:
    for k, v in f.attrs.items(): out["attrs"][k] = conv(v)
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out["datasets"][name] = {"dtype": str(obj.dtype), "shape": list(obj.shape),
                                     "attrs": {k: conv(v) for k, v in obj.attrs.items()},
                                     "first": conv(obj[0]) if obj.shape[0] > 0 and obj.ndim == 1 else None}
    f.visititems(visit)
    if "summary" in f: out["summary"] = {k: conv(v) for k, v in f["summary"].attrs.items()}
json.dump(out, sys.stdout)
`

// h5pyFile is what h5pyDump prints.
type h5pyFile struct {
	Datasets map[string]struct {
		Dtype string
		Shape []int
		Attrs map[string]any
		First any
	}
	Attrs   map[string]any
	Summary map[string]any
}

// readWithH5py runs h5pyDump on path, skipping the test without h5py.
func readWithH5py(t *testing.T, path string) h5pyFile {
	t.Helper()
	if err := exec.Command(python, "-c", "import h5py").Run(); err != nil {
		t.Skipf("%s with h5py not available (Debian package python3-h5py): %v", python, err)
	}
	out, err := exec.Command(python, "-c", h5pyDump, path).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("h5py cannot read %s: %v\n%s", path, err, stderr)
	}
	var f h5pyFile
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("h5py output: %v\n%s", err, out)
	}
	return f
}

// TestH5pyChain writes a chain file with the io package and reads it with
// h5py: the documented dataset names, dtypes, shapes and attributes.
func TestH5pyChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.h5")
	const L, n = 4, 3
	meta := nfio.ChainMeta{L: L, Beta: 2, Kappa: 0.276, Seed: 11, SaveConfigs: true, Precision: "float32",
		ModelHash: "0123abcd", Source: "run/checkpoint.h5"}
	c, err := nfio.CreateChain(path, meta)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]nfio.ChainRow, n)
	for i := range rows {
		rows[i] = nfio.ChainRow{Accepted: i != 1, LogQ: -10, LogP: -9.5, LogW: 0.5,
			State: nfio.ChainObservables{Condensate: 0.25, Sign: 1, TopologicalCharge: -1, Plaquette: 0.75}}
	}
	if err := c.Append(rows, make([]float32, n*2*L*L)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteSummary([]string{"ess", "free_energy_nis"}, []float64{0.5, -3.25}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	checkChainH5py(t, path, n, L, true)
	f := readWithH5py(t, path)
	for k, want := range map[string]any{"format": nfio.ChainFormat, "seed": 11.0, "L": 4.0, "source_checkpoint": "run/checkpoint.h5",
		"model_sha256": "0123abcd", "n_accepted": 2.0, "beta": 2.0} {
		if f.Attrs[k] != want {
			t.Errorf("root attribute %s = %v, want %v", k, f.Attrs[k], want)
		}
	}
	if f.Datasets["logw"].First != 0.5 || f.Datasets["condensate"].First != 0.25 {
		t.Errorf("first values: logw %v condensate %v", f.Datasets["logw"].First, f.Datasets["condensate"].First)
	}
	if f.Summary["free_energy_nis"] != -3.25 {
		t.Errorf("summary %v", f.Summary)
	}
}

// checkChainH5py checks the layout of a chain file of n steps.
func checkChainH5py(t *testing.T, path string, n, L int, configs bool) {
	t.Helper()
	f := readWithH5py(t, path)
	for _, name := range nfio.ChainColumns() {
		d, ok := f.Datasets[name]
		want := "float64"
		if name == "accepted" {
			want = "uint8"
		}
		if !ok || d.Dtype != want || !slices.Equal(d.Shape, []int{n}) {
			t.Errorf("%s: dataset %s: %+v, want %s of shape (%d)", path, name, d, want, n)
		}
		if ok && d.Attrs["description"] == nil {
			t.Errorf("%s: dataset %s has no description", path, name)
		}
	}
	if d, ok := f.Datasets["configs"]; configs != ok || ok && (d.Dtype != "float32" || !slices.Equal(d.Shape, []int{n, 2, L, L})) {
		t.Errorf("%s: configs %+v (want present = %v, float32 (%d, 2, %d, %d))", path, d, configs, n, L, L)
	}
	if rate, ok := f.Attrs["acceptance_rate"].(float64); !ok || rate <= 0 || rate > 1 {
		t.Errorf("%s: acceptance_rate %v", path, f.Attrs["acceptance_rate"])
	}
}

// TestH5pyHistory writes a history file with the io package and reads it
// with h5py.
func TestH5pyHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.h5")
	h, err := nfio.CreateHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Append(nfio.HistoryRow{Step: 1, ESS: 0.25}, nfio.HistoryRow{Step: 2, ESS: 0.5}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	checkHistoryH5py(t, path, 2)
}

func checkHistoryH5py(t *testing.T, path string, n int) {
	t.Helper()
	f := readWithH5py(t, path)
	for _, name := range nfio.HistoryColumns() {
		d, ok := f.Datasets[name]
		want := "float64"
		if name == "step" || name == "skipped" || name == "three_pass" || name == "recoveries" {
			want = "int64"
		}
		if !ok || d.Dtype != want || (n >= 0 && !slices.Equal(d.Shape, []int{n})) {
			t.Errorf("%s: dataset %s: %+v, want %s of shape (%d)", path, name, d, want, n)
		}
	}
}

// TestH5pyRun trains and samples a tiny model with the binary, reads the
// files it wrote with h5py and analyses the run directory.
func TestH5pyRun(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	dir := t.TempDir()
	p := params.Tiny().With("model.hidden_channels", []int{4}, "train.steps", 4, "train.batch_size", 8,
		"train.micro_batch", nil, "train.seed", 1, "train.checkpoint_every", nil,
		"sample.n_samples", 40, "sample.batch_size", 16, "sample.save_configs", true)
	if err := os.WriteFile(filepath.Join(dir, "params.toml"), []byte(p.TOML()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, status := runNF(t, dir, "params.toml")
	if status != 0 {
		t.Fatalf("training run: exit %d\n%s", status, stderr)
	}
	run := filepath.Join(dir, "run")
	checkHistoryH5py(t, filepath.Join(run, "history.h5"), -1)
	checkChainH5py(t, filepath.Join(run, "chain.h5"), 40, 4, true)
	out, stderr, status := runNF(t, dir, "analyze", "-json", "run")
	if status != 0 {
		t.Fatalf("analyze: exit %d\n%s", status, stderr)
	}
	var a struct {
		Chain struct{ Steps int }
		Plots []string
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.Chain.Steps != 40 || len(a.Plots) < 2 {
		t.Errorf("analyze -json: %v %+v\n%s", err, a, out)
	}
}
