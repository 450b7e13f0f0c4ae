package gpu

import (
	"errors"
	"fmt"

	"nfschwinger/internal/cuda"
)

// LayerSpec is what the device needs of one coupling layer's masks
// (nf.Masks): the direction of the updated links, the active plaquettes
// (site indices i·L + j) and the frozen plaquettes and loops.
type LayerSpec struct {
	Mu          int
	Active      []int
	PlaqFrozen  []bool // V
	LoopsFrozen []bool // 2V, loop direction c at c·V + x
}

// FlowSpec describes a flow as nf.Flow holds it: the lattice size L, the
// spline's knots, the conditioner's channels (input 6, output 3n+1),
// kernel size and dilations, the LeakyReLU slope, the layers in order, and
// bf16 products in the convolutions (float32 flows only).
type FlowSpec struct {
	L, NKnots, Kernel int
	Channels          []int
	Dilation          []int
	Slope             float64
	Layers            []LayerSpec
	BF16              bool
}

// Direction is the pass a tape recorded.
type Direction int

// The passes a tape records.
const (
	NoTape Direction = iota
	Forward
	Reverse
)

// Flow is a whole normalizing flow on the device (nf.Flow's forward,
// reverse and backward passes) for micro-batches of up to MicroBatch()
// configurations: its parameters and their gradients in nf.ParamSet's
// layout, a store-everything tape, and the scratch of one layer, all
// allocated by NewFlow (so that running out of device memory shows there,
// not in the middle of a step). Links, log J and gradients cross to the
// host at the calls' boundaries: the links of a micro-batch and, per
// backward call, nothing else (the parameter gradients stay on the device
// until AddGrads). Not safe for concurrent use.
type Flow[T Float] struct {
	Spec        FlowSpec
	maxB        int // the largest micro-batch (MicroBatch)
	k           *Kernels
	d           cuda.Driver
	cond        *Conditioner[T] // one for all layers: its workspaces are shared, the weights are arguments
	ins         []*Inputs[T]
	sites       []*Sites
	activeSites []cuda.DevicePtr // active sites per layer (int32)
	nA          int
	spl         *SplineKernels // coupling.cu for the spec's bins

	params, grads cuda.DevicePtr // nf.ParamSet layout
	nParams       int
	w, b          [][]cuda.DevicePtr // per layer and convolution: views of params
	gw, gb        [][]cuda.DevicePtr // and of grads
	discard       cuda.DevicePtr     // parameter gradients of InputGradient, never read (with a tape)
	dgw, dgb      [][]cuda.DevicePtr // views of discard
	discarding    bool               // InputGradient's pass: the gradients go to discard

	tape   []record // per layer, maxB configurations
	rec    record   // one layer's record when no tape is kept
	dir    Direction
	tapeB  int
	links  cuda.DevicePtr // B·2V: the links, or their gradient
	held   held           // what links holds for the device-resident target
	heldB  int            // … for heldB configurations
	logJ   cuda.DevicePtr // B float64
	glogJ  cuda.DevicePtr // B float64
	logd   cuda.DevicePtr // M float64: log g' per active site
	loops  cuda.DevicePtr // 2N
	pbar   cuda.DevicePtr // N
	lbar   cuda.DevicePtr // 2N: the loop gradient
	graw   cuda.DevicePtr // (3n+1)·M
	ginp   cuda.DevicePtr // 6·N
	allocs []cuda.DevicePtr
	bytes  int
}

// record is one layer's recorded activations on the device: acts[j] is
// [C_j][B·V] (the last, the raw spline parameters, [C][B·nA]) and x the
// spline's argument [B·V], as nf's layerRecord.
type record struct {
	acts []cuda.DevicePtr
	x    cuda.DevicePtr
}

// held is what Flow.links holds between calls, for the device-resident
// target: nothing it may use, the output of the last pass (Output), the
// input gradient of the last backward pass (SetUpstream with add), or an
// upstream gradient set by SetUpstream (Backward with gout nil).
type held int

const (
	heldNothing held = iota
	heldOutput
	heldGradient
	heldUpstream
)

// ErrOutOfMemory wraps a failed device allocation: of NewFlow, or of a
// workspace of the convolutions, the conditioner or the input.
var ErrOutOfMemory = errors.New("device memory exhausted")

// Bytes returns the device memory NewFlow allocates for spec and
// micro-batches of maxB, T's size elem bytes (4 or 8), with a tape
// (withTape) or without: parameters and gradients (and with a tape the
// gradients InputGradient discards), the tape or one
// layer's record, the per-layer scratch, the convolutions' workspaces
// and the layers' tables.
func Bytes(spec FlowSpec, maxB, elem int, withTape bool) int {
	V := spec.L * spec.L
	N := maxB * V
	nA := 0
	if len(spec.Layers) > 0 {
		nA = len(spec.Layers[0].Active)
	}
	M := maxB * nA
	ch := spec.Channels
	KK := spec.Kernel * spec.Kernel
	params := 0
	for j := 0; j+1 < len(ch); j++ {
		params += ch[j+1] * (ch[j]*KK + 1)
	}
	params *= len(spec.Layers)
	rec := N // one layer's record: the spline's argument
	for j, c := range ch {
		if j == len(ch)-1 {
			rec += c * M
		} else {
			rec += c * N
		}
	}
	layers, grads := 1, 2 // the record of a pass without a tape; parameters and gradients
	if withTape {
		layers += len(spec.Layers)
		grads++ // InputGradient's discarded gradients
	}
	maxC := 0
	for _, c := range ch {
		maxC = max(maxC, c)
	}
	// Links, loops, pbar, graw, ginp, the conditioner's ping-pong
	// gradients and the loop gradient of Inputs.Backward.
	scratch := 2*N + 2*N + N + ch[len(ch)-1]*M + 6*N + 2*maxC*N + 2*N
	// The convolutions, shared by the layers: an im2col workspace each
	// (the last at the active sites), the bias gradient's float64 partial
	// sums, and with bf16 the bf16 copies of the columns, weights and
	// output gradient (the last convolution stays float32).
	col, part, bf := 0, 0, 0
	for j := 0; j+1 < len(ch); j++ {
		cols := N
		if j+2 == len(ch) {
			cols = M
		} else {
			bf += 2 * (ch[j]*KK*N + ch[j+1]*ch[j]*KK + ch[j+1]*N)
		}
		col += ch[j] * KK * cols
		part += 8 * biasParts * ch[j+1]
	}
	if !spec.BF16 {
		bf = 0
	}
	// Per layer: the site tables (int32 taps and inverse taps), the masks
	// (a byte per plaquette and loop) and the active sites (int32).
	tables := len(spec.Layers) * (4*(KK*nA+KK*V) + 3*V + 4*nA)
	return elem*(grads*params+layers*rec+scratch+col) + 8*(2*maxB+M) + part + bf + tables
}

// NewFlow builds the flow of spec on the kernels' device for micro-batches
// of up to maxB configurations, with a tape when withTape.
func NewFlow[T Float](k *Kernels, spec FlowSpec, maxB int, withTape bool) (*Flow[T], error) {
	if len(spec.Layers) == 0 || maxB < 1 || len(spec.Dilation) != len(spec.Channels)-1 {
		return nil, fmt.Errorf("gpu: flow of %d layers, %d channels, %d dilations, micro-batch %d", len(spec.Layers), len(spec.Channels), len(spec.Dilation), maxB)
	}
	if spec.BF16 && size[T]() != 4 {
		return nil, errors.New("gpu: bf16 products need a float32 flow")
	}
	spl, err := k.Spline(spec.NKnots - 1)
	if err != nil {
		return nil, err
	}
	f := &Flow[T]{Spec: spec, maxB: maxB, k: k, d: k.d, nA: len(spec.Layers[0].Active), spl: spl}
	if err := f.build(withTape); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// build uploads the layers' tables and allocates everything NewFlow
// promises: the parameters and their gradients, the records (the scratch
// one and the tape's), the scratch of the passes and, by one warm-up pass,
// the convolutions' workspaces.
func (f *Flow[T]) build(withTape bool) error {
	if err := f.uploadTables(); err != nil {
		return err
	}
	f.cond = NewConditioner[T](f.k, f.Spec.Channels, f.Spec.Kernel, f.Spec.Dilation, f.Spec.Slope)
	for _, cv := range f.cond.convs {
		cv.BF16 = f.Spec.BF16
	}
	if err := f.allocParams(); err != nil {
		return err
	}
	var err error
	if f.rec, err = f.newRecord(); err != nil {
		return err
	}
	if withTape {
		for range f.Spec.Layers {
			r, err := f.newRecord()
			if err != nil {
				return err
			}
			f.tape = append(f.tape, r)
		}
		if err := f.allocDiscard(); err != nil {
			return err
		}
	}
	if err := f.allocScratch(); err != nil {
		return err
	}
	// Grow the convolutions' and the conditioners' workspaces now: one
	// backward pass at full size on zero parameters and inputs.
	return f.warm()
}

// uploadTables uploads each layer's tables: the conditioner's input
// (frozen plaquettes and loops), the last convolution's sites and the
// active sites.
func (f *Flow[T]) uploadTables() error {
	spec, k := f.Spec, f.k
	nConv := len(spec.Channels) - 1
	for _, ls := range spec.Layers {
		if len(ls.Active) != f.nA {
			return errors.New("gpu: layers with different numbers of active sites")
		}
		in, err := NewInputs[T](k, spec.L, ls.PlaqFrozen, ls.LoopsFrozen)
		if err != nil {
			return err
		}
		f.ins = append(f.ins, in)
		s, err := NewSites(k.d, ls.Active, spec.L, spec.Kernel, spec.Dilation[nConv-1])
		if err != nil {
			return err
		}
		f.sites = append(f.sites, s)
		act := make([]int32, len(ls.Active))
		for i, x := range ls.Active {
			act[i] = int32(x)
		}
		p, err := cuda.Upload(k.d, act)
		if err != nil {
			return err
		}
		f.activeSites = append(f.activeSites, p)
	}
	return nil
}

// allocParams allocates the parameters and their gradients, zeroed, in
// ParamSet's layout (per layer and convolution the weight, then the bias)
// and points f.w, f.b, f.gw and f.gb into them.
func (f *Flow[T]) allocParams() error {
	spec, ch := f.Spec, f.Spec.Channels
	nConv, KK, es := len(ch)-1, spec.Kernel*spec.Kernel, size[T]()
	perLayer := 0
	for j := 0; j < nConv; j++ {
		perLayer += ch[j+1] * (ch[j]*KK + 1)
	}
	f.nParams = perLayer * len(spec.Layers)
	var err error
	if f.params, err = f.alloc(f.nParams * es); err != nil {
		return err
	}
	if f.grads, err = f.alloc(f.nParams * es); err != nil {
		return err
	}
	if err := f.zero(f.params, f.nParams); err != nil {
		return err
	}
	if err := f.zero(f.grads, f.nParams); err != nil {
		return err
	}
	f.w, f.b = f.views(f.params)
	f.gw, f.gb = f.views(f.grads)
	return nil
}

// views returns the per-layer, per-convolution weights and biases of
// the parameter array (nf.ParamSet's layout) at base.
func (f *Flow[T]) views(base cuda.DevicePtr) (w, b [][]cuda.DevicePtr) {
	spec, ch := f.Spec, f.Spec.Channels
	KK, es := spec.Kernel*spec.Kernel, size[T]()
	w, b = make([][]cuda.DevicePtr, len(spec.Layers)), make([][]cuda.DevicePtr, len(spec.Layers))
	off := 0
	for l := range spec.Layers {
		for j := 0; j+1 < len(ch); j++ {
			w[l] = append(w[l], base+cuda.DevicePtr(off*es))
			off += ch[j+1] * ch[j] * KK
			b[l] = append(b[l], base+cuda.DevicePtr(off*es))
			off += ch[j+1]
		}
	}
	return w, b
}

// allocDiscard allocates the parameter gradients that InputGradient's
// backward passes write and nobody reads.
func (f *Flow[T]) allocDiscard() error {
	var err error
	if f.discard, err = f.alloc(f.nParams * size[T]()); err != nil {
		return err
	}
	f.dgw, f.dgb = f.views(f.discard)
	return nil
}

// newRecord allocates one layer's record for maxB configurations: every
// activation (the last, the raw spline parameters, at the active sites
// only) and the spline argument.
func (f *Flow[T]) newRecord() (record, error) {
	ch := f.Spec.Channels
	N, M, es := f.maxB*f.Spec.L*f.Spec.L, f.maxB*f.nA, size[T]()
	r := record{acts: make([]cuda.DevicePtr, len(ch))}
	var err error
	for j, c := range ch {
		n := c * N
		if j == len(ch)-1 {
			n = c * M
		}
		if r.acts[j], err = f.alloc(n * es); err != nil {
			return r, err
		}
	}
	r.x, err = f.alloc(N * es)
	return r, err
}

// allocScratch allocates the passes' buffers for maxB configurations.
func (f *Flow[T]) allocScratch() error {
	ch := f.Spec.Channels
	N, M, es := f.maxB*f.Spec.L*f.Spec.L, f.maxB*f.nA, size[T]()
	for _, a := range []struct {
		p     *cuda.DevicePtr
		bytes int
	}{{&f.links, 2 * N * es}, {&f.logJ, 8 * f.maxB}, {&f.glogJ, 8 * f.maxB}, {&f.logd, 8 * M},
		{&f.loops, 2 * N * es}, {&f.pbar, N * es}, {&f.lbar, 2 * N * es}, {&f.graw, ch[len(ch)-1] * M * es}, {&f.ginp, 6 * N * es}} {
		var err error
		if *a.p, err = f.alloc(a.bytes); err != nil {
			return err
		}
	}
	return nil
}

// alloc allocates device memory freed by Close.
func (f *Flow[T]) alloc(bytes int) (cuda.DevicePtr, error) {
	p, err := f.d.Alloc(bytes)
	if err != nil {
		return 0, fmt.Errorf("gpu: %d bytes after %d of the flow: %w: %w", bytes, f.bytes, ErrOutOfMemory, err)
	}
	f.allocs = append(f.allocs, p)
	f.bytes += bytes
	return p, nil
}

// zero sets n elements of T at p to 0.
func (f *Flow[T]) zero(p cuda.DevicePtr, n int) error {
	return cuda.Launch(f.k.zero[prec[T]()], grid(n), block, p, int64(n))
}

// warm runs the conditioners once at the largest micro-batch, so that
// their workspaces are allocated before the first step.
func (f *Flow[T]) warm() error {
	N := f.maxB * f.Spec.L * f.Spec.L
	rec := f.rec
	if f.tape != nil {
		rec = f.tape[0]
	}
	if err := f.zero(rec.acts[0], 6*N); err != nil {
		return err
	}
	if err := f.cond.Forward(rec.acts, f.w[0], f.b[0], f.maxB, f.Spec.L, f.sites[0]); err != nil {
		return err
	}
	if err := f.zero(f.graw, f.Spec.Channels[len(f.Spec.Channels)-1]*f.maxB*f.nA); err != nil {
		return err
	}
	if err := f.cond.Backward(f.ginp, f.graw, rec.acts, f.w[0], f.gw[0], f.gb[0], f.maxB, f.Spec.L, f.sites[0]); err != nil {
		return err
	}
	if err := f.zero(f.grads, f.nParams); err != nil {
		return err
	}
	return f.d.Synchronize()
}

// MicroBatch returns the largest micro-batch the flow was built for.
func (f *Flow[T]) MicroBatch() int { return f.maxB }

// DeviceBytes returns the device memory the flow holds (without the
// convolutions' workspaces).
func (f *Flow[T]) DeviceBytes() int { return f.bytes }

// Close frees the flow's device memory.
func (f *Flow[T]) Close() {
	if f.cond != nil {
		f.cond.Close()
	}
	for _, in := range f.ins {
		in.Close()
	}
	for _, s := range f.sites {
		s.Close()
	}
	for _, p := range append(f.activeSites, f.allocs...) {
		f.d.Free(p)
	}
	*f = Flow[T]{}
}

// SetParams uploads the parameters (nf.ParamSet.Data's layout).
func (f *Flow[T]) SetParams(data []T) error {
	if len(data) != f.nParams {
		panic(fmt.Sprintf("gpu: Flow.SetParams: %d parameters, want %d", len(data), f.nParams))
	}
	return cuda.CopyIn(f.d, f.params, data)
}

// AddGrads adds the parameter gradients accumulated on the device since
// the last call into grad (nf.ParamSet.Grad's layout) and zeroes them
// there; tmp is host scratch of the same length.
func (f *Flow[T]) AddGrads(grad, tmp []T) error {
	if len(grad) != f.nParams || len(tmp) != f.nParams {
		panic(fmt.Sprintf("gpu: Flow.AddGrads: %d and %d parameters, want %d", len(grad), len(tmp), f.nParams))
	}
	if err := cuda.Download(f.d, tmp, f.grads); err != nil {
		return err
	}
	for i, g := range tmp {
		grad[i] += g
	}
	return f.zero(f.grads, f.nParams)
}

func (f *Flow[T]) checkB(name string, B int, bufs ...int) {
	n := 2 * f.Spec.L * f.Spec.L
	if B < 1 || B > f.maxB {
		panic(fmt.Sprintf("gpu: Flow.%s: micro-batch %d outside 1 … %d", name, B, f.maxB))
	}
	for _, l := range bufs {
		if l != B*n {
			panic(fmt.Sprintf("gpu: Flow.%s: links of length %d, want %d", name, l, B*n))
		}
	}
}

// Forward maps B configurations z (B·2V) to x = f(z) and log J (B), as
// nf.Flow.Forward, recording on the tape when tape is set (the flow must
// have one).
func (f *Flow[T]) Forward(x, z []T, logJ []float64, B int, tape bool) error {
	return f.run("Forward", x, z, logJ, B, tape, false)
}

// Reverse maps B configurations x to z = f⁻¹(x) and log J (B) of the
// reverse flow, as nf.Flow.Reverse.
func (f *Flow[T]) Reverse(z, x []T, logJ []float64, B int, tape bool) error {
	return f.run("Reverse", z, x, logJ, B, tape, true)
}

func (f *Flow[T]) run(name string, out, in []T, logJ []float64, B int, tape, reverse bool) error {
	f.checkB(name, B, len(out), len(in))
	if len(logJ) != B {
		panic(fmt.Sprintf("gpu: Flow.%s: %d log J for %d configurations", name, len(logJ), B))
	}
	if tape && f.tape == nil {
		panic("gpu: Flow." + name + ": the flow keeps no tape")
	}
	if tape {
		f.dir = NoTape // recording overwrites the tape; a pass without one keeps it
	}
	f.held, f.heldB = heldNothing, B
	if err := cuda.CopyIn(f.d, f.links, in); err != nil {
		return err
	}
	if err := cuda.Launch(f.k.zero[1], grid(B), block, f.logJ, int64(B)); err != nil {
		return err
	}
	n := len(f.Spec.Layers)
	for i := range n {
		l := i
		if reverse {
			l = n - 1 - i
		}
		rec := f.rec
		if tape {
			rec = f.tape[l]
		}
		if err := f.layer(l, rec, B, reverse); err != nil {
			return fmt.Errorf("gpu: %s, layer %d: %w", name, l, err)
		}
	}
	if err := cuda.Download(f.d, out, f.links); err != nil {
		return err
	}
	if err := cuda.Download(f.d, logJ, f.logJ); err != nil {
		return err
	}
	if tape {
		f.dir, f.tapeB = Forward, B
		if reverse {
			f.dir = Reverse
		}
	}
	f.held = heldOutput
	return nil
}

// layer applies layer l (or its inverse) to f.links in place.
func (f *Flow[T]) layer(l int, rec record, B int, reverse bool) error {
	sp := f.Spec
	V := sp.L * sp.L
	p := prec[T]()
	if err := f.ins[l].Forward(rec.acts[0], rec.x, f.loops, f.links, B); err != nil {
		return err
	}
	if err := f.cond.Forward(rec.acts, f.w[l], f.b[l], B, sp.L, f.sites[l]); err != nil {
		return err
	}
	raw := rec.acts[len(rec.acts)-1]
	M := B * f.nA
	n := sp.NKnots - 1
	mu := int32(sp.Layers[l].Mu)
	var err error
	if reverse {
		err = cuda.Launch(f.spl.rev[p], grid(M), block, f.links, f.logd, rec.x, raw, f.activeSites[l], int32(n), int32(f.nA), int32(V), mu, int32(B))
	} else {
		err = cuda.Launch(f.spl.fwd[p], grid(M), block, f.links, f.logd, raw, rec.x, f.activeSites[l], int32(n), int32(f.nA), int32(V), mu, int32(B))
	}
	if err != nil {
		return err
	}
	return cuda.Launch(f.spl.logJ, blocks(B), reduceBlock, f.logJ, f.logd, int32(f.nA), int32(B))
}

// Backward is the vector–Jacobian product of the pass the tape recorded,
// or with fromForward of the reverse flow at the forward pass's output
// (nf.Flow.BackwardReverseFromForward; the tape must hold a Forward).
// Given gout = ∂L/∂(output links) and glogJ = ∂L/∂log J (nil: zero) it
// ADDS ∂L/∂θ into the device's parameter gradients (AddGrads) and WRITES
// ∂L/∂(input links) into gin (nil: not returned, but kept on the device
// for SetUpstream). gout nil: the upstream gradient SetUpstream set.
func (f *Flow[T]) Backward(gin, gout []T, glogJ []float64, fromForward bool) error {
	B := f.tapeB
	if f.dir == NoTape || (fromForward && f.dir != Forward) {
		panic("gpu: Flow.Backward: the tape holds no such pass")
	}
	if gin != nil {
		f.checkB("Backward", B, len(gin))
	}
	reverse := f.dir == Reverse || fromForward
	if gout != nil {
		f.checkB("Backward", B, len(gout))
		if err := cuda.CopyIn(f.d, f.links, gout); err != nil {
			return err
		}
	} else if f.held != heldUpstream || f.heldB != B {
		panic("gpu: Flow.Backward: no upstream gradient given or set (SetUpstream) for the tape's micro-batch")
	}
	f.held = heldNothing
	var gl cuda.DevicePtr
	if glogJ != nil {
		if len(glogJ) != B {
			panic(fmt.Sprintf("gpu: Flow.Backward: %d log J gradients for %d configurations", len(glogJ), B))
		}
		if err := cuda.CopyIn(f.d, f.glogJ, glogJ); err != nil {
			return err
		}
		gl = f.glogJ
	}
	n := len(f.Spec.Layers)
	for i := range n {
		l := n - 1 - i // the forward flow's VJP runs its layers backwards
		if reverse {
			l = i
		}
		if err := f.layerBackward(l, B, gl, reverse); err != nil {
			return fmt.Errorf("gpu: Backward, layer %d: %w", l, err)
		}
	}
	f.held, f.heldB = heldGradient, B
	if gin == nil {
		return f.d.Synchronize()
	}
	return cuda.Download(f.d, gin, f.links)
}

// InputGradient is Backward without the parameter gradients: it writes
// ∂L/∂(input links) into gin (nil: kept on the device) and leaves the
// gradients AddGrads returns as they were (the path gradient's
// ∂ log q/∂φ). The flow must have a tape.
func (f *Flow[T]) InputGradient(gin, gout []T, glogJ []float64, fromForward bool) error {
	if err := f.zero(f.discard, f.nParams); err != nil {
		return err
	}
	f.discarding = true
	defer func() { f.discarding = false }()
	return f.Backward(gin, gout, glogJ, fromForward)
}

// Links are the links of B configurations (B·2V, lgt's layout) in a
// flow's device memory, in the flow's precision: the output of its last
// Forward or Reverse (Flow.Output), valid until its next pass.
type Links struct {
	ptr  cuda.DevicePtr
	elem int // bytes per angle: 4 or 8
	B    int
}

// Output returns the links of the last Forward or Reverse call where the
// flow keeps them; ok is false after a backward pass or SetUpstream has
// overwritten them.
func (f *Flow[T]) Output() (x Links, ok bool) {
	return Links{ptr: f.links, elem: size[T](), B: f.heldB}, f.held == heldOutput
}

// SetUpstream sets the upstream link gradient of the next Backward called
// with gout nil from a force on the device (LogDet.ForceFrom, of the
// configurations of the tape): g = T((g' + F)·scale) in float64, where g'
// is the input gradient the last Backward left on the device when add,
// else 0 (g = T(F·scale)).
func (f *Flow[T]) SetUpstream(F Force, scale float64, add bool) error {
	B := f.tapeB
	if f.dir == NoTape || F.B != B {
		panic(fmt.Sprintf("gpu: Flow.SetUpstream: a force of %d configurations for a tape of %d", F.B, B))
	}
	if add && (f.held != heldGradient || f.heldB != B) {
		panic("gpu: Flow.SetUpstream: no input gradient of a backward pass to add to")
	}
	n := 2 * B * f.Spec.L * f.Spec.L
	a := int32(0)
	if add {
		a = 1
	}
	if err := cuda.Launch(f.k.upstream[prec[T]()], grid(n), block, f.links, F.ptr, scale, a, int64(n)); err != nil {
		return err
	}
	f.held, f.heldB = heldUpstream, B
	return nil
}

// layerBackward turns f.links from the gradient of layer l's output into
// that of its input (reverse: of the inverse layer), adding the
// parameter gradients.
func (f *Flow[T]) layerBackward(l, B int, glogJ cuda.DevicePtr, reverse bool) error {
	sp := f.Spec
	V := sp.L * sp.L
	N, M := B*V, B*f.nA
	p := prec[T]()
	rec := f.tape[l]
	if err := f.zero(f.pbar, N); err != nil {
		return err
	}
	rev := int32(0)
	if reverse {
		rev = 1
	}
	raw := rec.acts[len(rec.acts)-1]
	if err := cuda.Launch(f.spl.bwd[p], grid(M), block, f.graw, f.pbar, f.links, glogJ, raw, rec.x, f.activeSites[l],
		int32(sp.NKnots-1), int32(f.nA), int32(V), int32(sp.Layers[l].Mu), int32(B), rev); err != nil {
		return err
	}
	gw, gb := f.gw[l], f.gb[l]
	if f.discarding {
		gw, gb = f.dgw[l], f.dgb[l]
	}
	if err := f.cond.Backward(f.ginp, f.graw, rec.acts, f.w[l], gw, gb, B, sp.L, f.sites[l]); err != nil {
		return err
	}
	return f.ins[l].backward(f.links, f.pbar, f.ginp, rec.acts[0], f.lbar, B)
}
