// Package device puts an nf.Flow on a CUDA device: it describes the flow
// for nf/gpu (the architecture, and every layer's masks), builds flows
// whose engine is on the device (nf.OnDevice), and it provides the training
// target with log det on the device (Action). It is the only package that
// knows both nf and nf/gpu: nf/gpu builds without cgo and nf without CUDA.
package device

import (
	"fmt"
	"unsafe"

	"nfschwinger/nf"
	"nfschwinger/nf/gpu"
)

// Spec describes a flow of architecture a for nf/gpu; bf16 selects
// bfloat16 products in the convolutions.
func Spec(a nf.Arch, bf16 bool) gpu.FlowSpec {
	s := gpu.FlowSpec{L: a.L, NKnots: a.NKnots, Kernel: a.KernelSize, Channels: a.Channels(),
		Dilation: a.Dilation, Slope: a.LeakyReLUSlope, BF16: bf16}
	for k := range a.NLayers {
		m := nf.NewMasks(a.L, k)
		s.Layers = append(s.Layers, gpu.LayerSpec{Mu: m.Mu, Active: m.Active, PlaqFrozen: m.PlaqFrozen, LoopsFrozen: m.LoopsFrozen})
	}
	return s
}

// Bytes returns the device memory NewFlow allocates for a flow of
// architecture a in precision T and micro-batches of up to maxB
// configurations.
func Bytes[T nf.Float](a nf.Arch, maxB int, bf16, withTape bool) int {
	return gpu.Bytes(Spec(a, bf16), maxB, int(unsafe.Sizeof(T(0))), withTape)
}

// NewFlow returns a flow of architecture a on the device of the kernels
// k (nf.OnDevice), for micro-batches of up to maxB configurations (with a
// tape when withTape, for training). An error wraps gpu.ErrOutOfMemory
// when the device memory does not suffice.
func NewFlow[T nf.Float](k *gpu.Kernels, a nf.Arch, maxB int, bf16, withTape bool) (*nf.Flow[T], error) {
	g, err := gpu.NewFlow[T](k, Spec(a, bf16), maxB, withTape)
	if err != nil {
		return nil, fmt.Errorf("flow on the device, micro-batch %d: %w", maxB, err)
	}
	return nf.NewFlowOn(a, nf.OnDevice[T](g))
}
