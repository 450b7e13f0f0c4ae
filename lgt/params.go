package lgt

import (
	"errors"
	"fmt"
	"math"
)

// Params are the parameters of the theory: an L×L lattice, the gauge
// coupling β of the Wilson plaquette action and the hopping parameter κ of
// the Wilson–Dirac operator D = 1 − κH.
type Params struct {
	L     int     // lattice extent in both directions; even, ≥ 2
	Beta  float64 // gauge coupling β
	Kappa float64 // hopping parameter κ
}

// The parameters of the paper: β = 2 and κ = 0.276, the critical hopping
// parameter of the two-flavour model at that β (the fermions are nearly
// massless).
const (
	PaperBeta  = 2.0
	PaperKappa = 0.276
)

// Paper returns the paper's parameters (PaperBeta, PaperKappa) on an L×L
// lattice.
func Paper(L int) Params { return Params{L: L, Beta: PaperBeta, Kappa: PaperKappa} }

// Validate reports whether p describes a lattice the package can handle:
// L ≥ 2 and even (the even–odd reduction needs a consistent checkerboard on
// the torus), β and κ finite.
func (p Params) Validate() error {
	if p.L < 2 || p.L%2 != 0 {
		return fmt.Errorf("lgt: lattice size L = %d: must be even and at least 2", p.L)
	}
	if math.IsNaN(p.Beta) || math.IsInf(p.Beta, 0) {
		return fmt.Errorf("lgt: beta = %v: must be finite", p.Beta)
	}
	if math.IsNaN(p.Kappa) || math.IsInf(p.Kappa, 0) {
		return fmt.Errorf("lgt: kappa = %v: must be finite", p.Kappa)
	}
	return nil
}

// V returns the number of sites L·L.
func (p Params) V() int { return p.L * p.L }

// ErrSingular is returned when D, or its even–odd Schur complement
// 1 − κ²H_oe H_eo, is exactly singular (a zero pivot in the LU), so that
// log|det D| = −∞ and D⁻¹ does not exist.
var ErrSingular = errors.New("lgt: Dirac operator is singular")

// ErrNonFinite is returned when a configuration contains NaN or infinite
// angles, or a result is not finite.
var ErrNonFinite = errors.New("lgt: non-finite value")
