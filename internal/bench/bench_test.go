package bench

import (
	"bytes"
	"encoding/json"
	"image/png"
	"nfschwinger/lgt"
	"nfschwinger/nf"
	"nfschwinger/nf/device"
	"nfschwinger/nf/gpu"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyBench are the options of a benchmark small enough for a unit test:
// L = 4, one layer with 8 hidden channels, two micro-batches of 2.
func tinyBench() Options {
	return Options{Ls: []int{4}, Estimators: []nf.Estimator{nf.REINFORCE, nf.ReparamTrick, nf.PathGradient},
		Batch: 4, Micro: 2, Layers: 1, Steps: 2, Warmup: 1, Seed: 1, Action: true, SgemmN: 256, Hidden: []int{8, 8},
		Convs: []ConvMode{{"dnnl", "float32", "auto"}}}
}

// TestBenchTableAndPlot: the markdown tables have a header, a separator and
// one row per (L, estimator) with the header's number of cells, and the
// plot is a PNG.
func TestBenchTableAndPlot(t *testing.T) {
	o := tinyBench()
	o.Ls = []int{4, 8}
	o.Estimators = []nf.Estimator{nf.REINFORCE, nf.ReparamTrick}
	o.Batch = o.Micro // the Trainer's three-pass REINFORCE, and the four-pass row beside it
	o.Plot = filepath.Join(t.TempDir(), "steps.png")
	var out, progress bytes.Buffer
	if err := Run(o, &out, &progress); err != nil {
		t.Fatal(err)
	}
	tables := [][]string{}
	var cur []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "|") {
			cur = append(cur, line)
		} else if cur != nil {
			tables = append(tables, cur)
			cur = nil
		}
	}
	if len(tables) != 2 {
		t.Fatalf("%d tables, want 2 (steps, action):\n%s", len(tables), out.String())
	}
	for i, want := range []int{2 + 6, 2 + 2} {
		tab := tables[i]
		if len(tab) != want {
			t.Errorf("table %d has %d lines, want %d:\n%s", i, len(tab), want, strings.Join(tab, "\n"))
			continue
		}
		cells := strings.Count(tab[0], "|")
		for _, line := range tab {
			if strings.Count(line, "|") != cells {
				t.Errorf("table %d: line %q has %d separators, header %d", i, line, strings.Count(line, "|"), cells)
			}
			if strings.Contains(line, "NaN") || strings.Contains(line, "Inf") {
				t.Errorf("table %d: line %q has a non-finite value", i, line)
			}
		}
		if !strings.HasPrefix(tab[1], "|---") {
			t.Errorf("table %d: no separator line: %q", i, tab[1])
		}
	}
	for _, h := range []string{"step s", "loss s", "backward s", "peak RSS", "kept", "conv GFLOP/s", "sgemm GFLOP/s"} {
		if !strings.Contains(tables[0][0], h) {
			t.Errorf("header %q lacks %q", tables[0][0], h)
		}
	}
	if !strings.Contains(tables[0][2], "| 4 | reinforce three-pass | dnnl float32 direct |") || !strings.Contains(tables[0][3], "| 4 | reinforce four-pass |") ||
		!strings.Contains(tables[0][7], "| 8 | rt |") {
		t.Errorf("rows out of order:\n%s", strings.Join(tables[0], "\n"))
	}
	f, err := os.Open(o.Plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("plot is %v", b)
	}
}

// TestValidate: the options' errors name the flag at fault, and the cuda
// engine needs a device builder.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(o *Options)
		want string
	}{
		{"no L", func(o *Options) { o.Ls = nil }, "-L"},
		{"micro-batch", func(o *Options) { o.Micro = 3 }, "-micro-batch"},
		{"layers", func(o *Options) { o.Layers = 0 }, "-layers"},
		{"L", func(o *Options) { o.Ls = []int{6} }, "-L 6"},
		{"cuda without a device", func(o *Options) { o.Convs = []ConvMode{{"cuda", "float32", ""}} }, "-conv-engine cuda"},
	} {
		o := tinyBench()
		c.edit(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
	if o := tinyBench(); o.Validate() != nil {
		t.Errorf("the tiny benchmark: %v", o.Validate())
	}
}

// TestDeviceRows: the cuda rows run the flow and target Options.Device
// builds — here on the emulator, as app builds them on a GPU — and are
// timed like the others, their action on the device.
func TestDeviceRows(t *testing.T) {
	_, k, err := gpu.EmulatedKernels()
	if err != nil {
		t.Fatal(err)
	}
	o := tinyBench()
	o.Estimators, o.Action, o.JSON = []nf.Estimator{nf.ReparamTrick}, false, true
	o.Convs = []ConvMode{{"cuda", "float32", ""}}
	built := 0
	o.Device = func(a nf.Arch, micro int, bf16 bool, est nf.Estimator, pool *lgt.Pool) (*nf.Flow[float32], nf.Target, func(), error) {
		flow, err := device.NewFlow[float32](k, a, micro, bf16, true)
		if err != nil {
			return nil, nil, nil, err
		}
		target, err := device.NewFlowAction(pool, flow, k, est != nf.REINFORCE)
		if err != nil {
			return nil, nil, nil, err
		}
		built++
		return flow, target, func() { target.Close(); flow.Close() }, nil
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	if err := Run(o, &out, &progress); err != nil {
		t.Fatal(err)
	}
	var r StepRow
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%q: %v", out.String(), err)
	}
	if built != 1 || r.ConvEngine != "cuda" || !(r.StepSeconds > 0) || !(r.ActionSeconds > 0) || r.PrimitiveGFLOPs != 0 {
		t.Errorf("%d flows built; row %+v", built, r)
	}
}
