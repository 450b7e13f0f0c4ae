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

	k                               *Kernels
	build, logdet, ptrs             cuda.Function
	nbr, odds, oddIdx               cuda.DevicePtr // the lattice's tables (int32)
	s, aptrs, piv, info, links, out cuda.DevicePtr
	allocs                          []cuda.DevicePtr
}

// LogDetBytes returns the device memory of a LogDet for L and maxB: the
// Schur complements (16 V² bytes each), the links, pivots and results,
// and the tables.
func LogDetBytes(L, maxB int) int {
	V := L * L
	return maxB*(16*V*V+8*2*V+4*V+4+8+8) + 4*(4*V+V/2+V)
}

// NewLogDet compiles action.cu and allocates the device memory for
// micro-batches of up to maxB configurations; L must be even.
func NewLogDet(k *Kernels, L int, kappa float64, maxB int) (*LogDet, error) {
	if L < 2 || L%2 != 0 || maxB < 1 {
		return nil, fmt.Errorf("gpu: log det for L = %d, micro-batch %d", L, maxB)
	}
	m, err := k.d.Compile("action.cu", actionSource)
	if err != nil {
		return nil, err
	}
	ld := &LogDet{L: L, MaxB: maxB, Kappa: kappa, k: k}
	for _, f := range []struct {
		dst  *cuda.Function
		name string
	}{{&ld.build, "build_schur_k"}, {&ld.logdet, "schur_logdet_k"}, {&ld.ptrs, "schur_ptrs_k"}} {
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
	nbr, odds, oddIdx := make([]int32, 4*V), make([]int32, 0, V/2), make([]int32, V)
	for i := range L {
		for j := range L {
			x := i*L + j
			nbr[4*x+0] = int32(((i+1)%L)*L + j)
			nbr[4*x+1] = int32(((i+L-1)%L)*L + j)
			nbr[4*x+2] = int32(i*L + (j+1)%L)
			nbr[4*x+3] = int32(i*L + (j+L-1)%L)
			if (i+j)%2 == 0 {
				oddIdx[x] = -1
			} else {
				oddIdx[x] = int32(len(odds))
				odds = append(odds, int32(x))
			}
		}
	}
	for _, t := range []struct {
		p *cuda.DevicePtr
		v []int32
	}{{&ld.nbr, nbr}, {&ld.odds, odds}, {&ld.oddIdx, oddIdx}} {
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
	}{{&ld.s, 16 * V * V * B}, {&ld.aptrs, 8 * B}, {&ld.piv, 4 * V * B}, {&ld.info, 4 * B}, {&ld.links, 8 * 2 * V * B}, {&ld.out, 8 * B}} {
		p, err := ld.alloc1(a.bytes)
		if err != nil {
			return err
		}
		*a.p = p
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
	V := ld.L * ld.L
	if B < 1 || B > ld.MaxB || len(logAbs) != B || len(links) != B*2*V {
		panic(fmt.Sprintf("gpu: LogDet.Compute: %d results, %d links for B = %d (at most %d)", len(logAbs), len(links), B, ld.MaxB))
	}
	if err := cuda.CopyIn(ld.k.d, ld.links, links); err != nil {
		return err
	}
	if err := cuda.Launch(ld.build, grid(B*V/2), block, ld.s, ld.links, ld.nbr, ld.odds, ld.oddIdx, int32(ld.L), ld.Kappa*ld.Kappa, int32(B)); err != nil {
		return err
	}
	if err := ld.k.d.ZgetrfBatched(V, ld.aptrs, V, ld.piv, ld.info, B); err != nil {
		return err
	}
	if err := cuda.Launch(ld.logdet, grid(B), block, ld.out, ld.s, ld.info, int32(V), int32(B)); err != nil {
		return err
	}
	return cuda.Download(ld.k.d, logAbs, ld.out)
}

// Singular reports whether a log|det D| of Compute marks a singular D.
func Singular(logAbs float64) bool { return math.IsNaN(logAbs) }

// LogDetCase is a recorded case of LogDet: the lattice, κ, the links of
// B configurations and lgt's log|det D| of each, written by the cgo test
// TestLogDetMatchesCPU (NFSCHWINGER_GPU_LOGDET) for the device check,
// which has no lgt.
type LogDetCase struct {
	L     int
	Kappa float64
	Links []float64
	Want  []float64
}

// checkLogDet runs c on the device and returns one message per
// configuration beyond 1e-12 of |log|det D|| + 1 (the bound of
// TestLogDetMatchesCPU).
func checkLogDet(k *Kernels, c LogDetCase) []string {
	B := len(c.Want)
	ld, err := NewLogDet(k, c.L, c.Kappa, B)
	if err != nil {
		return []string{err.Error()}
	}
	defer ld.Close()
	got := make([]float64, B)
	if err := ld.Compute(got, c.Links, B); err != nil {
		return []string{err.Error()}
	}
	var bad []string
	for b, w := range c.Want {
		if d := math.Abs(got[b] - w); !(d <= 1e-12*(math.Abs(w)+1)) {
			bad = append(bad, fmt.Sprintf("L = %d, κ = %g, configuration %d: log|det D| = %.17g, lgt %.17g", c.L, c.Kappa, b, got[b], w))
		}
	}
	return bad
}
