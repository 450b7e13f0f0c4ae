package lgt

import "math"

// Float is the set of element types of the generic geometry kernels: the
// flow runs them in float32 or float64.
type Float interface {
	~float32 | ~float64
}

// TwoPi is 2π, the period of every angle.
const TwoPi = 2 * math.Pi

// Mod2Pi returns a mod 2π in [0, 2π).
func Mod2Pi[T Float](a T) T {
	r := T(RemTwoPi(float64(a)))
	if r < 0 {
		r += TwoPi
	}
	if r >= TwoPi { // r was a tiny negative number rounded up
		r = 0
	}
	return r
}

// RemTwoPi returns math.Mod(x, TwoPi) bit for bit (the remainder of the
// truncated quotient, with the sign of x, exact), without math.Mod's
// loop for |x| < 2²⁰: the quotient n = trunc(x/2π), one off at most
// where x is within rounding of a multiple of 2π and then corrected, and
// x − n·2π in one fused multiply–add, which rounds the exact value of a
// remainder that is representable (fmod's always is) to itself.
func RemTwoPi(x float64) float64 {
	if !(math.Abs(x) < 1<<20) { // large, infinite or NaN
		return math.Mod(x, TwoPi)
	}
	n := math.Trunc(x / TwoPi)
	r := math.FMA(-n, TwoPi, x)
	switch {
	case x >= 0 && r < 0:
		r = math.FMA(-(n - 1), TwoPi, x)
	case x >= 0 && r >= TwoPi:
		r = math.FMA(-(n + 1), TwoPi, x)
	case x < 0 && r > 0:
		r = math.FMA(-(n + 1), TwoPi, x)
	case x < 0 && r <= -TwoPi:
		r = math.FMA(-(n - 1), TwoPi, x)
	}
	if r == 0 {
		return math.Copysign(0, x) // fmod's zero has the sign of x
	}
	return r
}

// AngleDist returns the distance of the angles a and b on the circle, in
// [0, π].
func AngleDist(a, b float64) float64 {
	d := math.Mod(math.Abs(a-b), TwoPi)
	return math.Min(d, TwoPi-d)
}

// Site returns the site index x = i·L + j of (i, j), with periodic wrap.
func Site(i, j, L int) int {
	i %= L
	if i < 0 {
		i += L
	}
	j %= L
	if j < 0 {
		j += L
	}
	return i*L + j
}

// Plaquettes writes the plaquette angles of one configuration into dst (len
// V = L·L): P(x) = θ₀(x) + θ₁(x + 0̂) − θ₀(x + 1̂) − θ₁(x) mod 2π, in [0, 2π).
// links has length 2V, index μ·V + x.
func Plaquettes[T Float](dst, links []T, L int) {
	V := L * L
	if len(dst) < V || len(links) < 2*V {
		panic("lgt: Plaquettes: short slice")
	}
	t0, t1 := links[:V], links[V:2*V]
	for i := 0; i < L; i++ {
		ip := (i + 1) % L
		for j := 0; j < L; j++ {
			jp := (j + 1) % L
			x := i*L + j
			dst[x] = Mod2Pi(t0[x] + t1[ip*L+j] - t0[i*L+jp] - t1[x])
		}
	}
}

// Loops2x1 writes the two channels of 2x1 loop angles of one configuration
// into dst (len 2V, index c·V + x), each in [0, 2π):
//
//	ℓ_μν(x) = θ_μ(x) + θ_μ(x+μ̂) + θ_ν(x+2μ̂) − θ_μ(x+μ̂+ν̂) − θ_μ(x+ν̂) − θ_ν(x)
//
// with (μ, ν) = (0, 1) for channel 0 (long in direction 0) and (1, 0) for
// channel 1.
func Loops2x1[T Float](dst, links []T, L int) {
	V := L * L
	if len(dst) < 2*V || len(links) < 2*V {
		panic("lgt: Loops2x1: short slice")
	}
	t0, t1 := links[:V], links[V:2*V]
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			x := i*L + j
			// channel 0: μ = 0 (along i), ν = 1 (along j)
			dst[x] = Mod2Pi(t0[x] + t0[Site(i+1, j, L)] + t1[Site(i+2, j, L)] -
				t0[Site(i+1, j+1, L)] - t0[Site(i, j+1, L)] - t1[x])
			// channel 1: μ = 1 (along j), ν = 0 (along i)
			dst[V+x] = Mod2Pi(t1[x] + t1[Site(i, j+1, L)] + t0[Site(i, j+2, L)] -
				t1[Site(i+1, j+1, L)] - t1[Site(i+1, j, L)] - t0[x])
		}
	}
}

// GaugeTransform writes into dst (len 2V) the gauge transform of links by
// the site angles alpha (len V): θ_μ(x) → α(x) + θ_μ(x) − α(x + μ̂) mod 2π.
// Plaquettes, loops and every gauge-invariant quantity are unchanged; D
// transforms as Ω D Ω† with Ω = diag(e^{iα}).
func GaugeTransform(dst, links, alpha []float64, L int) {
	V := L * L
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			x := i*L + j
			dst[x] = Mod2Pi(alpha[x] + links[x] - alpha[Site(i+1, j, L)])
			dst[V+x] = Mod2Pi(alpha[x] + links[V+x] - alpha[Site(i, j+1, L)])
		}
	}
}
