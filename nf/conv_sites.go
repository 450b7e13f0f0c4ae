package nf

import "fmt"

// Convolutions evaluated at a subset of the sites. The coupling layer needs
// the conditioner's last convolution (64 → 25 channels for the paper's
// architecture, a third of its flops) only at the V/4 active plaquettes of
// the layer: ForwardSites gathers the im2col columns of those sites alone
// and runs one product of Cout × (Cin·K²) × (B·nS); BackwardSites is its
// vector–Jacobian product, with the input gradient scattered from those
// columns into the receptive fields of the sites (col2im restricted to
// them). Results equal those of Forward / Backward at the same sites (and a
// zero output gradient elsewhere) up to the order of the float sums.
//
// Compact layout: out and gout are [Cout][B·nS], column b·nS + i holding
// site sites[i] of configuration b (nS = len(sites)); in and gin are the
// usual [Cin][B·V].

// ForwardSites writes into out (len Cout·B·nS, compact layout above) the
// convolution of in (len Cin·B·V) at the sites sites (indices x = i·L + j
// in [0, V)) of each of the B configurations of L×L. in is not modified;
// in and out must not overlap.
func (c *Conv2D[T]) ForwardSites(be Backend, out, in []T, B, L int, sites []int, ws *Workspace[T]) {
	N, M := B*L*L, B*len(sites)
	c.check(B, L, "in", in, c.Cin*N)
	c.checkSites(sites, L)
	if len(out) != c.Cout*M {
		panic(fmt.Sprintf("nf: Conv2D.ForwardSites: len(out) = %d, want %d", len(out), c.Cout*M))
	}
	if M == 0 {
		return
	}
	CKK := c.Cin * c.K * c.K
	ws.bind()
	ws.c, ws.in, ws.out, ws.B, ws.L, ws.sites = c, in, out, B, L, sites
	defer ws.clearArgs()
	ws.siteTaps(c, sites, L)
	ws.col = grow(ws.col, CKK*M)
	be.ParallelFor(B, ws.gatherFn)
	for co, bv := range c.Bias {
		row := out[co*M : (co+1)*M]
		for i := range row {
			row[i] = bv
		}
	}
	gemm(be, false, false, c.Cout, M, CKK, 1, c.Weight, CKK, ws.col, M, 1, out, M)
}

// BackwardSites is the vector–Jacobian product of ForwardSites. Given
// gout = dL/dout (compact, len Cout·B·nS) and the input in of the forward
// pass, it ADDS dL/dWeight into GradWeight and dL/dBias into GradBias, and
// WRITES dL/din into gin (len Cin·B·V, zero outside the receptive fields of
// the sites; skipped when gin is nil). gin must not overlap gout or in.
func (c *Conv2D[T]) BackwardSites(be Backend, gin, gout, in []T, B, L int, sites []int, ws *Workspace[T]) {
	N, M := B*L*L, B*len(sites)
	c.check(B, L, "in", in, c.Cin*N)
	c.checkSites(sites, L)
	if len(gout) != c.Cout*M {
		panic(fmt.Sprintf("nf: Conv2D.BackwardSites: len(gout) = %d, want %d", len(gout), c.Cout*M))
	}
	if gin != nil {
		c.check(B, L, "gin", gin, c.Cin*N)
	}
	if len(c.GradWeight) != len(c.Weight) || len(c.GradBias) != len(c.Bias) {
		panic(fmt.Sprintf("nf: Conv2D.BackwardSites: gradient lengths %d/%d, want %d/%d", len(c.GradWeight), len(c.GradBias), len(c.Weight), len(c.Bias)))
	}
	if M == 0 {
		if gin != nil {
			clear(gin)
		}
		return
	}
	CKK := c.Cin * c.K * c.K
	ws.bind()
	ws.c, ws.in, ws.gout, ws.gin, ws.B, ws.L, ws.sites = c, in, gout, gin, B, L, sites
	defer ws.clearArgs()
	ws.siteTaps(c, sites, L)
	for co := range c.Cout {
		var s float64
		for _, g := range gout[co*M : (co+1)*M] {
			s += float64(g)
		}
		c.GradBias[co] += T(s)
	}
	ws.col = grow(ws.col, CKK*M)
	be.ParallelFor(B, ws.gatherFn)
	// dW[Cout][CKK] += gout[Cout][M] · col[CKK][M]ᵀ
	gemm(be, false, true, c.Cout, CKK, M, 1, gout, M, ws.col, M, 1, c.GradWeight, CKK)
	if gin == nil {
		return
	}
	// dcol[CKK][M] = Wᵀ · gout, then scatter-add into gin.
	gemm(be, true, false, CKK, M, c.Cout, 1, c.Weight, CKK, gout, M, 0, ws.col, M)
	be.ParallelFor(B, ws.scatterFn)
}

// FLOPsSites returns the floating-point operations of one ForwardSites at
// nSites sites of each of B configurations (2 per multiply–add).
func (c *Conv2D[T]) FLOPsSites(B, nSites int) float64 {
	return 2 * float64(c.Cout) * float64(c.Cin*c.K*c.K) * float64(B*nSites)
}

// checkSites panics unless every site is in [0, L²).
func (c *Conv2D[T]) checkSites(sites []int, L int) {
	for _, x := range sites {
		if x < 0 || x >= L*L {
			panic(fmt.Sprintf("nf: Conv2D: site %d outside the %d×%d lattice", x, L, L))
		}
	}
}

// siteTaps fills ws.taps[t·nS + i] with the source site (in one
// configuration) of kernel tap t = ki·K + kj for output site sites[i]:
// ((i + (ki − K/2)·Dil) mod L)·L + (j + (kj − K/2)·Dil) mod L.
func (ws *Workspace[T]) siteTaps(c *Conv2D[T], sites []int, L int) {
	K, h, nS := c.K, c.K/2, len(sites)
	if cap(ws.taps) < K*K*nS {
		ws.taps = make([]int32, K*K*nS)
	}
	ws.taps = ws.taps[:K*K*nS]
	for ki := range K {
		di := mod(ki-h, L, c.Dil)
		for kj := range K {
			dj := mod(kj-h, L, c.Dil)
			t := ws.taps[(ki*K+kj)*nS : (ki*K+kj+1)*nS]
			for i, x := range sites {
				r, q := x/L, x%L
				t[i] = int32(((r+di)%L)*L + (q+dj)%L)
			}
		}
	}
}

// gatherRange fills the im2col columns of configurations [lo, hi) at the
// sites: ws.col[r·M + b·nS + i] = in[ci][b·V + taps[t·nS + i]] for row
// r = ci·K² + t.
func (ws *Workspace[T]) gatherRange(lo, hi int) {
	c := ws.c
	V := ws.L * ws.L
	N := ws.B * V
	KK, nS := c.K*c.K, len(ws.sites)
	M := ws.B * nS
	for ci := range c.Cin {
		for t := range KK {
			tap := ws.taps[t*nS : (t+1)*nS]
			row := ws.col[(ci*KK+t)*M:]
			for b := lo; b < hi; b++ {
				src := ws.in[ci*N+b*V : ci*N+(b+1)*V]
				dst := row[b*nS : (b+1)*nS]
				for i, x := range tap {
					dst[i] = src[x]
				}
			}
		}
	}
}

// scatterRange writes gin of configurations [lo, hi): zero, then the
// column gradient ws.col added at the source sites of every tap (the
// adjoint of gatherRange).
func (ws *Workspace[T]) scatterRange(lo, hi int) {
	c := ws.c
	V := ws.L * ws.L
	N := ws.B * V
	KK, nS := c.K*c.K, len(ws.sites)
	M := ws.B * nS
	for ci := range c.Cin {
		for b := lo; b < hi; b++ {
			clear(ws.gin[ci*N+b*V : ci*N+(b+1)*V])
		}
		for t := range KK {
			tap := ws.taps[t*nS : (t+1)*nS]
			row := ws.col[(ci*KK+t)*M:]
			for b := lo; b < hi; b++ {
				dst := ws.gin[ci*N+b*V : ci*N+(b+1)*V]
				src := row[b*nS : (b+1)*nS]
				for i, x := range tap {
					dst[x] += src[i]
				}
			}
		}
	}
}
