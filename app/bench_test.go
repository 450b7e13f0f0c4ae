package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchJSON: with -json every line is one JSON object; the step rows
// (one per estimator and convolution engine, two for oneDNN's two
// algorithms) have every field of the interface, all positive, and the
// action row has both timings.
func TestBenchJSON(t *testing.T) {
	var out, progress bytes.Buffer
	args := []string{"-L", "4", "-layers", "1", "-batch", "4", "-micro-batch", "2", "-steps", "1", "-sgemm-n", "256", "-json",
		"-conv-engine", "dnnl,openblas", "-conv-algorithm", "auto,direct"}
	if err := cmdBench(args, &out, &progress); err != nil {
		t.Fatal(err)
	}
	fields := []string{"L", "batch", "micro_batch", "step_seconds", "loss_seconds", "backward_seconds",
		"peak_rss_bytes", "kept_bytes", "kept_buffers", "conv_gflops", "sgemm_gflops", "primitive_gflops"}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	seen, algs := map[string]bool{}, map[string][]string{}
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
			algs[est+" "+m["conv_engine"].(string)] = append(algs[est+" "+m["conv_engine"].(string)], m["conv_algorithm"].(string))
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
	for _, e := range []string{"reinforce", "rt", "path"} {
		// auto: Winograd for the 64 → 64 convolution, or direct where
		// this CPU has no Winograd kernels.
		if a := algs[e+" dnnl"]; len(a) != 2 || a[0] != "winograd" && a[0] != "direct" || a[1] != "direct" {
			t.Errorf("%s: oneDNN rows' algorithms %q, want [winograd or direct, direct]", e, a)
		}
		if a := algs[e+" openblas"]; len(a) != 1 || a[0] != "" {
			t.Errorf("%s: OpenBLAS rows' algorithms %q, want one empty", e, a)
		}
	}
	if actions != 1 {
		t.Errorf("%d action rows, want 1", actions)
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
		{"-conv-algorithm", "fft"},
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

// TestBenchCPUProfile: -cpuprofile writes a CPU profile (gzip, as
// runtime/pprof writes it) of the benchmark; an unwritable path is a
// usage error.
func TestBenchCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	args := []string{"-L", "4", "-layers", "1", "-batch", "2", "-micro-batch", "2", "-steps", "1", "-sgemm-n", "64", "-json",
		"-estimators", "rt", "-action=false", "-hidden", "8,8", "-cpuprofile", path}
	var out, progress bytes.Buffer
	if err := cmdBench(args, &out, &progress); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("profile %s: %d bytes, %v; want a gzip stream", path, len(b), err)
	}
	var ue *UsageError
	if err := cmdBench(append(args[:len(args)-1], "/nonexistent-dir/cpu.pprof"), &out, &progress); !errors.As(err, &ue) {
		t.Errorf("unwritable profile: %v, want a usage error", err)
	}
}
