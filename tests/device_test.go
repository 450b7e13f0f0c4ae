package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeviceTrainingMatchesCPU: five float64 training steps with
// compute.device = "cuda" on the CUDA emulator equal the CPU run within
// 1e-10 relative — parameters, Adam's moments and every history value —
// for the three estimators, REINFORCE in its three-pass form (one
// micro-batch) and its four-pass form (six), and REINFORCE on two MPI
// ranks, each with its own (emulated) device, against two CPU ranks.
// The action is on the device too, its log det for REINFORCE and with the
// force for r.t. and path (an LU and its inverse there, Bunch–Kaufman on
// the CPU). The start lines name the device and the action.
func TestDeviceTrainingMatchesCPU(t *testing.T) {
	for _, c := range []struct {
		est          string
		micro, ranks int
	}{{"reinforce", 12, 0}, {"reinforce", 2, 0}, {"rt", 2, 0}, {"path", 4, 0}, {"reinforce", 3, 2}} {
		t.Run(fmt.Sprintf("%s_micro%d_ranks%d", c.est, c.micro, max(c.ranks, 1)), func(t *testing.T) {
			cpu := trainCase{Steps: 5, Precision: "float64", Estimator: c.est, Micro: c.micro, Device: "cpu"}
			dev := cpu
			dev.Device, dev.Emulate = "cuda", true
			ref := undisturbed(t, cpu, c.ranks)
			dir := t.TempDir()
			res := train(t, dir, dev, c.ranks, 0)
			if !strings.Contains(res.Stdout, "flow on CUDA device 0 (emulator") {
				t.Errorf("no start line naming the device:\n%s", tail(res.Stdout))
			}
			want := "the action's log det and force on the device too"
			if c.est == "reinforce" {
				want = "the action's log det (REINFORCE needs no force) on the device too"
			}
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("%s: no line %q:\n%s", c.est, want, tail(res.Stdout))
			}
			got := readCkpt(t, filepath.Join(dir, "run", "checkpoint.h5"), dev)
			for _, v := range []struct {
				name string
				a, b []float64
			}{{"parameters", got.Params, ref.ck.Params}, {"Adam m", got.M, ref.ck.M}, {"Adam v", got.V, ref.ck.V}} {
				if d := relDiff(v.a, v.b); !(d <= 1e-10) {
					t.Errorf("%s after 5 steps: relative difference %.3g from the CPU run", v.name, d)
				}
			}
			hist := readHistory(t, filepath.Join(dir, "run", "history.h5"))
			if len(hist) != len(ref.hist) {
				t.Fatalf("%d history rows, the CPU run %d", len(hist), len(ref.hist))
			}
			for i, h := range hist {
				w := ref.hist[i]
				if relDiff([]float64{h.Loss, h.ESS, h.LogqMean, h.LogpMean}, []float64{w.Loss, w.ESS, w.LogqMean, w.LogpMean}) > 1e-10 {
					t.Errorf("history row %d: %+v, the CPU run %+v", i, h, w)
				}
			}
		})
	}
}

// TestDeviceSignalRestart: a run on the emulated device stopped by
// SIGTERM after step 2 and continued equals the undisturbed run on the
// same device bit for bit.
func TestDeviceSignalRestart(t *testing.T) {
	signalRestart(t, t.TempDir(), trainCase{Steps: 5, Precision: "float64", Device: "cuda", Emulate: true})
}

// TestDeviceSelection: compute.device = "auto" without a CUDA driver
// trains on the CPU and says why in the start line; "cuda" without one,
// and "cuda" with a micro-batch the device cannot hold, stop with exit
// status 2 and one line (naming compute.device, or train.micro_batch and
// the estimate), writing no file; `check` reports the device's memory.
func TestDeviceSelection(t *testing.T) {
	noDriver := "LD_LIBRARY_PATH=" + t.TempDir() // no libcuda here, and none on the test machines
	t.Run("auto falls back", func(t *testing.T) {
		dir := t.TempDir()
		res := train(t, dir, trainCase{Steps: 1, Device: "auto"}, 0, 0, noDriver)
		if !strings.Contains(res.Stdout, `flow on the CPU (compute.device = "auto": `) {
			t.Errorf("no start line for the CPU fallback:\n%s", tail(res.Stdout))
		}
	})
	for _, tc := range []struct {
		name string
		c    trainCase
		env  []string
		want []string
	}{
		{"cuda without a driver", trainCase{Steps: 1, Device: "cuda"}, []string{noDriver}, []string{`compute.device = "cuda"`, "no CUDA device"}},
		{"device memory exhausted", trainCase{Steps: 1, Device: "cuda", Emulate: true, Batch: 4096, Micro: 4096},
			[]string{"NFSCHWINGER_EMULATOR_MEMORY=16777216"}, []string{"train.micro_batch = 4096", "device memory", "smaller micro_batch"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			res := train(t, dir, tc.c, 0, 2, tc.env...)
			msg := strings.TrimSpace(res.Stderr)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr lacks %q:\n%s", w, msg)
				}
			}
			if strings.Count(msg, "\n") > 0 {
				t.Errorf("want one line, got:\n%s", msg)
			}
			if _, err := os.Stat(filepath.Join(dir, "run")); err == nil {
				t.Error("the refused run created its output directory")
			}
		})
	}
}

// TestDeviceCompileFailure: a kernel source the device's compiler rejects
// (here the emulator's, a stand-in for NVRTC that fails with a log) stops
// the run with exit status 1, the message naming the source and carrying
// the compiler's log, and nothing written.
func TestDeviceCompileFailure(t *testing.T) {
	bin := t.TempDir()
	cxx := filepath.Join(bin, "c++")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'fake c++ 1.0'; exit 0; fi\necho 'kernels.cpp:7:3: error: the device compiler says no' >&2\nexit 1\n"
	if err := os.WriteFile(cxx, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := trainCase{Steps: 1, Device: "cuda", Emulate: true}
	res := train(t, dir, c, 0, 1, "CXX="+cxx, "NFSCHWINGER_CUDA_CACHE="+t.TempDir())
	for _, w := range []string{"CUDA kernels", "compiling conv.cu", "the device compiler says no"} {
		if !strings.Contains(res.Stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, res.Stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); err == nil {
		t.Error("the failed run created its output directory")
	}
}
