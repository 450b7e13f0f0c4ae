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
//     path does (Conv2D.ForwardSites), as one call of dnnl.SitesConv: the
//     im2col columns of those sites are gathered from the NHWC input (one
//     copy of C contiguous channels per tap) and multiplied by the weights
//     in a oneDNN matrix product, written straight into the compact raw
//     spline parameters; backward, the bias sum, both products and the
//     scatter run in the same call. All of it runs on the OpenMP threads
//     of the other convolutions: an OpenBLAS product on Go's workers here
//     ran at a third of oneDNN's rate, half of that lost to the OpenMP
//     threads still spinning for the cores after each convolution
//     (docs/performance.md). Measured against oneDNN's convolution at
//     every site (4× the flops), the active sites are faster in float32
//     and also in bf16, whose backward-weights convolution kernel is slow
//     in oneDNN 2.6 (README, Performance).
//   - With bf16 every convolution's inputs (wrapped activations and
//     gathered columns, weights, output gradients) are rounded to
//     bfloat16; accumulation, outputs and every gradient stay float32.
//   - In float32 a hidden convolution that fits (WinogradConv: the
//     paper's 64 → 64 one, dilation 2) runs as Winograd F(4×4, 3×3) on
//     the lattice's dilation² undilated sublattices, where this CPU's
//     oneDNN has the kernels (AVX-512), unless DNNLOptions.Direct: 1.3–1.6×
//     faster steps on a Zen 4, rounding a few times the direct kernels'
//     (dnnl.CircOptions.Winograd, docs/performance.md).

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

// ConvAlgorithms are the allowed values of [model] conv_algorithm on the
// oneDNN path: "auto" runs every float32 convolution that fits
// (dnnl.WinogradFits: 3×3, channels multiples of 16, the lattice side a
// multiple of the dilation; the paper's 64 → 64 one) as Winograd where
// this CPU's oneDNN has the kernels (AVX-512), the others direct;
// "direct" runs them all direct.
var ConvAlgorithms = []string{"auto", "direct"}

// DNNLOptions are the choices of the OneDNN engine; the zero value is
// float32 with Winograd where it fits.
type DNNLOptions struct {
	// BF16 rounds the convolutions' inputs and weights to bfloat16
	// (conv_precision = "bf16"); bf16 convolutions run direct.
	BF16 bool
	// Direct keeps every convolution on oneDNN's direct kernels
	// (conv_algorithm = "direct"); otherwise those that fit run as
	// Winograd F(4×4, 3×3) on the dilation² sublattices
	// (dnnl.CircOptions.Winograd), 1.8–2.1× faster with rounding errors a
	// few times the direct kernels' (docs/performance.md).
	Direct bool
}

// WinogradConv reports whether the OneDNN engine with options o runs
// convolution j of a's conditioner as Winograd where the CPU has the
// kernels: float32, not direct, and the shape fits (dnnl.WinogradFits;
// the first convolution, channel-major, and the last, at the active
// sites, never do).
func WinogradConv(a Arch, o DNNLOptions, j int) bool {
	ch := a.Channels()
	if o.BF16 || o.Direct || j == 0 || j >= len(ch)-2 {
		return false
	}
	s := dnnl.CircShape{N: 1, Cin: ch[j], Cout: ch[j+1], L: a.L, K: a.KernelSize, Dilation: a.Dilation[j]}
	return dnnl.WinogradFits(s, dnnl.CircOptions{Input: dnnl.NHWC})
}

// DNNLOptionsFor returns the engine options of the configuration keys
// conv_precision and conv_algorithm (values checked by the caller).
func DNNLOptionsFor(convPrecision, convAlgorithm string) DNNLOptions {
	return DNNLOptions{BF16: convPrecision == "bf16", Direct: convAlgorithm == "direct"}
}

// dnnlConditioner holds the oneDNN primitives of a flow's conditioners:
// one per convolution index and batch size (every layer has the same
// shapes; the weights are passed per call).
type dnnlConditioner[T Float] struct {
	opt           DNNLOptions
	requireNative bool // refuse bf16 that oneDNN would emulate
	threads       int
	convs         map[dnnlKey]*dnnl.CircConv

	// The last convolution at the active sites, one per batch size, and
	// its weights permuted to the gathered columns' order [Cout][K²·Cin]
	// (column t·Cin + ci for tap t, channel ci) with their gradient.
	sitesConvs map[int]*dnnl.SitesConv
	wp, gwp    []float32
}

type dnnlKey struct{ j, B int }

// maxDNNLShapes bounds the cached primitives; beyond it the cache is
// emptied (a flow sees a few micro-batch sizes, not many).
const maxDNNLShapes = 16

// OneDNN returns the host engine whose conditioners run through oneDNN,
// with bf16 inputs and weights of the convolutions when o.BF16 (see the
// comment at the top of conv_dnnl.go) and Winograd where it fits unless
// o.Direct, the rest on be. Only float32 flows
// on the CPU backend can; NewFlowOn's error says why not, or that this
// CPU's oneDNN cannot build the primitives. bf16 is refused (ErrBF16Slow)
// where oneDNN would emulate it (NativeBF16): there it runs at a fraction
// of float32's rate. Results equal OpenBLAS's to float32 rounding of the
// sums (bf16: to bf16 rounding of the inputs).
func OneDNN[T Float](be Backend, o DNNLOptions) Engine[T] { return oneDNN[T](be, o, true) }

// oneDNN is OneDNN; requireNative false accepts bf16 on any CPU where
// oneDNN builds it, emulated or not (the numerics tests, which need bf16
// arithmetic, not its speed).
func oneDNN[T Float](be Backend, o DNNLOptions, requireNative bool) Engine[T] {
	return &hostEngine[T]{be: be, cond: &dnnlConditioner[T]{opt: o, requireNative: requireNative}}
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
	if d.opt.BF16 {
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
	d.threads, d.convs, d.sitesConvs = e.be.Workers(), map[dnnlKey]*dnnl.CircConv{}, map[int]*dnnl.SitesConv{}
	f := e.f
	for j := range f.layers[0].convs[:len(f.layers[0].convs)-1] {
		cv, err := d.get(f, j, 1)
		if err != nil {
			if d.opt.BF16 {
				return fmt.Errorf("nf: %w (here: %v)", ErrBF16Slow, err)
			}
			return fmt.Errorf("nf: %w", err)
		}
		if fwd, _, _ := cv.Impl(); d.opt.BF16 && d.requireNative && !NativeBF16(fwd) {
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
	case d.opt.BF16:
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

// DNNLAlgorithm says how the conditioners' convolutions run on oneDNN:
// "winograd" when one of them runs Winograd (DNNLOptions), "direct"
// when none does, "" without oneDNN.
func (f *Flow[T]) DNNLAlgorithm() string {
	d := f.dnnl()
	if d == nil {
		return ""
	}
	for j := range f.layers[0].convs[:len(f.layers[0].convs)-1] {
		if cv, err := d.get(f, j, 1); err == nil && cv.Winograd() {
			return "winograd"
		}
	}
	return "direct"
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
		return "none (the only convolution runs at the active sites, a oneDNN matrix product)"
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
	opt := dnnl.CircOptions{BF16: d.opt.BF16, Backward: true, Threads: d.threads, Input: dnnl.NHWC}
	if j == 0 {
		opt.Input = dnnl.ChannelMajor
	} else {
		opt.InputLeakyReLUSlope = float32(f.Arch.LeakyReLUSlope) // the input is the previous convolution's activation
	}
	opt.LeakyReLUSlope = float32(f.Arch.LeakyReLUSlope) // every convolution but the last, which is not a CircConv
	s := dnnl.CircShape{N: B, Cin: cv.Cin, Cout: cv.Cout, L: f.Arch.L, K: cv.K, Dilation: cv.Dil}
	if opt.Winograd = WinogradConv(f.Arch, d.opt, j); opt.Winograd {
		c, err := dnnl.NewCircConv(s, opt)
		if !errors.Is(err, dnnl.ErrUnimplemented) {
			return c, err
		}
		opt.Winograd = false // no Winograd kernels on this CPU: direct
	}
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

func (d *dnnlConditioner[T]) do(f func()) { dnnl.Do(f) }

func (d *dnnlConditioner[T]) close() {
	for _, cv := range d.convs {
		cv.Close()
	}
	clear(d.convs)
	for _, sc := range d.sitesConvs {
		sc.Close()
	}
	clear(d.sitesConvs)
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
		sc, taps := d.sites(e, c, cv, B)
		out := as32(rec.acts[j+1])[:cv.Cout*B*f.nA]
		mustDNNL(sc.Forward(out, as32(rec.acts[j]), taps, d.wp, b))
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

// sites returns the last convolution cv of layer c at the active sites
// for B configurations and the source site of each of its taps
// (Workspace.siteTaps: taps[t·nA + i], valid until the next siteTaps),
// with d.wp holding cv's weights in the columns' order.
func (d *dnnlConditioner[T]) sites(e *hostEngine[T], c *coupling[T], cv *Conv2D[T], B int) (*dnnl.SitesConv, []int32) {
	f := e.f
	sc, ok := d.sitesConvs[B]
	if !ok {
		if len(d.sitesConvs) >= maxDNNLShapes {
			d.close()
		}
		s := dnnl.SitesShape{N: B, V: f.Arch.L * f.Arch.L, NA: f.nA, Cin: cv.Cin, Cout: cv.Cout, Taps: cv.K * cv.K}
		var err error
		if sc, err = dnnl.NewSitesConv(s, dnnl.SitesOptions{BF16: d.opt.BF16, Threads: d.threads}); err != nil {
			panic(fmt.Sprintf("nf: oneDNN convolution at the active sites for %d configurations: %v", B, err))
		}
		d.sitesConvs[B] = sc
	}
	e.ws.siteTaps(cv, c.masks.Active, f.Arch.L)
	kk := cv.K * cv.K
	CKK := cv.Cin * kk
	d.wp = grow(d.wp, cv.Cout*CKK)
	w := as32(cv.Weight)
	for co := range cv.Cout {
		for ci := range cv.Cin {
			for t := range kk {
				d.wp[co*CKK+t*cv.Cin+ci] = w[(co*cv.Cin+ci)*kk+t]
			}
		}
	}
	return sc, e.ws.taps
}

// lastBackward is the backward pass of the last convolution cv of layer c
// at the active sites: from gout (compact [Cout][B·nA]) and its NHWC input
// in it adds the weight and bias gradients and writes gin (NHWC), through
// the derivative of the previous convolution's LeakyReLU when there is
// one.
func (d *dnnlConditioner[T]) lastBackward(e *hostEngine[T], c *coupling[T], cv *Conv2D[T], in []T, gin, gout []float32, B int) {
	f := e.f
	var slope float32
	if len(c.convs) > 1 { // the input is the previous convolution's activation
		slope = float32(f.Arch.LeakyReLUSlope)
	}
	sc, taps := d.sites(e, c, cv, B)
	d.gwp = grow(d.gwp, len(d.wp))
	mustDNNL(sc.Backward(gin, gout, as32(in), taps, d.wp, d.gwp, as32(cv.GradBias), slope))
	kk := cv.K * cv.K
	CKK := cv.Cin * kk
	gw := as32(cv.GradWeight)
	for co := range cv.Cout {
		for ci := range cv.Cin {
			for t := range kk {
				gw[(co*cv.Cin+ci)*kk+t] += d.gwp[co*CKK+t*cv.Cin+ci]
			}
		}
	}
}
