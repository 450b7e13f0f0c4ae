package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestBootstrapMean(t *testing.T) {
	// The bootstrap error of the mean of n iid N(0, σ²) samples estimates
	// σ/√n. With reps = 400 resamples its relative statistical error is
	// about 1/√(2·400) = 3.5%, and the sample standard deviation adds
	// 1/√(2n) = 1.6%; 15% is over 3.5 combined standard deviations.
	const n, reps, sigma, relTol = 2000, 400, 2.5, 0.15
	for _, seed := range []uint64{1, 2, 3} {
		rng := rand.New(rand.NewPCG(seed, 0))
		x := make([]float64, n)
		for i := range x {
			x[i] = sigma * rng.NormFloat64()
		}
		got := Bootstrap(n, reps, rng, func(idx []int) float64 {
			s := 0.0
			for _, i := range idx {
				s += x[i]
			}
			return s / float64(len(idx))
		})
		want := sigma / math.Sqrt(n)
		if math.Abs(got-want) > relTol*want {
			t.Errorf("seed %d: bootstrap error %.5f, want %.5f within %.0f%%", seed, got, want, 100*relTol)
		}
	}
	if v := Bootstrap(0, 10, rand.New(rand.NewPCG(1, 1)), func([]int) float64 { return 0 }); !math.IsNaN(v) {
		t.Errorf("n = 0: %g, want NaN", v)
	}
}

func TestMovingAverage(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		x      []float64
		window int
		want   []float64
	}{
		{[]float64{1, 2, 3, 4, 5}, 1, []float64{1, 2, 3, 4, 5}},
		{[]float64{1, 2, 3, 4, 5}, 2, []float64{1, 1.5, 2.5, 3.5, 4.5}},
		{[]float64{1, 2, 3, 4, 5}, 3, []float64{1, 1.5, 2, 3, 4}},
		{[]float64{1, 2, 3}, 10, []float64{1, 1.5, 2}},
		{[]float64{1, nan, 3, nan, nan}, 2, []float64{1, 1, 3, 3, nan}},
		{nil, 3, []float64{}},
	}
	for _, c := range cases {
		got := MovingAverage(c.x, c.window)
		if len(got) != len(c.want) {
			t.Fatalf("MovingAverage(%v, %d): length %d", c.x, c.window, len(got))
		}
		for i := range got {
			if !(got[i] == c.want[i] || math.IsNaN(got[i]) && math.IsNaN(c.want[i])) &&
				math.Abs(got[i]-c.want[i]) > 1e-14 {
				t.Errorf("MovingAverage(%v, %d)[%d] = %g, want %g", c.x, c.window, i, got[i], c.want[i])
			}
		}
	}
}
