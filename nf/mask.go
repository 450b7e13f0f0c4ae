package nf

import (
	"fmt"

	"nfschwinger/lgt"
)

// MaskPeriod is the number of coupling layers after which the masks repeat:
// four offsets in direction 0, then four in direction 1.
const MaskPeriod = 8

// Masks are the masks of one coupling layer on an L×L lattice (paper, eq.
// A.1, with the offsets of the reference vectors). Layer k updates links in
// direction Mu = ⌊k/4⌋ mod 2 with offset k mod 4: θ_μ(x) for the sites x =
// (i, j) with, for μ = 0, (i − off) mod 4 = 0 and j even, or (i − off) mod 4
// = 2 and j odd (for μ = 1 the same with i and j exchanged). The plaquette
// P(x) at an updated link's site is active (transformed by the spline); the
// other plaquette containing that link, P(x − ν̂), is passive; all
// plaquettes that contain no updated link are frozen and feed the
// conditioner, together with the 2x1 loops long in direction ν = 1 − μ at the
// frozen plaquettes' sites (which contain no updated link either).
//
// All slices are indexed like the reference vectors: sites x = i·L + j,
// links and loops c·V + x.
type Masks struct {
	L, Layer    int
	Mu          int    // direction of the updated links
	Offset      int    // k mod 4
	LinkMask    []bool // 2V: link μ·V + x is updated
	PlaqActive  []bool // V
	PlaqFrozen  []bool // V
	PlaqPassive []bool // V
	LoopsFrozen []bool // 2V: loop channel c·V + x feeds the conditioner
	Active      []int  // sites of the active plaquettes (= updated links), ascending
}

// NewMasks returns the masks of layer k on an L×L lattice. It panics when L
// is not a positive multiple of 4 or k < 0 (Arch.Validate checks L).
func NewMasks(L, k int) *Masks {
	if L < 4 || L%4 != 0 || k < 0 {
		panic(fmt.Sprintf("nf: NewMasks(L=%d, k=%d): need L a positive multiple of 4 and k ≥ 0", L, k))
	}
	V := L * L
	m := &Masks{
		L: L, Layer: k, Mu: (k / 4) % 2, Offset: k % 4,
		LinkMask: make([]bool, 2*V), PlaqActive: make([]bool, V), PlaqFrozen: make([]bool, V),
		PlaqPassive: make([]bool, V), LoopsFrozen: make([]bool, 2*V),
	}
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			// a: coordinate along μ, b: coordinate along ν.
			a, b := i, j
			if m.Mu == 1 {
				a, b = j, i
			}
			r := ((a-m.Offset)%4 + 4) % 4
			x := i*L + j
			if (r == 0 && b%2 == 0) || (r == 2 && b%2 == 1) {
				m.LinkMask[m.Mu*V+x] = true
				m.PlaqActive[x] = true
				m.Active = append(m.Active, x)
			}
			if r%2 == 1 {
				m.PlaqFrozen[x] = true
				m.LoopsFrozen[(1-m.Mu)*V+x] = true
			}
		}
	}
	// The passive plaquette of the link θ_μ(x) is P(x − ν̂).
	for _, x := range m.Active {
		i, j := x/L, x%L
		if m.Mu == 0 {
			j--
		} else {
			i--
		}
		m.PlaqPassive[lgt.Site(i, j, L)] = true
	}
	return m
}
