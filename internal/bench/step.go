package bench

import (
	"fmt"
	"math"
	"nfschwinger/internal/stats"
	"nfschwinger/lgt"
	"nfschwinger/nf"
	"runtime"
	"runtime/debug"
	"time"
)

// step builds a fresh flow and trainer for (L, est) and times
// o.Warmup + o.Steps gradient steps on the whole batch, in one process.
// With four (REINFORCE only) the trainer runs the four-pass form
// (nf.Trainer.FourPass) where it would run the three-pass one.
func step(o Options, be nf.Backend, L int, est nf.Estimator, four bool, m ConvMode) (StepRow, error) {
	r := StepRow{Kind: "step", L: L, Estimator: string(est), Batch: o.Batch, MicroBatch: o.Micro, Layers: o.Layers,
		ConvEngine: m.Engine, ConvPrecision: m.Precision}
	// Give memory from the previous rows back before the high-water mark
	// is reset, so that it measures this row alone.
	runtime.GC()
	debug.FreeOSMemory()
	peakReset := resetPeakRSS()

	pool := lgt.NewPool(lgt.Paper(L), 0)
	defer pool.Close()
	flow, target, closeFlow, err := buildFlow(o, be, L, m, est, pool)
	if err != nil {
		return r, fmt.Errorf("bench: L = %d: %w", L, err)
	}
	defer closeFlow()
	r.ConvAlgorithm = flow.DNNLAlgorithm()
	tr := nf.NewTrainer(flow, target, est, o.Micro, o.Seed)
	tr.FourPass = four
	var step, loss, bwd, fl, act, gconv, gstep []float64
	for i := 0; i < o.Warmup+o.Steps; i++ {
		flow.Params.ZeroGrad()
		tr.Timings.Reset()
		t0 := time.Now()
		st, err := tr.Step(nf.Local{}, uint64(i), 0, o.Batch, o.Batch)
		if est == nf.REINFORCE {
			r.Form = map[bool]string{true: "three-pass", false: "four-pass"}[st.ThreePass]
		}
		if err != nil {
			return r, fmt.Errorf("bench: L = %d, %s, step %d: %w", L, est, i, err)
		}
		dt := time.Since(t0).Seconds()
		if i < o.Warmup {
			continue
		}
		tm := tr.Timings
		step = append(step, dt)
		bwd = append(bwd, tm.Backward.Seconds())
		loss = append(loss, dt-tm.Backward.Seconds())
		fl = append(fl, tm.Flow.Seconds())
		act = append(act, tm.Action.Seconds())
		gconv = append(gconv, tm.ConvFLOPs/(tm.Flow+tm.Backward).Seconds()/1e9)
		gstep = append(gstep, tm.ConvFLOPs/dt/1e9)
	}
	r.StepSeconds, r.LossSeconds, r.BackwardSeconds = stats.Median(step), stats.Median(loss), stats.Median(bwd)
	r.FlowSeconds, r.ActionSeconds = stats.Median(fl), stats.Median(act)
	r.ConvGFLOPs, r.ConvStepGFLOPs = stats.Median(gconv), stats.Median(gstep)
	r.KeptBytes = int64(tr.KeptBytes())
	if n := tr.KeptBuffers(); n >= 0 {
		r.KeptBuffers = &n
	}
	r.PeakRSSBytes, r.PeakRSSMethod = peakRSS(peakReset)
	return r, nil
}

// buildFlow builds the benchmark's flow at L with the row's convolutions
// (im2col and OpenBLAS, oneDNN in float32 or bf16, or the whole flow on
// the device through o.Device), initialized from o.Seed, and its
// training target for est; close frees both.
func buildFlow(o Options, be nf.Backend, L int, m ConvMode, est nf.Estimator, pool *lgt.Pool) (*nf.Flow[float32], nf.Target, func(), error) {
	var flow *nf.Flow[float32]
	target, closeFlow := nf.Target(pool), func() {}
	var err error
	switch m.Engine {
	case "cuda":
		flow, target, closeFlow, err = o.Device(o.Arch(L), o.Micro, m.Precision == "bf16", est, pool)
	case "dnnl":
		flow, err = nf.NewFlowOn(o.Arch(L), nf.OneDNN[float32](be, nf.DNNLOptionsFor(m.Precision, m.Algorithm)))
	default:
		flow, err = nf.NewFlowOn(o.Arch(L), nf.OpenBLAS[float32](be))
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if m.Engine != "cuda" {
		closeFlow = flow.Close
	}
	flow.Init(nf.Stream(o.Seed, nf.DomainInit, 0, 0))
	return flow, target, closeFlow, nil
}

// sgemmGFLOPs times C = A·B for n×n float32 matrices through the backend's
// Gemm32 (sequential OpenBLAS on one block per worker, as the flow's
// products run) and returns the best of sgemmRepeats, in GFLOP/s.
func sgemmGFLOPs(be nf.Backend, n int) float64 {
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i] = float32(i%17) / 17
		b[i] = float32(i%13) / 13
	}
	be.Gemm32(false, false, n, n, n, 1, a, n, b, n, 0, c, n) // warm-up
	best := math.Inf(1)
	for range sgemmRepeats {
		t0 := time.Now()
		be.Gemm32(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
		best = min(best, time.Since(t0).Seconds())
	}
	return 2 * float64(n) * float64(n) * float64(n) / best / 1e9
}

// checkBF16 returns why bf16 convolutions are refused on this CPU (nil
// when oneDNN runs them natively: AVX512-BF16 or AMX).
func checkBF16(a nf.Arch) error {
	a.NLayers = 1
	f, err := nf.NewFlowOn(a, nf.OneDNN[float32](nf.CPU(0), nf.DNNLOptions{BF16: true}))
	if err != nil {
		return err
	}
	f.Close()
	return nil
}

// action times the action with its force for random configurations
// on one Evaluator (one core, single-threaded OpenBLAS): the even–odd path
// (Evaluator.Action) and the dense one (Evaluator.MeasureDense, which also
// computes the observables from the same LU and inverse). Each method runs
// on at least two configurations and until actionMinTime has passed (at
// most actionMaxConfigs); the mean time per configuration is reported.
func action(L int, seed uint64) (ActionRow, error) {
	p := lgt.Paper(L)
	ev := lgt.NewEvaluator(p)
	n := 2 * p.V()
	links := make([]float64, actionMaxConfigs*n)
	nf.SamplePrior(links, actionMaxConfigs, seed, nf.DomainProbe, 0, 0)
	force := make([]float64, n)
	row := ActionRow{Kind: "action", L: L}
	methods := []struct {
		dst *float64
		fn  func(x []float64) error
	}{
		{&row.EvenOddSeconds, func(x []float64) error { _, err := ev.Action(x, force); return err }},
		{&row.DenseSeconds, func(x []float64) error { _, err := ev.MeasureDense(x, force); return err }},
	}
	for _, m := range methods {
		if err := m.fn(links[:n]); err != nil { // warm-up: workspaces
			return row, fmt.Errorf("bench: action at L = %d: %w", L, err)
		}
		t0 := time.Now()
		k := 0
		for k < actionMaxConfigs && (k < 2 || time.Since(t0) < actionMinTime) {
			if err := m.fn(links[k*n : (k+1)*n]); err != nil {
				return row, fmt.Errorf("bench: action at L = %d: %w", L, err)
			}
			k++
		}
		*m.dst = time.Since(t0).Seconds() / float64(k)
		row.Configs = k
	}
	return row, nil
}
