package main

import (
	"reflect"
	"testing"
)

func TestParseBenchmark(t *testing.T) {
	for _, c := range []struct {
		line string
		want map[string]any // nil: not a result line
	}{
		{"BenchmarkFlowStep/gpu/L16/B1536/float32-16         5     291046913 ns/op    0.2910 s/step",
			map[string]any{"benchmark": "BenchmarkFlowStep/gpu/L16/B1536/float32-16", "iterations": 5,
				"metrics": map[string]float64{"ns/op": 291046913, "s/step": 0.291}}},
		{"BenchmarkConv/L8-16  20  1234 ns/op  512.5 GFLOP/s", map[string]any{"benchmark": "BenchmarkConv/L8-16", "iterations": 20,
			"metrics": map[string]float64{"ns/op": 1234, "GFLOP/s": 512.5}}},
		{"BenchmarkLogDet/gpu/L24/B1536/forcefalse", nil}, // the name line before a result
		{"--- SKIP: BenchmarkX", nil},
		{"BenchmarkX 3 fast ns/op", nil},
	} {
		got, ok := parseBenchmark(c.line)
		if c.want == nil {
			if ok {
				t.Errorf("%q: parsed as %v", c.line, got)
			}
			continue
		}
		if !ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %v, %v; want %v", c.line, got, ok, c.want)
		}
	}
	for line, want := range map[string][]string{
		"--- PASS: TestKernels (1.25s)":        {"PASS", "TestKernels", "1.25"},
		"    --- FAIL: TestFlow/gpu/x (0.00s)": {"FAIL", "TestFlow/gpu/x", "0.00"},
		"--- SKIP: TestCompileCache (0.00s)":   {"SKIP", "TestCompileCache", "0.00"},
	} {
		if m := testLine.FindStringSubmatch(line); m == nil || !reflect.DeepEqual(m[1:], want) {
			t.Errorf("%q: %v, want %v", line, m, want)
		}
	}
}

func TestSearchPath(t *testing.T) {
	for _, c := range []struct {
		dirs []string
		want string
	}{{nil, ""}, {[]string{"/a", "", "/b"}, "/a:/b"}, {[]string{"/x/lib", ""}, "/x/lib"}, {[]string{"", ""}, ""}} {
		if got := searchPath(c.dirs...); got != c.want {
			t.Errorf("searchPath(%q) = %q, want %q", c.dirs, got, c.want)
		}
	}
}
