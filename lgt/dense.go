package lgt

import (
	"fmt"
	"math"
)

// The dense reference: LU and inverse of the whole (2V)×(2V) Dirac matrix.
// It costs 8× the LU work of the even–odd path plus a full inverse and
// O(V²) memory, and exists to check the even–odd path and to measure
// what the reduction gains.

// denseFactorize assembles D for links into e.dn and LU-factorizes it,
// returning log|det D| and the unreduced phase angle of det D.
func (e *Evaluator) denseFactorize(links []float64) (logAbs, angle float64, err error) {
	n := 2 * e.V
	if e.dn == nil {
		e.dn = make([]complex128, n*n)
		e.dipiv = make([]int32, n)
		e.dwork = make([]complex128, zgetriWorkLen(n))
	}
	DiracDense(e.dn, links, e.L, e.p.Kappa)
	if info := zgetrf(e.dn, n, e.dipiv); info != 0 {
		if info > 0 {
			return 0, 0, fmt.Errorf("%w: zero pivot %d of D", ErrSingular, info)
		}
		panic(fmt.Sprintf("lgt: zgetrf: illegal argument %d", -info))
	}
	logAbs, angle = luLogDet(e.dn, n, e.dipiv)
	if math.IsNaN(logAbs) || math.IsInf(logAbs, 0) {
		return 0, 0, fmt.Errorf("%w: log|det D| = %v", ErrNonFinite, logAbs)
	}
	return logAbs, angle, nil
}

// LogDetDense returns log|det D| and the phase det D/|det D| from an LU of
// the full Dirac matrix: the reference for LogDet.
func (e *Evaluator) LogDetDense(links []float64) (logAbs float64, phase complex128, err error) {
	if err := e.checkArgs("LogDetDense", links, nil); err != nil {
		return 0, 0, err
	}
	logAbs, angle, err := e.denseFactorize(links)
	if err != nil {
		return 0, 0, err
	}
	s, c := math.Sincos(angle)
	return logAbs, complex(c, s), nil
}

// MeasureDense is Measure computed from the LU and the dense inverse of the
// full Dirac matrix: the reference for the even–odd path, and the baseline
// of the benchmarks. The force is −2 Re Tr(D⁻¹ ∂D/∂θ) with the neighbour
// blocks read from the dense D⁻¹.
func (e *Evaluator) MeasureDense(links, force []float64) (Observables, error) {
	if err := e.checkArgs("MeasureDense", links, force); err != nil {
		return Observables{}, err
	}
	var o Observables
	L, V := e.L, e.V
	o.GaugeAction = GaugeAction(links, L, e.p.Beta)
	o.TopologicalCharge = TopologicalCharge(links, L)
	o.MeanCosPlaquette = MeanCosPlaquette(links, L)
	logAbs, angle, err := e.denseFactorize(links)
	if err != nil {
		return Observables{}, err
	}
	n := 2 * V
	if info := zgetri(e.dn, n, e.dipiv, e.dwork); info != 0 {
		return Observables{}, fmt.Errorf("%w: inverting D", ErrSingular)
	}
	g := e.dn // D⁻¹, row-major
	block := func(x, y int) mat2 {
		r := 2 * x * n
		return mat2{g[r+2*y], g[r+2*y+1], g[r+n+2*y], g[r+n+2*y+1]}
	}
	tr := 0.0
	for r := 0; r < n; r++ {
		tr += real(g[r*n+r])
	}
	if force != nil {
		clear(force)
		gaugeForce(force, e.sinP, links, L, e.p.Beta)
		for i := 0; i < L; i++ {
			for j := 0; j < L; j++ {
				x := i*L + j
				for mu := 0; mu < 2; mu++ {
					y, c := hop(links, L, i, j, 2*mu) // H(x, y) term: b e^{iθ}(1 − σ_μ)
					txy := scale2(c, proj[2*mu])
					tyx := scale2(complex(real(c), -imag(c)), proj[2*mu+1])
					f := 2 * e.p.Kappa * (imag(trMul2(block(x, y), tyx)) - imag(trMul2(block(y, x), txy)))
					force[mu*V+x] += f
				}
			}
		}
	}
	o.LogAbsDetD = logAbs
	o.SignDetD = signOf(angle)
	o.FermionAction = -2 * logAbs
	o.Action = o.GaugeAction + o.FermionAction
	o.Condensate = tr / float64(V)
	return o, nil
}
