// Package device puts an nf.Flow on a CUDA device: it describes the flow
// for nf/gpu (the architecture, and every layer's masks) and attaches the
// device flow to it (nf.Flow.UseDevice), and it provides the training
// target with log det on the device (Action). It is the only package that
// knows both nf and nf/gpu: nf/gpu builds without cgo and nf without CUDA.
package device

import (
	"fmt"
	"unsafe"

	"nfschwinger/nf"
	"nfschwinger/nf/gpu"
)

// Spec describes the flow f for nf/gpu; bf16 selects bfloat16 products in
// the convolutions.
func Spec[T nf.Float](f *nf.Flow[T], bf16 bool) gpu.FlowSpec {
	a := f.Arch
	s := gpu.FlowSpec{L: a.L, NKnots: a.NKnots, Kernel: a.KernelSize, Channels: a.Channels(),
		Dilation: a.Dilation, Slope: a.LeakyReLUSlope, BF16: bf16}
	for k := range a.NLayers {
		m := nf.NewMasks(a.L, k)
		s.Layers = append(s.Layers, gpu.LayerSpec{Mu: m.Mu, Active: m.Active, PlaqFrozen: m.PlaqFrozen, LoopsFrozen: m.LoopsFrozen})
	}
	return s
}

// Bytes returns the device memory Attach allocates for f and
// micro-batches of up to maxB configurations.
func Bytes[T nf.Float](f *nf.Flow[T], maxB int, bf16, withTape bool) int {
	return gpu.Bytes(Spec(f, bf16), maxB, int(unsafe.Sizeof(T(0))), withTape)
}

// Attach builds f's flow on the device of the kernels k for micro-batches
// of up to maxB configurations (with a tape when withTape, for training)
// and moves f onto it. An error wraps gpu.ErrOutOfMemory when the device
// memory does not suffice.
func Attach[T nf.Float](f *nf.Flow[T], k *gpu.Kernels, maxB int, bf16, withTape bool) error {
	g, err := gpu.NewFlow[T](k, Spec(f, bf16), maxB, withTape)
	if err != nil {
		return fmt.Errorf("flow on the device, micro-batch %d: %w", maxB, err)
	}
	if err := f.UseDevice(g); err != nil {
		g.Close()
		return err
	}
	return nil
}
