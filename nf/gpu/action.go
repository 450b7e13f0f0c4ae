package gpu

import (
	_ "embed"
	"fmt"
	"math"

	"nfschwinger/internal/cuda"
)

//go:embed action.cu
var actionSource string

// LogDet computes log|det D| of the two-flavour Schwinger model's
// Wilson–Dirac operator (lgt's conventions: lgt/doc.go) for micro-batches
// of up to MaxB configurations of an L×L lattice on the device, the part
// of the action that costs: the even–odd Schur complement S = 1 − κ²
// H_oe H_eo (order V, complex128) built from the links there, cuBLAS's
// batched LU, and Σ_k log|U_kk| (det D = det S). lgt factorizes the
// hermitian σ₃S by Bunch–Kaufman instead; the determinant is the same.
// Memory is allocated by NewLogDet (LogDetBytes). Not safe for concurrent
// use.
type LogDet struct {
	L, MaxB int
	Kappa   float64
	// LU is the batched LU that factorizes S: cuBLAS's (CuBLASLU, the
	// default) or the blocked one (BlockedLU). The device check times
	// both.
	LU LUMethod

	k                               *Kernels
	build, logdet, ptrs             cuda.Function
	gauge, fermion                  cuda.Function
	panel, trsm                     cuda.Function  // the blocked LU's kernels
	nbr, odds, evens, oddIdx        cuda.DevicePtr // the lattice's tables (int32)
	s, aptrs, piv, info, links, out cuda.DevicePtr
	w, wptrs, force                 cuda.DevicePtr // with the force: W = S⁻¹, its addresses, dS/dθ
	withForce                       bool
	allocs                          []cuda.DevicePtr
}

// LUMethod is the batched LU of a LogDet.
type LUMethod int

// The batched LUs.
const (
	// CuBLASLU is cublasZgetrfBatched, meant by cuBLAS for small
	// matrices (S is 256 × 256 at L = 16, 576 × 576 at L = 24).
	CuBLASLU LUMethod = iota
	// BlockedLU factorizes panels of luPanel columns with partial
	// pivoting (a block of threads per matrix) and updates the trailing
	// matrix with one strided-batched ZGEMM per panel.
	BlockedLU
)

// String names the method as the device check's benchmarks do.
func (m LUMethod) String() string { return [...]string{"cublas", "blocked"}[m] }

// luPanel is the blocked LU's panel width in columns.
const luPanel = 32

// LogDetBytes returns the device memory of a LogDet for L and maxB (and
// withForce): the Schur complements (16 V² bytes each, twice with the
// force: W = S⁻¹), the links, pivots, results, addresses (and forces),
// and the tables.
func LogDetBytes(L, maxB int, withForce bool) int {
	V := L * L
	per := 16*V*V + 8*2*V + 4*V + 4 + 8 + 8
	if withForce {
		per += 16*V*V + 8 + 8*2*V
	}
	return maxB*per + 4*(4*V+V/2+V/2+V)
}

// NewLogDet compiles action.cu and allocates the device memory for
// micro-batches of up to maxB configurations, with the force (Force)
// when withForce; L must be even.
func NewLogDet(k *Kernels, L int, kappa float64, maxB int, withForce bool) (*LogDet, error) {
	if L < 2 || L%2 != 0 || maxB < 1 {
		return nil, fmt.Errorf("gpu: log det for L = %d, micro-batch %d", L, maxB)
	}
	m, err := k.d.Compile("action.cu", prelude()+actionSource)
	if err != nil {
		return nil, err
	}
	ld := &LogDet{L: L, MaxB: maxB, Kappa: kappa, k: k, withForce: withForce}
	for _, f := range []struct {
		dst  *cuda.Function
		name string
	}{{&ld.build, "build_schur_k"}, {&ld.logdet, "schur_logdet_k"}, {&ld.ptrs, "schur_ptrs_k"},
		{&ld.gauge, "gauge_force_k"}, {&ld.fermion, "fermion_force_k"}, {&ld.panel, "lu_panel_k"}, {&ld.trsm, "lu_trsm_k"}} {
		if *f.dst, err = m.Function(f.name); err != nil {
			return nil, err
		}
	}
	if err := ld.alloc(); err != nil {
		ld.Close()
		return nil, err
	}
	return ld, nil
}

// alloc uploads the tables (lgt.NewEvaluator's: the neighbours n_d(x) of
// lgt's hop directions, the odd sites and their positions) and allocates
// the buffers.
func (ld *LogDet) alloc() error {
	L, V := ld.L, ld.L*ld.L
	nbr, odds, evens, oddIdx := make([]int32, 4*V), make([]int32, 0, V/2), make([]int32, 0, V/2), make([]int32, V)
	for i := range L {
		for j := range L {
			x := i*L + j
			nbr[4*x+0] = int32(((i+1)%L)*L + j)
			nbr[4*x+1] = int32(((i+L-1)%L)*L + j)
			nbr[4*x+2] = int32(i*L + (j+1)%L)
			nbr[4*x+3] = int32(i*L + (j+L-1)%L)
			if (i+j)%2 == 0 {
				oddIdx[x] = -1
				evens = append(evens, int32(x))
			} else {
				oddIdx[x] = int32(len(odds))
				odds = append(odds, int32(x))
			}
		}
	}
	for _, t := range []struct {
		p *cuda.DevicePtr
		v []int32
	}{{&ld.nbr, nbr}, {&ld.odds, odds}, {&ld.evens, evens}, {&ld.oddIdx, oddIdx}} {
		p, err := ld.alloc1(4 * len(t.v))
		if err != nil {
			return err
		}
		if err := cuda.CopyIn(ld.k.d, p, t.v); err != nil {
			return err
		}
		*t.p = p
	}
	B := ld.MaxB
	for _, a := range []struct {
		p     *cuda.DevicePtr
		bytes int
	}{{&ld.s, 16 * V * V * B}, {&ld.aptrs, 8 * B}, {&ld.piv, 4 * V * B}, {&ld.info, 4 * B}, {&ld.links, 8 * 2 * V * B}, {&ld.out, 8 * B},
		{&ld.w, 16 * V * V * B}, {&ld.wptrs, 8 * B}, {&ld.force, 8 * 2 * V * B}} {
		if !ld.withForce && (a.p == &ld.w || a.p == &ld.wptrs || a.p == &ld.force) {
			continue
		}
		p, err := ld.alloc1(a.bytes)
		if err != nil {
			return err
		}
		*a.p = p
	}
	if ld.withForce {
		if err := cuda.Launch(ld.ptrs, grid(B), block, ld.wptrs, ld.w, int64(16*V*V), int32(B)); err != nil {
			return err
		}
	}
	return cuda.Launch(ld.ptrs, grid(B), block, ld.aptrs, ld.s, int64(16*V*V), int32(B))
}

func (ld *LogDet) alloc1(bytes int) (cuda.DevicePtr, error) {
	p, err := ld.k.d.Alloc(bytes)
	if err != nil {
		return 0, fmt.Errorf("gpu: log det, %d bytes: %w: %w", bytes, ErrOutOfMemory, err)
	}
	ld.allocs = append(ld.allocs, p)
	return p, nil
}

// Close frees the device memory.
func (ld *LogDet) Close() {
	for _, p := range ld.allocs {
		ld.k.d.Free(p)
	}
	ld.allocs = nil
}

// Compute writes log|det D| of the B configurations links (B·2V angles,
// lgt's layout; B ≤ MaxB) into logAbs (B); a configuration whose D is
// singular (a zero pivot of the LU) gets NaN.
func (ld *LogDet) Compute(logAbs, links []float64, B int) error {
	ld.checkCall("Compute", logAbs, len(links), B)
	if err := cuda.CopyIn(ld.k.d, ld.links, links); err != nil {
		return err
	}
	if err := ld.factorize(B); err != nil {
		return err
	}
	return cuda.Download(ld.k.d, logAbs, ld.out)
}

// ComputeFrom is Compute of links a flow holds on the same device
// (Flow.Output), widened to float64 there: nothing but the results
// crosses to the host.
func (ld *LogDet) ComputeFrom(logAbs []float64, x Links) error {
	if err := ld.load("ComputeFrom", logAbs, x); err != nil {
		return err
	}
	if err := ld.factorize(x.B); err != nil {
		return err
	}
	return cuda.Download(ld.k.d, logAbs, ld.out)
}

// load widens the device-held links x into ld.links.
func (ld *LogDet) load(name string, logAbs []float64, x Links) error {
	n := 2 * ld.L * ld.L * x.B
	ld.checkCall(name, logAbs, n, x.B)
	p := 1
	if x.elem == 4 {
		p = 0
	}
	return cuda.Launch(ld.k.widen[p], grid(n), block, ld.links, x.ptr, int64(n))
}

// checkCall panics unless the slices fit B ≤ MaxB configurations.
func (ld *LogDet) checkCall(name string, logAbs []float64, nLinks, B int) {
	V := ld.L * ld.L
	if B < 1 || B > ld.MaxB || len(logAbs) != B || nLinks != B*2*V {
		panic(fmt.Sprintf("gpu: LogDet.%s: %d results, %d links for B = %d (at most %d)", name, len(logAbs), nLinks, B, ld.MaxB))
	}
}

// factorize builds S from the links in ld.links, factorizes it and sums
// log|U_kk| into ld.out.
func (ld *LogDet) factorize(B int) error {
	V := ld.L * ld.L
	if err := cuda.Launch(ld.build, grid(B*V/2), block, ld.s, ld.links, ld.nbr, ld.odds, ld.oddIdx, int32(ld.L), ld.Kappa*ld.Kappa, int32(B)); err != nil {
		return err
	}
	var err error
	if ld.LU == BlockedLU {
		err = ld.blockedLU(B)
	} else {
		err = ld.k.d.ZgetrfBatched(V, ld.aptrs, V, ld.piv, ld.info, B)
	}
	if err != nil {
		return err
	}
	return cuda.Launch(ld.logdet, blocks(B), reduceBlock, ld.out, ld.s, ld.info, int32(V), int32(B))
}

// blockedLU factorizes the B matrices S in place as ZgetrfBatched does
// (the factors, 1-based pivots and info in its layout), panel by panel:
// lu_panel_k factorizes columns k0 … k0+nb−1 of every matrix (whole rows
// swapped), lu_trsm_k solves for the panel's rows right of it (U12), and
// one strided-batched ZGEMM takes L21·U12 from the trailing matrix.
func (ld *LogDet) blockedLU(B int) error {
	n := ld.L * ld.L
	stride := int64(n * n)
	at := func(r, c int) cuda.DevicePtr { return ld.s + cuda.DevicePtr(16*(r+c*n)) } // element (r, c) of matrix 0
	for k0 := 0; k0 < n; k0 += luPanel {
		nb := min(luPanel, n-k0)
		if err := cuda.Launch(ld.panel, blocks(B), reduceBlock, ld.s, ld.piv, ld.info, int32(n), stride, int32(k0), int32(nb)); err != nil {
			return err
		}
		rest := n - k0 - nb
		if rest == 0 {
			break
		}
		grid := cuda.Dim3{X: uint32(B), Y: uint32((rest + reduceThreads - 1) / reduceThreads)}
		if err := cuda.Launch(ld.trsm, grid, reduceBlock, ld.s, int32(n), stride, int32(k0), int32(nb)); err != nil {
			return err
		}
		if err := ld.k.d.ZgemmStridedBatched(cuda.NoTrans, cuda.NoTrans, rest, rest, nb, -1, at(k0+nb, k0), n, stride,
			at(k0, k0+nb), n, stride, 1, at(k0+nb, k0+nb), n, stride, B); err != nil {
			return err
		}
	}
	return nil
}

// Force is Compute, and writes dS/dθ of the total action S = S_G − 2
// log|det D| (gauge coupling beta) into force (B·2V, lgt's layout), as
// lgt.Evaluator.Action: W = S⁻¹ by cuBLAS's batched inverse from the
// factors, the neighbour blocks of D⁻¹ from it and the hops, the gauge
// force from the plaquettes. A configuration whose D is singular gets NaN
// in logAbs (its force is then meaningless). The LogDet must have been
// made withForce.
func (ld *LogDet) Force(logAbs, force, links []float64, beta float64, B int) error {
	ld.checkCall("Force", logAbs, len(links), B)
	if len(force) != B*2*ld.L*ld.L {
		panic(fmt.Sprintf("gpu: LogDet.Force: %d forces for B = %d", len(force), B))
	}
	if err := cuda.CopyIn(ld.k.d, ld.links, links); err != nil {
		return err
	}
	if _, err := ld.force1("Force", logAbs, beta, B); err != nil {
		return err
	}
	return cuda.Download(ld.k.d, force, ld.force)
}

// Force is the force dS/dθ of B configurations (B·2V float64, lgt's
// layout) kept on the device by LogDet.ForceFrom, valid until the
// LogDet's next call: the input of Flow.SetUpstream.
type Force struct {
	ptr cuda.DevicePtr
	B   int
}

// ForceFrom is Force of links a flow holds on the same device
// (Flow.Output), the force kept there: only log|det D| crosses to the
// host.
func (ld *LogDet) ForceFrom(logAbs []float64, x Links, beta float64) (Force, error) {
	if err := ld.load("ForceFrom", logAbs, x); err != nil {
		return Force{}, err
	}
	return ld.force1("ForceFrom", logAbs, beta, x.B)
}

// force1 computes log|det D| into logAbs and the force on the device
// from the links in ld.links.
func (ld *LogDet) force1(name string, logAbs []float64, beta float64, B int) (Force, error) {
	if !ld.withForce {
		panic("gpu: LogDet." + name + ": made without the force")
	}
	V := ld.L * ld.L
	if err := ld.factorize(B); err != nil {
		return Force{}, err
	}
	if err := ld.k.d.ZgetriBatched(V, ld.aptrs, V, ld.piv, ld.wptrs, V, ld.info, B); err != nil {
		return Force{}, err
	}
	if err := cuda.Launch(ld.gauge, grid(B*2*V), block, ld.force, ld.links, int32(ld.L), beta, int32(B)); err != nil {
		return Force{}, err
	}
	if err := cuda.Launch(ld.fermion, grid(B*V/2), block, ld.force, ld.w, ld.links, ld.nbr, ld.evens, ld.oddIdx, int32(ld.L), ld.Kappa, int32(B)); err != nil {
		return Force{}, err
	}
	return Force{ptr: ld.force, B: B}, cuda.Download(ld.k.d, logAbs, ld.out)
}

// Singular reports whether a log|det D| of Compute marks a singular D.
func Singular(logAbs float64) bool { return math.IsNaN(logAbs) }

// LogDetCase is a recorded case of LogDet: the lattice, κ and β, the
// links of B configurations and lgt's log|det D| and force dS/dθ (B·2V)
// of each, written by the cgo test TestLogDetMatchesCPU
// (NFSCHWINGER_GPU_LOGDET) for the device check, which has no lgt.
type LogDetCase struct {
	L           int
	Kappa, Beta float64
	Links       []float64
	Want, Force []float64
}

// checkLogDet runs c on the device, log det alone and with the force, and
// returns one message per result beyond its bound: log|det D| within
// 1e-12 of |log|det D|| + 1, the force within 1e-11 of its largest
// component (the same quantity from an LU and its inverse here, a
// Bunch–Kaufman factorization and its inverse in lgt).
func checkLogDet(k *Kernels, c LogDetCase) []string {
	B := len(c.Want)
	var bad []string
	for _, m := range []struct {
		lu        LUMethod
		withForce bool
	}{{CuBLASLU, false}, {CuBLASLU, true}, {BlockedLU, false}, {BlockedLU, true}} {
		withForce := m.withForce
		ld, err := NewLogDet(k, c.L, c.Kappa, B, withForce)
		if err != nil {
			return []string{err.Error()}
		}
		ld.LU = m.lu
		got, force := make([]float64, B), make([]float64, len(c.Links))
		if withForce {
			err = ld.Force(got, force, c.Links, c.Beta, B)
		} else {
			err = ld.Compute(got, c.Links, B)
		}
		ld.Close()
		if err != nil {
			return []string{err.Error()}
		}
		for b, w := range c.Want {
			if d := math.Abs(got[b] - w); !(d <= 1e-12*(math.Abs(w)+1)) {
				bad = append(bad, fmt.Sprintf("L = %d, κ = %g, configuration %d, %s LU, force %v: log|det D| = %.17g, lgt %.17g", c.L, c.Kappa, b, m.lu, withForce, got[b], w))
			}
		}
		if withForce {
			if e := RelErr(force, c.Force, false); !(e <= 1e-11) {
				bad = append(bad, fmt.Sprintf("L = %d, κ = %g, %s LU: force relative error %.3g > 1e-11", c.L, c.Kappa, m.lu, e))
			}
		}
	}
	return bad
}
