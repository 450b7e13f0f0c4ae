package nf

import (
	"errors"
	"fmt"
	"strings"

	"nfschwinger/internal/dnnl"
)

// The conditioner through oneDNN (issue 15). A float32 flow on the CPU may
// run its conditioners' convolutions as oneDNN primitives instead of
// im2col + OpenBLAS (Flow.UseDNNL). What changes:
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
//     post-op with a negative slope); its backward stays elementwise on the
//     recorded outputs.
//   - The last convolution runs at every site into a scratch NHWC output
//     and its active sites are gathered into the compact raw spline
//     parameters (its gradient scattered back, zero elsewhere).
//   - With bf16 the convolutions' inputs (wrapped activations, weights,
//     output gradients) are rounded to bfloat16; accumulation, outputs and
//     every gradient stay float32.

// ConvPrecisions are the allowed values of [model] conv_precision: the
// precision of the convolutions' inputs and weights on the oneDNN path.
var ConvPrecisions = []string{"float32", "bf16"}

// dnnlConditioner holds the oneDNN primitives of a flow's conditioners:
// one per convolution index and batch size (every layer has the same
// shapes; the weights are passed per call).
type dnnlConditioner[T Float] struct {
	bf16    bool
	threads int
	convs   map[dnnlKey]*dnnl.CircConv
	full    []float32 // the last convolution's output or its gradient, NHWC [B·V·Cout]
}

type dnnlKey struct{ j, B int }

// maxDNNLShapes bounds the cached primitives; beyond it the cache is
// emptied (a flow sees a few micro-batch sizes, not many).
const maxDNNLShapes = 16

// UseDNNL makes the flow's conditioners run through oneDNN, with bf16
// inputs and weights of the convolutions when bf16 (see the comment at the
// top of conv_dnnl.go). Only float32 flows on the CPU backend can; the
// error says why not, or that this CPU's oneDNN cannot build the
// primitives. bf16 is refused (ErrBF16Slow) unless oneDNN runs it on AMX:
// measured with oneDNN 2.6 (README, Performance), it is slower than
// float32 everywhere else. Call it before the first pass (the tape's
// hidden activations change layout). Results equal the default path's to
// float32 rounding of the sums (bf16: to bf16 rounding of the inputs).
func (f *Flow[T]) UseDNNL(bf16 bool) error { return f.useDNNL(bf16, true) }

// ErrBF16Slow is returned by UseDNNL for bf16 on a CPU where oneDNN does
// not run bf16 convolutions on AMX tiles.
var ErrBF16Slow = errors.New("bf16 convolutions need a CPU with AMX (Intel Sapphire Rapids or later); with oneDNN 2.6 they are slower than float32 on AVX512-BF16 alone (0.6×) and emulated on plain AVX-512 (0.2×), and AVX2 has none")

// useDNNL is UseDNNL; requireAMX false accepts bf16 on any CPU where
// oneDNN builds it (the numerics tests, which need bf16 arithmetic, not
// its speed).
func (f *Flow[T]) useDNNL(bf16, requireAMX bool) error {
	var zero T
	if _, ok := any(zero).(float32); !ok {
		return fmt.Errorf("nf: oneDNN convolutions need precision float32")
	}
	if _, ok := f.be.(*cpuBackend); !ok {
		return fmt.Errorf("nf: oneDNN convolutions need the CPU backend, not %s", f.be.Name())
	}
	d := &dnnlConditioner[T]{bf16: bf16, threads: f.be.Workers(), convs: map[dnnlKey]*dnnl.CircConv{}}
	// Create the primitives for one configuration now: an unsupported
	// precision or shape fails here, not in the middle of a pass.
	for j := range f.layers[0].convs {
		cv, err := d.get(f, j, 1)
		if err != nil {
			d.close()
			if bf16 {
				return fmt.Errorf("nf: %w (here: %v)", ErrBF16Slow, err)
			}
			return fmt.Errorf("nf: %w", err)
		}
		if fwd, _, _ := cv.Impl(); bf16 && requireAMX && !strings.Contains(fwd, "amx") {
			d.close()
			return fmt.Errorf("nf: %w (here oneDNN would run them as %s)", ErrBF16Slow, fwd)
		}
	}
	if f.dnn != nil {
		f.dnn.close()
	}
	f.dnn = d
	return nil
}

// DNNL reports whether the conditioners run through oneDNN and in which
// precision ("float32", "bf16"; "" when they do not).
func (f *Flow[T]) DNNL() string {
	switch {
	case f.dnn == nil:
		return ""
	case f.dnn.bf16:
		return "bf16"
	}
	return "float32"
}

// DNNLImpl names oneDNN's implementations of the first convolution's
// primitives (forward / backward data / backward weights), "" without
// oneDNN: what this CPU runs.
func (f *Flow[T]) DNNLImpl() string {
	if f.dnn == nil {
		return ""
	}
	cv, err := f.dnn.get(f, len(f.layers[0].convs)/2, 1)
	if err != nil {
		return err.Error()
	}
	a, b, c := cv.Impl()
	return a + " / " + b + " / " + c
}

// DNNLBytes returns the memory the oneDNN primitives own now (padded
// buffers, gradients, scratchpads), 0 without oneDNN.
func (f *Flow[T]) DNNLBytes() int {
	if f.dnn == nil {
		return 0
	}
	n := 4 * cap(f.dnn.full)
	for _, cv := range f.dnn.convs {
		n += cv.Bytes()
	}
	return n
}

// create builds the primitives of convolution j for B configurations.
func (d *dnnlConditioner[T]) create(f *Flow[T], j, B int) (*dnnl.CircConv, error) {
	cv := &f.layers[0].convs[j]
	opt := dnnl.CircOptions{BF16: d.bf16, Backward: true, Threads: d.threads, Input: dnnl.NHWC}
	if j == 0 {
		opt.Input = dnnl.ChannelMajor
	}
	if j < len(f.layers[0].convs)-1 {
		opt.LeakyReLUSlope = float32(f.Arch.LeakyReLUSlope)
	}
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
// checked by UseDNNL, so a failure here is an exhausted memory or a broken
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

// dnnlForward is conditionerForward through oneDNN.
func (f *Flow[T]) dnnlForward(c *coupling[T], rec layerRecord[T], B, nConv int) {
	d := f.dnn
	V := f.Arch.L * f.Arch.L
	last := len(c.convs) - 1
	for j := range c.convs[:nConv] {
		cv := &c.convs[j]
		p := d.must(f, j, B)
		w, b := as32(cv.Weight), as32(cv.Bias)
		if j < last {
			mustDNNL(p.Forward(as32(rec.acts[j+1]), as32(rec.acts[j]), w, b))
			continue
		}
		d.full = grow(d.full, B*V*cv.Cout)
		mustDNNL(p.Forward(d.full, as32(rec.acts[j]), w, b))
		// Gather the active sites into the compact [Cout][B·nA].
		out := as32(rec.acts[j+1])
		M := B * f.nA
		for bi := range B {
			for i, x := range c.masks.Active {
				src := d.full[(bi*V+x)*cv.Cout:][:cv.Cout]
				col := bi*f.nA + i
				for co, v := range src {
					out[co*M+col] = v
				}
			}
		}
	}
}

// dnnlBackward is conditionerBackward through oneDNN: the gradient of the
// raw spline parameters (f.gbuf[0], compact at the active sites) back
// through the convolutions, the parameter gradients added, the gradient of
// the channel-major conditioner input left in f.ginp.
func (f *Flow[T]) dnnlBackward(c *coupling[T], rec layerRecord[T], B int) {
	d := f.dnn
	V := f.Arch.L * f.Arch.L
	N := B * V
	last := len(c.convs) - 1
	cur := 0 // f.gbuf[cur] holds the gradient of rec.acts[j+1]
	for j := last; j >= 0; j-- {
		cv := &c.convs[j]
		p := d.must(f, j, B)
		gin := as32(f.gbuf[1-cur][:cv.Cin*N])
		gout := as32(f.gbuf[cur][:cv.Cout*N])
		if j == last {
			// Scatter the compact gradient into the NHWC output gradient.
			d.full = grow(d.full, N*cv.Cout)
			clear(d.full)
			M := B * f.nA
			for bi := range B {
				for i, x := range c.masks.Active {
					dst := d.full[(bi*V+x)*cv.Cout:][:cv.Cout]
					col := bi*f.nA + i
					for co := range dst {
						dst[co] = gout[co*M+col]
					}
				}
			}
			gout = d.full
		}
		mustDNNL(p.Backward(gin, gout, as32(rec.acts[j]), as32(cv.Weight), as32(cv.GradWeight), as32(cv.GradBias)))
		if j > 0 {
			f.ws.LeakyReLUBackward(f.be, f.gbuf[1-cur][:cv.Cin*N], rec.acts[j], T(f.Arch.LeakyReLUSlope))
		}
		cur = 1 - cur
	}
	f.ginp = f.gbuf[cur][:InChannels*N]
}
