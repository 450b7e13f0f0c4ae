package nf

import (
	"math"
	"unsafe"

	"nfschwinger/internal/vec"
	"nfschwinger/lgt"
)

// The gauge-equivariant coupling layer (shared/vectors/README.md, "The
// coupling layer, in words"), forward and reverse, with hand-written
// vector–Jacobian products. One layer over a micro-batch of B configurations:
//
//  1. P = plaquettes, ℓ = 2x1 loops of the incoming links (mod 2π).
//  2. Conditioner input [6][B·V]: cos(P·frozen), sin(P·frozen), cos(ℓ_c·frozen_c)
//     (c = 0, 1), sin(ℓ_c·frozen_c).
//  3. Convolutions with LeakyReLU between them: raw spline parameters
//     [3n+1][B·nA], the last convolution evaluated at the nA = V/4 active
//     sites only (Conv2D.ForwardSites).
//  4. Active plaquettes: forward P' = (g(P) + t) mod 2π, log J += log g'(P);
//     reverse P = g⁻¹((P' − t) mod 2π), log J −= log g'(P).
//  5. δ = P' − P; masked links θ_μ(x) += δ(x) (μ = 0) or −= δ(x) (μ = 1), mod 2π.
//
// The frozen plaquettes and loops contain no updated link, so the reverse
// layer sees the same conditioner input as the forward one.
//
// What a layer records for its backward pass (a layerRecord, one per layer in
// a store-everything Tape): the conditioner's input and the output of every
// convolution after its activation ([C][B·V] each; the last, the raw
// spline parameters, [C][B·nA] at the active sites), and the spline's argument at every site (the
// plaquette P before the layer, in both directions; meaningful at active
// sites). The backward pass recomputes everything else: knots from the raw
// parameters, cos/sin of the frozen angles are the recorded input itself.
//
// A recompute-mode Tape keeps less per layer: the links on the forward side
// of the layer [B·2V], the last hidden activation (the record's acts[len−2]),
// and at the active sites only the raw spline parameters and the spline
// argument P ([3n+2][B·nA], kernelArgs.rawA, nA = len(Masks.Active); P as
// computed going forward, or the preimage solved in reverse, so that the
// backward pass sees exactly the store-everything record). The backward
// pass rebuilds the rest of the record in the flow's scratch: inputsRange
// on the kept links gives the conditioner input (the frozen plaquettes and
// loops contain no updated link, so they are the same on both sides of the
// layer), and the convolutions before the last two give the other hidden
// activations.

// coupling is one coupling layer: its masks and its conditioner.
type coupling[T Float] struct {
	masks *Masks
	convs []Conv2D[T] // views into the flow's ParamSet
}

// layerRecord is the view of one layer's recorded activations for a batch of
// B configurations (N = B·V): acts[j] is [C_j][N] with C_j = Arch.Channels()[j]
// (acts[0] the conditioner input), except the last, the raw spline
// parameters, which is [C][B·nA]: computed at the active sites only, column
// b·nA + i for site Masks.Active[i] of configuration b; x is the spline
// argument [N].
type layerRecord[T Float] struct {
	acts [][]T
	x    []T
}

// kernelArgs are the arguments of the per-configuration kernels of the
// current layer; the kernels are func values bound once (Backend.ParallelFor
// then does not allocate).
type kernelArgs[T Float] struct {
	layer   *coupling[T]
	rec     layerRecord[T]
	links   []T       // B·2V links, updated in place (forward/reverse) or their gradient (backward)
	logJ    []float64 // B, accumulated
	glogJ   []float64 // B, upstream gradient of log J (nil: zero)
	rawA    []T       // recompute mode: raw spline parameters and spline argument at the active sites, [3n+2][B·nA]; nil otherwise
	B, N, V int
	nA      int // active sites per configuration (stride of rawA)
}

// keepActive copies the spline argument (k.rec.x) of configuration b at the
// active sites of mask m into channel nOut of k.rawA (the raw spline
// parameters are there already: the last convolution writes them into the
// tape).
func (k *kernelArgs[T]) keepActive(m *Masks, b, nOut int) {
	M := k.B * k.nA
	src := k.rec.x[b*k.V : (b+1)*k.V]
	dst := k.rawA[nOut*M+b*k.nA : nOut*M+(b+1)*k.nA]
	for i, x := range m.Active {
		dst[i] = src[x]
	}
}

// sign returns +1 for direction 0 and −1 for direction 1: the sign with which
// δ enters the updated link.
func (m *Masks) sign() float64 {
	if m.Mu == 0 {
		return 1
	}
	return -1
}

// inputsRange computes, for configurations [lo, hi), the plaquettes (into
// rec.x) and loops of the links and the conditioner input rec.acts[0]
// (a float32 flow's in C, vectorized: vec.PlaquettesLoops, vec.CosSin).
func (e *hostEngine[T]) inputsRange(lo, hi int) {
	k := &e.layerArgs
	m := k.layer.masks
	L, V, N := e.f.Arch.L, k.V, k.N
	inp := k.rec.acts[0]
	for b := lo; b < hi; b++ {
		links := k.links[b*2*V : (b+1)*2*V]
		P := k.rec.x[b*V : (b+1)*V]
		lp := e.loops[b*2*V : (b+1)*2*V]
		o := b * V
		if unsafe.Sizeof(T(0)) == 4 { // float32: vectorized in C, lgt's bits
			vec.PlaquettesLoops(as32(P), as32(lp), as32(links), L)
			vec.CosSin(as32(inp[o:o+V]), as32(inp[N+o:N+o+V]), as32(P), m.PlaqFrozen)
			for ch := range 2 {
				vec.CosSin(as32(inp[(2+ch)*N+o:][:V]), as32(inp[(4+ch)*N+o:][:V]), as32(lp[ch*V:(ch+1)*V]), m.LoopsFrozen[ch*V:(ch+1)*V])
			}
			continue
		}
		lgt.Plaquettes(P, links, L)
		lgt.Loops2x1(lp, links, L)
		for x := 0; x < V; x++ {
			c, s := T(1), T(0)
			if m.PlaqFrozen[x] {
				c, s = cosSin(P[x])
			}
			inp[o+x], inp[N+o+x] = c, s
			for ch := 0; ch < 2; ch++ {
				c, s := T(1), T(0)
				if m.LoopsFrozen[ch*V+x] {
					c, s = cosSin(lp[ch*V+x])
				}
				inp[(2+ch)*N+o+x], inp[(4+ch)*N+o+x] = c, s
			}
		}
	}
}

// cosSin returns cos v and sin v in T.
func cosSin[T Float](v T) (T, T) {
	s, c := math.Sincos(float64(v))
	return T(c), T(s)
}

// couplingForwardRange applies the spline to the active plaquettes of
// configurations [lo, hi) and updates their links and log J.
func (e *hostEngine[T]) couplingForwardRange(lo, hi int) {
	k := &e.layerArgs
	m := k.layer.masks
	V, M := k.V, k.B*k.nA
	n := e.f.Arch.NKnots - 1
	raw := k.rec.acts[len(k.rec.acts)-1] // [3n+1][M], active sites only
	sgn := T(m.sign())
	var sp splineSite[T]
	chunk := newChunk()
	defer chunks.Put(chunk)
	for b := lo; b < hi; b++ {
		links := k.links[b*2*V+m.Mu*V : b*2*V+(m.Mu+1)*V]
		logJ := 0.0
		for i, x := range m.Active {
			si := b*k.nA + i
			sp.loadChunk(chunk, raw, M, si, n, hi*k.nA)
			P := k.rec.x[b*V+x]
			g, logd, _ := sp.forward(P)
			Pp := lgt.Mod2Pi(g + raw[3*n*M+si])
			links[x] = lgt.Mod2Pi(links[x] + sgn*(Pp-P))
			logJ += logd
		}
		k.logJ[b] += logJ
		if k.rawA != nil {
			k.keepActive(m, b, 3*n+1)
		}
	}
}

// couplingReverseRange inverts the spline on the active plaquettes of
// configurations [lo, hi), updates their links and log J, and overwrites
// rec.x at the active sites with the preimages P.
func (e *hostEngine[T]) couplingReverseRange(lo, hi int) {
	k := &e.layerArgs
	m := k.layer.masks
	V, M := k.V, k.B*k.nA
	n := e.f.Arch.NKnots - 1
	raw := k.rec.acts[len(k.rec.acts)-1] // [3n+1][M], active sites only
	sgn := T(m.sign())
	var sp splineSite[T]
	chunk := newChunk()
	defer chunks.Put(chunk)
	for b := lo; b < hi; b++ {
		links := k.links[b*2*V+m.Mu*V : b*2*V+(m.Mu+1)*V]
		logJ := 0.0
		for i, x := range m.Active {
			s, si := b*V+x, b*k.nA+i
			sp.loadChunk(chunk, raw, M, si, n, hi*k.nA)
			Pp := k.rec.x[s]
			P, logd := sp.inverse(lgt.Mod2Pi(Pp - raw[3*n*M+si]))
			k.rec.x[s] = P
			links[x] = lgt.Mod2Pi(links[x] - sgn*(Pp-P))
			logJ -= logd
		}
		k.logJ[b] += logJ
		if k.rawA != nil {
			k.keepActive(m, b, 3*n+1)
		}
	}
}

// splineBackwardRange starts the backward pass of a layer for configurations
// [lo, hi): from the gradient of the outgoing links (k.links, read at the
// updated links) and of log J it writes the gradient of the raw spline
// parameters (e.gbuf[0], [3n+1][B·nA], active sites only) and the direct
// gradient of the incoming plaquettes at the active sites (e.pbar, zero
// elsewhere). reverse selects the reverse layer. The raw spline parameters
// and the spline argument come from k.rawA in recompute mode, else from the
// record.
func (e *hostEngine[T]) splineBackwardRange(lo, hi int, reverse bool) {
	k := &e.layerArgs
	m := k.layer.masks
	V, M := k.V, k.B*k.nA
	n := e.f.Arch.NKnots - 1
	nOut := 3*n + 1
	raw := k.rec.acts[len(k.rec.acts)-1]
	if k.rawA != nil {
		raw = k.rawA
	}
	graw := e.gbuf[0][:nOut*M] // every entry is written below
	sgn := T(m.sign())
	var sp splineSite[T]
	chunk := newChunk()
	defer chunks.Put(chunk)
	for b := lo; b < hi; b++ {
		clear(e.pbar[b*V : (b+1)*V])
		var gl T
		if k.glogJ != nil {
			gl = T(k.glogJ[b])
		}
		glinks := k.links[b*2*V+m.Mu*V : b*2*V+(m.Mu+1)*V]
		for i, x := range m.Active {
			s, si := b*V+x, b*k.nA+i
			sp.loadChunk(chunk, raw, M, si, n, hi*k.nA)
			var P T
			if k.rawA != nil {
				P = k.rawA[nOut*M+si]
			} else {
				P = k.rec.x[s]
			}
			if !reverse {
				// θ' = θ ± δ, δ = g(P) + t − P (mod 2π, derivative 1).
				gd := sgn * glinks[x]
				gx := sp.backwardForward(P, gd, gl, graw, M, si)
				graw[3*n*M+si] = gd
				e.pbar[s] = gx - gd
			} else {
				// θ = θ' ∓ δ, δ = P' − P, P = g⁻¹(u), u = P' − t, log J = −log g'(P);
				// here e.pbar is the gradient of the incoming plaquette P'.
				gd := -sgn * glinks[x]
				gu := sp.backwardInverse(P, -gd, gl, graw, M, si)
				graw[3*n*M+si] = -gu
				e.pbar[s] = gd + gu
			}
		}
	}
}

func (e *hostEngine[T]) splineBackwardForwardRange(lo, hi int) { e.splineBackwardRange(lo, hi, false) }
func (e *hostEngine[T]) splineBackwardReverseRange(lo, hi int) { e.splineBackwardRange(lo, hi, true) }

// inputsBackwardRange finishes the backward pass of a layer for
// configurations [lo, hi): it adds the gradient of the conditioner input
// (e.ginp) to the plaquette gradients e.pbar and the loop gradients of the
// frozen ones, and adds their transposes into the link gradient k.links.
func (e *hostEngine[T]) inputsBackwardRange(lo, hi int) {
	k := &e.layerArgs
	m := k.layer.masks
	L, V, N := e.f.Arch.L, k.V, k.N
	inp, gin := k.rec.acts[0], e.ginp
	for b := lo; b < hi; b++ {
		o := b * V
		pbar := e.pbar[o : o+V]
		lbar := e.lbar[b*2*V : (b+1)*2*V]
		for x := 0; x < V; x++ {
			// d cos(P)/dP = −sin P = −inp[1], d sin(P)/dP = cos P = inp[0].
			if m.PlaqFrozen[x] {
				pbar[x] += -inp[N+o+x]*gin[o+x] + inp[o+x]*gin[N+o+x]
			}
			for ch := 0; ch < 2; ch++ {
				var g T
				if m.LoopsFrozen[ch*V+x] {
					ic, is := (2+ch)*N+o+x, (4+ch)*N+o+x
					g = -inp[is]*gin[ic] + inp[ic]*gin[is]
				}
				lbar[ch*V+x] = g
			}
		}
		plaquettesTranspose(k.links[b*2*V:(b+1)*2*V], pbar, L)
		loopsTranspose(k.links[b*2*V:(b+1)*2*V], lbar, L)
	}
}

// plaquettesTranspose adds to the link gradient g (2V) the transpose of
// lgt.Plaquettes applied to the plaquette gradient pbar (V).
func plaquettesTranspose[T Float](g, pbar []T, L int) {
	V := L * L
	g0, g1 := g[:V], g[V:2*V]
	for i := 0; i < L; i++ {
		ip := (i + 1) % L
		for j := 0; j < L; j++ {
			x := i*L + j
			p := pbar[x]
			if p == 0 {
				continue
			}
			jp := (j + 1) % L
			g0[x] += p
			g1[ip*L+j] += p
			g0[i*L+jp] -= p
			g1[x] -= p
		}
	}
}

// loopsTranspose adds to the link gradient g (2V) the transpose of
// lgt.Loops2x1 applied to the loop gradient lbar (2V).
func loopsTranspose[T Float](g, lbar []T, L int) {
	V := L * L
	g0, g1 := g[:V], g[V:2*V]
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			x := i*L + j
			if p := lbar[x]; p != 0 {
				g0[x] += p
				g0[lgt.Site(i+1, j, L)] += p
				g1[lgt.Site(i+2, j, L)] += p
				g0[lgt.Site(i+1, j+1, L)] -= p
				g0[lgt.Site(i, j+1, L)] -= p
				g1[x] -= p
			}
			if p := lbar[V+x]; p != 0 {
				g1[x] += p
				g1[lgt.Site(i, j+1, L)] += p
				g0[lgt.Site(i, j+2, L)] += p
				g1[lgt.Site(i+1, j+1, L)] -= p
				g1[lgt.Site(i+1, j, L)] -= p
				g0[x] -= p
			}
		}
	}
}
