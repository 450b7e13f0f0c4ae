package nf

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkSplineSite times the spline work of one active site in float32
// with the paper's 8 bins, per site: building the spline from the raw
// conditioner outputs (load: softmaxes, knots, derivatives) and then the
// forward map, or its VJP (backwardForward), as the coupling layer's
// kernels do for every active site of every pass.
func BenchmarkSplineSite(b *testing.B) {
	const n, sites = 8, 4096
	rng := rand.New(rand.NewPCG(3, 4))
	raw := make([]float32, (3*n+1)*sites) // channel-major, stride sites
	for i := range raw {
		raw[i] = float32(rng.NormFloat64())
	}
	x := make([]float32, sites)
	for i := range x {
		x[i] = float32(6.28 * rng.Float64())
	}
	graw := make([]float32, len(raw))
	var sp splineSite[float32]
	c := newChunk()
	defer chunks.Put(c)
	// load: site by site in Go; loadChunk: the softmaxes of 32 sites at
	// once (vec.Softmax), as the coupling layer's kernels load them.
	loads := []struct {
		name string
		load func(s int)
	}{
		{"load", func(s int) { sp.load(raw, sites, s, n) }},
		{"loadChunk", func(s int) { sp.loadChunk(c, raw, sites, s, n, sites) }},
	}
	for _, l := range loads {
		b.Run(l.name+"+forward", func(b *testing.B) {
			var sink float32
			for b.Loop() {
				for s := range sites {
					l.load(s)
					g, _, _ := sp.forward(x[s])
					sink += g
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sites), "ns/site")
			_ = sink
		})
		b.Run(l.name+"+backwardForward", func(b *testing.B) {
			var sink float32
			for b.Loop() {
				for s := range sites {
					l.load(s)
					sink += sp.backwardForward(x[s], 1, 0.5, graw, sites, s)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sites), "ns/site")
			_ = sink
		})
	}
}
