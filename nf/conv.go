package nf

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Conv2D is a two-dimensional convolution with circular (periodic) padding
// over B configurations of an L×L lattice, with PyTorch's semantics
// (torch.nn.Conv2d with padding_mode="circular", padding = Dil·(K−1)/2):
// the cross-correlation
//
//	out[co][b·V + i·L + j] = Bias[co] + Σ_{ci,ki,kj} Weight[co,ci,ki,kj] ·
//	    in[ci][b·V + ((i + (ki−K/2)·Dil) mod L)·L + ((j + (kj−K/2)·Dil) mod L)]
//
// with V = L². Activations are channel-major, [C][B·V] (see the package
// doc). Weight is row-major (Cout, Cin, K, K), Bias has Cout entries; both
// are views into a ParamSet, and GradWeight, GradBias the views of the
// gradients at the same offsets.
//
// It is computed as im2col followed by one matrix product:
// col[(ci·K + ki)·K + kj][n] = the input term above for column n = b·V + x,
// then out = Weight[Cout][Cin·K·K] · col. Nothing is kept between Forward and
// Backward: Backward recomputes col from the input (cheaper than storing it,
// K² times the input).
type Conv2D[T Float] struct {
	Cin, Cout, K, Dil    int
	Weight, Bias         []T // parameters: (Cout, Cin, K, K) and (Cout)
	GradWeight, GradBias []T // their gradients, same shapes
}

// Workspace is the reusable scratch of Conv2D (im2col buffers, per-worker
// partial weight gradients) and the state of its parallel loops. It grows to
// the largest convolution it has served, so steady-state calls do not
// allocate. A Workspace must not be used by two goroutines at once; one may
// serve any number of convolutions in sequence. The zero value is ready to
// use.
type Workspace[T Float] struct {
	col   []T           // whole im2col matrix [Cin·K·K][B·V] (generic path)
	wflip []T           // [Cin][Cout·K·K], the flipped weights of backwardTileT
	slots []convSlot[T] // one per worker (fused CPU path)

	// Arguments of the current parallel loop: the fn values below are bound
	// once, so passing them to ParallelFor does not allocate.
	c                  *Conv2D[T]
	seq                seqGemmer
	in, out, gout, gin []T
	B, L, nslots       int
	im2colFn, col2imFn func(lo, hi int)
	biasFn, gbiasFn    func(lo, hi int)
	fwdFn, bwdFn       func(lo, hi int)

	// Convolutions at a subset of the sites (conv_sites.go): the sites,
	// the source site of every kernel tap for each of them, and the loops.
	sites               []int
	taps                []int32
	gatherFn, scatterFn func(lo, hi int)

	// Arguments of the parallel activation kernels.
	actX, actY []T
	slope      T
	actFn      func(lo, hi int)
}

// convSlot is the scratch of one worker of the fused path: a tile of the
// im2col matrix and its partial weight gradient.
type convSlot[T Float] struct {
	col []T // [Cin·K·K][tile columns], or [Cout·K·K][tile columns] (backwardTileT)
	gw  []T // [Cout][Cin·K·K], this worker's share of dL/dW ([Cout·K·K][Cin] in backwardTileT)
}

// convTileCols is the target number of columns (sites of the batch) of one
// im2col tile on the fused path: Cin·K²·convTileCols elements (2.4 MB at
// Cin·K² = 576 in float32) stay in the cache between im2col and the product
// that consumes them, and the product is still wide enough for OpenBLAS's
// full speed. Measured best among 256…4096 at L = 8 and 16 (BenchmarkConditioner).
const convTileCols = 1024

// bind binds the loop functions once.
func (ws *Workspace[T]) bind() {
	if ws.im2colFn == nil {
		ws.im2colFn = ws.im2colRange
		ws.col2imFn = ws.col2imRange
		ws.biasFn = ws.biasRange
		ws.gbiasFn = ws.gbiasRange
		ws.fwdFn = ws.forwardSlots
		ws.bwdFn = ws.backwardSlots
		ws.actFn = ws.actRange
		ws.gatherFn = ws.gatherRange
		ws.scatterFn = ws.scatterRange
	}
}

// grow returns x resized to n elements, reallocating only when too small.
func grow[T Float](x []T, n int) []T {
	if cap(x) < n {
		return make([]T, n)
	}
	return x[:n]
}

// tileConfigs returns the configurations per tile of the fused path.
func tileConfigs(L int) int { return max(1, convTileCols/(L*L)) }

// setup prepares the fused path for c over B configurations of L×L: one slot
// per worker, each with a tile buffer (and a partial weight gradient when
// withGrad).
func (ws *Workspace[T]) setup(c *Conv2D[T], be Backend, B, L int, withGrad bool) {
	ws.nslots = min(be.Workers(), B)
	if len(ws.slots) < ws.nslots {
		ws.slots = append(ws.slots, make([]convSlot[T], ws.nslots-len(ws.slots))...)
	}
	rows := c.Cin * c.K * c.K
	if withGrad && ws.gin != nil {
		rows = max(rows, c.Cout*c.K*c.K) // backwardTileT
	}
	tile := min(tileConfigs(L), B) * L * L
	for s := range ws.slots[:ws.nslots] {
		sl := &ws.slots[s]
		if c.K > 1 {
			sl.col = grow(sl.col, rows*tile)
		}
		if withGrad {
			sl.gw = grow(sl.gw, c.Cout*c.Cin*c.K*c.K)
		}
	}
}

// clearArgs drops the references to the caller's buffers.
func (ws *Workspace[T]) clearArgs() {
	ws.c, ws.seq, ws.in, ws.out, ws.gout, ws.gin, ws.sites = nil, nil, nil, nil, nil, nil, nil
}

// check panics unless the slices fit the convolution over B configurations of
// L×L (programming errors).
func (c *Conv2D[T]) check(B, L int, name string, x []T, want int) {
	if c.K < 1 || c.K%2 == 0 || c.Dil < 1 || c.Cin < 1 || c.Cout < 1 {
		panic(fmt.Sprintf("nf: Conv2D: bad shape Cin=%d Cout=%d K=%d Dil=%d", c.Cin, c.Cout, c.K, c.Dil))
	}
	if B < 1 || L < 1 {
		panic(fmt.Sprintf("nf: Conv2D: bad batch B=%d L=%d", B, L))
	}
	if len(c.Weight) != c.Cout*c.Cin*c.K*c.K || len(c.Bias) != c.Cout {
		panic(fmt.Sprintf("nf: Conv2D: weight/bias lengths %d/%d, want %d/%d", len(c.Weight), len(c.Bias), c.Cout*c.Cin*c.K*c.K, c.Cout))
	}
	if len(x) != want {
		panic(fmt.Sprintf("nf: Conv2D: len(%s) = %d, want %d", name, len(x), want))
	}
}

// Forward writes into out (len Cout·B·V) the convolution of in (len Cin·B·V)
// for B configurations of L×L. in and out must not overlap; in is not
// modified.
//
// On the CPU backend the work is split by configurations over the workers,
// each running im2col and the product tile by tile, so that a tile of the
// im2col matrix is consumed while it is in the cache. Other backends get
// im2col of the whole batch and one product.
func (c *Conv2D[T]) Forward(be Backend, out, in []T, B, L int, ws *Workspace[T]) {
	N := B * L * L
	c.check(B, L, "in", in, c.Cin*N)
	c.check(B, L, "out", out, c.Cout*N)
	ws.bind()
	ws.c, ws.in, ws.out, ws.B, ws.L = c, in, out, B, L
	defer ws.clearArgs()
	if seq, ok := be.(seqGemmer); ok {
		ws.seq = seq
		ws.setup(c, be, B, L, false)
		be.ParallelFor(ws.nslots, ws.fwdFn)
		return
	}
	CKK := c.Cin * c.K * c.K
	col := in
	be.ParallelFor(B, ws.biasFn)
	if c.K > 1 {
		ws.col = grow(ws.col, CKK*N)
		col = ws.col
		be.ParallelFor(B, ws.im2colFn)
	}
	gemm(be, false, false, c.Cout, N, CKK, 1, c.Weight, CKK, col, N, 1, out, N)
}

// Backward is the vector–Jacobian product of Forward. Given gout = dL/dout
// (len Cout·B·V) and the input in of the forward pass, it ADDS dL/dWeight
// into GradWeight and dL/dBias into GradBias, and WRITES dL/din into gin
// (len Cin·B·V; skipped when gin is nil). gin must not overlap gout or in.
//
// The im2col matrix is recomputed from in, not kept from Forward. On the CPU
// backend every worker accumulates its configurations' weight gradient in
// its own buffer; the buffers are summed at the end.
func (c *Conv2D[T]) Backward(be Backend, gin, gout, in []T, B, L int, ws *Workspace[T]) {
	N := B * L * L
	c.check(B, L, "in", in, c.Cin*N)
	c.check(B, L, "gout", gout, c.Cout*N)
	if gin != nil {
		c.check(B, L, "gin", gin, c.Cin*N)
	}
	if len(c.GradWeight) != len(c.Weight) || len(c.GradBias) != len(c.Bias) {
		panic(fmt.Sprintf("nf: Conv2D.Backward: gradient lengths %d/%d, want %d/%d", len(c.GradWeight), len(c.GradBias), len(c.Weight), len(c.Bias)))
	}
	CKK := c.Cin * c.K * c.K
	ws.bind()
	ws.c, ws.in, ws.gout, ws.gin, ws.B, ws.L = c, in, gout, gin, B, L
	defer ws.clearArgs()
	be.ParallelFor(c.Cout, ws.gbiasFn)
	if seq, ok := be.(seqGemmer); ok {
		ws.seq = seq
		ws.setup(c, be, B, L, true)
		if gin == nil || c.K == 1 {
			be.ParallelFor(ws.nslots, ws.bwdFn)
			for s := range ws.slots[:ws.nslots] {
				addTo(c.GradWeight, ws.slots[s].gw)
			}
			return
		}
		// backwardTileT: flipped weights in, flipped gradients out.
		KK := c.K * c.K
		ws.wflip = grow(ws.wflip, len(c.Weight))
		for co := range c.Cout {
			for ci := range c.Cin {
				for t := range KK {
					ws.wflip[(ci*c.Cout+co)*KK+KK-1-t] = c.Weight[(co*c.Cin+ci)*KK+t]
				}
			}
		}
		be.ParallelFor(ws.nslots, ws.bwdFn)
		for s := range ws.slots[:ws.nslots] {
			gw := ws.slots[s].gw
			for co := range c.Cout {
				for t := range KK {
					g := gw[(co*KK+KK-1-t)*c.Cin:][:c.Cin]
					for ci, v := range g {
						c.GradWeight[(co*c.Cin+ci)*KK+t] += v
					}
				}
			}
		}
		return
	}
	col := in
	if c.K > 1 {
		ws.col = grow(ws.col, CKK*N)
		col = ws.col
		be.ParallelFor(B, ws.im2colFn)
	}
	// dW[Cout][CKK] += gout[Cout][N] · col[CKK][N]ᵀ
	gemm(be, false, true, c.Cout, CKK, N, 1, gout, N, col, N, 1, c.GradWeight, CKK)
	if gin != nil {
		if c.K == 1 {
			gemm(be, true, false, CKK, N, c.Cout, 1, c.Weight, CKK, gout, N, 0, gin, N)
		} else {
			// dcol[CKK][N] = Wᵀ · gout, then scatter-add into gin.
			gemm(be, true, false, CKK, N, c.Cout, 1, c.Weight, CKK, gout, N, 0, col, N)
			be.ParallelFor(B, ws.col2imFn)
		}
	}
}

// FLOPs returns the floating-point operations of one Forward over B
// configurations of L×L: 2 per multiply–add of the matrix product.
func (c *Conv2D[T]) FLOPs(B, L int) float64 {
	return 2 * float64(c.Cout) * float64(c.Cin*c.K*c.K) * float64(B*L*L)
}

// slotConfigs returns the configurations [b0, b1) of slot s.
func (ws *Workspace[T]) slotConfigs(s int) (b0, b1 int) {
	return s * ws.B / ws.nslots, (s + 1) * ws.B / ws.nslots
}

// forwardSlots is the fused forward pass of slots [lo, hi): per tile of
// configurations, bias, im2col into the slot's buffer, and the product.
func (ws *Workspace[T]) forwardSlots(lo, hi int) {
	c, L := ws.c, ws.L
	V := L * L
	N := ws.B * V
	CKK := c.Cin * c.K * c.K
	tb := tileConfigs(L)
	for s := lo; s < hi; s++ {
		b0, b1 := ws.slotConfigs(s)
		for t0 := b0; t0 < b1; t0 += tb {
			t1 := min(t0+tb, b1)
			n := (t1 - t0) * V
			fillBias(ws.out, c.Bias, N, t0*V, t1*V)
			col, ldcol := ws.in[t0*V:], N
			if c.K > 1 {
				col, ldcol = ws.slots[s].col, n
				im2col(col, ldcol, ws.in, N, c.Cin, c.K, c.Dil, t0, t1, L)
			}
			gemmSeq(ws.seq, false, false, c.Cout, n, CKK, 1, c.Weight, CKK, col, ldcol, 1, ws.out[t0*V:], N)
		}
	}
}

// backwardSlots is the fused backward pass of slots [lo, hi). Without an
// input gradient (or for K = 1): per tile, im2col of the input, then the
// slot's weight gradient gout·colᵀ (and gin = Wᵀ·gout for K = 1). With an
// input gradient and K > 1 it uses the im2col matrix of the OUTPUT gradient
// instead (see backwardTileT): one im2col per tile and no col2im.
func (ws *Workspace[T]) backwardSlots(lo, hi int) {
	c, L := ws.c, ws.L
	V := L * L
	N := ws.B * V
	CKK := c.Cin * c.K * c.K
	tb := tileConfigs(L)
	for s := lo; s < hi; s++ {
		b0, b1 := ws.slotConfigs(s)
		sl := &ws.slots[s]
		beta := T(0)
		for t0 := b0; t0 < b1; t0 += tb {
			t1 := min(t0+tb, b1)
			if ws.gin != nil && c.K > 1 {
				ws.backwardTileT(sl, t0, t1, beta)
				beta = 1
				continue
			}
			n := (t1 - t0) * V
			col, ldcol := ws.in[t0*V:], N
			if c.K > 1 {
				col, ldcol = sl.col, n
				im2col(col, ldcol, ws.in, N, c.Cin, c.K, c.Dil, t0, t1, L)
			}
			gout := ws.gout[t0*V:]
			gemmSeq(ws.seq, false, true, c.Cout, CKK, n, 1, gout, N, col, ldcol, beta, sl.gw, CKK)
			beta = 1
			if ws.gin != nil { // K == 1
				gemmSeq(ws.seq, true, false, CKK, n, c.Cout, 1, c.Weight, CKK, gout, N, 0, ws.gin[t0*V:], N)
			}
		}
		if beta == 0 { // no configurations: contribute nothing
			clear(sl.gw)
		}
	}
}

// backwardTileT is the backward pass of configurations [t0, t1) through the
// im2col matrix of the output gradient, colG[(co·K² + s)][n] =
// gout[co][n + d_s] (im2col with Cout channels). With the flipped tap
// s̄ = K²−1−s, d_s̄ = −d_s, so that
//
//	dW[co][ci][t]  = Σ_n gout[co][n] in[ci][n + d_t] = Σ_n colG[(co, t̄)][n] in[ci][n]
//	gin[ci][n]     = Σ_{co,t} W[co][ci][t] gout[co][n − d_t] = Σ_{co,s} Wf[ci][(co, s)] colG[(co, s)][n]
//
// with Wf[ci][(co, s)] = W[co][ci][s̄] (ws.wflip). The first product goes,
// in the layout [(co, s)][ci], into the slot's sl.gw (beta = 0 on the
// slot's first tile, then 1); Backward adds it to GradWeight, un-flipping
// the taps. This replaces im2col of the input plus col2im (K² strided
// accumulations) by one im2col, and the products keep their sizes.
func (ws *Workspace[T]) backwardTileT(sl *convSlot[T], t0, t1 int, beta T) {
	c, L := ws.c, ws.L
	V := L * L
	N := ws.B * V
	n := (t1 - t0) * V
	CoKK := c.Cout * c.K * c.K
	im2col(sl.col, n, ws.gout, N, c.Cout, c.K, c.Dil, t0, t1, L)
	in := ws.in[t0*V:]
	gemmSeq(ws.seq, false, true, CoKK, c.Cin, n, 1, sl.col, n, in, N, beta, sl.gw, c.Cin)
	gemmSeq(ws.seq, false, false, c.Cin, n, CoKK, 1, ws.wflip, CoKK, sl.col, n, 0, ws.gin[t0*V:], N)
}

// fillBias sets out[co][n0:n1] = bias[co] for every channel (rows of length N).
func fillBias[T Float](out, bias []T, N, n0, n1 int) {
	for co, bv := range bias {
		row := out[co*N+n0 : co*N+n1]
		for i := range row {
			row[i] = bv
		}
	}
}

// biasRange fills the bias of configurations [lo, hi) (generic path).
func (ws *Workspace[T]) biasRange(lo, hi int) {
	V := ws.L * ws.L
	fillBias(ws.out, ws.c.Bias, ws.B*V, lo*V, hi*V)
}

// gbiasRange adds Σ_n gout[co][n] into GradBias[co] for channels [lo, hi),
// summing in float64.
func (ws *Workspace[T]) gbiasRange(lo, hi int) {
	c := ws.c
	N := ws.B * ws.L * ws.L
	for co := lo; co < hi; co++ {
		var s float64
		for _, g := range ws.gout[co*N : (co+1)*N] {
			s += float64(g)
		}
		c.GradBias[co] += T(s)
	}
}

// im2colRange fills the columns of configurations [lo, hi) of the whole
// im2col matrix ws.col (generic path).
func (ws *Workspace[T]) im2colRange(lo, hi int) {
	V := ws.L * ws.L
	N := ws.B * V
	im2col(ws.col[lo*V:], N, ws.in, N, ws.c.Cin, ws.c.K, ws.c.Dil, lo, hi, ws.L)
}

// col2imRange writes gin of configurations [lo, hi) from the whole column
// gradient ws.col (generic path).
func (ws *Workspace[T]) col2imRange(lo, hi int) {
	V := ws.L * ws.L
	N := ws.B * V
	col2im(ws.gin, N, ws.col[lo*V:], N, ws.c, lo, hi, ws.L)
}

// im2col writes the im2col columns of configurations [b0, b1) of the
// activations in ([Cin][N]) into col, row r = (ci·K + ki)·K + kj at
// col[r·ld + (b−b0)·V + x].
//
// For each input channel and configuration it first writes the K rows of
// the centre tap ki = K/2, shifted along j only (2 short copies per lattice
// row), and then every other row as a rotation of the centre row of its kj
// by whole lattice rows (2 long copies): K× fewer short copies than shifting
// every tap directly.
func im2col[T Float](col []T, ld int, in []T, N int, Cin, K, Dil int, b0, b1, L int) {
	V := L * L
	h := K / 2
	for ci := range Cin {
		for b := b0; b < b1; b++ {
			src := in[ci*N+b*V : ci*N+(b+1)*V]
			off := (b - b0) * V
			for kj := range K {
				centre := col[((ci*K+h)*K+kj)*ld+off:][:V]
				shiftRows(centre, src, L, mod(kj-h, L, Dil))
				for ki := range K {
					if ki == h {
						continue
					}
					// row ki: element i·L+j is the centre's ((i+di) mod L)·L+j.
					sh := mod(ki-h, L, Dil) * L
					d := col[((ci*K+ki)*K+kj)*ld+off:][:V]
					copy(d[:V-sh], centre[sh:])
					copy(d[V-sh:], centre[:sh])
				}
			}
		}
	}
}

// shiftRows sets d[i·L + j] = s[i·L + (j+dj) mod L] for the L rows of
// length L of d and s (len L², 0 ≤ dj < L): one long copy of the whole
// block shifted by e ≡ dj (mod L), |e| ≤ L/2, which is right except for the
// |e| wrapped elements at one end of every row, then those elements.
// Cheaper than two short copies per row when rows are short.
func shiftRows[T Float](d, s []T, L, dj int) {
	V := L * L
	d, s = d[:V], s[:V]
	e := dj
	if 2*e > L {
		e -= L
	}
	switch {
	case e > 0: // the last e elements of each row come from its start
		copy(d[:V-e], s[e:])
		for i := 0; i < V; i += L {
			copy(d[i+L-e:i+L], s[i:i+e])
		}
	case e < 0: // the first −e elements of each row come from its end
		copy(d[-e:], s[:V+e])
		for i := 0; i < V; i += L {
			copy(d[i:i-e], s[i+L+e:i+L])
		}
	default:
		copy(d, s)
	}
}

// col2im writes into gin ([Cin][N]) for configurations [b0, b1) the sum over
// kernel taps of the shifted rows of col (laid out as in im2col): the
// adjoint of im2col, in the reverse order of its steps. It uses the centre
// rows of col as accumulators, so col is overwritten.
func col2im[T Float](gin []T, N int, col []T, ld int, c *Conv2D[T], b0, b1, L int) {
	V := L * L
	K, h := c.K, c.K/2
	for ci := range c.Cin {
		for b := b0; b < b1; b++ {
			dst := gin[ci*N+b*V : ci*N+(b+1)*V]
			clear(dst)
			off := (b - b0) * V
			for kj := range K {
				dj := mod(kj-h, L, c.Dil)
				centre := col[((ci*K+h)*K+kj)*ld+off:][:V]
				for ki := range K {
					if ki == h {
						continue
					}
					sh := mod(ki-h, L, c.Dil) * L
					s := col[((ci*K+ki)*K+kj)*ld+off:][:V]
					addTo(centre[sh:], s[:V-sh])
					addTo(centre[:sh], s[V-sh:])
				}
				for i := range L {
					s := centre[i*L : (i+1)*L]
					d := dst[i*L : (i+1)*L]
					addTo(d[dj:], s[:L-dj])
					addTo(d[:dj], s[L-dj:])
				}
			}
		}
	}
}

// addTo sets d[i] += s[i]; len(s) == len(d).
func addTo[T Float](d, s []T) {
	s = s[:len(d)]
	for i, v := range s {
		d[i] += v
	}
}

// mod returns (t·dil) mod L in [0, L).
func mod(t, L, dil int) int {
	r := (t * dil) % L
	if r < 0 {
		r += L
	}
	return r
}

// InitConvUniform fills the weights w and biases b of a convolution with
// PyTorch's default initialization of nn.Conv2d: kaiming_uniform with
// a = √5 for the weights, which is U(−1/√fanIn, 1/√fanIn), and the same
// uniform for the biases; fanIn = Cin·K·K.
func InitConvUniform[T Float](w, b []T, fanIn int, rng *rand.Rand) {
	if fanIn < 1 {
		panic(fmt.Sprintf("nf: InitConvUniform: fanIn = %d", fanIn))
	}
	bound := 1 / math.Sqrt(float64(fanIn))
	for i := range w {
		w[i] = T((2*rng.Float64() - 1) * bound)
	}
	for i := range b {
		b[i] = T((2*rng.Float64() - 1) * bound)
	}
}
