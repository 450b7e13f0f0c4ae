package nf

import (
	"fmt"
	"math"
	"testing"

	"nfschwinger/lgt"
)

// dnnlTrain trains the flow of precisionArch from seed with estimator est
// for steps steps of batch N (Adam 1e-3, clipping (0.1, 10)) with its
// conditioners on oneDNN in float32 or bf16, one worker; it skips the
// test where this oneDNN cannot build them.
func dnnlTrain(t *testing.T, est Estimator, seed uint64, bf16 bool, N, steps int) trainRun {
	t.Helper()
	pool := lgt.NewPool(lgt.Params{L: 4, Beta: 2, Kappa: 0.276}, 1)
	defer pool.Close()
	f, err := NewFlowOn(precisionArch(), oneDNN[float32](CPU(1), bf16, false))
	if err != nil {
		t.Skipf("oneDNN (bf16 %v): %v", bf16, err)
	}
	defer f.Close()
	f.Init(Stream(seed, DomainInit, 0, 0))
	return trainFor(t, f, pool, est, N, steps, 1e-3, seed)
}

// bf16Run is dnnlTrain with batch 256, returning the mean and the
// standard error of the batch ESS over the last window steps.
func bf16Run(t *testing.T, est Estimator, seed uint64, bf16 bool, steps, window int) (ess, se float64, skipped int) {
	t.Helper()
	r := dnnlTrain(t, est, seed, bf16, 256, steps)
	w := r.ess[len(r.ess)-window:]
	return mean(w), math.Sqrt(variance(w) / float64(window)), r.skipped
}

// TestBF16ReinforceTrains: REINFORCE with bf16 convolutions (the paper's
// "amp") trains as float32 does. The float32 r.t. study (L = 4, 8
// layers, hidden channels [32, 32], batch 256, Adam 1e-3, 400 steps,
// clipping (0.1, 10)), both precisions on oneDNN, seeds 1–3: every bf16
// seed's mean batch ESS over the last 50 steps must lie within the range
// of the float32 seeds, widened by 3 standard errors of that seed's mean,
// and no step may be skipped for non-finite values. Measured (Sapphire
// Rapids, AMX): float32 0.105, 0.094, 0.101; bf16 0.092, 0.100, 0.102
// (standard errors ≈ 0.005); r.t., not tested here, 0.113, 0.101, 0.121 in
// float32 and 0.120, 0.115, 0.112 in bf16 — at this size r.t. does not
// break down under bf16 as the paper reports for its runs. An untrained
// flow has ESS ≈ 0.01; a broken bf16 path lands far outside the range.
func TestBF16ReinforceTrains(t *testing.T) {
	const steps, window = 400, 50
	seeds := []uint64{1, 2, 3}
	type result struct{ ess, se float64 }
	res := map[bool][]result{false: make([]result, len(seeds)), true: make([]result, len(seeds))}
	t.Run("runs", func(t *testing.T) {
		for _, bf16 := range []bool{false, true} {
			for i, seed := range seeds {
				t.Run(fmt.Sprintf("bf16=%v/seed%d", bf16, seed), func(t *testing.T) {
					t.Parallel()
					e, se, skipped := bf16Run(t, REINFORCE, seed, bf16, steps, window)
					if skipped > 0 {
						t.Errorf("%d steps skipped for non-finite values", skipped)
					}
					res[bf16][i] = result{e, se}
					t.Logf("bf16 %v, seed %d: last-%d ESS %.4f ± %.4f", bf16, seed, window, e, se)
				})
			}
		}
	})
	if t.Failed() || t.Skipped() {
		return
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range res[false] {
		lo, hi = min(lo, r.ess), max(hi, r.ess)
	}
	for i, r := range res[true] {
		if r.ess == 0 { // bf16 unavailable here: its runs were skipped
			t.Skip("no bf16 convolutions on this CPU")
		}
		if !(r.ess >= lo-3*r.se && r.ess <= hi+3*r.se) {
			t.Errorf("seed %d: bf16 ESS %.4f ± %.4f outside float32's range [%.4f, %.4f] widened by 3 standard errors",
				seeds[i], r.ess, r.se, lo, hi)
		}
	}
}
