package nf

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"nfschwinger/lgt"
)

// tinyFlow returns a randomly initialized flow small enough for statistical
// tests.
func tinyFlow[T Float](t *testing.T, L, layers int, hidden []int, seed uint64) *Flow[T] {
	t.Helper()
	a := Arch{L: L, NLayers: layers, NKnots: 5, Hidden: hidden, KernelSize: 3,
		Dilation: make([]int, len(hidden)+1), Masking: "2x1", LeakyReLUSlope: 0.01}
	for i := range a.Dilation {
		a.Dilation[i] = 1
	}
	f, err := NewFlow[T](a, CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	f.Init(rand.New(rand.NewPCG(seed, 7)))
	return f
}

// TestReinforceMatchesReparamInExpectation checks eq. (20) of the paper,
// E[g_RE] = (N−1)/N E[g_rt], on a tiny lattice and model in float64: the
// two estimators are evaluated on the same M independent batches of N
// samples, and the mean of the paired difference g_RE·N/(N−1) − g_rt must
// vanish within its statistical error for every parameter. The test also
// checks that it could fail: without the factor (N−1)/N the bias g_rt/N
// is resolved for the parameters with the best-determined gradients.
func TestReinforceMatchesReparamInExpectation(t *testing.T) {
	const (
		L, N, M = 4, 4, 6000
		// zMax bounds |mean|/stderr of every component. With a few
		// hundred components the chance that one of them exceeds 5 by
		// fluctuation alone is below 1e-3.
		zMax = 5.0
	)
	f := tinyFlow[float64](t, L, 2, []int{4}, 3)
	pool := lgt.NewPool(lgt.Params{L: L, Beta: 2, Kappa: 0.276}, 1)
	re := NewTrainer(f, pool, REINFORCE, N, 11)
	rt := NewTrainer(f, pool, ReparamTrick, N, 11)
	P := f.Params.Len()
	gRE := make([]float64, P)
	var sd, sd2, sr, sr2, sb, sb2 = make([]float64, P), make([]float64, P), make([]float64, P), make([]float64, P), make([]float64, P), make([]float64, P)
	for m := 0; m < M; m++ {
		f.Params.ZeroGrad()
		if _, err := re.Step(Local{}, uint64(m), 0, N, N); err != nil {
			t.Fatal(err)
		}
		copy(gRE, f.Params.Grad)
		f.Params.ZeroGrad()
		if _, err := rt.Step(Local{}, uint64(m), 0, N, N); err != nil {
			t.Fatal(err)
		}
		for i, g := range f.Params.Grad {
			d := gRE[i]*N/(N-1) - g
			b := gRE[i] - g // without the factor
			sd[i] += d
			sd2[i] += d * d
			sb[i] += b
			sb2[i] += b * b
			sr[i] += g
			sr2[i] += g * g
		}
	}
	z := func(s, s2 float64) float64 {
		mean := s / M
		v := (s2/M - mean*mean) / (M - 1)
		if v <= 1e-30*math.Max(s2/M, 1e-300) { // no fluctuation: exact zero or exact agreement
			if math.Abs(mean) <= 1e-12*math.Sqrt(s2/M) {
				return 0
			}
			return math.Inf(1)
		}
		return math.Abs(mean) / math.Sqrt(v)
	}
	worst, biasResolved := 0.0, 0.0
	for i := 0; i < P; i++ {
		zi := z(sd[i], sd2[i])
		worst = math.Max(worst, zi)
		if zi > zMax {
			t.Errorf("parameter %d (%s): mean of g_RE·N/(N−1) − g_rt is %.2f standard errors from 0", i, tensorOf(f, i), zi)
		}
		biasResolved = math.Max(biasResolved, z(sb[i], sb2[i]))
	}
	t.Logf("largest |z| of the corrected difference %.2f; of the uncorrected one %.2f", worst, biasResolved)
	if !(biasResolved >= zMax) {
		t.Errorf("the test cannot resolve the (N−1)/N bias (largest z %.2f): increase M", biasResolved)
	}
}

func tensorOf[T Float](f *Flow[T], i int) string {
	for _, ti := range f.Params.Tensors {
		if i >= ti.Offset && i < ti.Offset+ti.Size {
			return ti.Name
		}
	}
	return "?"
}

// trainRun is the outcome of trainFor: the per-step ESS and loss of the
// steps taken, the number of skipped steps and the gradient norms before
// clipping.
type trainRun struct {
	ess, loss, norms []float64
	skipped          int
}

// trainFor trains f with est for steps steps of batch N (Adam with rate lr,
// the configs' clipping: components to ±0.1, then the norm to 10; see
// ClipGrad), skipping steps with non-finite values as the training driver
// does.
func trainFor[T Float](t *testing.T, f *Flow[T], pool *lgt.Pool, est Estimator, N, steps int, lr float64, seed uint64) trainRun {
	t.Helper()
	tr := NewTrainer(f, pool, est, N, seed)
	adam := NewAdam(f.Params.Len(), lr, 0.9, 0.999, 1e-8)
	var r trainRun
	for s := 0; s < steps; s++ {
		f.Params.ZeroGrad()
		st, err := tr.Step(Local{}, uint64(s), 0, N, N)
		if errors.Is(err, ErrNonFinite) {
			r.skipped++
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		r.norms = append(r.norms, ClipGrad(f.Params.Grad, configClipValue, configClipNorm))
		Update(adam, f.Params.Data, f.Params.Grad)
		r.ess = append(r.ess, st.ESS)
		r.loss = append(r.loss, st.Loss)
	}
	return r
}

// mean returns the mean of x.
func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// untrainedStats returns the per-step ESS and loss of f on the batches of
// steps 0 … n−1 without updating it: the baseline of an untrained flow on
// the same prior samples that training starts with.
func untrainedStats[T Float](t *testing.T, f *Flow[T], pool *lgt.Pool, N, n int, seed uint64) (ess, loss []float64) {
	t.Helper()
	tr := NewTrainer(f, pool, REINFORCE, N, seed)
	for s := range n {
		f.Params.ZeroGrad()
		st, err := tr.Step(Local{}, uint64(s), 0, N, N)
		if err != nil {
			t.Fatal(err)
		}
		ess, loss = append(ess, st.ESS), append(loss, st.Loss)
	}
	f.Params.ZeroGrad()
	return ess, loss
}

// TestTrainingRaisesESS trains a small flow (L = 8, one period of 8
// layers, hidden channels [8], batch 64, Adam 5e-3, float32, the paper's
// clipping) with each estimator and compares the last window of steps with
// the untrained flow on the first window's batches: the mean ESS must rise
// by the factor essGain and the mean loss drop by more than lossSigmas
// standard errors of the two window means. Measured over trainer seeds
// 21–25 (Sapphire Rapids), ESS gain and loss drop in standard errors:
// REINFORCE 1.93–2.22, 182–243; r.t. 2.17–3.20, 224–258; path 2.06–2.90,
// 227–240 (seed 21, the one tested: 2.22, 2.89, 2.84). essGain = 1.5 and
// lossSigmas = 50 lie well below every seed's value.
func TestTrainingRaisesESS(t *testing.T) {
	const (
		L, N, steps, window = 8, 64, 450, 40
		seed                = 21
		essGain             = 1.5
		lossSigmas          = 50
	)
	for _, est := range []Estimator{REINFORCE, ReparamTrick, PathGradient} {
		t.Run(string(est), func(t *testing.T) {
			t.Parallel()
			pool := lgt.NewPool(lgt.Params{L: L, Beta: 2, Kappa: 0.276}, 1) // one per subtest: a Pool serializes its calls
			defer pool.Close()
			f := tinyFlow[float32](t, L, 8, []int{8}, 5)
			ess0, loss0 := untrainedStats(t, f, pool, N, window, seed)
			r := trainFor(t, f, pool, est, N, steps, 5e-3, seed)
			if r.skipped > steps/20 {
				t.Fatalf("%d of %d steps skipped for non-finite values", r.skipped, steps)
			}
			n := len(r.ess)
			e0, e1 := mean(ess0), mean(r.ess[n-window:])
			l0, l1 := mean(loss0), mean(r.loss[n-window:])
			se := math.Sqrt((variance(loss0) + variance(r.loss[n-window:])) / window)
			slices.Sort(r.norms)
			t.Logf("untrained → trained: ESS %.3f → %.3f (×%.2f), loss %.3f → %.3f (%.1f standard errors), %d steps skipped, median gradient norm %.3g",
				e0, e1, e1/e0, l0, l1, (l0-l1)/se, r.skipped, r.norms[len(r.norms)/2])
			if !(e1 > essGain*e0) {
				t.Errorf("ESS %.4f → %.4f: not raised by a factor %v", e0, e1, essGain)
			}
			if !(l0-l1 > lossSigmas*se) {
				t.Errorf("loss %.4f → %.4f did not drop by %v standard errors (%.4f)", l0, l1, lossSigmas, se)
			}
		})
	}
}

// TestFloat32ReparamTrains is the float32 r.t. study: L = 4,
// 8 layers, hidden channels [32, 32], batch 256, Adam 1e-3, 400 steps, the
// clipping (0.1, 10), seeds 1–3; the mean ESS of the last 50 steps must reach
// minESS. Measured (last-50 ESS, seeds 1, 2, 3; Sapphire Rapids): r.t.
// float32 0.113, 0.107, 0.111 (seeds 4, 5: see the closing note); r.t.
// float64 0.107, 0.108, 0.102; the paper's PyTorch code in float32, which
// clips the same way, 0.090, 0.101, 0.097. minESS = 0.085 lies below all of
// these and far above what the same runs reach without clipping on their
// bad seeds (0.040–0.054, in float32 and float64 alike) and the untrained
// flow (0.009).
func TestFloat32ReparamTrains(t *testing.T) {
	const (
		N, steps, window = 256, 400, 50
		minESS           = 0.085
	)
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			pool := lgt.NewPool(lgt.Params{L: 4, Beta: 2, Kappa: 0.276}, 1)
			defer pool.Close()
			f, err := NewFlow[float32](precisionArch(), CPU(1))
			if err != nil {
				t.Fatal(err)
			}
			f.Init(Stream(seed, DomainInit, 0, 0))
			r := trainFor(t, f, pool, ReparamTrick, N, steps, 1e-3, seed)
			if r.skipped > 0 {
				t.Errorf("%d steps skipped for non-finite values", r.skipped)
			}
			e := mean(r.ess[len(r.ess)-window:])
			t.Logf("seed %d: last-%d ESS %.3f, largest gradient norm %.0f", seed, window, e, slices.Max(r.norms))
			if !(e >= minESS) {
				t.Errorf("seed %d: last-%d ESS %.3f < %v", seed, window, e, minESS)
			}
		})
	}
}

// variance returns the sample variance of x.
func variance(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m += v
	}
	m /= float64(len(x))
	s := 0.0
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return s / float64(len(x)-1)
}

// TestTrainerStepDoesNotAllocate checks that a training step in the steady
// state (after the first, which sizes the workspaces) allocates nothing,
// for every estimator and both REINFORCE forms.
func TestTrainerStepDoesNotAllocate(t *testing.T) {
	const L, mb = 4, 4
	for _, c := range []struct {
		est   Estimator
		batch int
	}{{REINFORCE, mb}, {REINFORCE, 2 * mb}, {ReparamTrick, 2 * mb}, {PathGradient, mb}} {
		f := tinyFlow[float32](t, L, 2, []int{4}, 1)
		pool := lgt.NewPool(lgt.Params{L: L, Beta: 2, Kappa: 0.276}, 2) // two workers: goroutines too
		tr := NewTrainer(f, pool, c.est, mb, 1)
		step := uint64(0)
		run := func() {
			f.Params.ZeroGrad()
			if _, err := tr.Step(Local{}, step, 0, c.batch, c.batch); err != nil {
				t.Fatal(err)
			}
			step++
		}
		run()
		if n := testing.AllocsPerRun(5, run); n != 0 {
			t.Errorf("%s, batch %d: %v allocations per step", c.est, c.batch, n)
		}
	}
}
