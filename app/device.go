package app

import (
	"errors"
	"fmt"

	"nfschwinger/internal/cuda"
	"nfschwinger/lgt"
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

// placeRank decides where this rank computes ([compute] device): "cpu"; "cuda", an error (a UsageError) without a driver or a
// visible device; "auto", the device when there is one, else the CPU.
// The rank takes the device of its node-local rank among the visible
// ones (cuda.DeviceFor), which respects CUDA_VISIBLE_DEVICES and Slurm's
// --gpus-per-task.
func placeRank(mode string, localRank int) (placement, error) {
	if mode == "cpu" {
		return placement{why: `compute.device = "cpu"`}, nil
	}
	n, err := cuda.Visible()
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

// onDevice returns what newFlow needs to build a flow on the
// placement's device for micro-batches of maxB (with a tape when
// training): the kernels compiled (NVRTC, cached on disk). On the CPU it
// returns nil. A compile failure carries NVRTC's log (exit 1).
func onDevice(p placement, maxB int, withTape bool) (*deviceFlow, error) {
	if p.driver == nil {
		return nil, nil
	}
	k, err := gpu.NewKernels(p.driver)
	if err != nil {
		return nil, fmt.Errorf("CUDA kernels: %w", err)
	}
	return &deviceFlow{kernels: k, name: p.driver.Name(), maxB: maxB, withTape: withTape}, nil
}

// deviceTarget returns the training target of flow, made on the device
// of the kernels k (nil: on the CPU, and the target is the pool itself):
// the action with its log det on the device, read from the flow's own
// device buffers (device.FlowAction, for the flow's micro-batch), with
// the force there too for r.t. and the path gradient. close frees its
// device memory. Device memory exhausted is a UsageError naming
// train.micro_batch.
func deviceTarget[T nf.Float](k *gpu.Kernels, flow *nf.Flow[T], est nf.Estimator, pool *lgt.Pool) (target nf.Target, close func(), err error) {
	if k == nil {
		return pool, func() {}, nil
	}
	withForce := est != nf.REINFORCE
	a, err := device.NewFlowAction(pool, flow, k, withForce)
	if err != nil {
		if errors.Is(err, gpu.ErrOutOfMemory) {
			maxB := flow.Engine().MicroBatch()
			return nil, nil, usagef("train.micro_batch = %d: the action on the device needs %s more device memory (%v); use a smaller micro_batch",
				maxB, bytesString(int64(device.ActionBytes(pool.Params().L, maxB, withForce))), err)
		}
		return nil, nil, err
	}
	return a, a.Close, nil
}
