package nf

import (
	"fmt"
	"slices"
)

// TensorInfo describes one named parameter tensor inside a ParamSet.
type TensorInfo struct {
	Name   string // path below /model, e.g. "layers/03/conv1/weight"
	Shape  []int  // row-major shape, e.g. (C_out, C_in, k, k)
	Offset int    // first element in ParamSet.Data and ParamSet.Grad
	Size   int    // number of elements, the product of Shape
}

// ParamSet is the contiguous storage of all parameters of a model and of
// their gradients. Every tensor is a view into Data, its gradient the view
// at the same offset into Grad, so the whole gradient is reduced over ranks
// with one allreduce and the optimizer works on flat arrays.
//
// Use: Declare every tensor, then Alloc once, then View.
type ParamSet[T Float] struct {
	Data    []T          // all parameters, in declaration order
	Grad    []T          // gradients, same layout as Data
	Tensors []TensorInfo // in declaration order
	index   map[string]int
}

// Declare adds a tensor of the given shape. It panics after Alloc or when the
// name is taken (programming errors).
func (p *ParamSet[T]) Declare(name string, shape ...int) {
	if p.Data != nil {
		panic("nf: ParamSet.Declare after Alloc")
	}
	if p.index == nil {
		p.index = make(map[string]int)
	}
	if _, ok := p.index[name]; ok {
		panic(fmt.Sprintf("nf: ParamSet.Declare: duplicate tensor %q", name))
	}
	size := 1
	for _, s := range shape {
		size *= s
	}
	off := 0
	if n := len(p.Tensors); n > 0 {
		off = p.Tensors[n-1].Offset + p.Tensors[n-1].Size
	}
	p.index[name] = len(p.Tensors)
	p.Tensors = append(p.Tensors, TensorInfo{Name: name, Shape: slices.Clone(shape), Offset: off, Size: size})
}

// Alloc allocates Data and Grad for every declared tensor, zeroed.
func (p *ParamSet[T]) Alloc() {
	n := p.Len()
	p.Data = make([]T, n)
	p.Grad = make([]T, n)
}

// Len returns the total number of parameters.
func (p *ParamSet[T]) Len() int {
	if len(p.Tensors) == 0 {
		return 0
	}
	t := p.Tensors[len(p.Tensors)-1]
	return t.Offset + t.Size
}

// Lookup returns the description of the named tensor.
func (p *ParamSet[T]) Lookup(name string) (TensorInfo, bool) {
	i, ok := p.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return p.Tensors[i], true
}

// View returns the parameter and gradient slices of the named tensor. It
// panics if the tensor was not declared or Alloc was not called.
func (p *ParamSet[T]) View(name string) (data, grad []T) {
	t, ok := p.Lookup(name)
	if !ok || p.Data == nil {
		panic(fmt.Sprintf("nf: ParamSet.View(%q): not declared or not allocated", name))
	}
	return p.Data[t.Offset : t.Offset+t.Size : t.Offset+t.Size], p.Grad[t.Offset : t.Offset+t.Size : t.Offset+t.Size]
}

// ZeroGrad sets every gradient to zero.
func (p *ParamSet[T]) ZeroGrad() { clear(p.Grad) }
