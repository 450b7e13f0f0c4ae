package gpu

import (
	"encoding/gob"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// BenchmarkFlowStep times the device's part of a REINFORCE step in its
// three-pass form (one micro-batch): Forward with the tape, the backward
// pass of the reverse flow from it (BackwardReverseFromForward), and the
// parameter gradients to the host (AddGrads), for the paper's flows (48
// layers, [64, 64]) of the specs in NFSCHWINGER_GPU_SPECS (make gpu-check
// writes L = 8, 16, 24), micro-batches 512 and 1536, float32 and bf16
// products. The host's action and the copies of the links are not in it.
// Without the file it skips (the emulator would take hours).
func BenchmarkFlowStep(b *testing.B) {
	path := os.Getenv("NFSCHWINGER_GPU_SPECS")
	if path == "" {
		b.Skip("NFSCHWINGER_GPU_SPECS not set (make gpu-check writes it)")
	}
	fh, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	var specs []FlowSpec
	err = gob.NewDecoder(fh).Decode(&specs)
	fh.Close()
	if err != nil {
		b.Fatal(err)
	}
	for name, d := range devices(b) {
		k, err := NewKernels(d)
		if err != nil {
			b.Fatal(err)
		}
		for _, spec := range specs {
			for _, B := range []int{512, 1536} {
				for _, bf16 := range []bool{false, true} {
					spec.BF16 = bf16
					prec := "float32"
					if bf16 {
						prec = "bf16"
					}
					b.Run(fmt.Sprintf("%s/L%d/B%d/%s", name, spec.L, B, prec), func(b *testing.B) { benchStep(b, k, spec, B) })
				}
			}
		}
	}
}

func benchStep(b *testing.B, k *Kernels, spec FlowSpec, B int) {
	f, err := NewFlow[float32](k, spec, B, true)
	skipOnlyIfTooLarge(b, err)
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	params := make([]float32, f.nParams)
	for i := range params {
		params[i] = float32((2*rng.Float64() - 1) / math.Sqrt(float64(9*spec.Channels[1])))
	}
	n := B * 2 * spec.L * spec.L
	z, x, g := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range z {
		z[i] = float32(2 * math.Pi * rng.Float64())
	}
	logJ, glogJ := make([]float64, B), make([]float64, B)
	for i := range glogJ {
		glogJ[i] = rng.NormFloat64() / float64(B)
	}
	grad, tmp := make([]float32, f.nParams), make([]float32, f.nParams)
	if err := f.SetParams(params); err != nil {
		b.Fatal(err)
	}
	step := func() {
		if err := f.Forward(x, z, logJ, B, true); err != nil {
			b.Fatal(err)
		}
		if err := f.Backward(nil, g, glogJ, true); err != nil {
			b.Fatal(err)
		}
		if err := f.AddGrads(grad, tmp); err != nil {
			b.Fatal(err)
		}
	}
	step() // warm-up: kernels loaded, workspaces in place
	b.ResetTimer()
	for range b.N {
		step()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/step")
	b.ReportMetric(float64(f.DeviceBytes())/(1<<30), "GiB")
}

// skipOnlyIfTooLarge skips a benchmark whose flow or workspace does not fit
// the device's memory, and fails it on any other error (tooLarge).
func skipOnlyIfTooLarge(b *testing.B, err error) {
	b.Helper()
	if skip, fail := tooLarge(err); fail != nil {
		b.Fatal(fail)
	} else if skip {
		b.Skip("too large for this device: ", err)
	}
}

// tooLarge sorts a benchmark's setup error: out of device memory skips it
// (skip), any other error fails it (fail), so that a compile error or a
// device fault cannot read as a skip.
func tooLarge(err error) (skip bool, fail error) {
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrOutOfMemory):
		return true, nil
	default:
		return false, err
	}
}

// TestTooLarge: only out of device memory, however wrapped, skips a
// benchmark; a compile error or a device fault fails it.
func TestTooLarge(t *testing.T) {
	for _, c := range []struct {
		err        error
		skip, fail bool
	}{
		{nil, false, false},
		{fmt.Errorf("gpu: flow: %w: %w", ErrOutOfMemory, errors.New("CUDA_ERROR_OUT_OF_MEMORY")), true, false},
		{errors.New("cuda: NVRTC: conv.cu: error: identifier undefined"), false, true},
		{errors.New("cuda: cuLaunchKernel: CUDA_ERROR_ILLEGAL_ADDRESS"), false, true},
	} {
		skip, fail := tooLarge(c.err)
		if skip != c.skip || (fail != nil) != c.fail {
			t.Errorf("%v: skip %v, fail %v; want %v, %v", c.err, skip, fail, c.skip, c.fail)
		}
	}
}
