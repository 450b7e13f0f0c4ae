package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nfschwinger/nf"
)

// tinyBench are the options of a benchmark small enough for a unit test:
// L = 4, one layer with 8 hidden channels, two micro-batches of 2.
func tinyBench() benchOptions {
	return benchOptions{Ls: []int{4}, Estimators: []nf.Estimator{nf.REINFORCE, nf.ReparamTrick, nf.PathGradient},
		Batch: 4, Micro: 2, Layers: 1, Steps: 2, Warmup: 1, Seed: 1, Action: true, SgemmN: 256, Hidden: []int{8, 8},
		Convs: []convMode{{"dnnl", "float32"}}}
}

// TestBenchJSON: with -json every line is one JSON object; the step rows
// (one per estimator and convolution engine) have every field of the
// interface, all positive, and the action row has both timings.
func TestBenchJSON(t *testing.T) {
	var out, progress bytes.Buffer
	args := []string{"-L", "4", "-layers", "1", "-batch", "4", "-micro-batch", "2", "-steps", "1", "-sgemm-n", "256", "-json",
		"-conv-engine", "dnnl,openblas"}
	if err := cmdBench(args, &out, &progress); err != nil {
		t.Fatal(err)
	}
	fields := []string{"L", "batch", "micro_batch", "step_seconds", "loss_seconds", "backward_seconds",
		"peak_rss_bytes", "kept_bytes", "kept_buffers", "conv_gflops", "sgemm_gflops", "primitive_gflops"}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	seen := map[string]bool{}
	actions := 0
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		switch m["kind"] {
		case "step":
			est, _ := m["estimator"].(string)
			seen[est+" "+m["conv_engine"].(string)+" "+m["conv_precision"].(string)] = true
			for _, f := range fields {
				v, ok := m[f].(float64)
				if !ok || !(v > 0) {
					t.Errorf("%s: field %s = %v, want a positive number", est, f, m[f])
				}
			}
			if want := map[string]any{"reinforce": "four-pass"}[est]; m["form"] != want {
				t.Errorf("%s: form %v, want %v", est, m["form"], want)
			}
			if m["L"] != 4.0 || m["batch"] != 4.0 || m["micro_batch"] != 2.0 {
				t.Errorf("%s: L, batch, micro_batch = %v, %v, %v; want 4, 4, 2", est, m["L"], m["batch"], m["micro_batch"])
			}
			if s, l, b := m["step_seconds"].(float64), m["loss_seconds"].(float64), m["backward_seconds"].(float64); !(l < s && b < s) {
				t.Errorf("%s: loss %v s and backward %v s not both below the step %v s", est, l, b, s)
			}
		case "action":
			actions++
			for _, f := range []string{"evenodd_seconds", "dense_seconds"} {
				if v, ok := m[f].(float64); !ok || !(v > 0) {
					t.Errorf("action: %s = %v, want a positive number", f, m[f])
				}
			}
		default:
			t.Errorf("line %q: unknown kind", line)
		}
	}
	for _, e := range []string{"reinforce", "rt", "path"} {
		for _, c := range []string{"dnnl float32", "openblas float32"} {
			if !seen[e+" "+c] {
				t.Errorf("no row for estimator %s with %s convolutions", e, c)
			}
		}
	}
	if actions != 1 {
		t.Errorf("%d action rows, want 1", actions)
	}
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
	if err := runBench(o, &out, &progress); err != nil {
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
	if !strings.Contains(tables[0][2], "| 4 | reinforce three-pass | dnnl float32 |") || !strings.Contains(tables[0][3], "| 4 | reinforce four-pass |") ||
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

// TestBenchUsage: bad flags are usage errors.
func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-L", "6"},
		{"-L", "8,x"},
		{"-estimators", "reinforce,magic"},
		{"-batch", "5", "-micro-batch", "2"},
		{"-layers", "0"},
		{"-steps", "0"},
		{"extra"},
		{"-plot", "/nonexistent-dir/p.png"},
		{"-conv-engine", "cudnn"},
		{"-conv-precision", "fp8"},
		{"-conv-engine", "openblas", "-conv-precision", "bf16"},
	} {
		var out, progress bytes.Buffer
		err := cmdBench(args, &out, &progress)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: error %v, want a usage error", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed %q", args, out.String())
		}
	}
}
