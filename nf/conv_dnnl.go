package nf

import (
	"errors"
	"fmt"
	"strings"

	"nfschwinger/internal/dnnl"
)

// The conditioner through oneDNN. A float32 flow on the CPU may
// run its conditioners' convolutions as oneDNN primitives instead of
// im2col + OpenBLAS (the OneDNN engine). What changes:
//
//   - The hidden activations, rec.acts[1 … last], are NHWC ([B][L][L][C],
//     channels innermost) instead of channel-major: oneDNN's fast kernels
//     read and write that layout, and the circular padding of a site is a
//     copy of its C contiguous channels. They keep their sizes, so tapes
//     are laid out as before; only the conditioner's code reads them
//     (convolutions and LeakyReLU, which is elementwise). The conditioner
//     input rec.acts[0] and its gradient stay channel-major; the first
//     convolution transposes while it pads.
//   - LeakyReLU is fused into the forward convolutions (oneDNN's relu
//     post-op with a negative slope), and its derivative, read from the
//     sign of the recorded outputs, into the pass that writes the next
//     convolution's input gradient (the fold of the circular padding, the
//     scatter of the last convolution).
//   - The last convolution runs at the active sites only, as the default
//     path does (Conv2D.ForwardSites): the im2col columns of those sites are
//     gathered from the NHWC input (one copy of C contiguous channels per
//     tap) and multiplied by the weights in one float32 product of the
//     backend, written straight into the compact raw spline parameters.
//     Measured against oneDNN's convolution at every site (4× the flops),
//     it is faster in float32 and also in bf16, whose backward-weights
//     kernel is slow in oneDNN 2.6 (README, Performance), so this
//     convolution stays float32 in both precisions.
//   - With bf16 the other convolutions' inputs (wrapped activations,
//     weights, output gradients) are rounded to bfloat16; accumulation,
//     outputs and every gradient stay float32.

// DNNLMinChannels is the narrowest conditioner (its widest hidden layer, in
// channels) whose float32 convolutions run faster on oneDNN than on im2col
// and OpenBLAS, chosen by measuring REINFORCE steps at L = 8 with hidden
// [8, 8], [16, 16], [32, 32] and [64, 64] (docs/performance.md has the
// times and the machine; `nfschwinger bench -hidden` measures them anew).
const DNNLMinChannels = 16

// PrefersDNNL reports whether a float32 flow of architecture a runs faster
// with its conditioners on oneDNN (its widest hidden layer has at least
// DNNLMinChannels channels).
func PrefersDNNL(a Arch) bool {
	w := 0
	for _, c := range a.Hidden {
		w = max(w, c)
	}
	return w >= DNNLMinChannels
}

// ConvPrecisions are the allowed values of [model] conv_precision: the
// precision of the convolutions' inputs and weights on the oneDNN path.
var ConvPrecisions = []string{"float32", "bf16"}

// dnnlConditioner holds the oneDNN primitives of a flow's conditioners:
// one per convolution index and batch size (every layer has the same
// shapes; the weights are passed per call).
type dnnlConditioner[T Float] struct {
	bf16          bool
	requireNative bool // refuse bf16 that oneDNN would emulate
	threads       int
	convs         map[dnnlKey]*dnnl.CircConv

	// The last convolution at the active sites: the gathered columns
	// [M][K²·Cin] (M = B·nA, column t·Cin + ci for tap t, channel ci), the
	// weights permuted to [Cout][K²·Cin] and their gradient, the source
	// site of every tap (Workspace.siteTaps: taps[t·nA + i]), and the
	// arguments of the parallel gather and scatter.
	col, wp, gwp []float32
	taps         []int32
	in, gin      []float32
	slope        float32 // LeakyReLU's: the scatter applies its derivative (the input is its output)
	B, L, cin    int
	nA, kk       int
	gatherFn     func(lo, hi int)
	scatterFn    func(lo, hi int)
}

type dnnlKey struct{ j, B int }

// maxDNNLShapes bounds the cached primitives; beyond it the cache is
// emptied (a flow sees a few micro-batch sizes, not many).
const maxDNNLShapes = 16

// OneDNN returns the host engine whose conditioners run through oneDNN,
// with bf16 inputs and weights of the convolutions when bf16 (see the
// comment at the top of conv_dnnl.go), the rest on be. Only float32 flows
// on the CPU backend can; NewFlowOn's error says why not, or that this
// CPU's oneDNN cannot build the primitives. bf16 is refused (ErrBF16Slow)
// where oneDNN would emulate it (NativeBF16): there it runs at a fraction
// of float32's rate. Results equal OpenBLAS's to float32 rounding of the
// sums (bf16: to bf16 rounding of the inputs).
func OneDNN[T Float](be Backend, bf16 bool) Engine[T] { return oneDNN[T](be, bf16, true) }

// oneDNN is OneDNN; requireNative false accepts bf16 on any CPU where
// oneDNN builds it, emulated or not (the numerics tests, which need bf16
// arithmetic, not its speed).
func oneDNN[T Float](be Backend, bf16, requireNative bool) Engine[T] {
	return &hostEngine[T]{be: be, cond: &dnnlConditioner[T]{bf16: bf16, requireNative: requireNative}}
}

// ErrBF16Slow is NewFlowOn's error on the OneDNN engine with bf16, on a
// CPU where oneDNN has no native bf16 convolution kernels.
var ErrBF16Slow = errors.New("bf16 convolutions need a CPU with native bf16 instructions (AVX512-BF16, as on AMD Zen 4 and Intel Cooper Lake, or AMX, as on Intel Sapphire Rapids); oneDNN emulates bf16 on other AVX-512 CPUs, several times slower than float32, and has none for AVX2")

// NativeBF16 reports whether oneDNN's implementation name impl ("kernel:isa",
// e.g. "jit_bf16:avx512_core_bf16", "brg:avx512_core_amx") runs bf16 in
// hardware: its instruction set names bf16 or AMX. oneDNN 2.6 names an
// emulation by the plain instruction set ("jit_bf16:avx512_core"). The
// rates of each kind against float32 are in docs/performance.md.
func NativeBF16(impl string) bool {
	_, isa, _ := strings.Cut(impl, ":")
	return strings.Contains(isa, "bf16") || strings.Contains(isa, "amx")
}

func (d *dnnlConditioner[T]) name() string {
	if d.bf16 {
		return "oneDNN bf16"
	}
	return "oneDNN float32"
}

// bind creates the primitives for one configuration: an unsupported
// precision or shape fails here, not in the middle of a pass.
func (d *dnnlConditioner[T]) bind(e *hostEngine[T]) error {
	var zero T
	if _, ok := any(zero).(float32); !ok {
		return fmt.Errorf("nf: oneDNN convolutions need precision float32")
	}
	if _, ok := e.be.(*cpuBackend); !ok {
		return fmt.Errorf("nf: oneDNN convolutions need the CPU backend, not %s", e.be.Name())
	}
	d.threads, d.convs = e.be.Workers(), map[dnnlKey]*dnnl.CircConv{}
	d.gatherFn, d.scatterFn = d.gatherRange, d.scatterRange
	f := e.f
	for j := range f.layers[0].convs[:len(f.layers[0].convs)-1] {
		cv, err := d.get(f, j, 1)
		if err != nil {
			if d.bf16 {
				return fmt.Errorf("nf: %w (here: %v)", ErrBF16Slow, err)
			}
			return fmt.Errorf("nf: %w", err)
		}
		if fwd, _, _ := cv.Impl(); d.bf16 && d.requireNative && !NativeBF16(fwd) {
			return fmt.Errorf("nf: %w (here oneDNN would run them as %s)", ErrBF16Slow, fwd)
		}
	}
	return nil
}

// DNNL reports whether the conditioners run through oneDNN and in which
// precision ("float32", "bf16"; "" when they do not).
func (f *Flow[T]) DNNL() string {
	d := f.dnnl()
	switch {
	case d == nil:
		return ""
	case d.bf16:
		return "bf16"
	}
	return "float32"
}

// dnnl returns the flow's oneDNN conditioner, nil on other engines.
func (f *Flow[T]) dnnl() *dnnlConditioner[T] {
	if e, ok := f.eng.(*hostEngine[T]); ok {
		d, _ := e.cond.(*dnnlConditioner[T])
		return d
	}
	return nil
}

// DNNLImpl names oneDNN's implementations of the primitives (forward /
// backward data / backward weights) of the middle hidden convolution, ""
// without oneDNN: what this CPU runs.
func (f *Flow[T]) DNNLImpl() string {
	d := f.dnnl()
	if d == nil {
		return ""
	}
	n := len(f.layers[0].convs)
	if n == 1 {
		return "none (the only convolution runs at the active sites through OpenBLAS)"
	}
	cv, err := d.get(f, (n-1)/2, 1)
	if err != nil {
		return err.Error()
	}
	a, b, c := cv.Impl()
	return a + " / " + b + " / " + c
}

// create builds the primitives of convolution j for B configurations.
func (d *dnnlConditioner[T]) create(f *Flow[T], j, B int) (*dnnl.CircConv, error) {
	cv := &f.layers[0].convs[j]
	opt := dnnl.CircOptions{BF16: d.bf16, Backward: true, Threads: d.threads, Input: dnnl.NHWC}
	if j == 0 {
		opt.Input = dnnl.ChannelMajor
	} else {
		opt.InputLeakyReLUSlope = float32(f.Arch.LeakyReLUSlope) // the input is the previous convolution's activation
	}
	opt.LeakyReLUSlope = float32(f.Arch.LeakyReLUSlope) // every convolution but the last, which is not a CircConv
	s := dnnl.CircShape{N: B, Cin: cv.Cin, Cout: cv.Cout, L: f.Arch.L, K: cv.K, Dilation: cv.Dil}
	return dnnl.NewCircConv(s, opt)
}

// get returns the cached primitives of convolution j for B configurations.
func (d *dnnlConditioner[T]) get(f *Flow[T], j, B int) (*dnnl.CircConv, error) {
	k := dnnlKey{j, B}
	if cv, ok := d.convs[k]; ok {
		return cv, nil
	}
	if len(d.convs) >= maxDNNLShapes {
		d.close()
		d.convs = map[dnnlKey]*dnnl.CircConv{}
	}
	cv, err := d.create(f, j, B)
	if err != nil {
		return nil, err
	}
	d.convs[k] = cv
	return cv, nil
}

// must is get for the passes, which return no errors: the shapes were
// checked when the engine was bound, so a failure here is an exhausted memory or a broken
// library.
func (d *dnnlConditioner[T]) must(f *Flow[T], j, B int) *dnnl.CircConv {
	cv, err := d.get(f, j, B)
	if err != nil {
		panic(fmt.Sprintf("nf: oneDNN convolution %d for %d configurations: %v", j, B, err))
	}
	return cv
}

func (d *dnnlConditioner[T]) close() {
	for _, cv := range d.convs {
		cv.Close()
	}
	clear(d.convs)
}

// mustDNNL panics on a oneDNN execution error (the primitives exist, so
// this is a broken library or memory).
func mustDNNL(err error) {
	if err != nil {
		panic(fmt.Sprintf("nf: %v", err))
	}
}

func (d *dnnlConditioner[T]) forward(e *hostEngine[T], c *coupling[T], rec layerRecord[T], B, nConv int) {
	f := e.f
	last := len(c.convs) - 1
	for j := range c.convs[:nConv] {
		cv := &c.convs[j]
		w, b := as32(cv.Weight), as32(cv.Bias)
		if j < last {
			p := d.must(f, j, B)
			mustDNNL(p.Forward(as32(rec.acts[j+1]), as32(rec.acts[j]), w, b))
			continue
		}
		d.sites(e, c, cv, rec.acts[j], nil, B)
		e.be.ParallelFor(B, d.gatherFn)
		out := as32(rec.acts[j+1])
		M, CKK := B*f.nA, cv.Cin*cv.K*cv.K
		for co, bv := range b {
			row := out[co*M : (co+1)*M]
			for i := range row {
				row[i] = bv
			}
		}
		e.be.Gemm32(false, true, cv.Cout, M, CKK, 1, d.wp, CKK, d.col, CKK, 1, out, M)
		d.in = nil
	}
}

func (d *dnnlConditioner[T]) backward(e *hostEngine[T], c *coupling[T], rec layerRecord[T], B int) {
	f := e.f
	V := f.Arch.L * f.Arch.L
	N := B * V
	last := len(c.convs) - 1
	cur := 0 // e.gbuf[cur] holds the gradient of rec.acts[j+1]
	for j := last; j >= 0; j-- {
		cv := &c.convs[j]
		gin := as32(e.gbuf[1-cur][:cv.Cin*N])
		if j == last {
			d.lastBackward(e, c, cv, rec.acts[j], gin, as32(e.gbuf[cur][:cv.Cout*B*f.nA]), B)
		} else {
			p := d.must(f, j, B)
			gout := as32(e.gbuf[cur][:cv.Cout*N])
			mustDNNL(p.Backward(gin, gout, as32(rec.acts[j]), as32(cv.Weight), as32(cv.GradWeight), as32(cv.GradBias)))
		}
		cur = 1 - cur
	}
	e.ginp = e.gbuf[cur][:InChannels*N]
}

// sites prepares the last convolution cv of layer c at the active sites
// for B configurations: the taps, the permuted weights, the column buffer,
// and the input in (NHWC) and input gradient gin of the gather and scatter.
func (d *dnnlConditioner[T]) sites(e *hostEngine[T], c *coupling[T], cv *Conv2D[T], in []T, gin []float32, B int) {
	f := e.f
	L := f.Arch.L
	e.ws.siteTaps(cv, c.masks.Active, L)
	d.taps = e.ws.taps // valid until the next siteTaps
	d.kk, d.cin, d.nA, d.B, d.L = cv.K*cv.K, cv.Cin, f.nA, B, L
	CKK := cv.Cin * d.kk
	d.col = grow(d.col, B*f.nA*CKK)
	d.wp = grow(d.wp, cv.Cout*CKK)
	w := as32(cv.Weight)
	for co := range cv.Cout {
		for ci := range cv.Cin {
			for t := range d.kk {
				d.wp[co*CKK+t*cv.Cin+ci] = w[(co*cv.Cin+ci)*d.kk+t]
			}
		}
	}
	d.in, d.gin = as32(in), gin
}

// gatherRange fills the columns of configurations [lo, hi):
// col[(b·nA + i)·K²Cin + t·Cin + ci] = in[(b·V + taps[t·nA + i])·Cin + ci]
// (dnnl.GatherSites, vectorized in C).
func (d *dnnlConditioner[T]) gatherRange(lo, hi int) {
	dnnl.GatherSites(d.col, d.in, d.taps, lo, hi, d.L*d.L, d.nA, d.cin, d.kk)
}

// scatterRange writes gin of configurations [lo, hi): zero, then the
// column gradient (in d.col) added at the source of every tap (the adjoint
// of gatherRange), then, when the input is a LeakyReLU output (d.slope >
// 0), times the LeakyReLU's derivative read from the input; vectorized in
// C (dnnl.ScatterSites), the same bits as the loop in Go.
func (d *dnnlConditioner[T]) scatterRange(lo, hi int) {
	dnnl.ScatterSites(d.gin, d.col, d.in, d.taps, lo, hi, d.L*d.L, d.nA, d.cin, d.kk, d.slope)
}

// lastBackward is the backward pass of the last convolution cv of layer c
// at the active sites: from gout (compact [Cout][B·nA]) and its NHWC input
// in it adds the weight and bias gradients and writes gin (NHWC).
func (d *dnnlConditioner[T]) lastBackward(e *hostEngine[T], c *coupling[T], cv *Conv2D[T], in []T, gin, gout []float32, B int) {
	f := e.f
	M, CKK := B*f.nA, cv.Cin*cv.K*cv.K
	gb := as32(cv.GradBias)
	for co := range cv.Cout {
		var s float64
		for _, g := range gout[co*M : (co+1)*M] {
			s += float64(g)
		}
		gb[co] += float32(s)
	}
	d.sites(e, c, cv, in, gin, B)
	d.slope = 0
	if len(c.convs) > 1 { // the input is the previous convolution's activation
		d.slope = float32(f.Arch.LeakyReLUSlope)
	}
	e.be.ParallelFor(B, d.gatherFn)
	// dWp[Cout][CKK] = gout[Cout][M] · col[M][CKK], then un-permuted.
	d.gwp = grow(d.gwp, cv.Cout*CKK)
	e.be.Gemm32(false, false, cv.Cout, CKK, M, 1, gout, M, d.col, CKK, 0, d.gwp, CKK)
	gw := as32(cv.GradWeight)
	for co := range cv.Cout {
		for ci := range cv.Cin {
			for t := range d.kk {
				gw[(co*cv.Cin+ci)*d.kk+t] += d.gwp[co*CKK+t*cv.Cin+ci]
			}
		}
	}
	// dcol[M][CKK] = goutᵀ · Wp, then scattered into gin.
	e.be.Gemm32(true, false, M, CKK, cv.Cout, 1, gout, M, d.wp, CKK, 0, d.col, CKK)
	e.be.ParallelFor(B, d.scatterFn)
	d.in, d.gin = nil, nil
}
