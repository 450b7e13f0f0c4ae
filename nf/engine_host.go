package nf

import (
	"fmt"
	"unsafe"
)

// hostEngine computes a flow on the host: the per-configuration kernels of
// the coupling layers (coupling.go) on the Backend's workers, the
// conditioners' convolutions through cond (im2col and the Backend's
// products, or oneDNN primitives).
type hostEngine[T Float] struct {
	f    *Flow[T] // the flow it computes: architecture, layers and tape mode (read only)
	be   Backend
	cond conditioner[T]
	ws   Workspace[T]

	// Scratch, grown to the largest micro-batch B (N = B·V).
	rec    []T    // one layer's record when no tape is kept
	loops  []T    // 2N: loops of the incoming links
	pbar   []T    // N: gradient of the plaquettes of a layer's input
	lbar   []T    // 2N: gradient of its loops
	gbuf   [2][]T // ping-pong gradients of the conditioner, maxC·N each
	glinks []T    // 2N: link gradient when the caller wants none back
	saved  []T    // the parameter gradients a link-gradient pass keeps (allocated at the first)
	ginp   []T    // view into gbuf: gradient of the conditioner input
	acts   [][]T  // views of a record's activations (reused)

	// Per-configuration kernels, bound once, and the arguments of the
	// layer in flight, which the kernels read (set before each
	// ParallelFor over a layer, cleared after).
	layerArgs                             kernelArgs[T]
	inputsFn, fwdFn, revFn                func(lo, hi int)
	splineBwdFwdFn, splineBwdRevFn, inBwd func(lo, hi int)

	// The pass in flight, which runFn and backwardFn (bound once, handed
	// to cond.do) read.
	pass              passArgs[T]
	runFn, backwardFn func()
}

// passArgs are the arguments of a forward or reverse pass (run: out, in,
// logJ, B, tape, reverse) or of a backward pass (backward: p, tape, out =
// dst, in = src, logJ = glogJ).
type passArgs[T Float] struct {
	out, in []T
	logJ    []float64
	B       int
	tape    *Tape[T]
	reverse bool
	p       pass
}

// conditioner runs the convolutions of a layer's conditioner for the host
// engine.
type conditioner[T Float] interface {
	// name describes the convolutions ("im2col", "oneDNN bf16").
	name() string
	// bind prepares the conditioner for the engine's flow; the error says
	// why it cannot compute it.
	bind(e *hostEngine[T]) error
	// forward runs the first nConv convolutions of layer c on rec.acts[0],
	// writing rec.acts[1:nConv+1], with LeakyReLU after all but the last
	// convolution of the conditioner. The last convolution is evaluated
	// at the layer's active sites only (the spline reads nothing else),
	// into the compact [3n+1][B·nA] layout.
	forward(e *hostEngine[T], c *coupling[T], rec layerRecord[T], B, nConv int)
	// backward propagates the gradient of the raw spline parameters
	// (e.gbuf[0], compact at the active sites) back through the
	// convolutions of layer c, adding the parameter gradients, and leaves
	// the gradient of the channel-major conditioner input in e.ginp.
	backward(e *hostEngine[T], c *coupling[T], rec layerRecord[T], B int)
	// do calls f, one whole pass, on the thread its library needs its
	// calls made from: oneDNN's OpenMP master thread (dnnl.Do: one
	// thread pool, kept spinning between regions), any for im2col.
	do(f func())
	close()
}

// OpenBLAS returns the host engine whose convolutions are im2col and the
// matrix products of be (OpenBLAS on the CPU backend), in either
// precision.
func OpenBLAS[T Float](be Backend) Engine[T] {
	return &hostEngine[T]{be: be, cond: im2colConditioner[T]{}}
}

// Name says the engine and its backend.
func (e *hostEngine[T]) Name() string {
	return fmt.Sprintf("%s on %s", e.cond.name(), e.be.Name())
}

// MicroBatch is 0: host passes take any B that fits in memory.
func (e *hostEngine[T]) MicroBatch() int { return 0 }

// Bytes is the flow's host scratch for passes of B configurations: one
// layer's record, loops, gradient buffers (the convolutions' workspaces,
// a few tiles per worker, not counted).
func (e *hostEngine[T]) Bytes(B int) int {
	N := B * e.f.Arch.L * e.f.Arch.L
	maxC := 0
	for _, c := range e.f.ch {
		maxC = max(maxC, c)
	}
	return (B*e.f.recordSize(false) + 7*N + 2*maxC*N) * int(unsafe.Sizeof(T(0)))
}

// Close frees the conditioner's primitives.
func (e *hostEngine[T]) Close() { e.cond.close() }

// resident is false: the host engine's links are the caller's slices.
func (e *hostEngine[T]) resident() bool { return false }

func (e *hostEngine[T]) bind(f *Flow[T]) error {
	if e.f != nil {
		return errEngineBound
	}
	e.f = f
	e.acts = make([][]T, len(f.ch))
	e.inputsFn = e.inputsRange
	e.fwdFn = e.couplingForwardRange
	e.revFn = e.couplingReverseRange
	e.splineBwdFwdFn = e.splineBackwardForwardRange
	e.splineBwdRevFn = e.splineBackwardReverseRange
	e.inBwd = e.inputsBackwardRange
	e.runFn, e.backwardFn = e.runPass, e.backwardPass
	if err := e.cond.bind(e); err != nil {
		e.f = nil
		return err
	}
	return nil
}

func (e *hostEngine[T]) newTape(B int) *Tape[T] {
	t := &Tape[T]{cap: B, nLayers: e.f.Arch.NLayers}
	e.f.layout(t)
	return t
}

func (e *hostEngine[T]) run(out, in []T, logJ []float64, B int, tape *Tape[T], reverse bool) {
	e.pass = passArgs[T]{out: out, in: in, logJ: logJ, B: B, tape: tape, reverse: reverse}
	e.cond.do(e.runFn)
	e.pass = passArgs[T]{}
}

// runPass is run with the arguments in e.pass, on the conditioner's
// thread.
func (e *hostEngine[T]) runPass() {
	a := &e.pass
	out, in, logJ, B, tape, reverse := a.out, a.in, a.logJ, a.B, a.tape, a.reverse
	e.grow(B)
	if tape != nil && tape.recompute != e.f.recompute {
		e.f.layout(tape)
	}
	copy(out, in)
	clear(logJ)
	if reverse {
		for k := len(e.f.layers) - 1; k >= 0; k-- {
			e.layerForward(k, out, logJ, B, tape, true)
		}
		return
	}
	for k := range e.f.layers {
		e.layerForward(k, out, logJ, B, tape, false)
	}
}

func (e *hostEngine[T]) backward(p pass, tape *Tape[T], dst, src []T, glogJ []float64) {
	e.pass = passArgs[T]{p: p, tape: tape, out: dst, in: src, logJ: glogJ}
	e.cond.do(e.backwardFn)
	e.pass = passArgs[T]{}
}

// backwardPass is backward with the arguments in e.pass, on the
// conditioner's thread.
func (e *hostEngine[T]) backwardPass() {
	a := &e.pass
	p, tape, dst, src, glogJ := a.p, a.tape, a.out, a.in, a.logJ
	if p == passLinkGradReverseFromForward {
		// The layers add into Params.Grad: keep it, and put it back.
		grad := e.f.Params.Grad
		if len(e.saved) != len(grad) {
			e.saved = make([]T, len(grad))
		}
		copy(e.saved, grad)
		defer copy(grad, e.saved)
		p = passBackwardReverseFromForward
	}
	g := e.backwardStart(tape, dst, src)
	if p == passBackwardForward {
		for k := len(e.f.layers) - 1; k >= 0; k-- {
			e.layerBackward(k, g, glogJ, tape, false)
		}
		return
	}
	for k := range e.f.layers {
		e.layerBackward(k, g, glogJ, tape, true)
	}
}

// setParams does nothing: the host's passes read Params.Data.
func (e *hostEngine[T]) setParams() {}

// syncGrads does nothing: the host's backward passes add into Params.Grad.
func (e *hostEngine[T]) syncGrads() {}

// im2colConditioner computes the convolutions with im2col and the
// backend's matrix products (Conv2D.Forward, ForwardSites and their
// backward passes).
type im2colConditioner[T Float] struct{}

func (im2colConditioner[T]) name() string              { return "im2col" }
func (im2colConditioner[T]) bind(*hostEngine[T]) error { return nil }
func (im2colConditioner[T]) close()                    {}
func (im2colConditioner[T]) do(f func())               { f() }

func (im2colConditioner[T]) forward(e *hostEngine[T], c *coupling[T], rec layerRecord[T], B, nConv int) {
	L := e.f.Arch.L
	last := len(c.convs) - 1
	for j := range c.convs[:nConv] {
		if j == last {
			c.convs[j].ForwardSites(e.be, rec.acts[j+1], rec.acts[j], B, L, c.masks.Active, &e.ws)
			continue
		}
		c.convs[j].Forward(e.be, rec.acts[j+1], rec.acts[j], B, L, &e.ws)
		e.ws.LeakyReLU(e.be, rec.acts[j+1], T(e.f.Arch.LeakyReLUSlope))
	}
}

// backward: the last convolution's input gradient is non-zero only in the
// receptive fields of the active sites (Conv2D.BackwardSites).
func (im2colConditioner[T]) backward(e *hostEngine[T], c *coupling[T], rec layerRecord[T], B int) {
	L, N := e.f.Arch.L, B*e.f.Arch.L*e.f.Arch.L
	last := len(c.convs) - 1
	cur := 0 // e.gbuf[cur] holds the gradient of rec.acts[j+1]
	for j := last; j >= 0; j-- {
		cv := &c.convs[j]
		gin := e.gbuf[1-cur][:cv.Cin*N]
		if j == last {
			gout := e.gbuf[cur][:cv.Cout*B*len(c.masks.Active)]
			cv.BackwardSites(e.be, gin, gout, rec.acts[j], B, L, c.masks.Active, &e.ws)
		} else {
			cv.Backward(e.be, gin, e.gbuf[cur][:cv.Cout*N], rec.acts[j], B, L, &e.ws)
		}
		if j > 0 {
			e.ws.LeakyReLUBackward(e.be, gin, rec.acts[j], T(e.f.Arch.LeakyReLUSlope))
		}
		cur = 1 - cur
	}
	e.ginp = e.gbuf[cur][:InChannels*N]
}

// view slices one layer's record for B configurations out of block. The
// last activation (the raw spline parameters) is computed at the active
// sites only: its view is the compact [C][B·nA] at the start of its slot
// (the slot keeps the full [C][B·V] size, so that the store-everything
// record stays what storing every activation costs).
func (e *hostEngine[T]) view(block []T, B int) layerRecord[T] {
	N := B * e.f.Arch.L * e.f.Arch.L
	off := 0
	for j, c := range e.f.ch {
		n := c * N
		if j == len(e.f.ch)-1 {
			n = c * B * e.f.nA
		}
		e.acts[j] = block[off : off+n : off+n]
		off += c * N
	}
	return layerRecord[T]{acts: e.acts, x: block[off : off+N : off+N]}
}

// grow makes the scratch fit micro-batches of B configurations.
func (e *hostEngine[T]) grow(B int) {
	N := B * e.f.Arch.L * e.f.Arch.L
	if len(e.loops) >= 2*N {
		return
	}
	maxC := 0
	for _, c := range e.f.ch {
		maxC = max(maxC, c)
	}
	e.rec = make([]T, B*e.f.recordSize(false))
	e.loops = make([]T, 2*N)
	e.pbar = make([]T, N)
	e.lbar = make([]T, 2*N)
	e.gbuf = [2][]T{make([]T, maxC*N), make([]T, maxC*N)}
	e.glinks = make([]T, 2*N)
}

// layerRecord returns the record of layer k: on the tape in the
// store-everything mode, else in the flow's scratch; in the recompute mode
// with a tape, the scratch record's last hidden activation is the tape's,
// and links and rawA are the tape's kept layer links and raw spline
// parameters plus spline argument at the active sites (nil otherwise).
func (e *hostEngine[T]) layerRecord(tape *Tape[T], k, B int) (rec layerRecord[T], links, rawA []T) {
	if tape == nil {
		return e.view(e.rec, B), nil, nil
	}
	n := tape.cap * tape.perCfg
	block := tape.data[k*n : (k+1)*n]
	if !tape.recompute {
		return e.view(block, B), nil, nil
	}
	rec = e.view(e.rec, B)
	V := e.f.Arch.L * e.f.Arch.L
	links = block[: 2*B*V : 2*B*V]
	off := 2 * B * V
	if h := e.f.keptHidden() * B * V; h > 0 {
		rec.acts[len(rec.acts)-2] = block[off : off+h : off+h]
		off += h
	}
	nr := (e.f.Arch.OutChannels() + 1) * B * e.f.nA
	rawA = block[off : off+nr : off+nr]
	// The last convolution writes the raw spline parameters straight into
	// the tape.
	nRaw := e.f.Arch.OutChannels() * B * e.f.nA
	rec.acts[len(rec.acts)-1] = rawA[:nRaw:nRaw]
	return rec, links, rawA
}

// layerForward applies layer k (reverse: its inverse) to links in place.
// In the recompute mode it keeps the links on the forward side of the layer
// (the input going forward, the output in reverse).
func (e *hostEngine[T]) layerForward(k int, links []T, logJ []float64, B int, tape *Tape[T], reverse bool) {
	V := e.f.Arch.L * e.f.Arch.L
	c := &e.f.layers[k]
	rec, kept, rawA := e.layerRecord(tape, k, B)
	if kept != nil && !reverse {
		copy(kept, links)
	}
	e.layerArgs = kernelArgs[T]{layer: c, rec: rec, links: links, logJ: logJ, rawA: rawA, B: B, N: B * V, V: V, nA: e.f.nA}
	e.be.ParallelFor(B, e.inputsFn)
	e.cond.forward(e, c, rec, B, len(c.convs))
	if reverse {
		e.be.ParallelFor(B, e.revFn)
	} else {
		e.be.ParallelFor(B, e.fwdFn)
	}
	e.layerArgs = kernelArgs[T]{}
	if kept != nil && reverse {
		copy(kept, links)
	}
}

// backwardStart returns the buffer that carries the link gradient through
// the layers, src copied into it: dst if given, else scratch.
func (e *hostEngine[T]) backwardStart(tape *Tape[T], dst, src []T) []T {
	e.grow(tape.B)
	g := dst
	if g == nil {
		g = e.glinks[:len(src)]
	}
	copy(g, src)
	return g
}

// layerBackward turns g from the gradient of layer k's output links into the
// gradient of its input links (reverse: of the inverse layer), adding the
// parameter gradients. In the recompute mode it first recomputes the
// conditioner input and the spline argument from the kept links, and the
// hidden activations before the kept one.
func (e *hostEngine[T]) layerBackward(k int, g []T, glogJ []float64, tape *Tape[T], reverse bool) {
	B := tape.B
	V := e.f.Arch.L * e.f.Arch.L
	c := &e.f.layers[k]
	rec, kept, rawA := e.layerRecord(tape, k, B)
	if kept != nil {
		e.layerArgs = kernelArgs[T]{layer: c, rec: rec, links: kept, B: B, N: B * V, V: V}
		e.be.ParallelFor(B, e.inputsFn)
		e.cond.forward(e, c, rec, B, max(len(c.convs)-2, 0))
	}
	e.layerArgs = kernelArgs[T]{layer: c, rec: rec, links: g, glogJ: glogJ, rawA: rawA, B: B, N: B * V, V: V, nA: e.f.nA}
	if reverse {
		e.be.ParallelFor(B, e.splineBwdRevFn)
	} else {
		e.be.ParallelFor(B, e.splineBwdFwdFn)
	}
	e.cond.backward(e, c, rec, B)
	e.be.ParallelFor(B, e.inBwd)
	e.layerArgs = kernelArgs[T]{}
	e.ginp = nil
}
