package nf

import (
	"math"
)

// Circular rational-quadratic splines (Durkan et al., "Neural Spline Flows",
// 2019, with the circular boundary of Rezende et al., 2020), as pinned down by
// shared/vectors/README.md, steps 4–5 of "The coupling layer, in words".
//
// A site's spline with n = NKnots − 1 bins is set by 3n + 1 raw conditioner
// outputs, channel-major with stride N = B·V between channels:
//
//	channels 0 … n−1     width logits  → softmax → bin widths  (fractions of 2π)
//	channels n … 2n−1    height logits → softmax → bin heights (fractions of 2π)
//	channels 2n … 3n−1   derivative pre-activations r_j → δ_{j+1} = softplus(r_j)
//	channel  3n          shift t (used by the coupling layer, not by g)
//
// Knots X_0 = 0, X_k = 2π Σ_{i<k} w_i, X_n = 2π exactly, the same for Y, and
// δ_0 = δ_n, so g is a C¹ circle diffeomorphism of [0, 2π). On bin k, with
// w = X_{k+1} − X_k, h = Y_{k+1} − Y_k, s = h/w, ξ = (x − X_k)/w, a = ξ(1 − ξ):
//
//	g(x)  = Y_k + h (s ξ² + δ_k a) / (s + (δ_{k+1} + δ_k − 2s) a)
//	g'(x) = s² (δ_{k+1} ξ² + 2 s a + δ_k (1 − ξ)²) / (s + (δ_{k+1} + δ_k − 2s) a)²
//
// The kernels work in T and return log-derivatives in float64. The inverse
// solves the quadratic for ξ with the form of the root that does not cancel
// (2c / (−b − √(b² − 4ac)) for b ≥ 0, (−b + √(b² − 4ac)) / 2a otherwise), so
// it stays accurate in nearly flat bins and at the ends of the circle.

// maxBins is the largest number of spline bins (NKnots − 1) the per-site
// kernels support: their knot arrays live on the stack, so the kernels never
// allocate. NewFlow refuses larger architectures.
const maxBins = 64

// splineSite is the spline of one site: its knots, derivatives and the
// intermediate values the backward pass needs (softmax probabilities and
// softplus slopes).
type splineSite[T Float] struct {
	n      int
	x, y   [maxBins + 1]T // knots X_0 … X_n and Y_0 … Y_n
	d      [maxBins + 1]T // derivatives δ_0 … δ_n, δ_0 = δ_n
	pw, ph [maxBins]T     // softmax probabilities of widths and heights
	sig    [maxBins]T     // dδ_{j+1}/dr_j = sigmoid(r_j)
}

// load builds the spline of site s from raw conditioner outputs raw[c·stride + s]
// for the 3n channels c of widths, heights and derivatives (n bins).
func (sp *splineSite[T]) load(raw []T, stride, s, n int) {
	sp.n = n
	softmaxStrided(sp.pw[:n], raw, stride, s)
	softmaxStrided(sp.ph[:n], raw[n*stride:], stride, s)
	cumKnots(sp.x[:n+1], sp.pw[:n])
	cumKnots(sp.y[:n+1], sp.ph[:n])
	off := 2 * n * stride
	for j := 0; j < n; j++ {
		r := float64(raw[off+j*stride+s])
		sp.d[j+1] = T(softplus(r))
		sp.sig[j] = T(sigmoid(r))
	}
	sp.d[0] = sp.d[n]
}

// softmaxStrided writes softmax(raw[i·stride + s], i < len(p)) into p.
func softmaxStrided[T Float](p []T, raw []T, stride, s int) {
	m := math.Inf(-1)
	for i := range p {
		m = math.Max(m, float64(raw[i*stride+s]))
	}
	sum := 0.0
	var e [maxBins]float64
	for i := range p {
		e[i] = math.Exp(float64(raw[i*stride+s]) - m)
		sum += e[i]
	}
	for i := range p {
		p[i] = T(e[i] / sum)
	}
}

// cumKnots writes the knots 0, 2π p_0, 2π (p_0 + p_1), …, 2π into k
// (len(p) + 1 entries); the last is exactly 2π.
func cumKnots[T Float](k []T, p []T) {
	acc := 0.0
	k[0] = 0
	for i := 0; i < len(p)-1; i++ {
		acc += float64(p[i])
		k[i+1] = T(2 * math.Pi * acc)
	}
	k[len(p)] = T(2 * math.Pi)
}

// softplus is log(1 + eˣ), without overflow for large x.
func softplus(x float64) float64 {
	return math.Max(x, 0) + math.Log1p(math.Exp(-math.Abs(x)))
}

// sigmoid is 1/(1 + e⁻ˣ), the derivative of softplus.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// searchBin returns the bin k with knots[k] ≤ v < knots[k+1], clamped to
// [0, n−1] (v outside [0, 2π) by rounding lands in the first or last bin).
// Bins of zero width are never returned for v inside [0, 2π).
func searchBin[T Float](knots []T, n int, v T) int {
	k := 0
	for k < n-1 && knots[k+1] <= v {
		k++
	}
	return k
}

// rqBin is the data of one bin of a rational-quadratic spline.
type rqBin[T Float] struct {
	x0, x1, y0, y1, d0, d1 T
}

// bin returns bin k of the spline.
func (sp *splineSite[T]) bin(k int) rqBin[T] {
	return rqBin[T]{sp.x[k], sp.x[k+1], sp.y[k], sp.y[k+1], sp.d[k], sp.d[k+1]}
}

// clamp01 clamps ξ into [0, 1].
func clamp01[T Float](v T) T {
	if v < 0 {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}

// eval returns g(x) and log g'(x) on the bin.
func (b rqBin[T]) eval(x T) (g T, logd float64) {
	w, h := b.x1-b.x0, b.y1-b.y0
	s := h / w
	xi := clamp01((x - b.x0) / w)
	om := 1 - xi
	a := xi * om
	den := s + (b.d1+b.d0-2*s)*a
	g = min(max(b.y0+h*(s*xi*xi+b.d0*a)/den, b.y0), b.y1) // rounding stays in the bin
	q := b.d1*xi*xi + 2*s*a + b.d0*om*om
	logd = 2*math.Log(float64(s)) + math.Log(float64(q)) - 2*math.Log(float64(den))
	return g, logd
}

// inverse returns x with g(x) = u for u in [y0, y1]: the root ξ of the
// quadratic a ξ² + b ξ + c = 0 of Durkan et al. (eqs. 6–8 of their appendix),
// in whichever of its two algebraically equal forms does not cancel, so that
// nearly flat bins and the ends of a bin stay accurate.
func (b rqBin[T]) inverse(u T) T {
	w, h := b.x1-b.x0, b.y1-b.y0
	s := h / w
	dy := u - b.y0
	c := b.d1 + b.d0 - 2*s
	qa := h*(s-b.d0) + dy*c
	qb := h*b.d0 - dy*c
	qc := -s * dy
	disc := qb*qb - 4*qa*qc
	if disc < 0 {
		disc = 0
	}
	// ξ = (−b + √D)/(2a) = 2c/(−b − √D): take the form without cancellation.
	sq := T(math.Sqrt(float64(disc)))
	var xi T
	if qb >= 0 {
		if den := -qb - sq; den != 0 {
			xi = 2 * qc / den
		}
	} else if qa != 0 {
		xi = (-qb + sq) / (2 * qa)
	}
	xi = clamp01(xi)
	return b.x0 + xi*w
}

// dlogdx returns ∂ log g'(x) / ∂x on the bin.
func (b rqBin[T]) dlogdx(x T) T {
	w, h := b.x1-b.x0, b.y1-b.y0
	s := h / w
	xi := clamp01((x - b.x0) / w)
	om := 1 - xi
	a := xi * om
	c := b.d1 + b.d0 - 2*s
	den := s + c*a
	q := b.d1*xi*xi + 2*s*a + b.d0*om*om
	dq := 2*b.d1*xi + 2*s*(1-2*xi) - 2*b.d0*om
	dden := c * (1 - 2*xi)
	return (dq/q - 2*dden/den) / w
}

// rqAdj holds the adjoints of the bin data and of x.
type rqAdj[T Float] struct {
	x, x0, x1, y0, y1, d0, d1 T
}

// vjp returns the gradient of gg·g(x) + gl·log g'(x) with respect to x and
// the bin data: reverse mode through the formulas of eval, step by step.
func (b rqBin[T]) vjp(x, gg, gl T) (r rqAdj[T]) {
	w, h := b.x1-b.x0, b.y1-b.y0
	s := h / w
	xi := clamp01((x - b.x0) / w)
	om := 1 - xi
	a := xi * om
	c := b.d1 + b.d0 - 2*s
	den := s + c*a
	num := h * (s*xi*xi + b.d0*a)
	q := b.d1*xi*xi + 2*s*a + b.d0*om*om

	// g = y0 + num/den; ℓ = 2 log s + log q − 2 log den.
	r.y0 = gg
	numB := gg / den
	denB := -gg*num/(den*den) - 2*gl/den
	sB := 2 * gl / s
	qB := gl / q
	var aB, xiB, hB, wB T
	// q = d1 ξ² + 2 s a + d0 (1−ξ)²
	r.d1 += qB * xi * xi
	xiB += qB * (2*b.d1*xi - 2*b.d0*om)
	sB += qB * 2 * a
	aB += qB * 2 * s
	r.d0 += qB * om * om
	// num = h (s ξ² + d0 a)
	hB += numB * (s*xi*xi + b.d0*a)
	sB += numB * h * xi * xi
	xiB += numB * h * s * 2 * xi
	r.d0 += numB * h * a
	aB += numB * h * b.d0
	// den = s + (d1 + d0 − 2s) a
	sB += denB * (1 - 2*a)
	r.d1 += denB * a
	r.d0 += denB * a
	aB += denB * c
	// a = ξ − ξ²
	xiB += aB * (1 - 2*xi)
	// ξ = (x − x0)/w
	r.x += xiB / w
	r.x0 -= xiB / w
	wB -= xiB * xi / w
	// s = h/w
	hB += sB / w
	wB -= sB * s / w
	// h = y1 − y0, w = x1 − x0
	r.y1 += hB
	r.y0 -= hB
	r.x1 += wB
	r.x0 -= wB
	return r
}

// scatter writes into graw[c·stride + s] (c < 3n) the gradient with respect
// to the raw width, height and derivative inputs of the site, given the
// adjoints of bin k's data.
func (sp *splineSite[T]) scatter(k int, a rqAdj[T], graw []T, stride, s int) {
	n := sp.n
	const twoPi = 2 * math.Pi
	// X_j = 2π Σ_{i<j} p_i: p̄_i = 2π (X̄_k [i<k] + X̄_{k+1} [i≤k]); softmax:
	// ū_i = p_i (p̄_i − Σ_j p_j p̄_j), Σ_j p_j p̄_j = X̄_k X_k + X̄_{k+1} X_{k+1}.
	dotX := a.x0*sp.x[k] + a.x1*sp.x[k+1]
	dotY := a.y0*sp.y[k] + a.y1*sp.y[k+1]
	for i := 0; i < n; i++ {
		var px, py T
		if i < k {
			px, py = a.x0+a.x1, a.y0+a.y1
		} else if i == k {
			px, py = a.x1, a.y1
		}
		graw[i*stride+s] = sp.pw[i] * (twoPi*px - dotX)
		graw[(n+i)*stride+s] = sp.ph[i] * (twoPi*py - dotY)
		graw[(2*n+i)*stride+s] = 0
	}
	// δ_{j+1} = softplus(r_j), δ_0 = δ_n.
	j0 := k - 1
	if k == 0 {
		j0 = n - 1
	}
	graw[(2*n+j0)*stride+s] += a.d0 * sp.sig[j0]
	graw[(2*n+k)*stride+s] += a.d1 * sp.sig[k]
}

// forward returns g(x), log g'(x) and the bin of x.
func (sp *splineSite[T]) forward(x T) (g T, logd float64, k int) {
	k = searchBin(sp.x[:], sp.n, x)
	g, logd = sp.bin(k).eval(x)
	return g, logd, k
}

// inverse returns x = g⁻¹(u) and log g'(x) for u in [0, 2π).
func (sp *splineSite[T]) inverse(u T) (x T, logd float64) {
	k := searchBin(sp.y[:], sp.n, u)
	b := sp.bin(k)
	x = b.inverse(u)
	_, logd = b.eval(x)
	return x, logd
}

// backwardForward is the vector–Jacobian product of (g(x), log g'(x)): given
// gg = ∂L/∂g and gl = ∂L/∂log g', it writes ∂L/∂raw into graw (3n channels,
// site s) and returns ∂L/∂x.
func (sp *splineSite[T]) backwardForward(x, gg, gl T, graw []T, stride, s int) T {
	k := searchBin(sp.x[:], sp.n, x)
	a := sp.bin(k).vjp(x, gg, gl)
	sp.scatter(k, a, graw, stride, s)
	return a.x
}

// backwardInverse is the vector–Jacobian product of the inverse
// x = g⁻¹(u), ℓ = −log g'(x), evaluated at the preimage x: given gx = ∂L/∂x
// and gl = ∂L/∂ℓ, it writes ∂L/∂raw into graw (3n channels, site s) and
// returns ∂L/∂u. By the implicit function theorem ∂x/∂u = 1/g'(x) and
// ∂x/∂θ = −(∂g/∂θ)/g'(x).
func (sp *splineSite[T]) backwardInverse(x, gx, gl T, graw []T, stride, s int) T {
	k := searchBin(sp.x[:], sp.n, x)
	b := sp.bin(k)
	_, logd := b.eval(x)
	gprime := T(math.Exp(logd))
	xt := gx - gl*b.dlogdx(x) // total adjoint of x
	gu := xt / gprime
	a := b.vjp(x, -gu, -gl)
	sp.scatter(k, a, graw, stride, s)
	return gu
}
