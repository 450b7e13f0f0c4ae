package nf

import (
	"math"
	"testing"
)

// TestDensityRoundTrip: Draw and LogQ are inverse: log q of drawn links
// through the reverse flow equals the log q of the draw, and the preimages
// are the prior samples of the streams, to float64 rounding (the forward and
// reverse passes are separate computations: 1e-10).
func TestDensityRoundTrip(t *testing.T) {
	const B, tol = 5, 1e-10
	f := tinyFlow[float64](t, 4, 4, []int{4}, 2)
	d := NewDensity(f)
	n := 2 * 16
	links, logq := make([]float64, B*n), make([]float64, B)
	d.Draw(links, logq, B, 7, DomainSample, 3, 11)
	back, z := make([]float64, B), make([]float64, B*n)
	d.LogQ(back, z, links)
	want := make([]float64, B*n)
	SamplePrior(want, B, 7, DomainSample, 3, 11)
	for b := range B {
		if math.Abs(back[b]-logq[b]) > tol*math.Abs(logq[b]) {
			t.Errorf("config %d: log q %v by the reverse flow, %v by the draw", b, back[b], logq[b])
		}
	}
	for i := range z {
		if d := math.Abs(math.Remainder(z[i]-want[i], 2*math.Pi)); d > tol {
			t.Fatalf("preimage %d: %v, prior sample %v", i, z[i], want[i])
		}
	}
	if lq := logq[0]; !(lq < 0) || lq == LogPrior(4) {
		t.Errorf("log q %v: the flow does nothing?", lq)
	}
}
