// Package gpu is the flow on a CUDA device, on the
// internal/cuda boundary, so that the emulator runs all of it in CI: the
// conditioner's circular convolutions as im2col kernels and cuBLAS
// products (Conv, Conditioner), its input (Inputs), the splines and their
// VJPs (coupling.cu), and the whole flow with its tape (Flow), in nf's
// layouts and with nf's semantics; and the fermion action on the device, in
// lgt's conventions (action.cu): the log det of the Dirac operator that
// REINFORCE needs (LogDet) and its force for r.t. and the path gradient,
// reading a Flow's output where it lies (Flow.Output, LogDet.ComputeFrom
// and ForceFrom) and leaving the force there as the Flow's upstream
// gradient (Flow.SetUpstream). A Flow is the computing engine of an nf.Flow (nf.OnDevice; nf/device
// builds one). Its parity with the host engines is checked by nf's
// TestEngineParity (RunPasses, Compare) and, on a GPU machine, from the
// results that suite records (Reference).
package gpu

import (
	_ "embed"
	"fmt"
	"os"
	"unsafe"

	"nfschwinger/internal/cuda"
)

// Float is the element type of the device flow: Float's float32 or
// float64. The package does not import nf, so that it builds without cgo
// (its tests then run on a GPU machine without Debian's libraries); the
// equality with nf's CPU convolution is tested where cgo is (conv_cpu_test.go).
type Float interface{ ~float32 | ~float64 }

//go:embed conv.cu
var convSource string

//go:embed inputs.cu
var inputsSource string

//go:embed coupling.cu
var couplingSource string

//go:embed common.cu
var commonSource string

// blockSize is the threads per block of the elementwise kernels.
const blockSize = 128

// Kernels are the compiled kernels of conv.cu and inputs.cu on one
// device, and those of coupling.cu per number of spline bins (Spline).
type Kernels struct {
	d                              cuda.Driver
	im2col, col2im, fillBias       [2]cuda.Function // [0] float32, [1] float64
	biasPart, biasSum              [2]cuda.Function // the bias gradient
	leaky, leakyBwd, zero          [2]cuda.Function
	gather, scatter                [2]cuda.Function // the convolution at a subset of the sites
	inputs, inputsBwd1, inputsBwd2 [2]cuda.Function // the conditioner's input (inputs.cu)
	toBF16, im2colBF16             cuda.Function    // float32 → bf16, and im2col writing bf16
	widen, upstream                [2]cuda.Function // the device-resident target (Links, Force)
	splines                        map[int]*SplineKernels
}

// SplineKernels are coupling.cu's kernels compiled for splines of n bins
// (their per-thread knot arrays sized to n).
type SplineKernels struct {
	fwd, rev, bwd [2]cuda.Function // the spline and the link update, and their VJP
	logJ          cuda.Function
}

// kernelSet names the kernels of T's precisions to look up: dst[p] is
// name + "_f32" (p = 0) or "_f64" (p = 1).
type kernelSet []struct {
	dst  *[2]cuda.Function
	name string
}

// lookup fills the kernels of set from the module m.
func (set kernelSet) lookup(m cuda.Module) error {
	for p, suffix := range []string{"_f32", "_f64"} {
		for _, f := range set {
			var err error
			if f.dst[p], err = m.Function(f.name + suffix); err != nil {
				return err
			}
		}
	}
	return nil
}

// NewKernels compiles conv.cu and inputs.cu on d (NVRTC, or the emulator's
// compiler; both cache the result on disk).
func NewKernels(d cuda.Driver) (*Kernels, error) {
	m, err := d.Compile("conv.cu", prelude()+convSource)
	if err != nil {
		return nil, err
	}
	mi, err := d.Compile("inputs.cu", prelude()+inputsSource)
	if err != nil {
		return nil, err
	}
	k := &Kernels{d: d, splines: map[int]*SplineKernels{}}
	if k.toBF16, err = m.Function("to_bf16"); err != nil {
		return nil, err
	}
	if k.im2colBF16, err = m.Function("im2col_bf16"); err != nil {
		return nil, err
	}
	if err := (kernelSet{{&k.im2col, "im2col"}, {&k.col2im, "col2im"}, {&k.fillBias, "fill_bias"},
		{&k.biasPart, "bias_grad_part"}, {&k.biasSum, "bias_grad_sum"}, {&k.leaky, "leaky_relu"},
		{&k.leakyBwd, "leaky_relu_bwd"}, {&k.zero, "fill_zero"}, {&k.gather, "gather_sites"},
		{&k.scatter, "scatter_sites"}, {&k.widen, "widen"}, {&k.upstream, "upstream"}}).lookup(m); err != nil {
		return nil, err
	}
	if err := (kernelSet{{&k.inputs, "cond_inputs"}, {&k.inputsBwd1, "cond_inputs_bwd1"},
		{&k.inputsBwd2, "cond_inputs_bwd2"}}).lookup(mi); err != nil {
		return nil, err
	}
	return k, nil
}

// Spline returns coupling.cu's kernels for splines of n bins (1 … 64),
// compiled at the first call for that n.
func (k *Kernels) Spline(n int) (*SplineKernels, error) {
	if s := k.splines[n]; s != nil {
		return s, nil
	}
	if n < 1 || n > 64 {
		return nil, fmt.Errorf("gpu: splines of %d bins: 1 … 64 supported", n)
	}
	m, err := k.d.Compile(fmt.Sprintf("coupling.cu (%d bins)", n), fmt.Sprintf("#define SPL_MAXBINS %d\n", n)+prelude()+couplingSource)
	if err != nil {
		return nil, err
	}
	s := &SplineKernels{}
	if s.logJ, err = m.Function("coupling_logj_k"); err != nil {
		return nil, err
	}
	if err := (kernelSet{{&s.fwd, "coupling_fwd"}, {&s.rev, "coupling_rev"}, {&s.bwd, "spline_bwd"}}).lookup(m); err != nil {
		return nil, err
	}
	k.splines[n] = s
	return s, nil
}

// Conv is a circular convolution on the device with nf.Conv2D's semantics
// and layouts: activations [C][B·V] channel-major, weights (Cout, Cin, K,
// K), row-major, all in device memory of T. Products go to cuBLAS in its
// column-major convention: a row-major r×c matrix is a column-major c×r
// one, so out = W·col is outᵀ = colᵀ·Wᵀ there. Not safe for concurrent use.
type Conv[T Float] struct {
	Cin, Cout, K, Dil int
	// BF16 (float32 only) makes the products' operands bfloat16 — the
	// im2col matrix, the weights and the output gradient, rounded to
	// nearest even — with float32 accumulation (cuda.Driver.GemmBF16):
	// conv_precision = "bf16". Bias, outputs and gradients stay float32.
	BF16     bool
	k        *Kernels
	col      cuda.DevicePtr // im2col workspace
	colBytes int
	bf       [3]cuda.DevicePtr // bf16 copies: columns, weights, output gradient
	bfBytes  [3]int
	part     cuda.DevicePtr // the bias gradient's partial sums, Cout·biasParts float64
}

// biasParts is the number of partial sums per channel of the bias
// gradient (conv.cu's bias_grad_part).
const biasParts = 1024

// biasGrad adds Σ_n gout[co][n] (n < N) into gb[co].
func (c *Conv[T]) biasGrad(gb, gout cuda.DevicePtr, N int) error {
	if c.part == 0 {
		p, err := c.k.d.Alloc(8 * biasParts * c.Cout)
		if err != nil {
			return fmt.Errorf("gpu: bias gradient workspace: %w: %w", ErrOutOfMemory, err)
		}
		c.part = p
	}
	p := c.prec()
	if err := cuda.Launch(c.k.biasPart[p], grid(c.Cout*biasParts), block, c.part, gout, int32(c.Cout), int64(N), int32(biasParts)); err != nil {
		return err
	}
	return cuda.Launch(c.k.biasSum[p], blocks(c.Cout), reduceBlock, gb, c.part, int32(c.Cout), int32(biasParts))
}

// NewConv returns the convolution of that shape on the kernels' device.
func NewConv[T Float](k *Kernels, cin, cout, kernel, dil int) *Conv[T] {
	return &Conv[T]{Cin: cin, Cout: cout, K: kernel, Dil: dil, k: k}
}

func (c *Conv[T]) prec() int { return prec[T]() }

// prec indexes the kernels of T: 0 float32, 1 float64.
func prec[T Float]() int {
	if unsafe.Sizeof(T(0)) == 4 {
		return 0
	}
	return 1
}

func size[T Float]() int { return int(unsafe.Sizeof(T(0))) }

// workspace grows the im2col buffer to rows × N elements.
func (c *Conv[T]) workspace(rows, N int) error {
	need := rows * N * size[T]()
	if need <= c.colBytes {
		return nil
	}
	if c.col != 0 {
		c.k.d.Free(c.col)
	}
	p, err := c.k.d.Alloc(need)
	if err != nil {
		return fmt.Errorf("gpu: convolution workspace of %d bytes: %w: %w", need, ErrOutOfMemory, err)
	}
	c.col, c.colBytes = p, need
	return nil
}

// Close frees the workspace.
func (c *Conv[T]) Close() {
	if c.col != 0 {
		c.k.d.Free(c.col)
		c.col, c.colBytes = 0, 0
	}
	if c.part != 0 {
		c.k.d.Free(c.part)
		c.part = 0
	}
	for i, p := range c.bf {
		if p != 0 {
			c.k.d.Free(p)
			c.bf[i], c.bfBytes[i] = 0, 0
		}
	}
}

// bf16Buffer returns bf16 buffer i grown to n values.
func (c *Conv[T]) bf16Buffer(i, n int) (cuda.DevicePtr, error) {
	if size[T]() != 4 {
		panic("gpu: bf16 products of a float64 convolution")
	}
	if need := 2 * n; need > c.bfBytes[i] {
		if c.bf[i] != 0 {
			c.k.d.Free(c.bf[i])
		}
		p, err := c.k.d.Alloc(need)
		if err != nil {
			return 0, fmt.Errorf("gpu: bf16 operand of %d bytes: %w: %w", need, ErrOutOfMemory, err)
		}
		c.bf[i], c.bfBytes[i] = p, need
	}
	return c.bf[i], nil
}

// Indices of the bf16 buffers.
const (
	bfColumns = iota
	bfWeights
	bfGradOut
)

// operand returns the product operand made of the n values at a: a itself,
// or with c.BF16 their rounding to bf16 in buffer i.
func (c *Conv[T]) operand(i int, a cuda.DevicePtr, n int) (cuda.DevicePtr, error) {
	if !c.BF16 {
		return a, nil
	}
	p, err := c.bf16Buffer(i, n)
	if err != nil {
		return 0, err
	}
	return p, cuda.Launch(c.k.toBF16, grid(n), block, p, a, int64(n))
}

// product is C = op(A)·op(B) + beta·C (column-major, alpha 1) of operands
// from operand or columns: in T, or with c.BF16 of bf16 operands with
// float32 accumulation.
func (c *Conv[T]) product(ta, tb cuda.Op, m, n, k int, a cuda.DevicePtr, lda int, b cuda.DevicePtr, ldb int, beta T, out cuda.DevicePtr, ldc int) error {
	if !c.BF16 {
		return gemm[T](c.k.d, ta, tb, m, n, k, 1, a, lda, b, ldb, beta, out, ldc)
	}
	return c.k.d.GemmBF16(ta, tb, m, n, k, 1, a, lda, b, ldb, float32(beta), out, ldc)
}

func grid(n int) cuda.Dim3 { return cuda.Dim3{X: uint32((n + blockSize - 1) / blockSize)} }

var block = cuda.Dim3{X: blockSize}

// reduceThreads is the block size of the kernels that sum with
// common.cu's block_sum, one block per sum (REDUCE_THREADS there).
const reduceThreads = 64

// reduceBlock is their block.
var reduceBlock = cuda.Dim3{X: reduceThreads}

// blocks is a grid of n blocks: one per sum.
func blocks(n int) cuda.Dim3 { return cuda.Dim3{X: uint32(n)} }

// prelude is what every kernel source is compiled after: the block size
// of the sums and common.cu.
func prelude() string {
	return fmt.Sprintf("#define REDUCE_THREADS %d\n", reduceThreads) + commonSource
}

// gemm is cuBLAS's product in T's precision.
func gemm[T Float](d cuda.Driver, ta, tb cuda.Op, m, n, k int, alpha T, a cuda.DevicePtr, lda int, b cuda.DevicePtr, ldb int, beta T, c cuda.DevicePtr, ldc int) error {
	if size[T]() == 4 {
		return d.Sgemm(ta, tb, m, n, k, float32(alpha), a, lda, b, ldb, float32(beta), c, ldc)
	}
	return d.Dgemm(ta, tb, m, n, k, float64(alpha), a, lda, b, ldb, float64(beta), c, ldc)
}

// Forward writes out = conv(in) + bias for B configurations of L×L.
func (c *Conv[T]) Forward(out, in, w, bias cuda.DevicePtr, B, L int) error {
	N := B * L * L
	CKK := c.Cin * c.K * c.K
	if err := cuda.Launch(c.k.fillBias[c.prec()], grid(c.Cout*N), block, out, bias, int32(c.Cout), int64(N)); err != nil {
		return err
	}
	cols, err := c.columns(in, B, L)
	if err != nil {
		return err
	}
	w16, err := c.operand(bfWeights, w, CKK*c.Cout)
	if err != nil {
		return err
	}
	// outᵀ (N×Cout) += colᵀ (N×CKK) · Wᵀ (CKK×Cout), column-major.
	return c.product(cuda.NoTrans, cuda.NoTrans, N, c.Cout, CKK, cols, N, w16, CKK, 1, out, N)
}

// Backward ADDS dL/dW into gw and dL/dbias into gb and WRITES dL/din into
// gin (skipped when gin is 0), from gout = dL/dout and the forward input.
// With bf16 products gout is rounded once for both of its products.
func (c *Conv[T]) Backward(gin, gout, in, w, gw, gb cuda.DevicePtr, B, L int) error {
	N := B * L * L
	CKK := c.Cin * c.K * c.K
	if err := c.biasGrad(gb, gout, N); err != nil {
		return err
	}
	cols, err := c.columns(in, B, L)
	if err != nil {
		return err
	}
	g16, err := c.operand(bfGradOut, gout, c.Cout*N)
	if err != nil {
		return err
	}
	// dWᵀ (CKK×Cout) += col (CKK×N) · goutᵀ (N×Cout): the columns are the
	// column-major N×CKK matrix colᵀ, so op = Trans.
	if err := c.product(cuda.Trans, cuda.NoTrans, CKK, c.Cout, N, cols, N, g16, N, 1, gw, CKK); err != nil {
		return err
	}
	if gin == 0 {
		return nil
	}
	w16, err := c.operand(bfWeights, w, CKK*c.Cout)
	if err != nil {
		return err
	}
	// dcolᵀ (N×CKK) = goutᵀ (N×Cout) · W (Cout×CKK), W stored as Wᵀ, into
	// the float32 workspace.
	if err := c.product(cuda.NoTrans, cuda.Trans, N, CKK, c.Cout, g16, N, w16, CKK, 0, c.col, N); err != nil {
		return err
	}
	return cuda.Launch(c.k.col2im[c.prec()], grid(N), block, gin, c.col, int32(c.Cin), int32(c.K), int32(c.Dil), int32(L), int32(N))
}

// checkReach refuses a kernel that reaches L or more sites away: the
// kernels wrap a coordinate by one conditional add of ±L. The paper's
// 3×3 kernels with dilation 3 reach 3 sites, so L ≥ 4.
func (c *Conv[T]) checkReach(L int) error {
	if reach := c.K / 2 * c.Dil; reach >= L {
		return fmt.Errorf("gpu: a %d×%d kernel with dilation %d reaches %d sites, not less than L = %d", c.K, c.K, c.Dil, reach, L)
	}
	return nil
}

// columns writes the im2col matrix of in and returns it as a product
// operand: in the workspace, or with c.BF16 rounded to bf16 on the way
// into bf16 buffer bfColumns (no float32 copy to convert). A thread per
// site (grid x) and tap (grid y). The workspace is allocated either way:
// the backward pass writes the columns' gradient there.
func (c *Conv[T]) columns(in cuda.DevicePtr, B, L int) (cuda.DevicePtr, error) {
	if err := c.checkReach(L); err != nil {
		return 0, err
	}
	N := B * L * L
	CKK := c.Cin * c.K * c.K
	if err := c.workspace(CKK, N); err != nil {
		return 0, err
	}
	g := grid(N)
	g.Y = uint32(c.K * c.K)
	dst, kernel := c.col, c.k.im2col[c.prec()]
	if c.BF16 {
		p, err := c.bf16Buffer(bfColumns, CKK*N)
		if err != nil {
			return 0, err
		}
		dst, kernel = p, c.k.im2colBF16
	}
	return dst, cuda.Launch(kernel, g, block, dst, in, int32(c.Cin), int32(c.K), int32(c.Dil), int32(L), int32(N))
}

// EmulatedKernels returns the kernels compiled on a new emulated device
// (cuda.NewEmulator) and the device: for tests and checks without a GPU.
func EmulatedKernels() (*cuda.Emulator, *Kernels, error) {
	em, err := cuda.NewEmulator()
	if err != nil {
		return nil, nil, err
	}
	k, err := NewKernels(em)
	return em, k, err
}

// CheckKernels returns the kernels of the device that tests run on: the
// real device 0 with NFSCHWINGER_CUDA_TEST=gpu (the GPU machine's device
// check), else a new emulated one (EmulatedKernels).
func CheckKernels() (*Kernels, error) {
	if os.Getenv("NFSCHWINGER_CUDA_TEST") != "gpu" {
		_, k, err := EmulatedKernels()
		return k, err
	}
	d, err := cuda.OpenReal(0)
	if err != nil {
		return nil, err
	}
	return NewKernels(d)
}
