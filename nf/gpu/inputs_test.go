package gpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"nfschwinger/internal/cuda"
)

// TestInputsAdjoint: Backward is the transpose of Forward's Jacobian:
// ⟨J v, w⟩ = ⟨v, Jᵀ w⟩ for random links, masks, direction v and upstream
// gradients w = (pbar, gin), J v by central differences of Forward in
// float64 (step 1e-6, the plaquettes differenced on the circle). The
// tolerance, 1e-8 of Σ|terms|, is far above the differences' error (≈ 1e-12
// from the step, 1e-10 from rounding) and far below any wrong entry of the
// transpose (O(1) of one term). No cgo: the GPU machine runs it.
func TestInputsAdjoint(t *testing.T) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		d := k.d
		for _, L := range []int{4, 8} {
			const B, eps = 2, 1e-6
			V, N := L*L, B*L*L
			rng := rand.New(rand.NewPCG(uint64(L), 11))
			frozen, lfrozen := make([]bool, V), make([]bool, 2*V)
			for i := range frozen {
				frozen[i] = rng.IntN(2) == 0
			}
			for i := range lfrozen {
				lfrozen[i] = rng.IntN(2) == 0
			}
			in, err := NewInputs[float64](k, L, frozen, lfrozen)
			if err != nil {
				t.Fatal(err)
			}
			links, v := make([]float64, 2*N), make([]float64, 2*N)
			for i := range links {
				links[i], v[i] = 2*math.Pi*rng.Float64(), rng.NormFloat64()
			}
			pbar, gin := make([]float64, N), make([]float64, 6*N)
			for i := range pbar {
				pbar[i] = rng.NormFloat64()
			}
			for i := range gin {
				gin[i] = rng.NormFloat64()
			}
			forward := func(l []float64) (inp, P []float64, pInp cuda.DevicePtr) {
				pi, _ := d.Alloc(6 * N * 8)
				pP, _ := d.Alloc(N * 8)
				pl, _ := d.Alloc(2 * N * 8)
				if err := in.Forward(pi, pP, pl, toDevice(t, d, l), B); err != nil {
					t.Fatal(err)
				}
				return fromDevice[float64](t, d, pi, 6*N), fromDevice[float64](t, d, pP, N), pi
			}
			shift := func(s float64) []float64 {
				out := make([]float64, len(links))
				for i := range links {
					out[i] = links[i] + s*v[i]
				}
				return out
			}
			ip, Pp, _ := forward(shift(eps))
			im, Pm, _ := forward(shift(-eps))
			lhs, abs := 0.0, 0.0
			for i := range Pp {
				dP := math.Remainder(Pp[i]-Pm[i], 2*math.Pi) / (2 * eps)
				lhs += dP * pbar[i]
				abs += math.Abs(dP * pbar[i])
			}
			for i := range ip {
				di := (ip[i] - im[i]) / (2 * eps)
				lhs += di * gin[i]
				abs += math.Abs(di * gin[i])
			}
			_, _, pinp := forward(links)
			pg := toDevice(t, d, make([]float64, 2*N))
			if err := in.Backward(pg, toDevice(t, d, pbar), toDevice(t, d, gin), pinp, B); err != nil {
				t.Fatal(err)
			}
			g := fromDevice[float64](t, d, pg, 2*N)
			rhs := 0.0
			for i := range g {
				rhs += v[i] * g[i]
			}
			t.Logf("L = %d: ⟨Jv, w⟩ = %.12g, ⟨v, Jᵀw⟩ = %.12g", L, lhs, rhs)
			if math.Abs(lhs-rhs) > 1e-8*abs {
				t.Errorf("L = %d: ⟨Jv, w⟩ = %.12g, ⟨v, Jᵀw⟩ = %.12g (|Δ| %.3g > %.3g)", L, lhs, rhs, math.Abs(lhs-rhs), 1e-8*abs)
			}
			in.Close()
		}
	})
}
