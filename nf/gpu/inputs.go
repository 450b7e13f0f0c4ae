package gpu

import (
	"fmt"

	"nfschwinger/internal/cuda"
)

// Inputs computes a coupling layer's conditioner input on the device, as
// nf's inputsRange: the plaquettes P and 2x1 loops of the links and, at
// the frozen ones (the layer's masks), their cosines and sines, [6][B·V]
// (cos P, sin P, cos ℓ₀, cos ℓ₁, sin ℓ₀, sin ℓ₁; 1 and 0 elsewhere), and
// its backward pass into the link gradient (inputsBackwardRange, the
// transposes gathered per link, no atomics).
type Inputs[T Float] struct {
	L               int
	k               *Kernels
	frozen, lfrozen cuda.DevicePtr // the masks, one byte per site
	lbar            cuda.DevicePtr // scratch of Backward: the loop gradient
	lbarBytes       int
}

// NewInputs uploads the masks of a layer: plaqFrozen[x] (V) and
// loopsFrozen[c·V + x] (2V), as nf.Masks holds them.
func NewInputs[T Float](k *Kernels, L int, plaqFrozen, loopsFrozen []bool) (*Inputs[T], error) {
	V := L * L
	if len(plaqFrozen) != V || len(loopsFrozen) != 2*V {
		return nil, fmt.Errorf("gpu: masks of %d and %d sites for L = %d", len(plaqFrozen), len(loopsFrozen), L)
	}
	bytes := func(b []bool) []uint8 {
		out := make([]uint8, len(b))
		for i, v := range b {
			if v {
				out[i] = 1
			}
		}
		return out
	}
	in := &Inputs[T]{L: L, k: k}
	var err error
	if in.frozen, err = cuda.Upload(k.d, bytes(plaqFrozen)); err != nil {
		return nil, err
	}
	if in.lfrozen, err = cuda.Upload(k.d, bytes(loopsFrozen)); err != nil {
		k.d.Free(in.frozen)
		return nil, err
	}
	return in, nil
}

// Close frees the masks and the scratch.
func (in *Inputs[T]) Close() {
	for _, p := range []cuda.DevicePtr{in.frozen, in.lfrozen, in.lbar} {
		if p != 0 {
			in.k.d.Free(p)
		}
	}
	in.frozen, in.lfrozen, in.lbar, in.lbarBytes = 0, 0, 0, 0
}

// Forward writes the input inp ([6][B·V]), the plaquettes P (B·V) and the
// loops (B·2V) of the links (B·2V) of B configurations.
func (in *Inputs[T]) Forward(inp, P, loops, links cuda.DevicePtr, B int) error {
	N := B * in.L * in.L
	return cuda.Launch(in.k.inputs[prec[T]()], grid(N), block, inp, P, loops, links, in.frozen, in.lfrozen, int32(in.L), int32(B))
}

// Backward ADDS into g (the link gradient, B·2V) the gradient through the
// input: pbar (B·V) holds the direct gradient of the plaquettes on entry
// and the total on return; gin is the gradient of the input and inp the
// input Forward wrote.
func (in *Inputs[T]) Backward(g, pbar, gin, inp cuda.DevicePtr, B int) error {
	V := in.L * in.L
	N := B * V
	if need := 2 * N * size[T](); need > in.lbarBytes {
		if in.lbar != 0 {
			in.k.d.Free(in.lbar)
		}
		p, err := in.k.d.Alloc(need)
		if err != nil {
			return fmt.Errorf("gpu: loop gradients of %d bytes: %w: %w", need, ErrOutOfMemory, err)
		}
		in.lbar, in.lbarBytes = p, need
	}
	return in.backward(g, pbar, gin, inp, in.lbar, B)
}

// backward is Backward with the loop gradient in lbar (B·2V elements of
// scratch: the device flow's layers share one).
func (in *Inputs[T]) backward(g, pbar, gin, inp, lbar cuda.DevicePtr, B int) error {
	N := B * in.L * in.L
	p := prec[T]()
	if err := cuda.Launch(in.k.inputsBwd1[p], grid(N), block, pbar, lbar, gin, inp, in.frozen, in.lfrozen, int32(in.L), int32(B)); err != nil {
		return err
	}
	return cuda.Launch(in.k.inputsBwd2[p], grid(2*N), block, g, pbar, lbar, int32(in.L), int32(B))
}
