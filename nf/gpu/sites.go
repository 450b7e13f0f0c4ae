package gpu

import (
	"fmt"

	"nfschwinger/internal/cuda"
)

// Sites are the device tables of a convolution evaluated at a subset of
// the sites of an L×L lattice (the active plaquettes of a coupling
// layer): for kernel tap t = ki·K + kj and output site i, the source site
// taps[t·nS + i] = ((r + (ki − K/2)·Dil) mod L)·L + (c + (kj − K/2)·Dil)
// mod L of sites[i] = r·L + c (nf's Workspace.siteTaps), and the inverse
// inv[t·V + s], the output site whose tap t reads s or −1 (each tap maps
// the sites one to one, so the adjoint gathers without atomics).
type Sites struct {
	N         int // sites per configuration
	L, K, Dil int
	taps, inv cuda.DevicePtr
	d         cuda.Driver
}

// NewSites uploads the tables of sites (indices i·L + j in [0, L²)) for a
// K×K kernel with dilation dil.
func NewSites(d cuda.Driver, sites []int, L, K, dil int) (*Sites, error) {
	V, KK, nS, h := L*L, K*K, len(sites), K/2
	taps, inv := make([]int32, KK*nS), make([]int32, KK*V)
	for i := range inv {
		inv[i] = -1
	}
	mod := func(a int) int { return ((a % L) + L) % L }
	for ki := range K {
		for kj := range K {
			t := ki*K + kj
			for i, x := range sites {
				if x < 0 || x >= V {
					return nil, fmt.Errorf("gpu: site %d outside the %d×%d lattice", x, L, L)
				}
				src := mod(x/L+(ki-h)*dil)*L + mod(x%L+(kj-h)*dil)
				if inv[t*V+src] >= 0 {
					return nil, fmt.Errorf("gpu: sites %d and %d read the same site through tap %d", inv[t*V+src], i, t)
				}
				taps[t*nS+i], inv[t*V+src] = int32(src), int32(i)
			}
		}
	}
	s := &Sites{N: nS, L: L, K: K, Dil: dil, d: d}
	var err error
	if s.taps, err = cuda.Upload(d, taps); err != nil {
		return nil, err
	}
	if s.inv, err = cuda.Upload(d, inv); err != nil {
		d.Free(s.taps)
		return nil, err
	}
	return s, nil
}

// Close frees the tables.
func (s *Sites) Close() {
	s.d.Free(s.taps)
	s.d.Free(s.inv)
}

func (c *Conv[T]) checkSites(s *Sites, L int) {
	if s.L != L || s.K != c.K || s.Dil != c.Dil {
		panic(fmt.Sprintf("gpu: sites for L=%d K=%d Dil=%d used with L=%d K=%d Dil=%d", s.L, s.K, s.Dil, L, c.K, c.Dil))
	}
}

// ForwardSites writes out ([Cout][B·nS], column b·nS + i for site i of
// configuration b) = the convolution of in ([Cin][B·V]) at the sites, as
// nf.Conv2D.ForwardSites.
func (c *Conv[T]) ForwardSites(out, in, w, bias cuda.DevicePtr, B, L int, s *Sites) error {
	c.checkSites(s, L)
	M, KK := B*s.N, c.K*c.K
	CKK := c.Cin * KK
	p := c.prec()
	if err := cuda.Launch(c.k.fillBias[p], grid(c.Cout*M), block, out, bias, int32(c.Cout), int64(M)); err != nil {
		return err
	}
	if err := c.workspace(CKK, M); err != nil {
		return err
	}
	if err := c.gatherSites(in, s, B, L); err != nil {
		return err
	}
	return gemm[T](c.k.d, cuda.NoTrans, cuda.NoTrans, M, c.Cout, CKK, 1, c.col, M, w, CKK, 1, out, M)
}

// BackwardSites is the vector–Jacobian product of ForwardSites, as
// nf.Conv2D.BackwardSites: it ADDS the weight and bias gradients and
// WRITES gin ([Cin][B·V], zero outside the sites' receptive fields;
// skipped when gin is 0) from gout ([Cout][B·nS]).
func (c *Conv[T]) BackwardSites(gin, gout, in, w, gw, gb cuda.DevicePtr, B, L int, s *Sites) error {
	c.checkSites(s, L)
	M, KK := B*s.N, c.K*c.K
	CKK := c.Cin * KK
	p := c.prec()
	if err := c.biasGrad(gb, gout, M); err != nil {
		return err
	}
	if err := c.workspace(CKK, M); err != nil {
		return err
	}
	if err := c.gatherSites(in, s, B, L); err != nil {
		return err
	}
	if err := gemm[T](c.k.d, cuda.Trans, cuda.NoTrans, CKK, c.Cout, M, 1, c.col, M, gout, M, 1, gw, CKK); err != nil {
		return err
	}
	if gin == 0 {
		return nil
	}
	if err := gemm[T](c.k.d, cuda.NoTrans, cuda.Trans, M, CKK, c.Cout, 1, gout, M, w, CKK, 0, c.col, M); err != nil {
		return err
	}
	return cuda.Launch(c.k.scatter[p], grid(B*L*L), block, gin, c.col, s.inv, int32(c.Cin), int32(KK), int32(s.N), int32(L*L), int32(B))
}

// gatherSites writes the im2col matrix of in at the sites into the
// workspace: a thread per column (grid x) and tap (grid y).
func (c *Conv[T]) gatherSites(in cuda.DevicePtr, s *Sites, B, L int) error {
	g := grid(B * s.N)
	g.Y = uint32(c.K * c.K)
	return cuda.Launch(c.k.gather[c.prec()], g, block, c.col, in, s.taps, int32(c.Cin), int32(c.K*c.K), int32(s.N), int32(L*L), int32(B))
}
