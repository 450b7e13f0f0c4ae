package tests

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"nfschwinger/internal/h5"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// Reference tolerances: the reference vectors are
// float64 results of the seed's PyTorch code; the Go code computes in
// float64 and complex128 with a different order of operations, so results
// agree to about 1e-13 relative; 1e-10 (1e-9 for the force, which goes
// through D⁻¹) leaves room for ill-conditioned configurations. The scale of
// a value is max(|want|, 1): every quantity is O(1) or larger in lattice
// units, so values near zero (the topological charge, force components) are
// compared absolutely.
const (
	measureTol = 1e-10
	forceTol   = 1e-9
)

const vectorsL8 = "../../shared/vectors/schwinger_L8.h5"

// measureDatasets are the per-configuration outputs of measure.
var measureDatasets = []string{"gauge_action", "fermion_action", "action", "log_abs_det_D",
	"sign_det_D", "condensate", "topological_charge", "mean_cos_plaquette"}

func readAll(t *testing.T, path, name string) ([]float64, []int) {
	t.Helper()
	f, err := h5.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, shape, err := h5.Read[float64](f, name)
	if err != nil {
		t.Fatal(err)
	}
	return v, shape
}

func compare(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(want))
		return
	}
	worst, at := 0.0, -1
	for i := range want {
		d := math.Abs(got[i]-want[i]) / math.Max(math.Abs(want[i]), 1)
		if !(d <= worst) { // catches NaN
			worst, at = d, i
		}
	}
	if !(worst <= tol) {
		t.Errorf("%s[%d] = %.17g, want %.17g: relative difference %.3g > %g", name, at, got[at], want[at], worst, tol)
	}
}

// TestMeasureVectors runs `nfschwinger measure -force` on the L = 8
// reference configurations (which the program has never seen) and compares
// every output with the reference values.
func TestMeasureVectors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.h5")
	_, stderr, status := runNF(t, "", "measure", "-beta", "2", "-kappa", "0.276", "-force", vectorsL8, out)
	if status != 0 {
		t.Fatalf("exit status %d: %s", status, stderr)
	}
	for _, name := range measureDatasets {
		got, shape := readAll(t, out, name)
		want, wshape := readAll(t, vectorsL8, name)
		if !slices.Equal(shape, wshape) {
			t.Errorf("%s: shape %v, want %v", name, shape, wshape)
			continue
		}
		compare(t, name, got, want, measureTol)
	}
	got, shape := readAll(t, out, "force")
	want, wshape := readAll(t, vectorsL8, "force")
	if !slices.Equal(shape, wshape) {
		t.Fatalf("force: shape %v, want %v", shape, wshape)
	}
	compare(t, "force", got, want, forceTol)

	f, err := h5.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if L, err := h5.ReadScalarAttr[int64](f, "/", "L"); err != nil || L != 8 {
		t.Errorf("attribute L = %d, %v; want 8", L, err)
	}
	if s, err := h5.ReadStringAttr(f, "/", "source"); err != nil || s != vectorsL8 {
		t.Errorf("attribute source = %q, %v; want %q", s, err, vectorsL8)
	}
	for name, want := range map[string]float64{"beta": 2, "kappa": 0.276} {
		if v, err := h5.ReadScalarAttr[float64](f, "/", name); err != nil || v != want {
			t.Errorf("attribute %s = %v, %v; want %v", name, v, err, want)
		}
	}
}

// TestMeasureFloat32AndWorkers: float32 links give exactly the results of
// the same (rounded) angles in float64, and the number of workers and the
// position of the flags do not change a single bit.
func TestMeasureFloat32AndWorkers(t *testing.T) {
	dir := t.TempDir()
	links, shape := readAll(t, vectorsL8, "links")
	l32 := make([]float32, len(links))
	l64 := make([]float64, len(links))
	for i, v := range links {
		l32[i] = float32(v)
		l64[i] = float64(l32[i])
	}
	writeLinks(t, filepath.Join(dir, "f32.h5"), l32, shape)
	writeLinks(t, filepath.Join(dir, "f64.h5"), l64, shape)
	runs := [][]string{
		{"measure", "-workers", "1", "f32.h5", "a.h5"},
		{"measure", "f64.h5", "b.h5", "-workers", "2"},
	}
	for _, args := range runs {
		if _, stderr, status := runNF(t, dir, args...); status != 0 {
			t.Fatalf("%v: exit status %d: %s", args, status, stderr)
		}
	}
	for _, name := range measureDatasets {
		a, _ := readAll(t, filepath.Join(dir, "a.h5"), name)
		b, _ := readAll(t, filepath.Join(dir, "b.h5"), name)
		if !slices.Equal(a, b) {
			t.Errorf("%s: float32 input with 1 worker %v differs from float64 with 2 workers %v", name, a, b)
		}
	}
	f, err := h5.Open(filepath.Join(dir, "a.h5"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Exists("force") {
		t.Error("force written without -force")
	}
}

func writeLinks[T float32 | float64](t *testing.T, path string, links []T, shape []int) {
	t.Helper()
	f, err := h5.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := h5.Write(f, "links", links, shape); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMeasureErrors: every kind of bad input ends with exit status 2 and one
// line on stderr naming the problem, and leaves no output (an existing
// output file is untouched) and no temporary file.
func TestMeasureErrors(t *testing.T) {
	dir := t.TempDir()
	good, gshape := readAll(t, vectorsL8, "links")
	nan := slices.Clone(good)
	nan[5*2*64+64+3*8+4] = math.NaN() // links[5, 1, 3, 4]
	inf := slices.Clone(good)
	inf[7] = math.Inf(-1)
	writeLinks(t, filepath.Join(dir, "good.h5"), good, gshape)
	writeLinks(t, filepath.Join(dir, "nan.h5"), nan, gshape)
	writeLinks(t, filepath.Join(dir, "inf.h5"), inf, gshape)
	writeLinks(t, filepath.Join(dir, "rank3.h5"), good, []int{8, 2, 64})
	writeLinks(t, filepath.Join(dir, "dirs3.h5"), good[:3*2*64], []int{2, 3, 8, 8})
	writeLinks(t, filepath.Join(dir, "rect.h5"), good, []int{8, 2, 16, 4})
	writeLinks(t, filepath.Join(dir, "odd.h5"), good[:2*2*9], []int{2, 2, 3, 3})
	writeLinks(t, filepath.Join(dir, "empty.h5"), []float64{}, []int{0, 2, 8, 8})
	f, err := h5.Create(filepath.Join(dir, "nolinks.h5"))
	if err != nil {
		t.Fatal(err)
	}
	h5.Write(f, "config", good, gshape)
	f.Close()
	os.WriteFile(filepath.Join(dir, "text.h5"), []byte("not HDF5\n"), 0o644)
	if err := os.Symlink("good.h5", filepath.Join(dir, "alias.h5")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)

	tests := []struct {
		name string
		args []string
		out  string // the output path that must not appear ("" = none)
		want string // substring of the message
	}{
		{"missing input", []string{"missing.h5", "o.h5"}, "o.h5", "missing.h5: no such file"},
		{"not hdf5", []string{"text.h5", "o.h5"}, "o.h5", "not an HDF5 file"},
		{"input is a directory", []string{"sub", "o.h5"}, "o.h5", "is a directory"},
		{"no links", []string{"nolinks.h5", "o.h5"}, "o.h5", `no dataset "links"`},
		{"rank 3", []string{"rank3.h5", "o.h5"}, "o.h5", "shape (8, 2, 64), want (N, 2, L, L)"},
		{"three directions", []string{"dirs3.h5", "o.h5"}, "o.h5", "shape (2, 3, 8, 8)"},
		{"not square", []string{"rect.h5", "o.h5"}, "o.h5", "shape (8, 2, 16, 4)"},
		{"odd L", []string{"odd.h5", "o.h5"}, "o.h5", "L = 3: L must be even"},
		{"no configurations", []string{"empty.h5", "o.h5"}, "o.h5", "holds no configurations"},
		{"NaN", []string{"nan.h5", "o.h5"}, "o.h5", "links[5, 1, 3, 4] = NaN"},
		{"Inf", []string{"-force", "inf.h5", "o.h5"}, "o.h5", "links[0, 0, 0, 7] = -Inf"},
		{"same file", []string{"good.h5", "good.h5"}, "", "is the input file"},
		{"same file other spelling", []string{"good.h5", "./sub/../good.h5"}, "", "is the input file"},
		{"same file through a link", []string{"good.h5", "alias.h5"}, "", "is the input file"},
		{"output directory missing", []string{"good.h5", "nodir/o.h5"}, "nodir/o.h5", "does not exist"},
		{"output is a directory", []string{"good.h5", "sub"}, "", "is a directory"},
		{"one file", []string{"good.h5"}, "", "need IN.h5 and OUT.h5"},
		{"bad flag", []string{"-frobnicate", "good.h5", "o.h5"}, "o.h5", "flag provided but not defined: -frobnicate"},
		{"bad flag value", []string{"-beta", "two", "good.h5", "o.h5"}, "o.h5", `invalid value "two" for flag -beta`},
		{"infinite beta", []string{"-beta", "inf", "good.h5", "o.h5"}, "o.h5", "beta = +Inf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, status := runNF(t, dir, append([]string{"measure"}, tc.args...)...)
			if status != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", status, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "nfschwinger: measure: ") {
				t.Errorf("stderr is not one line \"nfschwinger: measure: ...\": %q", stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if tc.out != "" {
				if _, err := os.Stat(filepath.Join(dir, tc.out)); err == nil {
					t.Errorf("output %s was created", tc.out)
				}
			}
			assertNoTemp(t, dir)
		})
	}
	// The input of the same-file cases is intact.
	if got, _ := readAll(t, filepath.Join(dir, "good.h5"), "links"); !slices.Equal(got, good) {
		t.Error("the input was modified")
	}
}

// TestMeasureKeepsOldOutput: a failing run does not touch an existing
// output file; a successful one replaces it.
func TestMeasureKeepsOldOutput(t *testing.T) {
	dir := t.TempDir()
	good, shape := readAll(t, vectorsL8, "links")
	nan := slices.Clone(good)
	nan[len(nan)-1] = math.NaN()
	writeLinks(t, filepath.Join(dir, "nan.h5"), nan, shape)
	old := []byte("previous results\n")
	out := filepath.Join(dir, "out.h5")
	os.WriteFile(out, old, 0o644)
	if _, _, status := runNF(t, dir, "measure", "nan.h5", "out.h5"); status != 2 {
		t.Fatalf("exit status %d, want 2", status)
	}
	if b, _ := os.ReadFile(out); string(b) != string(old) {
		t.Fatal("a failed run changed the existing output")
	}
	if _, stderr, status := runNF(t, dir, "measure", vectorsAbs(t), "out.h5"); status != 0 {
		t.Fatalf("exit status %d: %s", status, stderr)
	}
	if got, _ := readAll(t, out, "action"); len(got) != 8 {
		t.Fatalf("replaced output has %d actions, want 8", len(got))
	}
	assertNoTemp(t, dir)
}

func vectorsAbs(t *testing.T) string {
	p, err := filepath.Abs(vectorsL8)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// assertNoTemp fails if a temporary file (".NAME.tmp") is left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	if len(m) > 0 {
		t.Errorf("temporary files left behind: %v", m)
	}
}

const flowL8 = "../../shared/vectors/flow_L8.h5"

// Tolerances of measure -checkpoint against flow_L8.h5 (float64 results of
// the seed's PyTorch code on forward/x).
const (
	// ckptTol64: in float64 log q and z agree with the reference to
	// rounding amplified by 8 layers of conditioners (about 1e-13); the
	// bound of the issue is 1e-9.
	ckptTol64 = 1e-9
	// ckptAngleTol32: in float32 the input angles alone are rounded by up
	// to ε₃₂/2·2π ≈ 3.7e-7 rad, and each of the 8 layers adds rounding of
	// the same order plus the conditioner's (fan-in 576: ε₃₂·√576
	// relative) times an O(1) derivative: about 1e-6 rad, bound 1e-5.
	ckptAngleTol32 = 1e-5
	// ckptLogqTol32: log q sums 8 layers × V/4 = 128 log-derivatives, each
	// carrying the angle error above times |∂ log g'/∂x| = O(10) and its
	// own float32 rounding: a few 1e-5, bound 3e-4 (log q ≈ −230, so
	// 1.3e-6 relative).
	ckptLogqTol32 = 3e-4
)

// writeCheckpointOf writes the weights of the bare weight file src as a
// training checkpoint (model in /model) at dst.
func writeCheckpointOf(t *testing.T, src, dst string) {
	t.Helper()
	f, err := h5.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	arch, err := nfio.ReadArch(f, "/")
	if err != nil {
		t.Fatal(err)
	}
	flow, err := nf.NewFlow[float64](arch, nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := nfio.ReadModelInto(f, "/", flow.Params); err != nil {
		t.Fatal(err)
	}
	n := flow.Params.Len()
	st := nfio.TrainState{Step: 3, AdamStep: 3, M: make([]float64, n), V: make([]float64, n), Config: "# test"}
	if err := nfio.WriteCheckpoint(dst, arch, flow.Params, st); err != nil {
		t.Fatal(err)
	}
}

// TestMeasureCheckpoint runs measure -checkpoint on the configurations
// forward/x of flow_L8.h5, with the file itself as a bare weight file and
// with its weights in a training checkpoint: logq must reproduce
// forward/logq and z the prior samples z, in float64 and float32; the
// observables are those of measure without a model.
func TestMeasureCheckpoint(t *testing.T) {
	dir := t.TempDir()
	x, shape := readAll(t, flowL8, "forward/x")
	writeLinks(t, filepath.Join(dir, "x.h5"), x, shape)
	writeCheckpointOf(t, flowL8, filepath.Join(dir, "ckpt.h5"))
	wantLogq, _ := readAll(t, flowL8, "forward/logq")
	wantZ, _ := readAll(t, flowL8, "z")
	weights, err := filepath.Abs(flowL8)
	if err != nil {
		t.Fatal(err)
	}
	runs := []struct {
		name, model, precision, out string
		angTol, logqTol             float64
	}{
		{"bare float64", weights, "float64", "bare64.h5", ckptTol64, ckptTol64},
		{"checkpoint float64", "ckpt.h5", "float64", "ckpt64.h5", ckptTol64, ckptTol64},
		{"bare float32", weights, "float32", "bare32.h5", ckptAngleTol32, ckptLogqTol32},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			_, stderr, status := runNF(t, dir, "measure", "-checkpoint", r.model, "-precision", r.precision, "x.h5", r.out)
			if status != 0 {
				t.Fatalf("exit status %d: %s", status, stderr)
			}
			out := filepath.Join(dir, r.out)
			logq, lshape := readAll(t, out, "logq")
			if !slices.Equal(lshape, []int{shape[0]}) {
				t.Fatalf("logq has shape %v, want (%d)", lshape, shape[0])
			}
			worst := 0.0
			for b := range wantLogq {
				if d := math.Abs(logq[b] - wantLogq[b]); !(d <= worst) {
					worst = d
				}
			}
			if !(worst <= r.logqTol) {
				t.Errorf("logq %v, want %v: |difference| %.3g > %g", logq, wantLogq, worst, r.logqTol)
			}
			z, zshape := readAll(t, out, "z")
			if !slices.Equal(zshape, shape) {
				t.Fatalf("z has shape %v, want %v", zshape, shape)
			}
			worst, at := 0.0, 0
			for i := range wantZ {
				if z[i] < 0 || z[i] >= 2*math.Pi {
					t.Fatalf("z[%d] = %v outside [0, 2π)", i, z[i])
				}
				if d := lgt.AngleDist(z[i], wantZ[i]); !(d <= worst) {
					worst, at = d, i
				}
			}
			if !(worst <= r.angTol) {
				t.Errorf("z[%d] = %.17g, want %.17g: distance on the circle %.3g > %g", at, z[at], wantZ[at], worst, r.angTol)
			}
			t.Logf("%s: max |Δ logq| %.3g, max |Δz| %.3g", r.name, maxAbs(logq, wantLogq), worst)
		})
	}
	// The weight file and the checkpoint are the same model; the
	// observables do not depend on the model.
	for _, name := range append([]string{"logq", "z"}, measureDatasets...) {
		a, _ := readAll(t, filepath.Join(dir, "bare64.h5"), name)
		b, _ := readAll(t, filepath.Join(dir, "ckpt64.h5"), name)
		if !slices.Equal(a, b) {
			t.Errorf("%s: weight file and checkpoint give different results", name)
		}
	}
	if _, stderr, status := runNF(t, dir, "measure", "x.h5", "plain.h5"); status != 0 {
		t.Fatalf("measure without a model: exit status %d: %s", status, stderr)
	}
	for _, name := range measureDatasets {
		a, _ := readAll(t, filepath.Join(dir, "bare32.h5"), name)
		b, _ := readAll(t, filepath.Join(dir, "plain.h5"), name)
		if !slices.Equal(a, b) {
			t.Errorf("%s: differs with and without -checkpoint", name)
		}
	}
}

func maxAbs(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// TestMeasureCheckpointErrors: a model for another lattice size, a missing
// or broken model file and a bad precision end with exit status 2, one line
// on stderr, and no output.
func TestMeasureCheckpointErrors(t *testing.T) {
	dir := t.TempDir()
	weights, err := filepath.Abs(flowL8)
	if err != nil {
		t.Fatal(err)
	}
	links, shape := readAll(t, "../../shared/vectors/schwinger_L4.h5", "links")
	writeLinks(t, filepath.Join(dir, "l4.h5"), links, shape)
	x, xshape := readAll(t, flowL8, "forward/x")
	writeLinks(t, filepath.Join(dir, "x.h5"), x, xshape)
	os.WriteFile(filepath.Join(dir, "text.h5"), []byte("not HDF5\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"lattice mismatch", []string{"-checkpoint", weights, "l4.h5", "o.h5"},
			"is for L = 8, the configurations in l4.h5 have L = 4"},
		{"missing model", []string{"-checkpoint", "nope.h5", "x.h5", "o.h5"}, "nope.h5: no such file"},
		{"model not hdf5", []string{"-checkpoint", "text.h5", "x.h5", "o.h5"}, "text.h5: not an HDF5 file"},
		{"no model in file", []string{"-checkpoint", "x.h5", "x.h5", "o.h5"}, "holds no model: no attribute L on /"},
		{"bad precision", []string{"-checkpoint", weights, "-precision", "float16", "x.h5", "o.h5"}, `-precision "float16"`},
		{"precision without model", []string{"-precision", "float64", "x.h5", "o.h5"}, "-precision applies only with -checkpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, status := runNF(t, dir, append([]string{"measure"}, tc.args...)...)
			if status != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", status, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q: want one line containing %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if _, err := os.Stat(filepath.Join(dir, "o.h5")); err == nil {
				t.Error("output o.h5 was created")
			}
			assertNoTemp(t, dir)
		})
	}
}
