package lgt

import (
	"fmt"
	"math"
)

// Observables are the measurements of one configuration; the names match
// the datasets of shared/vectors/schwinger_L*.h5.
type Observables struct {
	GaugeAction       float64 // S_G = −β Σ_x cos P(x)
	FermionAction     float64 // S_F = −2 log|det D| (two flavours)
	Action            float64 // S = S_G + S_F
	LogAbsDetD        float64 // log|det D|
	SignDetD          float64 // sign of det D (real), ±1
	Condensate        float64 // Re Tr D⁻¹ / V
	TopologicalCharge float64 // Σ_x wrap(P(x)) / 2π
	MeanCosPlaquette  float64 // Σ_x cos P(x) / V
}

// Factorization and inversion methods for the Schur complement S; see
// Evaluator.factorize and Evaluator.invert.
const (
	invHerm  = iota // A = σ₃S is hermitian: Bunch–Kaufman zhetrf, then zhetri2
	invGetri        // LU (zgetrf), then zgetri in place
	invGetrs        // LU (zgetrf), then zgetrs against the identity
)

// Evaluator computes the action, the force and the observables of single
// configurations of one lattice. It owns all its workspace, allocated once
// by NewEvaluator (the dense reference methods allocate theirs on first
// use), so Action and Measure do not allocate. An Evaluator is used by one
// goroutine at a time; a Pool holds one per worker.
//
// The fermion determinant uses the even–odd reduction: with the sites split
// by the parity of i + j, D = [[1, −κH_eo], [−κH_oe, 1]] and
//
//	det D = det S,  S = 1 − κ² H_oe H_eo  (order V on the odd sites),
//
// factorized in complex128 (Bunch–Kaufman of the hermitian σ₃S, see
// factorize). The force and the condensate need only
// the blocks of D⁻¹ between neighbours and on the diagonal; they follow
// from W = S⁻¹ and sparse hops:
//
//	D⁻¹_oo = W,  D⁻¹_oe = κ W H_oe,  D⁻¹_eo = κ H_eo W,  D⁻¹_ee = 1 + κ H_eo D⁻¹_oe.
type Evaluator struct {
	p    Params
	L, V int
	n    int // order of S: 2 spins × V/2 odd sites = V

	nbr    []int32      // nbr[4x+d] = n_d(x)
	coef   []complex128 // coef[4x+d] = c_d(x) of the current configuration
	evens  []int32      // even sites, increasing
	odds   []int32      // odd sites, increasing
	oddIdx []int32      // oddIdx[x] = position of odd site x in odds

	s     []complex128 // S, then its LU, then W = S⁻¹ (row-major n×n)
	ident []complex128 // right-hand side for invGetrs
	ipiv  []int32
	work  []complex128
	sinP  []float64 // V
	inv   int       // invHerm, invGetri or invGetrs

	// dense reference, allocated on first use
	dn    []complex128
	dipiv []int32
	dwork []complex128
}

// NewEvaluator returns an Evaluator for the lattice p. It panics if p is
// invalid (call p.Validate first).
func NewEvaluator(p Params) *Evaluator {
	if err := p.Validate(); err != nil {
		panic(err.Error())
	}
	L, V := p.L, p.V()
	e := &Evaluator{p: p, L: L, V: V, n: V, inv: invHerm}
	e.nbr = make([]int32, nDirs*V)
	zero := make([]float64, 2*V)
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			for d := 0; d < nDirs; d++ {
				x, _ := hop(zero, L, i, j, d)
				e.nbr[nDirs*(i*L+j)+d] = int32(x)
			}
		}
	}
	e.coef = make([]complex128, nDirs*V)
	e.oddIdx = make([]int32, V)
	for x := 0; x < V; x++ {
		if (x/L+x%L)%2 == 0 {
			e.oddIdx[x] = -1
			e.evens = append(e.evens, int32(x))
		} else {
			e.oddIdx[x] = int32(len(e.odds))
			e.odds = append(e.odds, int32(x))
		}
	}
	e.s = make([]complex128, e.n*e.n)
	e.ipiv = make([]int32, e.n)
	e.work = make([]complex128, max(zgetriWorkLen(e.n), hermWorkLen(e.n)))
	e.sinP = make([]float64, V)
	return e
}

// Params returns the lattice parameters.
func (e *Evaluator) Params() Params { return e.p }

// checkArgs panics on slices of the wrong length and reports non-finite
// angles.
func (e *Evaluator) checkArgs(fn string, links, force []float64) error {
	if len(links) != 2*e.V {
		panic(fmt.Sprintf("lgt: %s: links has length %d, want 2V = %d", fn, len(links), 2*e.V))
	}
	if force != nil && len(force) != 2*e.V {
		panic(fmt.Sprintf("lgt: %s: force has length %d, want 2V = %d", fn, len(force), 2*e.V))
	}
	for _, t := range links {
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return fmt.Errorf("%w: angle %v in the links", ErrNonFinite, t)
		}
	}
	return nil
}

// Action returns the total action S = S_G + S_F = −β Σ cos P − 2 log|det D|
// of one configuration (links of length 2V, index μ·V + x). If force is not
// nil (length 2V) it receives dS/dθ_μ(x) for every link; on error its
// contents are unspecified. Errors: ErrNonFinite for NaN or infinite
// angles, ErrSingular for a singular D.
func (e *Evaluator) Action(links, force []float64) (float64, error) {
	if err := e.checkArgs("Action", links, force); err != nil {
		return 0, err
	}
	sg := GaugeAction(links, e.L, e.p.Beta)
	logAbs, _, err := e.factorize(links)
	if err != nil {
		return 0, err
	}
	if force != nil {
		clear(force)
		gaugeForce(force, e.sinP, links, e.L, e.p.Beta)
		if err := e.invert(); err != nil {
			return 0, err
		}
		e.fermionBlocks(force)
	}
	s := sg - 2*logAbs
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return 0, fmt.Errorf("%w: action %v", ErrNonFinite, s)
	}
	return s, nil
}

// Measure returns the observables of one configuration and, if force is
// not nil, writes dS/dθ into it as Action does. It always inverts the Schur
// complement (for the condensate), so it costs more than Action without
// force.
func (e *Evaluator) Measure(links, force []float64) (Observables, error) {
	if err := e.checkArgs("Measure", links, force); err != nil {
		return Observables{}, err
	}
	var o Observables
	o.GaugeAction = GaugeAction(links, e.L, e.p.Beta)
	o.TopologicalCharge = TopologicalCharge(links, e.L)
	o.MeanCosPlaquette = MeanCosPlaquette(links, e.L)
	logAbs, angle, err := e.factorize(links)
	if err != nil {
		return Observables{}, err
	}
	if err := e.invert(); err != nil {
		return Observables{}, err
	}
	if force != nil {
		clear(force)
		gaugeForce(force, e.sinP, links, e.L, e.p.Beta)
	}
	o.Condensate = e.fermionBlocks(force) / float64(e.V)
	o.LogAbsDetD = logAbs
	o.SignDetD = signOf(angle)
	o.FermionAction = -2 * logAbs
	o.Action = o.GaugeAction + o.FermionAction
	if math.IsNaN(o.Action+o.Condensate) || math.IsInf(o.Action+o.Condensate, 0) {
		return Observables{}, fmt.Errorf("%w: action %v, condensate %v", ErrNonFinite, o.Action, o.Condensate)
	}
	return o, nil
}

// LogDet returns log|det D| and the phase det D/|det D| of one
// configuration through the even–odd reduction. det D is real, so the phase
// is ±1 up to rounding.
func (e *Evaluator) LogDet(links []float64) (logAbs float64, phase complex128, err error) {
	if err := e.checkArgs("LogDet", links, nil); err != nil {
		return 0, 0, err
	}
	logAbs, angle, err := e.factorize(links)
	if err != nil {
		return 0, 0, err
	}
	s, c := math.Sincos(angle)
	return logAbs, complex(c, s), nil
}

// signOf returns the sign of the real number with phase angle a: +1 if
// cos a ≥ 0, else −1.
func signOf(a float64) float64 {
	if math.Cos(a) >= 0 {
		return 1
	}
	return -1
}

// setCoefs fills e.coef with the hop coefficients of links.
func (e *Evaluator) setCoefs(links []float64) {
	L := e.L
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			x := i*L + j
			for d := 0; d < nDirs; d++ {
				_, e.coef[nDirs*x+d] = hop(links, L, i, j, d)
			}
		}
	}
}

// projProd[d][d2] = P_d · P_d2.
var projProd = func() (pp [nDirs][nDirs]mat2) {
	for d := range pp {
		for d2 := range pp[d] {
			pp[d][d2] = mul2(proj[d], proj[d2])
		}
	}
	return pp
}()

// mul2 returns a·b.
func mul2(a, b mat2) mat2 {
	return mat2{
		a[0]*b[0] + a[1]*b[2], a[0]*b[1] + a[1]*b[3],
		a[2]*b[0] + a[3]*b[2], a[2]*b[1] + a[3]*b[3],
	}
}

// scale2 returns c·a.
func scale2(c complex128, a mat2) mat2 {
	return mat2{c * a[0], c * a[1], c * a[2], c * a[3]}
}

// trMul2 returns tr(a·b).
func trMul2(a, b mat2) complex128 {
	return a[0]*b[0] + a[1]*b[2] + a[2]*b[1] + a[3]*b[3]
}

// factorize builds S = 1 − κ² H_oe H_eo for links, factorizes it in e.s
// and returns log|det D| and the (unreduced) phase angle of det D.
//
// Default method (invHerm): D is σ₃-hermitian, hence so is S
// (σ₃ H_oe σ₃ = H_eoᴴ gives σ₃ S σ₃ = Sᴴ), and A = σ₃S is hermitian. A is
// factorized by Bunch–Kaufman, half the flops of an LU, and
// det D = det S = det σ₃ · det A = (−1)^{V/2} det A. The other methods
// LU-factorize S itself.
func (e *Evaluator) factorize(links []float64) (logAbs, angle float64, err error) {
	e.setCoefs(links)
	n, s := e.n, e.s
	clear(s)
	for r := 0; r < n; r++ {
		s[r*n+r] = 1
	}
	k2 := complex(e.p.Kappa*e.p.Kappa, 0)
	herm := e.inv == invHerm
	if herm { // σ₃ on the left: spin-1 rows change sign
		for r := 1; r < n; r += 2 {
			s[r*n+r] = -1
		}
	}
	for a, y := range e.odds {
		r0 := 2 * a * n
		r1 := r0 + n
		for d := 0; d < nDirs; d++ {
			ev := e.nbr[nDirs*int(y)+d]
			c1 := k2 * e.coef[nDirs*int(y)+d]
			for d2 := 0; d2 < nDirs; d2++ {
				if d2 == d^1 { // (1 ± σ)(1 ∓ σ) = 0: no back-tracking
					continue
				}
				z := e.nbr[nDirs*int(ev)+d2]
				c := c1 * e.coef[nDirs*int(ev)+d2]
				p := &projProd[d][d2]
				col := 2 * int(e.oddIdx[z])
				s[r0+col] -= c * p[0]
				s[r0+col+1] -= c * p[1]
				if herm {
					s[r1+col] += c * p[2]
					s[r1+col+1] += c * p[3]
				} else {
					s[r1+col] -= c * p[2]
					s[r1+col+1] -= c * p[3]
				}
			}
		}
	}
	if herm {
		if info := zhetrf(s, n, e.ipiv, e.work); info != 0 {
			if info > 0 {
				return 0, 0, fmt.Errorf("%w: zero pivot %d of the Schur complement", ErrSingular, info)
			}
			panic(fmt.Sprintf("lgt: zhetrf: illegal argument %d", -info))
		}
		logAbs, angle = bkLogDet(s, n, e.ipiv)
		if (n/2)%2 == 1 { // det σ₃ = (−1)^{n/2}
			angle += math.Pi
		}
		if math.IsNaN(logAbs) || math.IsInf(logAbs, 0) {
			return 0, 0, fmt.Errorf("%w: log|det D| = %v", ErrNonFinite, logAbs)
		}
		return logAbs, angle, nil
	}
	if info := zgetrf(s, n, e.ipiv); info != 0 {
		if info > 0 {
			return 0, 0, fmt.Errorf("%w: zero pivot %d of the Schur complement", ErrSingular, info)
		}
		panic(fmt.Sprintf("lgt: zgetrf: illegal argument %d", -info))
	}
	logAbs, angle = luLogDet(s, n, e.ipiv)
	if math.IsNaN(logAbs) || math.IsInf(logAbs, 0) {
		return 0, 0, fmt.Errorf("%w: log|det D| = %v", ErrNonFinite, logAbs)
	}
	return logAbs, angle, nil
}

// invert replaces the factors in e.s by W = S⁻¹ (row-major, all of it).
func (e *Evaluator) invert() error {
	n := e.n
	var info int
	switch e.inv {
	case invHerm:
		// zhetri2 leaves A⁻¹ in the upper triangle (row-major); complete it
		// by hermiticity and multiply by σ₃ from the right: W = A⁻¹σ₃.
		info = zhetri2(e.s, n, e.ipiv, e.work)
		if info != 0 {
			break
		}
		w := e.s
		for r := 0; r < n; r++ {
			w[r*n+r] = complex(real(w[r*n+r]), 0)
			for c := r + 1; c < n; c++ {
				v := w[r*n+c]
				w[c*n+r] = complex(real(v), -imag(v))
			}
		}
		for r := 0; r < n; r++ {
			row := w[r*n : (r+1)*n]
			for c := 1; c < n; c += 2 {
				row[c] = -row[c]
			}
		}
	case invGetrs:
		if e.ident == nil {
			e.ident = make([]complex128, n*n)
		}
		clear(e.ident)
		for r := 0; r < n; r++ {
			e.ident[r*n+r] = 1
		}
		info = zgetrs(e.s, n, e.ipiv, e.ident, n)
		copy(e.s, e.ident)
	default:
		info = zgetri(e.s, n, e.ipiv, e.work)
	}
	if info > 0 {
		return fmt.Errorf("%w: inverting the Schur complement", ErrSingular)
	}
	if info < 0 {
		panic(fmt.Sprintf("lgt: inverting the Schur complement: illegal argument %d", -info))
	}
	return nil
}

// fermionBlocks uses W = S⁻¹ in e.s and the hop coefficients of the current
// configuration. For every even site x and hop d to the odd site o = n_d(x)
// it forms the neighbour blocks of D⁻¹
//
//	G(o, x) = κ Σ_d' W(o, n_d'(x)) H(n_d'(x), x),  G(x, o) = κ Σ_d' H(x, n_d'(x)) W(n_d'(x), o),
//
// adds the fermion force of the link between x and o to force (if not nil),
//
//	dS_F/dθ = −2 Re Tr(D⁻¹ ∂D/∂θ) = 2κ [Im tr(G(x,y) T_yx) − Im tr(G(y,x) T_xy)]
//
// for the link θ_μ(x) from x to y = x + μ̂ with hop terms T_yx = b e^{−iθ}(1 + σ_μ)
// and T_xy = b e^{iθ}(1 − σ_μ), and returns Re Tr D⁻¹ = Re[Tr W + V + κ Σ tr(H_eo D⁻¹_oe)].
func (e *Evaluator) fermionBlocks(force []float64) float64 {
	n, w, V := e.n, e.s, e.V
	kappa := complex(e.p.Kappa, 0)
	trace := complex(float64(V), 0)
	for r := 0; r < n; r++ {
		trace += w[r*n+r]
	}
	var col [nDirs]int // 2·odd index of the neighbours
	var teo, toe [nDirs]mat2
	var wb [nDirs][nDirs]mat2
	for _, x := range e.evens {
		for d := 0; d < nDirs; d++ {
			o := e.nbr[nDirs*int(x)+d]
			col[d] = 2 * int(e.oddIdx[o])
			c := e.coef[nDirs*int(x)+d]
			teo[d] = scale2(c, proj[d])
			toe[d] = scale2(complex(real(c), -imag(c)), proj[d^1])
		}
		for d := 0; d < nDirs; d++ {
			r0 := col[d] * n
			r1 := r0 + n
			for d2 := 0; d2 < nDirs; d2++ {
				c := col[d2]
				wb[d][d2] = mat2{w[r0+c], w[r0+c+1], w[r1+c], w[r1+c+1]}
			}
		}
		for d := 0; d < nDirs; d++ {
			var goe, geo mat2
			for d2 := 0; d2 < nDirs; d2++ {
				a := mul2(wb[d][d2], toe[d2])
				b := mul2(teo[d2], wb[d2][d])
				for k := range goe {
					goe[k] += a[k]
					geo[k] += b[k]
				}
			}
			goe = scale2(kappa, goe)
			geo = scale2(kappa, geo)
			trace += kappa * trMul2(teo[d], goe)
			if force == nil {
				continue
			}
			f := 2 * e.p.Kappa * (imag(trMul2(geo, toe[d])) - imag(trMul2(goe, teo[d])))
			switch d {
			case 0: // link θ₀(x), x even
				force[x] += f
			case 1: // link θ₀(x − 0̂), x − 0̂ odd
				force[e.nbr[nDirs*int(x)+1]] -= f
			case 2: // link θ₁(x)
				force[V+int(x)] += f
			case 3: // link θ₁(x − 1̂)
				force[V+int(e.nbr[nDirs*int(x)+3])] -= f
			}
		}
	}
	return real(trace)
}
