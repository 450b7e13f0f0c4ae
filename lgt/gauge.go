package lgt

import "math"

// checkLinks panics unless links holds one configuration of an L×L lattice.
func checkLinks(fn string, links []float64, L int) {
	if L < 1 || len(links) != 2*L*L {
		panic("lgt: " + fn + ": links must have length 2·L·L")
	}
}

// plaquette returns the unreduced plaquette angle at site (i, j):
// θ₀(x) + θ₁(x+0̂) − θ₀(x+1̂) − θ₁(x), in (−4π, 4π).
func plaquette(links []float64, L, i, j int) float64 {
	V := L * L
	ip, jp := i+1, j+1
	if ip == L {
		ip = 0
	}
	if jp == L {
		jp = 0
	}
	x := i*L + j
	return links[x] + links[V+ip*L+j] - links[i*L+jp] - links[V+x]
}

// GaugeAction returns the Wilson gauge action S_G = −β Σ_x cos P(x) of one
// configuration (links of length 2V, index μ·V + x).
func GaugeAction(links []float64, L int, beta float64) float64 {
	checkLinks("GaugeAction", links, L)
	s := 0.0
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			s += math.Cos(plaquette(links, L, i, j))
		}
	}
	return -beta * s
}

// MeanCosPlaquette returns (1/V) Σ_x cos P(x).
func MeanCosPlaquette(links []float64, L int) float64 {
	checkLinks("MeanCosPlaquette", links, L)
	s := 0.0
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			s += math.Cos(plaquette(links, L, i, j))
		}
	}
	return s / float64(L*L)
}

// TopologicalCharge returns the geometric topological charge
// Q = Σ_x wrap(P(x)) / 2π, with the plaquette angle wrapped into [−π, π).
// On a torus Q is an integer up to rounding.
func TopologicalCharge(links []float64, L int) float64 {
	checkLinks("TopologicalCharge", links, L)
	s := 0.0
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			s += wrapPi(plaquette(links, L, i, j))
		}
	}
	return s / TwoPi
}

// wrapPi returns a reduced into [−π, π).
func wrapPi(a float64) float64 {
	r := Mod2Pi(a)
	if r >= math.Pi {
		r -= TwoPi
	}
	return r
}

// gaugeForce adds dS_G/dθ_μ(x) for every link to force (len 2V). With S_G = −β Σ cos P,
//
//	dS_G/dθ₀(x) = β [sin P(x) − sin P(x − 1̂)]
//	dS_G/dθ₁(x) = β [sin P(x − 0̂) − sin P(x)]
//
// sinP is scratch of length V.
func gaugeForce(force, sinP, links []float64, L int, beta float64) {
	V := L * L
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			sinP[i*L+j] = math.Sin(plaquette(links, L, i, j))
		}
	}
	for i := 0; i < L; i++ {
		im := (i + L - 1) % L
		for j := 0; j < L; j++ {
			jm := (j + L - 1) % L
			x := i*L + j
			force[x] += beta * (sinP[x] - sinP[i*L+jm])
			force[V+x] += beta * (sinP[im*L+j] - sinP[x])
		}
	}
}
