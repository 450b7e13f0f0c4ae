package nf

import (
	"testing"

	"nfschwinger/lgt"
)

// TestStepTimings: one step of each estimator on two micro-batches counts
// the flow passes and backward passes the estimator makes (r.t.: forward
// with tape + backward; path: forward with tape, backward through the
// reverse flow from that tape, backward; REINFORCE four-pass: forward,
// reverse, backward; three-pass: forward, backward) with their convolution
// flops, and non-zero times.
func TestStepTimings(t *testing.T) {
	const L, mb = 4, 2
	for _, tc := range []struct {
		est         Estimator
		batch       int
		passes, bwd int // per micro-batch
	}{
		{ReparamTrick, 2 * mb, 1, 1},
		{PathGradient, 2 * mb, 1, 2},
		{REINFORCE, 2 * mb, 2, 1},
		{REINFORCE, mb, 1, 1},
	} {
		f := tinyFlow[float32](t, L, 2, []int{4}, 1)
		pool := lgt.NewPool(lgt.Params{L: L, Beta: 2, Kappa: 0.276}, 1)
		tr := NewTrainer(f, pool, tc.est, mb, 1)
		if _, err := tr.Step(Local{}, 0, 0, tc.batch, tc.batch); err != nil {
			t.Fatal(err)
		}
		tm := tr.Timings
		k := tc.batch / mb
		want := float64(k*(tc.passes+2*tc.bwd)) * f.ConvFLOPs(mb)
		if tm.Passes != k*tc.passes || tm.BackwardPasses != k*tc.bwd || tm.ConvFLOPs != want {
			t.Errorf("%s, batch %d: %d passes, %d backward, %g flops; want %d, %d, %g",
				tc.est, tc.batch, tm.Passes, tm.BackwardPasses, tm.ConvFLOPs, k*tc.passes, k*tc.bwd, want)
		}
		if tm.Flow <= 0 || tm.Backward <= 0 || tm.Action <= 0 {
			t.Errorf("%s: times %+v, want all positive", tc.est, tm)
		}
		tr.Timings.Reset()
		if tr.Timings != (StepTimings{}) {
			t.Error("Reset left", tr.Timings)
		}
	}
	// ConvFLOPs: 2 flops per multiply–add, summed over layers and
	// convolutions; the last convolution of a layer runs at its active
	// sites only, a quarter of the lattice.
	f := tinyFlow[float32](t, L, 2, []int{4}, 1)
	ch := f.Arch.Channels()
	per := 0
	for j := 0; j+1 < len(ch); j++ {
		sites := L * L
		if j+2 == len(ch) {
			sites /= 4
		}
		per += 2 * ch[j+1] * ch[j] * 9 * sites
	}
	if got := f.ConvFLOPs(3); got != float64(2*3*per) {
		t.Errorf("ConvFLOPs(3) = %g, want %d", got, 2*3*per)
	}
}
