package lgt

import (
	"math"
	"math/cmplx"
)

// Hop directions of one site y: a hop term of H connects y to its
// neighbour n_d(y) with the 2×2 block c_d(y)·P_d, where
//
//	d = 0: n = y + 0̂, c = U₀(y),          P = 1 − σ₁
//	d = 1: n = y − 0̂, c = conj U₀(y − 0̂), P = 1 + σ₁
//	d = 2: n = y + 1̂, c = U₁(y),          P = 1 − σ₂
//	d = 3: n = y − 1̂, c = conj U₁(y − 1̂), P = 1 + σ₂
//
// with U_μ(x) = b_μ(x) e^{iθ_μ(x)} and b_μ(x) = −1 on the links of
// direction 0 that wrap around the lattice (antiperiodic in direction 0),
// +1 otherwise. This is H(y, x) of shared/vectors/README.md written from
// the row site y. The reverse of the hop d from y is the hop d^1 from n_d(y),
// with coefficient conj c_d(y).
const nDirs = 4

// mat2 is a 2×2 complex matrix in spin space, row-major {a00, a01, a10, a11}.
type mat2 [4]complex128

// proj[d] is the spin projector of hop direction d (twice a projector:
// (1 ± σ)² = 2(1 ± σ), and (1 + σ)(1 − σ) = 0).
var proj = [nDirs]mat2{
	{1, -1, -1, 1},  // 1 − σ₁
	{1, 1, 1, 1},    // 1 + σ₁
	{1, 1i, -1i, 1}, // 1 − σ₂
	{1, -1i, 1i, 1}, // 1 + σ₂
}

// hop returns the site n_d(y) of site (i, j) and the coefficient
// c_d(y) of the hop, as described at nDirs.
func hop(links []float64, L, i, j, d int) (int, complex128) {
	V := L * L
	switch d {
	case 0:
		b := 1.0
		ip := i + 1
		if ip == L {
			ip, b = 0, -1
		}
		return ip*L + j, phase(b, links[i*L+j])
	case 1:
		b := 1.0
		im := i - 1
		if im < 0 {
			im, b = L-1, -1
		}
		return im*L + j, cmplx.Conj(phase(b, links[im*L+j]))
	case 2:
		jp := j + 1
		if jp == L {
			jp = 0
		}
		return i*L + jp, phase(1, links[V+i*L+j])
	default:
		jm := j - 1
		if jm < 0 {
			jm = L - 1
		}
		return i*L + jm, cmplx.Conj(phase(1, links[V+i*L+jm]))
	}
}

// phase returns b·e^{iθ}.
func phase(b, theta float64) complex128 {
	s, c := math.Sincos(theta)
	return complex(b*c, b*s)
}

// DiracApply writes dst = D·src for one configuration, matrix-free:
//
//	(Dψ)(y) = ψ(y) − κ Σ_d c_d(y) P_d ψ(n_d(y)),
//
// D = 1 − κH with H of shared/vectors/README.md. dst and src have length
// 2V, index 2·x + spin, and must not overlap; links has length 2V.
func DiracApply(dst, src []complex128, links []float64, L int, kappa float64) {
	checkLinks("DiracApply", links, L)
	V := L * L
	if len(dst) != 2*V || len(src) != 2*V {
		panic("lgt: DiracApply: dst and src must have length 2·L·L")
	}
	if &dst[0] == &src[0] {
		panic("lgt: DiracApply: dst aliases src")
	}
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			y := i*L + j
			var h0, h1 complex128
			for d := 0; d < nDirs; d++ {
				x, c := hop(links, L, i, j, d)
				p := &proj[d]
				s0, s1 := src[2*x], src[2*x+1]
				h0 += c * (p[0]*s0 + p[1]*s1)
				h1 += c * (p[2]*s0 + p[3]*s1)
			}
			dst[2*y] = src[2*y] - complex(kappa, 0)*h0
			dst[2*y+1] = src[2*y+1] - complex(kappa, 0)*h1
		}
	}
}

// DiracDense writes the whole Dirac matrix D = 1 − κH of one configuration
// into dst, row-major (2V)×(2V), row and column index 2·x + spin. Meant for
// tests and small lattices: it costs O(V²) memory.
func DiracDense(dst []complex128, links []float64, L int, kappa float64) {
	checkLinks("DiracDense", links, L)
	n := 2 * L * L
	if len(dst) != n*n {
		panic("lgt: DiracDense: dst must have length (2·L·L)²")
	}
	clear(dst)
	for r := 0; r < n; r++ {
		dst[r*n+r] = 1
	}
	k := complex(kappa, 0)
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			y := i*L + j
			for d := 0; d < nDirs; d++ {
				x, c := hop(links, L, i, j, d)
				p := &proj[d]
				r0, r1 := 2*y*n, (2*y+1)*n
				dst[r0+2*x] -= k * c * p[0]
				dst[r0+2*x+1] -= k * c * p[1]
				dst[r1+2*x] -= k * c * p[2]
				dst[r1+2*x+1] -= k * c * p[3]
			}
		}
	}
}
