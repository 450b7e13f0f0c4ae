package app

import (
	"errors"
	"fmt"

	"nfschwinger/internal/cuda"
	"nfschwinger/nf"
	"nfschwinger/nf/device"
	"nfschwinger/nf/gpu"
)

// placement is where a rank computes its flow ([compute] device): the
// device's driver (nil: the CPU) and the line that says so at start.
type placement struct {
	driver  cuda.Driver
	ordinal int
	why     string // on the CPU: why (device = "cpu", or what auto found)
}

// placeRank decides where this rank computes ([compute] device, issue
// 14): "cpu"; "cuda", an error (a UsageError) without a driver or a
// visible device; "auto", the device when there is one, else the CPU.
// The rank takes the device of its node-local rank among the visible
// ones (cuda.DeviceFor), which respects CUDA_VISIBLE_DEVICES and Slurm's
// --gpus-per-task.
func placeRank(mode string, localRank int) (placement, error) {
	if mode == "cpu" {
		return placement{why: `compute.device = "cpu"`}, nil
	}
	n, err := cuda.Visible()
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: the driver sees none", cuda.ErrNoDevice)
	}
	if err != nil {
		if mode == "cuda" {
			return placement{}, usagef("compute.device = \"cuda\": %v", err)
		}
		return placement{why: fmt.Sprintf("compute.device = \"auto\": %v", err)}, nil
	}
	ord := cuda.DeviceFor(localRank, n)
	d, err := cuda.Open(ord)
	if err != nil {
		if mode == "auto" && errors.Is(err, cuda.ErrNoDevice) {
			return placement{why: fmt.Sprintf("compute.device = \"auto\": %v", err)}, nil
		}
		return placement{}, fmt.Errorf("CUDA device %d: %w", ord, err)
	}
	return placement{driver: d, ordinal: ord}, nil
}

// String is the start line's description of the placement.
func (p placement) String() string {
	if p.driver == nil {
		return "flow on the CPU (" + p.why + ")"
	}
	return fmt.Sprintf("flow on CUDA device %d (%s)", p.ordinal, p.driver.Name())
}

// attach moves flow onto the placement's device for micro-batches of
// maxB (with a tape when training): the kernels compiled (NVRTC, cached
// on disk), the parameters, tape and scratch allocated. The errors: a
// compile failure with NVRTC's log (exit 1), device memory exhausted
// (a UsageError naming train.micro_batch and the estimate, exit 2).
func attach[T nf.Float](p placement, flow *nf.Flow[T], maxB int, bf16, withTape bool) error {
	if p.driver == nil {
		return nil
	}
	k, err := gpu.NewKernels(p.driver)
	if err != nil {
		return fmt.Errorf("CUDA kernels: %w", err)
	}
	if err := device.Attach(flow, k, maxB, bf16, withTape); err != nil {
		if errors.Is(err, gpu.ErrOutOfMemory) {
			return usagef("train.micro_batch = %d: the flow needs about %s of device memory on %s (%v); use a smaller micro_batch",
				maxB, bytesString(int64(device.Bytes(flow, maxB, bf16, withTape))), p.driver.Name(), err)
		}
		return err
	}
	return nil
}
