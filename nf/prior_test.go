package nf

import (
	"math"
	"testing"
)

func TestSamplePriorIndependentOfSplit(t *testing.T) {
	const n, B = 32, 6
	whole := make([]float32, B*n)
	SamplePrior(whole, B, 42, DomainTrain, 7, 0)
	parts := make([]float32, B*n)
	SamplePrior(parts[:2*n], 2, 42, DomainTrain, 7, 0)
	SamplePrior(parts[2*n:], 4, 42, DomainTrain, 7, 2)
	for i := range whole {
		if whole[i] != parts[i] {
			t.Fatalf("element %d: %v vs %v", i, whole[i], parts[i])
		}
		if whole[i] < 0 || float64(whole[i]) >= 2*math.Pi {
			t.Fatalf("element %d = %v outside [0, 2π)", i, whole[i])
		}
	}
	other := make([]float32, n)
	SamplePrior(other, 1, 42, DomainTrain, 8, 0)
	same := 0
	for i := range other {
		if other[i] == whole[i] {
			same++
		}
	}
	if same == n {
		t.Fatal("step does not change the stream")
	}
}

// TestSamplePriorUniform checks mean and variance of many prior angles
// against the uniform distribution on [0, 2π) within 5 standard errors.
func TestSamplePriorUniform(t *testing.T) {
	const B, n = 200, 128
	z := make([]float64, B*n)
	SamplePrior(z, B, 1, DomainTrain, 0, 0)
	var s, s2 float64
	for _, v := range z {
		s += v
		s2 += v * v
	}
	N := float64(len(z))
	mean := s / N
	varc := s2/N - mean*mean
	wantMean, wantVar := math.Pi, 4*math.Pi*math.Pi/12
	if d := math.Abs(mean - wantMean); d > 5*math.Sqrt(wantVar/N) {
		t.Errorf("mean %v want %v", mean, wantMean)
	}
	// var of the sample variance of a uniform: (μ4 − σ⁴)/N with μ4 = (2π)⁴/80.
	sdVar := math.Sqrt((math.Pow(2*math.Pi, 4)/80 - wantVar*wantVar) / N)
	if d := math.Abs(varc - wantVar); d > 5*sdVar {
		t.Errorf("variance %v want %v", varc, wantVar)
	}
}

func TestESS(t *testing.T) {
	cases := []struct {
		logw []float64
		want float64
	}{
		{[]float64{0, 0, 0, 0}, 1},
		{[]float64{1000, 1000}, 1},                         // no overflow
		{[]float64{0, math.Inf(-1)}, 0.5},                  // one zero weight
		{[]float64{0, math.Log(2)}, 9.0 / (2 * 5)},         // (1+2)²/(2·(1+4))
		{[]float64{-800, -800 + math.Log(3)}, 16.0 / (20)}, // (1+3)²/(2·10), no underflow
	}
	// Log weights near ±800 carry an absolute rounding of ~1e-13, which
	// becomes the relative error of the weights.
	const tol = 1e-12
	for _, c := range cases {
		if got := ESS(c.logw); math.Abs(got-c.want) > tol {
			t.Errorf("ESS(%v) = %v want %v", c.logw, got, c.want)
		}
	}
}
