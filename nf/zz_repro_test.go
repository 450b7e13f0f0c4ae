package nf

import (
	"errors"
	"math"
	"testing"

	"nfschwinger/lgt"
)

func zzRun[T Float](t *testing.T, est Estimator, lr float64) {
	f := tinyFlow[T](t, 4, 8, []int{8}, 5)
	pool := lgt.NewPool(lgt.Params{L: 4, Beta: 2, Kappa: 0.276}, 0)
	tr := NewTrainer(f, pool, est, 64, 21)
	adam := NewAdam(f.Params.Len(), lr, 0.9, 0.999, 1e-8)
	bad, gskip := 0, 0
	for s := 0; s < 300; s++ {
		f.Params.ZeroGrad()
		st, err := tr.Step(Local{}, uint64(s), 0, 64, 64)
		maxp, maxg := 0.0, 0.0
		for i := range f.Params.Data {
			maxp = math.Max(maxp, math.Abs(float64(f.Params.Data[i])))
			g := math.Abs(float64(f.Params.Grad[i]))
			if math.IsNaN(g) {
				g = math.Inf(1)
			}
			maxg = math.Max(maxg, g)
		}
		if errors.Is(err, ErrNonFinite) {
			bad++
			if bad < 3 {
				t.Logf("step %d: %v  max|p| %g", s, err, maxp)
			}
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if s%25 == 0 {
			t.Logf("step %d ESS %.3f loss %.3f max|p| %g max|g| %g", s, st.ESS, st.Loss, maxp, maxg)
		}
		if !AllFinite(f.Params.Grad) {
			gskip++
			continue
		}
		ClipGradNorm(f.Params.Grad, 1)
		Update(adam, f.Params.Data, f.Params.Grad)
	}
	t.Logf("%d non-finite steps, %d non-finite gradients", bad, gskip)
}

func TestZZRepro(t *testing.T) {
	t.Run("re32", func(t *testing.T) { zzRun[float32](t, REINFORCE, 2e-2) })
	t.Run("re64", func(t *testing.T) { zzRun[float64](t, REINFORCE, 2e-2) })
	t.Run("path32", func(t *testing.T) { zzRun[float32](t, PathGradient, 5e-3) })
}
