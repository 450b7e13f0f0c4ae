package gpu

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

//go:embed testdata/nvrtc_shim.h
var nvrtcShim string

// TestKernelsCompileAsCUDA compiles every kernel source of the package as
// CUDA device code with clang's CUDA front end (Debian's clang-14, which
// make deps installs), against only what NVRTC provides without includes
// (testdata/nvrtc_shim.h): the emulator's g++ ignores __device__, so a
// kernel calling a host function, or a name NVRTC lacks, would pass every
// emulated test and fail on the first real device. coupling.cu is
// compiled for 1, 8 and 64 spline bins. Without clang-14 it skips.
func TestKernelsCompileAsCUDA(t *testing.T) {
	clang, err := exec.LookPath("clang-14")
	if err != nil {
		t.Skip("clang-14 not installed (make deps installs it)")
	}
	dir := t.TempDir()
	shim := filepath.Join(dir, "nvrtc_shim.h") // embedded: the packed test binary runs away from testdata
	if err := os.WriteFile(shim, []byte(nvrtcShim), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, source, define string }{
		{"conv.cu", prelude() + convSource, ""},
		{"inputs.cu", prelude() + inputsSource, ""},
		{"action.cu", prelude() + actionSource, ""},
	}
	for _, n := range []int{1, 8, 64} {
		cases = append(cases, struct{ name, source, define string }{fmt.Sprintf("coupling.cu, %d bins", n), prelude() + couplingSource, fmt.Sprintf("-DSPL_MAXBINS=%d", n)})
	}
	for i, c := range cases {
		src := filepath.Join(dir, fmt.Sprintf("k%d.cu", i))
		if err := os.WriteFile(src, []byte(c.source), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_80", "-nocudainc", "-nocudalib",
			"-std=c++17", "-fsyntax-only", "-Werror=implicit-function-declaration", "-include", shim}
		if c.define != "" {
			args = append(args, c.define)
		}
		out, err := exec.Command(clang, append(args, src)...).CombinedOutput()
		if err != nil {
			t.Errorf("%s does not compile as CUDA device code: %v\n%s", c.name, err, out)
		}
	}
}
