package nf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"unsafe"
)

// Flow is the gauge-equivariant normalizing flow of the paper (Appendix A):
// Arch.NLayers coupling layers, layer k with the masks NewMasks(L, k) and its
// own conditioner of len(Arch.Hidden)+1 circular-padded convolutions.
//
// Params holds every weight and bias, declared per layer k and convolution J
// as "layers/KK/convJ/weight" (C_out, C_in, K, K) followed by
// "layers/KK/convJ/bias" (C_out) — the layout of /model in model files.
//
// A Flow owns reusable scratch buffers and is not safe for concurrent use;
// use one Flow per goroutine (they may share nothing but the Backend).
// Steady-state calls do not allocate: scratch grows to the largest
// micro-batch seen.
type Flow[T Float] struct {
	Arch   Arch
	Params *ParamSet[T]

	be     Backend
	layers []coupling[T]
	ch     []int // Arch.Channels(), cached (it allocates)
	ws     Workspace[T]

	// Scratch, grown to the largest micro-batch B (N = B·V).
	rec    []T    // one layer's record when no tape is kept
	loops  []T    // 2N: loops of the incoming links
	pbar   []T    // N: gradient of the plaquettes of a layer's input
	lbar   []T    // 2N: gradient of its loops
	gbuf   [2][]T // ping-pong gradients of the conditioner, maxC·N each
	glinks []T    // 2N: link gradient when the caller wants none back
	ginp   []T    // view into gbuf: gradient of the conditioner input
	acts   [][]T  // views of a record's activations (reused)

	// Per-configuration kernels, bound once, and their arguments.
	k                                     kernelArgs[T]
	inputsFn, fwdFn, revFn                func(lo, hi int)
	splineBwdFwdFn, splineBwdRevFn, inBwd func(lo, hi int)
}

// LogPrior returns the log-density of the uniform prior on the 2V link
// angles of an L×L lattice: −2V log 2π.
func LogPrior(L int) float64 { return -2 * float64(L*L) * math.Log(2*math.Pi) }

// ParamName returns the ParamSet name of parameter kind ("weight" or "bias")
// of convolution j in layer k: "layers/KK/convJ/kind".
func ParamName(k, j int, kind string) string {
	return fmt.Sprintf("layers/%02d/conv%d/%s", k, j, kind)
}

// NewFlow validates the architecture, declares and allocates the parameters
// (all zero; see Init) and builds the layers on the backend be.
func NewFlow[T Float](a Arch, be Backend) (*Flow[T], error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("nf: new flow: %w", err)
	}
	if a.NKnots-1 > maxBins {
		return nil, fmt.Errorf("nf: new flow: n_knots = %d: at most %d supported", a.NKnots, maxBins+1)
	}
	if a.LeakyReLUSlope <= 0 {
		return nil, fmt.Errorf("nf: new flow: leaky_relu_slope = %v: must be positive (the backward pass reads the sign from the output)", a.LeakyReLUSlope)
	}
	ch := a.Channels()
	ps := &ParamSet[T]{}
	for k := 0; k < a.NLayers; k++ {
		for j := 0; j+1 < len(ch); j++ {
			ps.Declare(ParamName(k, j, "weight"), ch[j+1], ch[j], a.KernelSize, a.KernelSize)
			ps.Declare(ParamName(k, j, "bias"), ch[j+1])
		}
	}
	ps.Alloc()
	f := &Flow[T]{Arch: a, Params: ps, be: be, layers: make([]coupling[T], a.NLayers)}
	var masks [MaskPeriod]*Masks
	for k := range f.layers {
		if masks[k%MaskPeriod] == nil {
			masks[k%MaskPeriod] = NewMasks(a.L, k)
		}
		c := &f.layers[k]
		c.masks = masks[k%MaskPeriod]
		c.convs = make([]Conv2D[T], len(ch)-1)
		for j := range c.convs {
			cv := &c.convs[j]
			cv.Cin, cv.Cout, cv.K, cv.Dil = ch[j], ch[j+1], a.KernelSize, a.Dilation[j]
			cv.Weight, cv.GradWeight = ps.View(ParamName(k, j, "weight"))
			cv.Bias, cv.GradBias = ps.View(ParamName(k, j, "bias"))
		}
	}
	f.ch = ch
	f.acts = make([][]T, len(ch))
	f.inputsFn = f.inputsRange
	f.fwdFn = f.couplingForwardRange
	f.revFn = f.couplingReverseRange
	f.splineBwdFwdFn = f.splineBackwardForwardRange
	f.splineBwdRevFn = f.splineBackwardReverseRange
	f.inBwd = f.inputsBackwardRange
	return f, nil
}

// Init sets every weight and bias with PyTorch's default initialization of
// nn.Conv2d (uniform in ±1/√fan_in, fan_in = C_in·K·K), layer by layer and
// convolution by convolution, weights before biases.
func (f *Flow[T]) Init(rng *rand.Rand) {
	for k := range f.layers {
		for j := range f.layers[k].convs {
			cv := &f.layers[k].convs[j]
			InitConvUniform(cv.Weight, cv.Bias, cv.Cin*cv.K*cv.K, rng)
		}
	}
}

// Backend returns the backend the flow computes on.
func (f *Flow[T]) Backend() Backend { return f.be }

// recordSize returns the number of elements of one layer's record per
// configuration: all conditioner activations plus the spline argument, times V.
func (f *Flow[T]) recordSize() int {
	c := 1
	for _, n := range f.ch {
		c += n
	}
	return c * f.Arch.L * f.Arch.L
}

// view slices one layer's record for B configurations out of block.
func (f *Flow[T]) view(block []T, B int) layerRecord[T] {
	N := B * f.Arch.L * f.Arch.L
	off := 0
	for j, c := range f.ch {
		f.acts[j] = block[off : off+c*N : off+c*N]
		off += c * N
	}
	return layerRecord[T]{acts: f.acts, x: block[off : off+N : off+N]}
}

// grow makes the scratch fit micro-batches of B configurations.
func (f *Flow[T]) grow(B int) {
	N := B * f.Arch.L * f.Arch.L
	if len(f.loops) >= 2*N {
		return
	}
	maxC := 0
	for _, c := range f.ch {
		maxC = max(maxC, c)
	}
	f.rec = make([]T, B*f.recordSize())
	f.loops = make([]T, 2*N)
	f.pbar = make([]T, N)
	f.lbar = make([]T, 2*N)
	f.gbuf = [2][]T{make([]T, maxC*N), make([]T, maxC*N)}
	f.glinks = make([]T, 2*N)
}

// Tape keeps what the backward pass through one Forward or Reverse call
// needs, for a micro-batch of up to B configurations: per layer the
// conditioner input, every convolution's output after its activation, and
// the spline argument — (Σ Arch.Channels() + 1)·V elements of T per
// configuration and layer (see BytesPerConfigLayer). A tape records one call
// at a time; recording again overwrites it.
type Tape[T Float] struct {
	cap, B  int
	dir     int // 0: empty, 1: recorded Forward, 2: recorded Reverse
	perCfg  int // elements of one layer's record per configuration
	nLayers int
	data    []T // layer k's record at [k·cap·perCfg, (k+1)·cap·perCfg)
}

const (
	tapeEmpty = iota
	tapeForward
	tapeReverse
)

// NewTape returns a tape for micro-batches of up to B configurations.
func (f *Flow[T]) NewTape(B int) *Tape[T] {
	if B < 1 {
		panic(fmt.Sprintf("nf: NewTape(%d): need B ≥ 1", B))
	}
	per := f.recordSize()
	return &Tape[T]{cap: B, perCfg: per, nLayers: f.Arch.NLayers, data: make([]T, B*per*f.Arch.NLayers)}
}

// BytesPerConfigLayer returns the bytes a tape keeps per configuration and
// layer.
func (t *Tape[T]) BytesPerConfigLayer() int {
	return t.perCfg * int(unsafe.Sizeof(T(0)))
}

// Bytes returns the total size of the tape's storage in bytes.
func (t *Tape[T]) Bytes() int { return t.BytesPerConfigLayer() * t.cap * t.nLayers }

// layerRecord returns the record of layer k, on the tape or (tape nil) in
// the flow's scratch.
func (f *Flow[T]) layerRecord(tape *Tape[T], k, B int) layerRecord[T] {
	if tape == nil {
		return f.view(f.rec, B)
	}
	n := tape.cap * tape.perCfg
	return f.view(tape.data[k*n:(k+1)*n], B)
}

// checkCall panics unless the slices fit B configurations (programming errors).
func (f *Flow[T]) checkCall(name string, B int, tape *Tape[T], links ...[]T) {
	V := f.Arch.L * f.Arch.L
	if B < 1 {
		panic(fmt.Sprintf("nf: Flow.%s: B = %d", name, B))
	}
	for _, l := range links {
		if l != nil && len(l) != B*2*V {
			panic(fmt.Sprintf("nf: Flow.%s: links of length %d, want B·2V = %d", name, len(l), B*2*V))
		}
	}
	if tape != nil && (B > tape.cap || tape.nLayers != f.Arch.NLayers || tape.perCfg != f.recordSize()) {
		panic(fmt.Sprintf("nf: Flow.%s: tape for B ≤ %d of another flow or too small for B = %d", name, tape.cap, B))
	}
}

// Forward applies the flow to B prior configurations z (len B·2V, angles in
// [0, 2π)) and writes x = f(z) (len B·2V; may be z itself) and logJ[b] =
// Σ_layers Σ_active log g' (len B, float64), so that log q(x) = LogPrior −
// logJ. With a non-nil tape it records what BackwardForward needs; with a
// nil tape it keeps nothing.
func (f *Flow[T]) Forward(x, z []T, logJ []float64, B int, tape *Tape[T]) {
	f.checkCall("Forward", B, tape, x, z)
	if len(logJ) != B {
		panic(fmt.Sprintf("nf: Flow.Forward: len(logJ) = %d, want %d", len(logJ), B))
	}
	f.grow(B)
	copy(x, z)
	clear(logJ)
	for k := range f.layers {
		f.layerForward(k, x, logJ, B, tape, false)
	}
	if tape != nil {
		tape.B, tape.dir = B, tapeForward
	}
}

// Reverse applies the inverse flow to B configurations x and writes z =
// f⁻¹(x) (may be x itself) and logJ[b] = Σ_layers −log g'(preimage), so that
// log q(x) = LogPrior + logJ. With a non-nil tape it records what
// BackwardReverse needs.
func (f *Flow[T]) Reverse(z, x []T, logJ []float64, B int, tape *Tape[T]) {
	f.checkCall("Reverse", B, tape, z, x)
	if len(logJ) != B {
		panic(fmt.Sprintf("nf: Flow.Reverse: len(logJ) = %d, want %d", len(logJ), B))
	}
	f.grow(B)
	copy(z, x)
	clear(logJ)
	for k := len(f.layers) - 1; k >= 0; k-- {
		f.layerForward(k, z, logJ, B, tape, true)
	}
	if tape != nil {
		tape.B, tape.dir = B, tapeReverse
	}
}

// layerForward applies layer k (reverse: its inverse) to links in place.
func (f *Flow[T]) layerForward(k int, links []T, logJ []float64, B int, tape *Tape[T], reverse bool) {
	V := f.Arch.L * f.Arch.L
	c := &f.layers[k]
	rec := f.layerRecord(tape, k, B)
	f.k = kernelArgs[T]{layer: c, rec: rec, links: links, logJ: logJ, B: B, N: B * V, V: V}
	f.be.ParallelFor(B, f.inputsFn)
	f.conditionerForward(c, rec, B)
	if reverse {
		f.be.ParallelFor(B, f.revFn)
	} else {
		f.be.ParallelFor(B, f.fwdFn)
	}
	f.k = kernelArgs[T]{}
}

// BackwardForward is the vector–Jacobian product of the Forward call the
// tape recorded. Given gx = ∂L/∂x (len B·2V) and glogJ = ∂L/∂logJ (len B;
// nil means zero), it ADDS ∂L/∂θ into f.Params.Grad and WRITES ∂L/∂z into gz
// (len B·2V; nil: not returned). gz may be gx itself; gx is otherwise not
// modified.
func (f *Flow[T]) BackwardForward(tape *Tape[T], gz, gx []T, glogJ []float64) {
	if tape == nil || tape.dir != tapeForward {
		panic("nf: Flow.BackwardForward: the tape holds no Forward call")
	}
	g := f.backwardStart("BackwardForward", tape, gz, gx, glogJ)
	for k := len(f.layers) - 1; k >= 0; k-- {
		f.layerBackward(k, g, glogJ, tape, false)
	}
}

// BackwardReverse is the vector–Jacobian product of the Reverse call the
// tape recorded. Given gz = ∂L/∂z and glogJ = ∂L/∂logJ (nil: zero), it ADDS
// ∂L/∂θ into f.Params.Grad and WRITES ∂L/∂x into gx (nil: not returned). gx
// may be gz itself; gz is otherwise not modified.
func (f *Flow[T]) BackwardReverse(tape *Tape[T], gx, gz []T, glogJ []float64) {
	if tape == nil || tape.dir != tapeReverse {
		panic("nf: Flow.BackwardReverse: the tape holds no Reverse call")
	}
	g := f.backwardStart("BackwardReverse", tape, gx, gz, glogJ)
	for k := range f.layers {
		f.layerBackward(k, g, glogJ, tape, true)
	}
}

// backwardStart checks the arguments and returns the buffer that carries the
// link gradient through the layers: dst if given, else scratch.
func (f *Flow[T]) backwardStart(name string, tape *Tape[T], dst, src []T, glogJ []float64) []T {
	B := tape.B
	f.checkCall(name, B, tape, dst, src)
	if src == nil {
		panic(fmt.Sprintf("nf: Flow.%s: nil upstream link gradient", name))
	}
	if glogJ != nil && len(glogJ) != B {
		panic(fmt.Sprintf("nf: Flow.%s: len(glogJ) = %d, want %d", name, len(glogJ), B))
	}
	f.grow(B)
	g := dst
	if g == nil {
		g = f.glinks[:len(src)]
	}
	copy(g, src)
	return g
}

// layerBackward turns g from the gradient of layer k's output links into the
// gradient of its input links (reverse: of the inverse layer), adding the
// parameter gradients.
func (f *Flow[T]) layerBackward(k int, g []T, glogJ []float64, tape *Tape[T], reverse bool) {
	B := tape.B
	V := f.Arch.L * f.Arch.L
	c := &f.layers[k]
	rec := f.layerRecord(tape, k, B)
	f.k = kernelArgs[T]{layer: c, rec: rec, links: g, glogJ: glogJ, B: B, N: B * V, V: V}
	if reverse {
		f.be.ParallelFor(B, f.splineBwdRevFn)
	} else {
		f.be.ParallelFor(B, f.splineBwdFwdFn)
	}
	f.conditionerBackward(c, rec, B)
	f.be.ParallelFor(B, f.inBwd)
	f.k = kernelArgs[T]{}
	f.ginp = nil
}
