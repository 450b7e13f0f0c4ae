package nf

import (
	"errors"
	"math"
	"sync"
	"testing"

	"nfschwinger/lgt"
)

// fakeGroup lets goroutines play the ranks of a job: every collective of a
// fakeRanks deposits a copy of the buffer, waits for all ranks, computes
// its result from all deposits and waits again.
type fakeGroup struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	bufs    [][]float64
	arrived int
	gen     int
	calls   []string // the sequence of collectives of rank 0
}

func newFakeGroup(n int) *fakeGroup {
	g := &fakeGroup{n: n, bufs: make([][]float64, n)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// barrier returns when all n ranks have called it (reusable).
func (g *fakeGroup) barrier() {
	g.mu.Lock()
	defer g.mu.Unlock()
	gen := g.gen
	g.arrived++
	if g.arrived == g.n {
		g.arrived, g.gen = 0, g.gen+1
		g.cond.Broadcast()
		return
	}
	for gen == g.gen {
		g.cond.Wait()
	}
}

// collective runs op(deposits) → result on every rank.
func (g *fakeGroup) collective(rank int, name string, buf []float64, op func(all [][]float64, i int) float64) {
	g.mu.Lock()
	g.bufs[rank] = append([]float64(nil), buf...)
	if rank == 0 {
		g.calls = append(g.calls, name)
	}
	g.mu.Unlock()
	g.barrier()
	for i := range buf {
		buf[i] = op(g.bufs, i)
	}
	g.barrier()
}

type fakeRanks struct {
	g    *fakeGroup
	rank int
}

func sumOp(all [][]float64, i int) float64 {
	s := 0.0
	for _, b := range all {
		s += b[i]
	}
	return s
}

func (r fakeRanks) AllreduceSum(b []float64) { r.g.collective(r.rank, "sum", b, sumOp) }
func (r fakeRanks) AllreduceMax(b []float64) {
	r.g.collective(r.rank, "max", b, func(all [][]float64, i int) float64 {
		m := math.Inf(-1)
		for _, b := range all {
			m = math.Max(m, b[i])
		}
		return m
	})
}
func (r fakeRanks) AllreduceSum32([]float32) { panic("fakeRanks: float32 not supported") }
func (r fakeRanks) Bcast(b []float64, root int) {
	r.g.collective(r.rank, "bcast", b, func(all [][]float64, i int) float64 { return all[root][i] })
}
func (r fakeRanks) Bcast32([]float32, int) { panic("fakeRanks: float32 not supported") }
func (r fakeRanks) Rank() int              { return r.rank }

// stepperFor returns a Stepper on a fresh flow (the same on every call).
func stepperFor(t *testing.T, micro int) *Stepper[float64] {
	t.Helper()
	f := tinyFlow[float64](t, 4, 2, []int{4}, 3)
	pool := lgt.NewPool(lgt.Params{L: 4, Beta: 2, Kappa: 0.276}, 1)
	t.Cleanup(pool.Close)
	tr := NewTrainer(f, pool, REINFORCE, micro, 9)
	return &Stepper[float64]{Trainer: tr, Adam: NewAdam(f.Params.Len(), 1e-2, 0.9, 0.999, 1e-8), ClipValue: 0.1, ClipNorm: 10}
}

// runRanks runs fn(rank) on n goroutines and waits.
func runRanks(n int, fn func(rank int)) {
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() { defer wg.Done(); fn(r) }()
	}
	wg.Wait()
}

// TestStepperRanks: three steps on 2 fake ranks (4 samples each) give the
// parameters of one process with the whole batch of 8 (in micro-batches of
// 4, the same shapes), to float64 rounding (the sums are taken in another
// order: 1e-12 relative); the collectives follow the documented protocol.
func TestStepperRanks(t *testing.T) {
	const N, steps = 8, 3
	one := stepperFor(t, 4)
	for s := range steps {
		res, err := one.Step(Single{}, uint64(s), 0, N, N, nil)
		if err != nil || res.Skipped || res.Stop {
			t.Fatalf("one process, step %d: %+v, %v", s, res, err)
		}
	}
	g := newFakeGroup(2)
	sts := []*Stepper[float64]{stepperFor(t, 4), stepperFor(t, 4)}
	errs := make([]error, 2)
	runRanks(2, func(rank int) {
		for s := range steps {
			if _, err := sts[rank].Step(fakeRanks{g, rank}, uint64(s), uint64(rank*N/2), N/2, N, nil); err != nil {
				errs[rank] = err
				return
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for rank, st := range sts {
		if d := maxRelDiff(st.Trainer.Flow.Params.Data, one.Trainer.Flow.Params.Data); !(d <= 1e-12) {
			t.Errorf("rank %d: parameters differ from one process by %.2e relative", rank, d)
		}
	}
	if sts[1].Adam.Step != 0 || sts[0].Adam.Step != steps {
		t.Errorf("Adam steps: rank 0 %d, rank 1 %d; want %d, 0 (only rank 0 optimizes)", sts[0].Adam.Step, sts[1].Adam.Step, steps)
	}
	// Per step: REINFORCE three-pass baseline (sum), statistics (sum, max,
	// sum), gradient (sum), parameters (bcast), flags (max).
	want := []string{"sum", "sum", "max", "sum", "sum", "bcast", "max"}
	if len(g.calls) != steps*len(want) {
		t.Fatalf("collectives %v", g.calls)
	}
	for i, c := range g.calls[:len(want)] {
		if c != want[i] {
			t.Errorf("collectives of a step %v, want %v", g.calls[:len(want)], want)
			break
		}
	}
}

// TestStepperSkipAndStop: a hook that poisons rank 1's gradient makes every
// rank skip the step (parameters and Adam untouched); a stop request of
// rank 1 reaches every rank; a hook error ends the step on that rank.
func TestStepperSkipAndStop(t *testing.T) {
	const N = 8
	g := newFakeGroup(2)
	sts := []*Stepper[float64]{stepperFor(t, 4), stepperFor(t, 4)}
	sts[1].Hook = func(step uint64, grad []float64) error {
		if step == 1 {
			grad[0] = math.NaN()
		}
		return nil
	}
	res := make([][]StepResult, 2)
	before := make([][]float64, 2)
	runRanks(2, func(rank int) {
		for s := range 3 {
			if s == 1 {
				before[rank] = append([]float64(nil), sts[rank].Trainer.Flow.Params.Data...)
			}
			stop := func() bool { return rank == 1 && s == 2 }
			r, err := sts[rank].Step(fakeRanks{g, rank}, uint64(s), uint64(rank*N/2), N/2, N, stop)
			if err != nil {
				t.Error(err)
				return
			}
			res[rank] = append(res[rank], r)
			if s == 1 && maxRelDiff(sts[rank].Trainer.Flow.Params.Data, before[rank]) != 0 {
				t.Errorf("rank %d: a skipped step changed the parameters", rank)
			}
		}
	})
	for rank := range 2 {
		r := res[rank]
		if len(r) != 3 || r[0].Skipped || !r[1].Skipped || r[2].Skipped || r[1].Stop || !r[2].Stop {
			t.Errorf("rank %d: results %+v; want step 1 skipped, stop after step 2", rank, r)
		}
	}
	if sts[0].Adam.Step != 2 {
		t.Errorf("Adam steps %d, want 2 (one skipped)", sts[0].Adam.Step)
	}
	// A hook error is returned.
	one := stepperFor(t, 4)
	one.Hook = func(uint64, []float64) error { return errors.New("injected") }
	if _, err := one.Step(Single{}, 0, 0, N, N, nil); err == nil || err.Error() != "step 0: injected" {
		t.Errorf("hook error: %v", err)
	}
}
