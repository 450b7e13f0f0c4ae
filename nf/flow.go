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

	be        Backend
	layers    []coupling[T]
	ch        []int // Arch.Channels(), cached (it allocates)
	ws        Workspace[T]
	recompute bool                // tapes keep the reduced record (see SetRecompute)
	dnn       *dnnlConditioner[T] // the conditioners through oneDNN (UseDNNL); nil: im2col + Backend
	dev       *deviceFlow[T]      // the whole flow on a CUDA device (UseDevice); nil: on the host
	nA        int                 // active sites per layer (the same in every layer: V/4)

	// Scratch, grown to the largest micro-batch B (N = B·V).
	rec    []T    // one layer's record when no tape is kept
	loops  []T    // 2N: loops of the incoming links
	pbar   []T    // N: gradient of the plaquettes of a layer's input
	lbar   []T    // 2N: gradient of its loops
	gbuf   [2][]T // ping-pong gradients of the conditioner, maxC·N each
	glinks []T    // 2N: link gradient when the caller wants none back
	ginp   []T    // view into gbuf: gradient of the conditioner input
	acts   [][]T  // views of a record's activations (reused)

	// Per-configuration kernels, bound once, and the arguments of the
	// layer in flight, which the kernels read (set before each
	// ParallelFor over a layer, cleared after).
	layerArgs                             kernelArgs[T]
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
	f.nA = len(f.layers[0].masks.Active)
	for k := range f.layers {
		if len(f.layers[k].masks.Active) != f.nA {
			panic("nf: NewFlow: layers with different numbers of active sites")
		}
	}
	f.recompute = DefaultRecompute
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

// DefaultRecompute is the tape mode of a new Flow (see SetRecompute).
const DefaultRecompute = true

// SetRecompute selects what a tape keeps of each layer. With on = false
// ("store everything") it keeps the conditioner input, every convolution's
// output after its activation and the spline argument: (Σ Arch.Channels() +
// 1)·V elements per configuration and layer (StoreAllBytesPerConfigLayer).
// With on = true it keeps only the layer boundary (the 2V links on the
// forward side of the layer), the last hidden activation (the input of the
// last convolution), and the raw spline parameters and the spline argument
// (the forward input plaquette, the reverse pass's preimage) at the V/4
// active sites;
// the backward pass recomputes the conditioner input and the spline
// argument from the links and the earlier hidden activations by running
// the convolutions before the last two again (for the paper's architecture
// only the first, 6 → 64 channels, ≈6% of the conditioner's forward flops).
// The mode applies to every later recording; a tape made for the other
// mode is laid out anew (one allocation) at its next recording.
func (f *Flow[T]) SetRecompute(on bool) { f.recompute = on }

// Recompute reports the tape mode (see SetRecompute).
func (f *Flow[T]) Recompute() bool { return f.recompute }

// keptHidden returns the channels of the hidden activation a recompute-mode
// tape keeps (the input of the last convolution), 0 without hidden layers.
func (f *Flow[T]) keptHidden() int {
	if len(f.ch) < 3 {
		return 0
	}
	return f.ch[len(f.ch)-2]
}

// recordSize returns the number of elements of one layer's record per
// configuration: in store-everything mode all conditioner activations plus
// the spline argument, times V; in recompute mode the layer's 2V links, the
// kept hidden activation, and the raw spline parameters and the spline
// argument at the active sites.
func (f *Flow[T]) recordSize(recompute bool) int {
	return f.Arch.tapeElems(recompute, f.nA)
}

// StoreAllBytesPerConfigLayer returns the bytes per configuration and layer
// that a tape storing every activation keeps (the store-everything mode of
// SetRecompute): conditioner input, every convolution's output and the
// spline argument. A framework that also kept pre-activations and the
// spline's intermediates would need more.
func (f *Flow[T]) StoreAllBytesPerConfigLayer() int {
	return f.recordSize(false) * int(unsafe.Sizeof(T(0)))
}

// view slices one layer's record for B configurations out of block. The
// last activation (the raw spline parameters) is computed at the active
// sites only: its view is the compact [C][B·nA] at the start of its slot
// (the slot keeps the full [C][B·V] size, so that the store-everything
// record stays what storing every activation costs).
func (f *Flow[T]) view(block []T, B int) layerRecord[T] {
	N := B * f.Arch.L * f.Arch.L
	off := 0
	for j, c := range f.ch {
		n := c * N
		if j == len(f.ch)-1 {
			n = c * B * f.nA
		}
		f.acts[j] = block[off : off+n : off+n]
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
	f.rec = make([]T, B*f.recordSize(false))
	f.loops = make([]T, 2*N)
	f.pbar = make([]T, N)
	f.lbar = make([]T, 2*N)
	f.gbuf = [2][]T{make([]T, maxC*N), make([]T, maxC*N)}
	f.glinks = make([]T, 2*N)
}

// Tape keeps what the backward pass through one Forward or Reverse call
// needs, for a micro-batch of up to B configurations, per layer: in the
// store-everything mode the conditioner input, every convolution's output
// after its activation, and the spline argument; in the recompute mode (the
// default) the layer boundary links, the last hidden activation, and the raw
// spline parameters and spline argument at the active sites (see
// Flow.SetRecompute and BytesPerConfigLayer). A tape records one call at a time; recording again
// overwrites it.
type Tape[T Float] struct {
	cap, B    int
	dir       int  // 0: empty, 1: recorded Forward, 2: recorded Reverse
	recompute bool // layout of the records (Flow.SetRecompute)
	perCfg    int  // elements of one layer's record per configuration
	bufs      int  // buffers of one layer's record
	nLayers   int
	data      []T  // layer k's record at [k·cap·perCfg, (k+1)·cap·perCfg)
	device    bool // a handle on the device's tape (Flow.UseDevice): data is nil
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
	t := &Tape[T]{cap: B, nLayers: f.Arch.NLayers}
	if f.dev != nil {
		// A handle on the device's store-everything tape.
		if B > f.dev.g.MicroBatch() {
			panic(fmt.Sprintf("nf: NewTape(%d): the flow is on the device for micro-batches of up to %d", B, f.dev.g.MicroBatch()))
		}
		t.perCfg, t.bufs, t.device = f.recordSize(false), len(f.ch)+1, true
		return t
	}
	f.layout(t)
	return t
}

// layout lays the tape out for the flow's current mode, reallocating its
// storage when the size changes.
func (f *Flow[T]) layout(t *Tape[T]) {
	t.recompute = f.recompute
	t.perCfg = f.recordSize(t.recompute)
	t.bufs = len(f.ch) + 1
	if t.recompute {
		t.bufs = 2
		if f.keptHidden() > 0 {
			t.bufs++
		}
	}
	if n := t.cap * t.perCfg * t.nLayers; len(t.data) != n {
		t.data = make([]T, n)
	}
	t.dir = tapeEmpty
}

// BytesPerConfigLayer returns the bytes a tape keeps per configuration and
// layer.
func (t *Tape[T]) BytesPerConfigLayer() int {
	return t.perCfg * int(unsafe.Sizeof(T(0)))
}

// BytesPerConfig returns the bytes a tape keeps per configuration, all
// layers together.
func (t *Tape[T]) BytesPerConfig() int { return t.BytesPerConfigLayer() * t.nLayers }

// Bytes returns the total size of the tape's storage in bytes (for its
// capacity of configurations).
func (t *Tape[T]) Bytes() int { return t.BytesPerConfig() * t.cap }

// Buffers returns the number of distinct buffers the tape keeps for the
// backward pass (each of them B configurations wide): per layer 5 in the
// store-everything mode of the paper's architecture, 3 in the recompute mode.
func (t *Tape[T]) Buffers() int { return t.bufs * t.nLayers }

// Recompute reports the mode the tape is laid out for.
func (t *Tape[T]) Recompute() bool { return t.recompute }

// layerRecord returns the record of layer k: on the tape in the
// store-everything mode, else in the flow's scratch; in the recompute mode
// with a tape, the scratch record's last hidden activation is the tape's,
// and links and rawA are the tape's kept layer links and raw spline
// parameters plus spline argument at the active sites (nil otherwise).
func (f *Flow[T]) layerRecord(tape *Tape[T], k, B int) (rec layerRecord[T], links, rawA []T) {
	if tape == nil {
		return f.view(f.rec, B), nil, nil
	}
	n := tape.cap * tape.perCfg
	block := tape.data[k*n : (k+1)*n]
	if !tape.recompute {
		return f.view(block, B), nil, nil
	}
	rec = f.view(f.rec, B)
	V := f.Arch.L * f.Arch.L
	links = block[: 2*B*V : 2*B*V]
	off := 2 * B * V
	if h := f.keptHidden() * B * V; h > 0 {
		rec.acts[len(rec.acts)-2] = block[off : off+h : off+h]
		off += h
	}
	nr := (f.Arch.OutChannels() + 1) * B * f.nA
	rawA = block[off : off+nr : off+nr]
	// The last convolution writes the raw spline parameters straight into
	// the tape.
	nRaw := f.Arch.OutChannels() * B * f.nA
	rec.acts[len(rec.acts)-1] = rawA[:nRaw:nRaw]
	return rec, links, rawA
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
	if tape != nil && tape.device != (f.dev != nil) {
		panic(fmt.Sprintf("nf: Flow.%s: a tape made before the flow moved to or from the device", name))
	}
	if tape != nil && (B > tape.cap || tape.nLayers != f.Arch.NLayers || tape.perCfg != f.recordSize(tape.recompute)) {
		panic(fmt.Sprintf("nf: Flow.%s: tape for B ≤ %d of another flow or too small for B = %d", name, tape.cap, B))
	}
}

// Forward applies the flow to B prior configurations z (len B·2V, angles in
// [0, 2π)) and writes x = f(z) (len B·2V; may be z itself) and logJ[b] =
// Σ_layers Σ_active log g' (len B, float64), so that log q(x) = LogPrior −
// logJ. With a non-nil tape it records what BackwardForward and
// BackwardReverseFromForward need; with a nil tape it keeps nothing.
func (f *Flow[T]) Forward(x, z []T, logJ []float64, B int, tape *Tape[T]) {
	f.checkCall("Forward", B, tape, x, z)
	if len(logJ) != B {
		panic(fmt.Sprintf("nf: Flow.Forward: len(logJ) = %d, want %d", len(logJ), B))
	}
	if f.dev != nil {
		f.deviceRun(x, z, logJ, B, tape, false)
		return
	}
	f.grow(B)
	if tape != nil && tape.recompute != f.recompute {
		f.layout(tape)
	}
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
	if f.dev != nil {
		f.deviceRun(z, x, logJ, B, tape, true)
		return
	}
	f.grow(B)
	if tape != nil && tape.recompute != f.recompute {
		f.layout(tape)
	}
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
// In the recompute mode it keeps the links on the forward side of the layer
// (the input going forward, the output in reverse).
func (f *Flow[T]) layerForward(k int, links []T, logJ []float64, B int, tape *Tape[T], reverse bool) {
	V := f.Arch.L * f.Arch.L
	c := &f.layers[k]
	rec, kept, rawA := f.layerRecord(tape, k, B)
	if kept != nil && !reverse {
		copy(kept, links)
	}
	f.layerArgs = kernelArgs[T]{layer: c, rec: rec, links: links, logJ: logJ, rawA: rawA, B: B, N: B * V, V: V, nA: f.nA}
	f.be.ParallelFor(B, f.inputsFn)
	f.conditionerForward(c, rec, B, len(c.convs))
	if reverse {
		f.be.ParallelFor(B, f.revFn)
	} else {
		f.be.ParallelFor(B, f.fwdFn)
	}
	f.layerArgs = kernelArgs[T]{}
	if kept != nil && reverse {
		copy(kept, links)
	}
}

// BackwardForward is the vector–Jacobian product of the Forward call the
// tape recorded. Given gx = ∂L/∂x (len B·2V) and glogJ = ∂L/∂logJ (len B;
// nil means zero), it ADDS ∂L/∂θ into f.Params.Grad (on a device: at the
// next SyncGrads; so do the other backward passes) and WRITES ∂L/∂z into
// gz (len B·2V; nil: not returned). gz may be gx itself; gx is otherwise
// not modified.
func (f *Flow[T]) BackwardForward(tape *Tape[T], gz, gx []T, glogJ []float64) {
	if tape == nil || tape.dir != tapeForward {
		panic("nf: Flow.BackwardForward: the tape holds no Forward call")
	}
	f.backwardCheck("BackwardForward", tape, gz, gx, glogJ)
	if f.dev != nil {
		f.deviceBackward("BackwardForward", tape, gz, gx, glogJ, false)
		return
	}
	g := f.backwardStart(tape, gz, gx)
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
	f.backwardCheck("BackwardReverse", tape, gx, gz, glogJ)
	if f.dev != nil {
		f.deviceBackward("BackwardReverse", tape, gx, gz, glogJ, false)
		return
	}
	g := f.backwardStart(tape, gx, gz)
	for k := range f.layers {
		f.layerBackward(k, g, glogJ, tape, true)
	}
}

// BackwardReverseFromForward is the vector–Jacobian product of the REVERSE
// flow at x = f(z), computed from the tape of the Forward call that
// produced x (the three-pass REINFORCE: no Reverse call is needed). Given
// gz = ∂L/∂z' for z' = f⁻¹(x) and glogJ = ∂L/∂logJ_rev (nil: zero), where
// logJ_rev = Σ_layers −log g'(preimage) is the log J that Reverse would
// return, it ADDS ∂L/∂θ (x held fixed) into f.Params.Grad and WRITES ∂L/∂x
// into gx (nil: not returned). gx may be gz itself.
//
// This is exact, not an approximation: layer k of the reverse pass from x
// sees the links the forward pass left after layer k, its conditioner sees
// the same frozen plaquettes and loops (so the same activations), and the
// preimage it solves for is the forward input plaquette P that the tape
// holds. The reverse layer's parameter dependence — log J = −log g'(P(θ))
// with P(θ) = g⁻¹(P' − t; θ) at fixed P', whose preimage moves with θ by
// ∂P/∂θ = −(∂g/∂θ + ∂t/∂θ)/g'(P) — is what the reverse VJP computes
// (splineSite.backwardInverse), here at the forward tape's P. The result
// equals BackwardReverse after Reverse(x) up to rounding.
func (f *Flow[T]) BackwardReverseFromForward(tape *Tape[T], gx, gz []T, glogJ []float64) {
	if tape == nil || tape.dir != tapeForward {
		panic("nf: Flow.BackwardReverseFromForward: the tape holds no Forward call")
	}
	f.backwardCheck("BackwardReverseFromForward", tape, gx, gz, glogJ)
	if f.dev != nil {
		f.deviceBackward("BackwardReverseFromForward", tape, gx, gz, glogJ, true)
		return
	}
	g := f.backwardStart(tape, gx, gz)
	for k := range f.layers {
		f.layerBackward(k, g, glogJ, tape, true)
	}
}

// backwardCheck panics unless the arguments of a backward pass fit the
// tape (programming errors).
func (f *Flow[T]) backwardCheck(name string, tape *Tape[T], dst, src []T, glogJ []float64) {
	B := tape.B
	f.checkCall(name, B, tape, dst, src)
	if src == nil {
		panic(fmt.Sprintf("nf: Flow.%s: nil upstream link gradient", name))
	}
	if glogJ != nil && len(glogJ) != B {
		panic(fmt.Sprintf("nf: Flow.%s: len(glogJ) = %d, want %d", name, len(glogJ), B))
	}
}

// backwardStart returns the buffer that carries the link gradient through
// the layers, src copied into it: dst if given, else scratch.
func (f *Flow[T]) backwardStart(tape *Tape[T], dst, src []T) []T {
	f.grow(tape.B)
	g := dst
	if g == nil {
		g = f.glinks[:len(src)]
	}
	copy(g, src)
	return g
}

// layerBackward turns g from the gradient of layer k's output links into the
// gradient of its input links (reverse: of the inverse layer), adding the
// parameter gradients. In the recompute mode it first recomputes the
// conditioner input and the spline argument from the kept links, and the
// hidden activations before the kept one.
func (f *Flow[T]) layerBackward(k int, g []T, glogJ []float64, tape *Tape[T], reverse bool) {
	B := tape.B
	V := f.Arch.L * f.Arch.L
	c := &f.layers[k]
	rec, kept, rawA := f.layerRecord(tape, k, B)
	if kept != nil {
		f.layerArgs = kernelArgs[T]{layer: c, rec: rec, links: kept, B: B, N: B * V, V: V}
		f.be.ParallelFor(B, f.inputsFn)
		f.conditionerForward(c, rec, B, max(len(c.convs)-2, 0))
	}
	f.layerArgs = kernelArgs[T]{layer: c, rec: rec, links: g, glogJ: glogJ, rawA: rawA, B: B, N: B * V, V: V, nA: f.nA}
	if reverse {
		f.be.ParallelFor(B, f.splineBwdRevFn)
	} else {
		f.be.ParallelFor(B, f.splineBwdFwdFn)
	}
	f.conditionerBackward(c, rec, B)
	f.be.ParallelFor(B, f.inBwd)
	f.layerArgs = kernelArgs[T]{}
	f.ginp = nil
}
