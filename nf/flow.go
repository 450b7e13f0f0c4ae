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
// The passes are computed by the flow's Engine (NewFlowOn), which owns
// the scratch buffers (or the device memory); the Flow keeps the
// architecture, the parameters and the tapes' bookkeeping and checks every
// call's arguments. A Flow is not safe for concurrent use; use one Flow
// per goroutine (they may share nothing but the host engines' Backend).
// Steady-state calls do not allocate: scratch grows to the largest
// micro-batch seen.
type Flow[T Float] struct {
	Arch   Arch
	Params *ParamSet[T]

	eng       Engine[T] // computes the passes (NewFlowOn)
	layers    []coupling[T]
	ch        []int // Arch.Channels(), cached (it allocates)
	recompute bool  // tapes keep the reduced record (see SetRecompute)
	fixed     bool  // Params.Data does not change (FixParams)
	sent      bool  // the engine has Params.Data since it was fixed
	nA        int   // active sites per layer (the same in every layer: V/4)
}

// LogPrior returns the log-density of the uniform prior on the 2V link
// angles of an L×L lattice: −2V log 2π.
func LogPrior(L int) float64 { return -2 * float64(L*L) * math.Log(2*math.Pi) }

// ParamName returns the ParamSet name of parameter kind ("weight" or "bias")
// of convolution j in layer k: "layers/KK/convJ/kind".
func ParamName(k, j int, kind string) string {
	return fmt.Sprintf("layers/%02d/conv%d/%s", k, j, kind)
}

// CheckFlow returns why a Flow of architecture a cannot be made: a's
// Validate error, or a choice the flow's kernels do not support.
func (a Arch) CheckFlow() error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("nf: new flow: %w", err)
	}
	if a.NKnots-1 > maxBins {
		return fmt.Errorf("nf: new flow: n_knots = %d: at most %d supported", a.NKnots, maxBins+1)
	}
	if a.LeakyReLUSlope <= 0 {
		return fmt.Errorf("nf: new flow: leaky_relu_slope = %v: must be positive (the backward pass reads the sign from the output)", a.LeakyReLUSlope)
	}
	return nil
}

// NewFlow is NewFlowOn(a, OpenBLAS[T](be)): the flow on the host, its
// convolutions im2col and be's matrix products.
func NewFlow[T Float](a Arch, be Backend) (*Flow[T], error) {
	return NewFlowOn(a, OpenBLAS[T](be))
}

// NewFlowOn validates the architecture, declares and allocates the
// parameters (all zero; see Init), builds the layers and binds the engine
// that computes the passes, for the flow's life. The error says why the
// architecture is invalid or the engine cannot compute it (then the
// engine is closed).
func NewFlowOn[T Float](a Arch, eng Engine[T]) (*Flow[T], error) {
	if err := a.CheckFlow(); err != nil {
		eng.Close()
		return nil, err
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
	f := &Flow[T]{Arch: a, Params: ps, eng: eng, layers: make([]coupling[T], a.NLayers)}
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
	if err := eng.bind(f); err != nil {
		eng.Close()
		return nil, err
	}
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

// Engine returns the engine that computes the flow's passes.
func (f *Flow[T]) Engine() Engine[T] { return f.eng }

// Close frees what the engine holds (device memory, oneDNN primitives);
// the flow cannot compute after it.
func (f *Flow[T]) Close() { f.eng.Close() }

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
	data      []T // layer k's record at [k·cap·perCfg, (k+1)·cap·perCfg)
	eng       any // the engine of the flow that made it (Flow.NewTape)
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
	if mb := f.eng.MicroBatch(); mb > 0 && B > mb {
		panic(fmt.Sprintf("nf: NewTape(%d): the flow's engine (%s) takes micro-batches of up to %d", B, f.eng.Name(), mb))
	}
	t := f.eng.newTape(B)
	t.eng = f.eng
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
	if tape != nil && tape.eng != f.eng {
		panic(fmt.Sprintf("nf: Flow.%s: a tape of another flow (tapes belong to the flow whose NewTape made them)", name))
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
	f.sendParams()
	f.eng.run(x, z, logJ, B, tape, false)
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
	f.sendParams()
	f.eng.run(z, x, logJ, B, tape, true)
	if tape != nil {
		tape.B, tape.dir = B, tapeReverse
	}
}

// BackwardForward is the vector–Jacobian product of the Forward call the
// tape recorded. Given gx = ∂L/∂x (len B·2V) and glogJ = ∂L/∂logJ (len B;
// nil means zero), it ADDS ∂L/∂θ into f.Params.Grad (on a device: at the
// next SyncGrads; so do the other backward passes) and WRITES ∂L/∂z into
// gz (len B·2V; nil: not returned). gz may be gx itself; gx is otherwise
// not modified. On an engine that keeps the links (a device), gx nil is
// the upstream gradient a ResidentTarget set there (its Upstream), and
// the input gradient not returned stays there (for Upstream with add).
func (f *Flow[T]) BackwardForward(tape *Tape[T], gz, gx []T, glogJ []float64) {
	f.backward(passBackwardForward, tape, gz, gx, glogJ)
}

// BackwardReverse is the vector–Jacobian product of the Reverse call the
// tape recorded. Given gz = ∂L/∂z and glogJ = ∂L/∂logJ (nil: zero), it ADDS
// ∂L/∂θ into f.Params.Grad and WRITES ∂L/∂x into gx (nil: not returned). gx
// may be gz itself; gz is otherwise not modified.
func (f *Flow[T]) BackwardReverse(tape *Tape[T], gx, gz []T, glogJ []float64) {
	f.backward(passBackwardReverse, tape, gx, gz, glogJ)
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
	f.backward(passBackwardReverseFromForward, tape, gx, gz, glogJ)
}

// LinkGradReverseFromForward is BackwardReverseFromForward without the
// parameter gradients: it writes ∂L/∂x into gx (nil: not returned; on an
// engine that keeps the links, kept there for a ResidentTarget's
// Upstream) and leaves Params.Grad, and the gradients an engine holds for
// SyncGrads, as they were (the path gradient's G = ∂ log q/∂φ).
func (f *Flow[T]) LinkGradReverseFromForward(tape *Tape[T], gx, gz []T, glogJ []float64) {
	f.backward(passLinkGradReverseFromForward, tape, gx, gz, glogJ)
}

// backward checks the tape and the arguments of backward pass p
// (programming errors: panics) and hands the pass to the engine: dst gets
// the input gradient, src is the upstream one.
func (f *Flow[T]) backward(p pass, tape *Tape[T], dst, src []T, glogJ []float64) {
	name := p.String()
	want, call := tapeForward, "Forward"
	if p == passBackwardReverse {
		want, call = tapeReverse, "Reverse"
	}
	if tape == nil || tape.dir != want {
		panic("nf: Flow." + name + ": the tape holds no " + call + " call")
	}
	B := tape.B
	f.checkCall(name, B, tape, dst, src)
	if src == nil && !f.eng.resident() {
		panic(fmt.Sprintf("nf: Flow.%s: nil upstream link gradient", name))
	}
	if glogJ != nil && len(glogJ) != B {
		panic(fmt.Sprintf("nf: Flow.%s: len(glogJ) = %d, want %d", name, len(glogJ), B))
	}
	f.eng.backward(p, tape, dst, src, glogJ)
}

// SyncGrads brings the parameter gradients that the backward passes
// accumulated elsewhere since the last call into Params.Grad. On a device
// they stay there until this call (one copy to the host, then zeroed
// there); Trainer.Step calls it once per step, before the gradients go to
// MPI and Adam. On the host, whose passes add into Params.Grad directly,
// it does nothing.
func (f *Flow[T]) SyncGrads() { f.eng.syncGrads() }

// FixParams declares that Params.Data does not change until release is
// called: an engine that computes on a copy of the parameters elsewhere
// (a device) gets them at the first Forward or Reverse after this call
// and not again until then. Outside FixParams every pass sends them, so a
// change is always seen. Trainer.Step fixes them for its passes (the
// optimizer runs after it).
func (f *Flow[T]) FixParams() (release func()) {
	f.fixed, f.sent = true, false
	return func() { f.fixed, f.sent = false, false }
}

// sendParams gives the engine the parameters before a pass, unless they
// are fixed and it has them.
func (f *Flow[T]) sendParams() {
	if f.fixed && f.sent {
		return
	}
	f.eng.setParams()
	f.sent = f.fixed
}
