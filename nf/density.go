package nf

// Density is the probability density q of a flow on link configurations:
// the one place where "prior sample → forward flow → links in float64,
// log q = log prior − log J" and its reverse, "links → reverse flow →
// log q = log prior + log J", are written. Used by sampling, acceptance
// probes, measure -checkpoint and the Trainer (which records a tape). Not
// safe for concurrent use (it owns scratch buffers, grown to the
// largest batch seen).
type Density[T Float] struct {
	Flow *Flow[T]

	n       int // 2V
	z, x    []T
	logJ    []float64
	streams *Streams
}

// NewDensity returns the density of flow f.
func NewDensity[T Float](f *Flow[T]) *Density[T] {
	return &Density[T]{Flow: f, n: 2 * f.Arch.L * f.Arch.L, streams: NewStreams()}
}

// grow sizes log J scratch for B configurations, and with zx the prior
// samples and links too.
func (d *Density[T]) grow(B int, zx bool) {
	if len(d.logJ) < B {
		d.logJ = make([]float64, B)
	}
	if zx && len(d.z) < B*d.n {
		d.z, d.x = make([]T, B*d.n), make([]T, B*d.n)
	}
}

// Draw draws B proposals: the images under the flow of the prior samples of
// the streams (seed, domain, step, first … first+B−1) (SamplePrior), into
// links (B·2V angles in float64) with their log q (B). It returns the links
// as the flow computed them, in T (valid until the next call).
func (d *Density[T]) Draw(links, logq []float64, B int, seed uint64, domain uint32, step, first uint64) []T {
	d.grow(B, true)
	nv := B * d.n
	z, x := d.z[:nv], d.x[:nv]
	SamplePriorWith(d.streams, z, B, seed, domain, step, first)
	d.Forward(x, links, logq, z, B, nil)
	return x
}

// Forward maps B prior samples z (B·2V in T) through the flow, recording on
// tape when it is not nil, and writes the links in T to x and in float64 to
// links, and log q = log prior − log J to logq (B).
func (d *Density[T]) Forward(x []T, links, logq []float64, z []T, B int, tape *Tape[T]) {
	d.grow(B, false)
	nv := B * d.n
	logJ := d.logJ[:B]
	d.Flow.Forward(x[:nv], z[:nv], logJ, B, tape)
	for i, v := range x[:nv] {
		links[i] = float64(v)
	}
	lp := LogPrior(d.Flow.Arch.L)
	for b := range logq[:B] {
		logq[b] = lp - logJ[b]
	}
}

// LogQ evaluates log q of B configurations links (B·2V angles, rounded to T
// for the flow) through the reverse flow into logq (B), and writes their
// preimages to z (B·2V, float64; nil: not wanted). log J is summed in
// float64 whatever T.
func (d *Density[T]) LogQ(logq, z, links []float64) {
	B := len(logq)
	d.grow(B, true)
	nv := B * d.n
	zt, x, logJ := d.z[:nv], d.x[:nv], d.logJ[:B]
	for i, v := range links[:nv] {
		x[i] = T(v)
	}
	d.Flow.Reverse(zt, x, logJ, B, nil)
	lp := LogPrior(d.Flow.Arch.L)
	for b := range logq {
		logq[b] = lp + logJ[b]
	}
	if z != nil {
		for i, v := range zt {
			z[i] = float64(v)
		}
	}
}
