package nf

import (
	"fmt"
	"math"
	"testing"

	"nfschwinger/lgt"
)

// dnnlTrain trains the flow of precisionArch from seed with estimator est
// for steps steps of batch N (Adam 1e-3, clipping (0.1, 10)) with its
// conditioners on oneDNN with options o, one worker; it skips the test
// where this oneDNN cannot build them.
func dnnlTrain(t *testing.T, est Estimator, seed uint64, o DNNLOptions, N, steps int) trainRun {
	t.Helper()
	pool := lgt.NewPool(lgt.Params{L: 4, Beta: 2, Kappa: 0.276}, 1)
	defer pool.Close()
	f, err := NewFlowOn(precisionArch(), oneDNN[float32](CPU(1), o, false))
	if err != nil {
		t.Skipf("oneDNN %+v: %v", o, err)
	}
	defer f.Close()
	f.Init(Stream(seed, DomainInit, 0, 0))
	return trainFor(t, f, pool, est, N, steps, 1e-3, seed)
}

// dnnlRun is dnnlTrain with batch 256, returning the mean and the
// standard error of the batch ESS over the last window steps.
func dnnlRun(t *testing.T, est Estimator, seed uint64, o DNNLOptions, steps, window int) (ess, se float64, skipped int) {
	t.Helper()
	r := dnnlTrain(t, est, seed, o, 256, steps)
	w := r.ess[len(r.ess)-window:]
	return mean(w), math.Sqrt(variance(w) / float64(window)), r.skipped
}

// TestFastConvolutionsTrain: REINFORCE with Winograd float32 convolutions
// and with bf16 ones (the paper's "amp") trains as the direct float32
// convolutions do. The float32 r.t. study (L = 4, 8 layers, hidden
// channels [32, 32], batch 256, Adam 1e-3, 400 steps, clipping (0.1,
// 10)), all on oneDNN, seeds 1–3: every seed's mean batch ESS over the
// last 50 steps, Winograd or bf16, must lie within the range of the
// direct float32 seeds, widened by 3 standard errors of that seed's mean,
// and no step may be skipped for non-finite values. Measured (Zen 4 EPYC,
// 2 cores): direct 0.104, 0.083, 0.093 (standard errors ≈ 0.005);
// Winograd 0.101, 0.089, 0.095; bf16 (all of it direct) 0.093, 0.101,
// 0.103. r.t., not tested here, 0.113, 0.101, 0.121 in
// float32 and 0.120, 0.115, 0.112 in bf16 (Sapphire Rapids, AMX) — at
// this size r.t. does not break down under bf16 as the paper reports for
// its runs. An untrained flow has ESS ≈ 0.01; a broken path lands far
// outside the range. Without AVX-512 the Winograd runs are direct ones.
func TestFastConvolutionsTrain(t *testing.T) {
	const steps, window = 400, 50
	seeds := []uint64{1, 2, 3}
	variants := []struct {
		name string
		o    DNNLOptions
	}{{"direct", DNNLOptions{Direct: true}}, {"winograd", DNNLOptions{}}, {"bf16", DNNLOptions{BF16: true}}}
	type result struct{ ess, se float64 }
	res := make([][]result, len(variants))
	t.Run("runs", func(t *testing.T) {
		for v, vr := range variants {
			res[v] = make([]result, len(seeds))
			for i, seed := range seeds {
				t.Run(fmt.Sprintf("%s/seed%d", vr.name, seed), func(t *testing.T) {
					t.Parallel()
					e, se, skipped := dnnlRun(t, REINFORCE, seed, vr.o, steps, window)
					if skipped > 0 {
						t.Errorf("%d steps skipped for non-finite values", skipped)
					}
					res[v][i] = result{e, se}
					t.Logf("%s, seed %d: last-%d ESS %.4f ± %.4f", vr.name, seed, window, e, se)
				})
			}
		}
	})
	if t.Failed() {
		return
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range res[0] {
		if r.ess == 0 {
			t.Skip("no oneDNN convolutions on this CPU")
		}
		lo, hi = min(lo, r.ess), max(hi, r.ess)
	}
	for v, vr := range variants[1:] {
		for i, r := range res[v+1] {
			if r.ess == 0 { // unavailable here (bf16): its runs were skipped
				t.Logf("%s: not on this CPU", vr.name)
				break
			}
			if !(r.ess >= lo-3*r.se && r.ess <= hi+3*r.se) {
				t.Errorf("seed %d: %s ESS %.4f ± %.4f outside direct float32's range [%.4f, %.4f] widened by 3 standard errors",
					seeds[i], vr.name, r.ess, r.se, lo, hi)
			}
		}
	}
}
