//go:build cgo

package gpu

import (
	"testing"

	"nfschwinger/nf"
)

// TestConvMatchesCPU: the device convolution equals nf.Conv2D on the CPU
// (im2col + OpenBLAS, the program's CPU path): the same shapes and
// tolerances as TestConvDirect, with nf's results as the reference. Needs
// cgo (nf links OpenBLAS and oneDNN).
func TestConvMatchesCPU(t *testing.T) {
	testConvShapes(t, func(c64 *convCase[float64], c32 *convCase[float32]) { nfReference(c64); nfReference(c32) })
}

// nfReference fills c's reference results with nf.Conv2D's on the CPU.
func nfReference[T Float](c *convCase[T]) {
	N := c.B * c.L * c.L
	cpu := nf.Conv2D[T]{Cin: c.cin, Cout: c.cout, K: c.K, Dil: c.dil, Weight: c.w, Bias: c.bias,
		GradWeight: append([]T(nil), c.gw0...), GradBias: append([]T(nil), c.gb0...)}
	var ws nf.Workspace[T]
	be := nf.CPU(2)
	c.out, c.gin = make([]T, c.cout*N), make([]T, c.cin*N)
	cpu.Forward(be, c.out, c.in, c.B, c.L, &ws)
	cpu.Backward(be, c.gin, c.gout, c.in, c.B, c.L, &ws)
	c.gw, c.gb = cpu.GradWeight, cpu.GradBias
}
