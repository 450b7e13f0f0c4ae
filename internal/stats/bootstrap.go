package stats

import (
	"math"
	"math/rand/v2"
)

// Bootstrap returns the bootstrap estimate of the standard error of a
// statistic of n independent samples: stat is evaluated on reps resamples,
// each a list of n indices drawn with replacement from [0, n) by rng, and
// the standard deviation of the reps values is returned (normalized by
// reps − 1). stat must not keep idx, which is reused. n < 1 or reps < 2
// give NaN. NaN values of stat propagate.
func Bootstrap(n, reps int, rng *rand.Rand, stat func(idx []int) float64) float64 {
	if n < 1 || reps < 2 {
		return math.NaN()
	}
	idx := make([]int, n)
	vals := make([]float64, reps)
	for r := range vals {
		for i := range idx {
			idx[i] = rng.IntN(n)
		}
		vals[r] = stat(idx)
	}
	mean := 0.0
	for _, v := range vals {
		mean += v
	}
	mean /= float64(reps)
	ss := 0.0
	for _, v := range vals {
		ss += (v - mean) * (v - mean)
	}
	return math.Sqrt(ss / float64(reps-1))
}

// MovingAverage returns the trailing moving average of x over window
// points: out[i] is the mean of x[max(0, i−window+1) .. i], so the first
// window−1 points average over fewer values. NaN entries are skipped (a
// window of only NaNs gives NaN). window < 1 panics.
func MovingAverage(x []float64, window int) []float64 {
	if window < 1 {
		panic("stats: MovingAverage: window < 1")
	}
	out := make([]float64, len(x))
	sum, cnt := 0.0, 0
	for i, v := range x {
		if !math.IsNaN(v) {
			sum += v
			cnt++
		}
		if j := i - window; j >= 0 && !math.IsNaN(x[j]) {
			sum -= x[j]
			cnt--
		}
		if cnt == 0 {
			out[i] = math.NaN()
		} else {
			out[i] = sum / float64(cnt)
		}
	}
	return out
}
