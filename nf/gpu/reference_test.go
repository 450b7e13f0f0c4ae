package gpu

import (
	"os"
	"testing"
)

// TestFlowAgainstReference: the device flow against the CPU flow's
// results recorded by nf/device's TestDeviceFlowMatchesCPU
// (NFSCHWINGER_GPU_REFERENCE names the file; make gpu-check writes it
// and runs this on the GPU machine, which has no CPU flow). make test
// checks the same path on the emulator inside that test; here, without
// the file, it skips — except in the device check
// (NFSCHWINGER_CUDA_TEST=gpu), where a missing file fails.
func TestFlowAgainstReference(t *testing.T) {
	path := os.Getenv("NFSCHWINGER_GPU_REFERENCE")
	if path == "" {
		if os.Getenv("NFSCHWINGER_CUDA_TEST") == "gpu" {
			t.Fatal("NFSCHWINGER_GPU_REFERENCE is not set: the device check needs the CPU's results")
		}
		t.Skip("NFSCHWINGER_GPU_REFERENCE not set (make gpu-check writes it)")
	}
	refs, err := ReadReferences(path)
	if err != nil {
		t.Fatal(err)
	}
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, r := range refs {
			t.Run(r.Name, func(t *testing.T) {
				for _, msg := range CheckReference(k, r) {
					t.Error(msg)
				}
			})
		}
	})
}
