package stats

import "slices"

// Median returns the median of x, the mean of the middle two for an even
// length; x is sorted in place. It panics on an empty x.
func Median(x []float64) float64 {
	if len(x) == 0 {
		panic("stats: Median of no values")
	}
	slices.Sort(x)
	n := len(x)
	if n%2 == 1 {
		return x[n/2]
	}
	return (x[n/2-1] + x[n/2]) / 2
}
