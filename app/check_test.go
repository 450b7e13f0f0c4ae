package app

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"nfschwinger/internal/h5"
	"nfschwinger/internal/params"
	nfio "nfschwinger/io"
	"nfschwinger/nf"
)

// TestCountParamsVectors counts the weights and biases stored in the
// reference flow (shared/vectors/flow_L8.h5: 8 layers, channels
// 6 → 64 → 64 → 25, kernel 3) and compares with nf.Arch.NumParams.
func TestCountParamsVectors(t *testing.T) {
	f, err := h5.Open("../../shared/vectors/flow_L8.h5")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stored := 0
	layers := 0
	for k := 0; ; k++ {
		layer := "layers/" + twoDigits(k)
		if !f.Exists(layer) {
			break
		}
		layers++
		for j := 0; j < 3; j++ {
			for _, part := range []string{"weight", "bias"} {
				shape, err := f.Shape(layer + "/conv" + string(rune('0'+j)) + "/" + part)
				if err != nil {
					t.Fatal(err)
				}
				n := 1
				for _, v := range shape {
					n *= v
				}
				stored += n
			}
		}
	}
	a := nf.DefaultArch(8)
	a.NLayers = layers
	if got := a.NumParams(); got != stored || layers != 8 {
		t.Fatalf("NumParams = %d, the file stores %d parameters in %d layers", got, stored, layers)
	}
}

func twoDigits(k int) string { return string(rune('0'+k/10)) + string(rune('0'+k%10)) }

// TestEstimateMemory evaluates the documented formulas by hand for a small
// model: L = 8, B = 4, channels 6 → 2 → 25, 2 layers, float32, 3 workers
// (im2col: too narrow for oneDNN), then with 16 hidden channels (oneDNN).
func TestEstimateMemory(t *testing.T) {
	p := params.Tiny().With("lattice.L", 8, "model.hidden_channels", []int{2}, "train.steps", 1,
		"train.batch_size", 8, "train.micro_batch", 4, "train.seed", 1)
	c, err := nfio.Parse(p.TOML())
	if err != nil {
		t.Fatal(err)
	}
	want := memEstimate{
		Links:        3 * 4 * 128 * 8,                    // 3 B 2V 8
		Activations:  2 * 4 * 4 * ((2+2)*64 + (25+1)*16), // n_layers B s (links 2V + hidden 2·V + (25+1)·V/4 at active sites)
		Convolutions: 4 * 64 * 9 * 25 * 4,                // B V K² max C s
		Determinant:  3 * 16 * 64 * 64,                   // workers 16 V²
		Parameters:   2 * 585 * (8 + 16),                 // P (2s + 16), P per layer = 2·6·9+2 + 25·2·9+25
	}
	got := estimateMemory(c, 3)
	if got != want {
		t.Fatalf("estimate %+v, want %+v", got, want)
	}
	if got.Total() != 488880 {
		t.Fatalf("total %d, want 488880", got.Total())
	}
	c.Model.Precision = "float64"
	if g := estimateMemory(c, 3); g.Activations != 2*want.Activations || g.Parameters != 2*585*(16+16) ||
		g.Convolutions != 2*want.Convolutions {
		t.Fatalf("float64 estimate %+v", g)
	}
	// 16 hidden channels: oneDNN, B (L+2)² 6 (s_in+4) for the first
	// convolution (dilation 1), B V/4 K² 16 4 for the last one's columns.
	c.Model.Precision = "float32"
	c.Model.HiddenChannels = []int{16}
	if g := estimateMemory(c, 3); g.Convolutions != 4*100*6*8+4*16*9*16*4 {
		t.Fatalf("oneDNN estimate %+v", g)
	}
	c.Model.ConvPrecision = "bf16" // inputs in 2 bytes
	if g := estimateMemory(c, 3); g.Convolutions != 4*100*6*6+4*16*9*16*4 {
		t.Fatalf("bf16 estimate %+v", g)
	}
	// Hidden [16, 32]: the 16 → 32 convolution (dilation 2) runs Winograd
	// in float32: B (2V + (L+4)²) 32 4 and the scratchpad (8 MiB + 768
	// KiB for each of the 3 workers) more; direct without.
	c.Model.ConvPrecision = "float32"
	c.Model.HiddenChannels, c.Model.Dilation = []int{16, 32}, []int{1, 2, 3}
	direct := int64(4*100*6*8 + 4*144*16*8 + 4*16*9*32*4)
	if g := estimateMemory(c, 3); g.Convolutions != direct+4*(2*64+144)*32*4+8<<20+3*768<<10 {
		t.Fatalf("Winograd estimate %+v", g)
	}
	c.Model.ConvAlgorithm = "direct"
	if g := estimateMemory(c, 3); g.Convolutions != direct {
		t.Fatalf("direct estimate %+v", g)
	}
}

func TestBytesString(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536 << 20, "1.5 GiB"}} {
		if got := bytesString(tc.n); got != tc.want {
			t.Errorf("bytesString(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "params.toml")
	paper := params.Params{"lattice.L": 8, "train.steps": 10, "train.batch_size": 1536, "train.micro_batch": 512, "train.seed": 3}
	os.WriteFile(good, []byte(paper.TOML()), 0o644)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(paper.With("train.batch_size", 64, "train.micro_batch", nil, "train.learning_rate", -1).TOML()), 0o644)

	var out, errb bytes.Buffer
	if status := Main([]string{"check", "-workers", "2", good}, &out, &errb); status != ExitOK {
		t.Fatalf("check of a valid file: status %d, %s", status, errb.String())
	}
	for _, want := range []string{"valid", "parameters  2633904", "rank counts that divide it: 1, 3\n", "determinant", "total"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// A float32 flow on the CPU: the bf16 and float32 rates of this CPU,
	// measured, or why there are none.
	if !regexp.MustCompile(`\nbf16 here   ([1-9][0-9]* GFLOP/s against [1-9][0-9]* in float32, [0-9.]+x|none: oneDNN has no bf16)`).MatchString(out.String()) {
		t.Errorf("report lacks the measured bf16 rate:\n%s", out.String())
	}
	f64 := filepath.Join(dir, "f64.toml")
	os.WriteFile(f64, []byte(paper.With("model.precision", "float64").TOML()), 0o644)
	out.Reset()
	if status := Main([]string{"check", f64}, &out, &errb); status != ExitOK || strings.Contains(out.String(), "bf16 here") {
		t.Errorf("check of a float64 flow: status %d, a bf16 line:\n%s%s", status, out.String(), errb.String())
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"check", bad}, "train.learning_rate = -1: must be > 0"},
		{[]string{"check", filepath.Join(dir, "missing.toml")}, "no such file"},
		{[]string{"check"}, "need one PARAMS.toml"},
		{[]string{"check", good, bad}, "need one PARAMS.toml"},
	}
	for _, tc := range tests {
		out.Reset()
		errb.Reset()
		status := Main(tc.args, &out, &errb)
		if status != ExitUsage || !strings.Contains(errb.String(), tc.want) || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%v: status %d, stderr %q; want 2 and one line with %q", tc.args, status, errb.String(), tc.want)
		}
	}
	err := runCheck(checkOptions{Params: bad}, &out)
	var ke *nfio.KeyError
	if !errors.As(err, &ke) || ke.Key != "train.learning_rate" {
		t.Errorf("runCheck error %v does not carry the key", err)
	}
}

// TestCheckHMC: check of an HMC baseline file reports the sampler and one
// process, not a flow.
func TestCheckHMC(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hmc.toml")
	os.WriteFile(path, []byte("[lattice]\nL = 8\n[sample]\nmethod = \"hmc\"\nseed = 2\nn_samples = 100\nmd_steps = 20\n"), 0o644)
	var out, errb bytes.Buffer
	if status := Main([]string{"check", path}, &out, &errb); status != ExitOK {
		t.Fatalf("status %d, %s", status, errb.String())
	}
	for _, want := range []string{"HMC baseline", "100 trajectories of length 1 in 20 leapfrog steps of 0.05", "ranks       1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "parameters") {
		t.Errorf("an HMC report names flow parameters:\n%s", out.String())
	}
}
