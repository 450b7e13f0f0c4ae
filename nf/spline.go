package nf

import (
	"math"
	"sync"
	"unsafe"

	"nfschwinger/internal/vec"
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
// The inverse solves the quadratic for ξ with the form of the root that does
// not cancel (2c / (−b − √(b² − 4ac)) for b ≥ 0, (−b + √(b² − 4ac)) / 2a
// otherwise), so it stays accurate in nearly flat bins and at the ends of
// the circle.
//
// Numerical safety. Whatever T, the spline of a site is built and evaluated
// in float64 — softmax, knots, widths, heights, slopes, derivatives, the
// backward passes — and only g, g⁻¹ and the gradients are rounded to T at
// the end (log g' is float64 throughout). In float32 the softmax of logits
// 60 apart already underflows (e⁻¹²⁰ < 2⁻¹⁴⁹), consecutive knots coincide
// and softplus of −104 is 0; in float64 these happen only beyond logit
// spreads of about 700. Beyond that, too, nothing becomes NaN or infinite:
//   - w and h are 2π p_k from the softmax probabilities, not differences of
//     knots (which coincide once p_k < ε·X_k, long before p_k underflows);
//   - the denominator is evaluated as s (ξ² + (1−ξ)²) + (δ_k + δ_{k+1}) a, a
//     sum of non-negative terms (the same number as s + (δ_k + δ_{k+1} − 2s) a);
//   - log g' = 2 log s + log q − 2 log den is taken from the logs of the
//     factors (log s from the log-softmax, log δ from log softplus) whenever
//     q, den or s leave the range where they are accurate;
//   - the quadratic of the inverse is scaled by a power of two (exactly) so
//     that its discriminant cannot overflow for steep bins;
//   - the backward passes divide step by step instead of squaring den and
//     scale 1/g' as exp(−log g').

// maxBins is the largest number of spline bins (NKnots − 1) the per-site
// kernels support: their knot arrays live on the stack, so the kernels never
// allocate. NewFlow refuses larger architectures.
const maxBins = 64

// Range limits of the float64 fast paths: products and quotients of numbers
// between splineTiny and splineHuge (and of the bounded ξ, a) neither
// underflow into subnormals nor overflow.
const (
	splineTiny = 1e-280
	splineHuge = 1e280
)

// splineSite is the spline of one site in float64: its knots, the
// pre-activations of its derivatives and the intermediate values the
// backward pass needs (softmax probabilities and their logarithms). T is
// the precision of the raw parameters it reads and of the gradients it
// writes. The derivatives δ_j = softplus(r_j) and their slopes sigmoid(r_j)
// are computed where a bin needs them (bin, scatter): a pass uses the two
// of one bin, not all n.
type splineSite[T Float] struct {
	n        int
	x, y     [maxBins + 1]float64 // knots X_0 … X_n and Y_0 … Y_n
	r        [maxBins + 1]float64 // derivative pre-activations: δ_j = softplus(r_j), r_0 = r_n
	pw, ph   [maxBins]float64     // softmax probabilities of widths and heights
	lpw, lph [maxBins]float64     // their logarithms (log-softmax)
}

// delta is the derivative δ_j = softplus(r_j) at knot j (δ_0 = δ_n).
func (sp *splineSite[T]) delta(j int) float64 { return softplus(sp.r[j]) }

// load builds the spline of site s from raw conditioner outputs raw[c·stride + s]
// for the 3n channels c of widths, heights and derivatives (n bins).
func (sp *splineSite[T]) load(raw []T, stride, s, n int) {
	softmaxStrided(sp.pw[:n], sp.lpw[:n], raw, stride, s)
	softmaxStrided(sp.ph[:n], sp.lph[:n], raw[n*stride:], stride, s)
	sp.knots(raw, stride, s, n)
}

// knots sets n, the knots from the softmaxes and the derivatives'
// pre-activations of site s.
func (sp *splineSite[T]) knots(raw []T, stride, s, n int) {
	sp.n = n
	cumKnots(sp.x[:n+1], sp.pw[:n])
	cumKnots(sp.y[:n+1], sp.ph[:n])
	off := 2 * n * stride
	for j := 0; j < n; j++ {
		sp.r[j+1] = float64(raw[off+j*stride+s])
	}
	sp.r[0] = sp.r[n]
}

// softmaxChunk holds the softmaxes of the widths (set 0) and heights
// (set 1) of the splines of up to vec.SoftmaxSites consecutive sites
// [s0, s0 + cnt), computed together by vec.Softmax: p[(k·n + j)·cnt + i]
// and its logarithm lp for set k, bin j, site s0 + i.
type softmaxChunk struct {
	p, lp   [2 * maxBins * vec.SoftmaxSites]float64
	s0, cnt int
}

// chunks recycles softmaxChunks: memory handed to C escapes, so a chunk
// on a kernel's stack would be allocated at every call.
var chunks = sync.Pool{New: func() any { return new(softmaxChunk) }}

// newChunk returns an empty chunk from the pool (give it back with
// chunks.Put).
func newChunk() *softmaxChunk {
	c := chunks.Get().(*softmaxChunk)
	c.s0, c.cnt = 0, 0
	return c
}

// loadChunk is load for a float32 flow's sites taken in increasing order
// up to end (exclusive, at most stride): the softmaxes of the next
// vec.SoftmaxSites sites are computed together in c, vectorized, when s
// leaves the chunk c holds; the same formulas as softmaxStrided with
// libmvec's exp and log (within a few ulp of Go's). A float64 flow loads
// site by site.
func (sp *splineSite[T]) loadChunk(c *softmaxChunk, raw []T, stride, s, n, end int) {
	if unsafe.Sizeof(T(0)) != 4 {
		sp.load(raw, stride, s, n)
		return
	}
	if s < c.s0 || s >= c.s0+c.cnt {
		c.s0, c.cnt = s, min(vec.SoftmaxSites, end-s)
		vec.Softmax(c.p[:], c.lp[:], as32(raw)[s:], stride, c.cnt, n, 2)
	}
	i, cnt := s-c.s0, c.cnt
	for j := range n {
		sp.pw[j], sp.lpw[j] = c.p[j*cnt+i], c.lp[j*cnt+i]
		sp.ph[j], sp.lph[j] = c.p[(n+j)*cnt+i], c.lp[(n+j)*cnt+i]
	}
	sp.knots(raw, stride, s, n)
}

// softmaxStrided writes p = softmax(raw[i·stride + s], i < len(p)) and
// lp = log p (computed as raw − max − log Σ, finite for finite raw even
// where p underflows).
func softmaxStrided[T Float](p, lp []float64, raw []T, stride, s int) {
	m := math.Inf(-1)
	for i := range p {
		m = math.Max(m, float64(raw[i*stride+s]))
	}
	sum := 0.0
	for i := range p {
		p[i] = math.Exp(float64(raw[i*stride+s]) - m)
		sum += p[i]
	}
	ls := math.Log(sum)
	for i := range p {
		p[i] /= sum
		lp[i] = float64(raw[i*stride+s]) - m - ls
	}
}

// cumKnots writes the knots 0, 2π p_0, 2π (p_0 + p_1), …, 2π into k
// (len(p) + 1 entries); the last is exactly 2π.
func cumKnots(k []float64, p []float64) {
	acc := 0.0
	k[0] = 0
	for i := 0; i < len(p)-1; i++ {
		acc += p[i]
		k[i+1] = 2 * math.Pi * acc
	}
	k[len(p)] = 2 * math.Pi
}

// softplus is log(1 + eˣ), without overflow for large x.
func softplus(x float64) float64 {
	return math.Max(x, 0) + math.Log1p(math.Exp(-math.Abs(x)))
}

// logSoftplus is log softplus(x), finite for every finite x: for x < −37,
// log1p(eˣ) = eˣ(1 − eˣ/2 + …) equals eˣ in float64, so the log is x.
func logSoftplus(x float64) float64 {
	if x < -37 {
		return x
	}
	return math.Log(softplus(x))
}

// sigmoid is 1/(1 + e⁻ˣ), the derivative of softplus.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// logAddExp is log(eᵃ + eᵇ), exact for −∞ arguments.
func logAddExp(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// searchBin returns the bin k with knots[k] ≤ v < knots[k+1], clamped to
// [0, n−1] (v outside [0, 2π) by rounding lands in the first or last bin).
// Bins whose knots coincide are never returned for v inside [0, 2π).
func searchBin(knots []float64, n int, v float64) int {
	k := 0
	for k < n-1 && knots[k+1] <= v {
		k++
	}
	return k
}

// rqBin is the data of one bin of a rational-quadratic spline: its knots,
// its width and height (2π times the probabilities: exact even where the
// knots coincide in floating point), the derivatives at its ends with their
// pre-activations, and the slope s = h/w with log s.
type rqBin struct {
	x0, x1, y0, y1, d0, d1 float64
	w, h, s, ls, r0, r1    float64
}

// bin returns bin k of the spline.
func (sp *splineSite[T]) bin(k int) rqBin {
	b := rqBin{
		x0: sp.x[k], x1: sp.x[k+1], y0: sp.y[k], y1: sp.y[k+1],
		d0: sp.delta(k), d1: sp.delta(k + 1), r0: sp.r[k], r1: sp.r[k+1],
		w: 2 * math.Pi * sp.pw[k], h: 2 * math.Pi * sp.ph[k],
	}
	b.s = b.h / b.w
	if b.s > splineTiny && b.s < splineHuge {
		b.ls = math.Log(b.s)
	} else {
		b.ls = sp.lph[k] - sp.lpw[k] // w or h underflowed: the log-softmax is exact
	}
	return b
}

// clamp01 clamps ξ into [0, 1].
func clamp01(v float64) float64 {
	if v < 0 {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}

// xi returns ξ = (x − x0)/w clamped into [0, 1]: 0 in a bin of zero width.
func (b *rqBin) xi(x float64) float64 {
	if !(b.w > 0) {
		return 0
	}
	return clamp01((x - b.x0) / b.w)
}

// fast reports whether the products of eval and its derivatives stay in
// float64's accurate range on this bin (no overflow of s, δ; see logd).
func (b *rqBin) fast() bool {
	return b.s < splineHuge && b.d0 < splineHuge && b.d1 < splineHuge
}

// scaled returns (s, δ_k, δ_{k+1}) divided by λ = e^m, their largest
// value, computed from the logarithms (log s from the log-softmax, log δ =
// logSoftplus(r)): of order one however steep or flat the bin. g depends on
// the ratios only, and log g' = m + log ĝ' of the scaled values (q and den
// are homogeneous of degree 1).
func (b *rqBin) scaled() (s, d0, d1, m float64) {
	ld0, ld1 := logSoftplus(b.r0), logSoftplus(b.r1)
	m = max(b.ls, ld0, ld1)
	return math.Exp(b.ls - m), math.Exp(ld0 - m), math.Exp(ld1 - m), m
}

// eval returns g(x) and log g'(x) on the bin.
func (b *rqBin) eval(x float64) (g, logd float64) {
	xi := b.xi(x)
	om := 1 - xi
	a := xi * om
	s := b.s
	den := s*(xi*xi+om*om) + (b.d0+b.d1)*a
	var frac float64
	if b.fast() && den > splineTiny {
		frac = (s*xi*xi + b.d0*a) / den
	} else {
		s, d0, d1, _ := b.scaled()
		if den := s*(xi*xi+om*om) + (d0+d1)*a; den > 0 {
			frac = (s*xi*xi + d0*a) / den
		} else {
			frac = xi // ŝ underflowed and ξ ∈ {0, 1}: g is y0 or y1
		}
	}
	g = min(max(b.y0+b.h*frac, b.y0), b.y1) // rounding stays in the bin
	q := b.d1*xi*xi + 2*s*a + b.d0*om*om
	if b.fast() && q > splineTiny && den > splineTiny {
		logd = 2*b.ls + math.Log(q) - 2*math.Log(den)
	} else {
		logd = b.logDerivSafe(xi)
	}
	return g, logd
}

// logDerivSafe is log g' from the logarithms of the factors: log q and
// log den as log-sum-exps of the logs of their non-negative terms, with
// log δ = logSoftplus(r) and log s from the log-softmax. Finite for every
// finite raw input.
func (b *rqBin) logDerivSafe(xi float64) float64 {
	om := 1 - xi
	la := math.Log(xi * om)
	ld0, ld1 := logSoftplus(b.r0), logSoftplus(b.r1)
	lq := logAddExp(logAddExp(ld1+2*math.Log(xi), math.Ln2+b.ls+la), ld0+2*math.Log(om))
	lden := logAddExp(b.ls+math.Log(xi*xi+om*om), logAddExp(ld0, ld1)+la)
	return 2*b.ls + lq - 2*lden
}

// inverse returns x with g(x) = u for u in [y0, y1]: the root ξ of the
// quadratic a ξ² + b ξ + c = 0 of Durkan et al. (eqs. 6–8 of their appendix),
// in whichever of its two algebraically equal forms does not cancel, so that
// nearly flat bins and the ends of a bin stay accurate. The coefficients
// are scaled by a power of two (exactly) so that b² − 4ac cannot overflow.
func (b *rqBin) inverse(u float64) float64 {
	if !(b.w > 0) || !b.fast() {
		// A bin of zero width, or one so steep that it is a jump at float64
		// resolution: its whole height maps to the left knot.
		return b.x0
	}
	h, s := b.h, b.s
	dy := u - b.y0
	c := b.d1 + b.d0 - 2*s
	qa := h*(s-b.d0) + dy*c
	qb := h*b.d0 - dy*c
	qc := -s * dy
	if m := max(math.Abs(qa), math.Abs(qb), math.Abs(qc)); m > 0 {
		_, e := math.Frexp(m)
		qa, qb, qc = math.Ldexp(qa, -e), math.Ldexp(qb, -e), math.Ldexp(qc, -e)
	}
	disc := qb*qb - 4*qa*qc
	if disc < 0 {
		disc = 0
	}
	// ξ = (−b + √D)/(2a) = 2c/(−b − √D): take the form without cancellation.
	sq := math.Sqrt(disc)
	var xi float64
	if qb >= 0 {
		if den := -qb - sq; den != 0 {
			xi = 2 * qc / den
		}
	} else if qa != 0 {
		xi = (-qb + sq) / (2 * qa)
	}
	xi = clamp01(xi)
	return min(b.x0+xi*b.w, b.x1)
}

// dlogdx returns ∂ log g'(x) / ∂x on the bin.
func (b *rqBin) dlogdx(x float64) float64 {
	if !(b.w > 0) {
		return 0
	}
	xi := b.xi(x)
	om := 1 - xi
	a := xi * om
	s, d0, d1 := b.s, b.d0, b.d1
	den := s*(xi*xi+om*om) + (d0+d1)*a
	q := d1*xi*xi + 2*s*a + d0*om*om
	if !b.fast() || !(q > splineTiny && den > splineTiny) {
		// ∂ log g'/∂ξ is homogeneous of degree 0 in (s, δ_k, δ_{k+1}).
		s, d0, d1, _ = b.scaled()
		den = s*(xi*xi+om*om) + (d0+d1)*a
		q = d1*xi*xi + 2*s*a + d0*om*om
	}
	c := d1 + d0 - 2*s
	dq := 2*d1*xi + 2*s*(1-2*xi) - 2*d0*om
	dden := c * (1 - 2*xi)
	return (dq/q - 2*dden/den) / b.w
}

// rqAdj holds the adjoints of the bin data and of x.
type rqAdj struct {
	x, x0, x1, y0, y1, d0, d1 float64
}

// vjp returns the gradient of gg·g(x) + gl·log g'(x) with respect to x and
// the bin data: reverse mode through the formulas of eval, step by step
// (with the adjoint of s including that of log s, and w = x1 − x0,
// h = y1 − y0).
func (b *rqBin) vjp(x, gg, gl float64) (r rqAdj) {
	if !(b.w > 0) {
		// Zero width (not reachable from searchBin inside [0, 2π)): g is
		// the constant y0 on it.
		r.y0 = gg
		return r
	}
	w, h := b.w, b.h
	s, d0, d1 := b.s, b.d0, b.d1
	xi := b.xi(x)
	om := 1 - xi
	a := xi * om
	c := d1 + d0 - 2*s
	den := s*(xi*xi+om*om) + (d0+d1)*a
	num := h * (s*xi*xi + d0*a)
	q := d1*xi*xi + 2*s*a + d0*om*om
	if !b.fast() || !(den > splineTiny && q > splineTiny) {
		return b.vjpScaled(x, gg, gl)
	}

	// g = y0 + num/den; ℓ = 2 log s + log q − 2 log den.
	r.y0 = gg
	numB := gg / den
	denB := -gg*(num/den)/den - 2*gl/den
	sB := 2 * gl / s
	qB := gl / q
	var aB, xiB, hB, wB float64
	// q = d1 ξ² + 2 s a + d0 (1−ξ)²
	r.d1 += qB * xi * xi
	xiB += qB * (2*d1*xi - 2*d0*om)
	sB += qB * 2 * a
	aB += qB * 2 * s
	r.d0 += qB * om * om
	// num = h (s ξ² + d0 a)
	hB += numB * (s*xi*xi + d0*a)
	sB += numB * h * xi * xi
	xiB += numB * h * s * 2 * xi
	r.d0 += numB * h * a
	aB += numB * h * d0
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

// vjpScaled is vjp for bins whose s, δ_k, δ_{k+1} are out of the accurate
// range of the direct formulas (extremely steep or flat bins), through their
// scaled values v̂ = v/λ (rqBin.scaled): g = y0 + h·frac(ξ; v̂) and
// log g' = log λ + ℓ̂(ξ; v̂) hold for any fixed λ, so ∂/∂v = λ⁻¹ ∂/∂v̂. The
// adjoints of w and h through s = h/w need only s̄·s = ŝ̄·ŝ.
func (b *rqBin) vjpScaled(x, gg, gl float64) (r rqAdj) {
	w, h := b.w, b.h
	s, d0, d1, m := b.scaled()
	xi := b.xi(x)
	om := 1 - xi
	a := xi * om
	c := d1 + d0 - 2*s
	den := s*(xi*xi+om*om) + (d0+d1)*a
	frac := (s*xi*xi + d0*a) / den
	q := d1*xi*xi + 2*s*a + d0*om*om

	// g = y0 + h·frac(ξ; ŝ, δ̂); ℓ = m + 2 log ŝ + log q̂ − 2 log dên.
	r.y0 = gg
	fracB := gg * h
	hB := gg * frac
	denB := -fracB*frac/den - 2*gl/den
	numB := fracB / den // num = ŝ ξ² + δ̂_k a
	sB := 2 * gl / s
	qB := gl / q
	var aB, xiB, d0B, d1B, wB float64
	d1B += qB * xi * xi
	xiB += qB * (2*d1*xi - 2*d0*om)
	sB += qB * 2 * a
	aB += qB * 2 * s
	d0B += qB * om * om
	sB += numB * xi * xi
	xiB += numB * s * 2 * xi
	d0B += numB * a
	aB += numB * d0
	sB += denB * (1 - 2*a)
	d1B += denB * a
	d0B += denB * a
	aB += denB * c
	xiB += aB * (1 - 2*xi)
	sBs := sB * s // s̄·s = ŝ̄·ŝ
	r.d0 = scaleAdj(d0B, -m)
	r.d1 = scaleAdj(d1B, -m)
	r.x += xiB / w
	r.x0 -= xiB / w
	wB -= xiB * xi / w
	// s = h/w: h̄ += s̄/w = s̄·s/h, w̄ −= s̄·s/w.
	hB += sBs / h
	wB -= sBs / w
	r.y1 += hB
	r.y0 -= hB
	r.x1 += wB
	r.x0 -= wB
	return r
}

// scaleAdj returns v·eᵉ without overflowing in eᵉ alone.
func scaleAdj(v, e float64) float64 {
	if v == 0 {
		return 0
	}
	return math.Copysign(math.Exp(math.Log(math.Abs(v))+e), v)
}

// scatter writes into graw[c·stride + s] (c < 3n) the gradient with respect
// to the raw width, height and derivative inputs of the site, given the
// adjoints of bin k's data, rounded to T.
func (sp *splineSite[T]) scatter(k int, a rqAdj, graw []T, stride, s int) {
	n := sp.n
	const twoPi = 2 * math.Pi
	// X_j = 2π Σ_{i<j} p_i: p̄_i = 2π (X̄_k [i<k] + X̄_{k+1} [i≤k]); softmax:
	// ū_i = p_i (p̄_i − Σ_j p_j p̄_j), Σ_j p_j p̄_j = X̄_k X_k + X̄_{k+1} X_{k+1}.
	dotX := a.x0*sp.x[k] + a.x1*sp.x[k+1]
	dotY := a.y0*sp.y[k] + a.y1*sp.y[k+1]
	for i := 0; i < n; i++ {
		var px, py float64
		if i < k {
			px, py = a.x0+a.x1, a.y0+a.y1
		} else if i == k {
			px, py = a.x1, a.y1
		}
		graw[i*stride+s] = T(sp.pw[i] * (twoPi*px - dotX))
		graw[(n+i)*stride+s] = T(sp.ph[i] * (twoPi*py - dotY))
		graw[(2*n+i)*stride+s] = 0
	}
	// δ_{j+1} = softplus(r_j) with r_j raw channel 2n + j, δ_0 = δ_n;
	// dδ_{j+1}/dr_j = sigmoid(r_j).
	j0 := k - 1
	if k == 0 {
		j0 = n - 1
	}
	if j0 == k { // n = 1: both ends are the same derivative
		graw[(2*n+k)*stride+s] = T((a.d0 + a.d1) * sigmoid(sp.r[k+1]))
		return
	}
	graw[(2*n+j0)*stride+s] = T(a.d0 * sigmoid(sp.r[j0+1]))
	graw[(2*n+k)*stride+s] = T(a.d1 * sigmoid(sp.r[k+1]))
}

// forward returns g(x), log g'(x) and the bin of x.
func (sp *splineSite[T]) forward(x T) (g T, logd float64, k int) {
	xf := float64(x)
	k = searchBin(sp.x[:], sp.n, xf)
	b := sp.bin(k)
	g64, logd := b.eval(xf)
	return T(g64), logd, k
}

// inverse returns x = g⁻¹(u) and log g'(x) for u in [0, 2π). log g' is
// evaluated at the preimage rounded to T, the point the caller keeps.
func (sp *splineSite[T]) inverse(u T) (x T, logd float64) {
	uf := float64(u)
	k := searchBin(sp.y[:], sp.n, uf)
	b := sp.bin(k)
	x = T(b.inverse(uf))
	_, logd = b.eval(float64(x))
	return x, logd
}

// backwardForward is the vector–Jacobian product of (g(x), log g'(x)): given
// gg = ∂L/∂g and gl = ∂L/∂log g', it writes ∂L/∂raw into graw (3n channels,
// site s) and returns ∂L/∂x.
func (sp *splineSite[T]) backwardForward(x, gg, gl T, graw []T, stride, s int) T {
	xf := float64(x)
	k := searchBin(sp.x[:], sp.n, xf)
	b := sp.bin(k)
	a := b.vjp(xf, float64(gg), float64(gl))
	sp.scatter(k, a, graw, stride, s)
	return T(a.x)
}

// backwardInverse is the vector–Jacobian product of the inverse
// x = g⁻¹(u), ℓ = −log g'(x), evaluated at the preimage x: given gx = ∂L/∂x
// and gl = ∂L/∂ℓ, it writes ∂L/∂raw into graw (3n channels, site s) and
// returns ∂L/∂u. By the implicit function theorem ∂x/∂u = 1/g'(x) and
// ∂x/∂θ = −(∂g/∂θ)/g'(x).
func (sp *splineSite[T]) backwardInverse(x, gx, gl T, graw []T, stride, s int) T {
	xf := float64(x)
	k := searchBin(sp.x[:], sp.n, xf)
	b := sp.bin(k)
	_, logd := b.eval(xf)
	xt := float64(gx) - float64(gl)*b.dlogdx(xf) // total adjoint of x
	gu := xt * math.Exp(-logd)
	a := b.vjp(xf, -gu, -float64(gl))
	sp.scatter(k, a, graw, stride, s)
	return T(gu)
}
