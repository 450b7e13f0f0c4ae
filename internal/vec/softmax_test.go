package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSoftmax compares Softmax with the same formulas in Go's math
// (softmaxStrided's) for every chunk length, with raw values from ±0.1 to
// ±100 (exp(r − max) underflowing to 0 for the smallest): p within
// 16 ulp relative, lp within 16 ulp of max(1, |lp|), and only the
// requested sites written.
func TestSoftmax(t *testing.T) {
	const n, sets, stride = 8, 2, 40
	rng := rand.New(rand.NewPCG(1, 2))
	for _, scale := range []float64{0.1, 3, 100} {
		raw := make([]float32, sets*n*stride)
		for i := range raw {
			raw[i] = float32(scale * rng.NormFloat64())
		}
		for cnt := 1; cnt <= SoftmaxSites; cnt++ {
			p, lp := make([]float64, sets*n*cnt+1), make([]float64, sets*n*cnt+1)
			p[len(p)-1], lp[len(lp)-1] = 7, 7
			Softmax(p, lp, raw[3:], stride, cnt, n, sets)
			if p[len(p)-1] != 7 || lp[len(lp)-1] != 7 {
				t.Fatalf("cnt %d: wrote past its sites", cnt)
			}
			for k := range sets {
				for i := range cnt {
					r := func(j int) float64 { return float64(raw[3+(k*n+j)*stride+i]) }
					m := math.Inf(-1)
					for j := range n {
						m = math.Max(m, r(j))
					}
					sum := 0.0
					for j := range n {
						sum += math.Exp(r(j) - m)
					}
					for j := range n {
						wp, wlp := math.Exp(r(j)-m)/sum, r(j)-m-math.Log(sum)
						gp, glp := p[(k*n+j)*cnt+i], lp[(k*n+j)*cnt+i]
						if math.Abs(gp-wp) > 16*0x1p-52*wp || math.Abs(glp-wlp) > 16*0x1p-52*math.Max(1, math.Abs(wlp)) {
							t.Fatalf("scale %v, cnt %d, set %d, site %d, bin %d: p %v lp %v, want %v %v", scale, cnt, k, i, j, gp, glp, wp, wlp)
						}
					}
				}
			}
		}
	}
}

// TestSoftmaxNaN: a NaN input gives NaN probabilities at its site only,
// as math.Max and math.Exp do in Go.
func TestSoftmaxNaN(t *testing.T) {
	const n, cnt = 4, 3
	raw := make([]float32, n*cnt)
	raw[1*cnt+1] = float32(math.NaN())
	p, lp := make([]float64, n*cnt), make([]float64, n*cnt)
	Softmax(p, lp, raw, cnt, cnt, n, 1)
	for j := range n {
		for i := range cnt {
			if math.IsNaN(p[j*cnt+i]) != (i == 1) {
				t.Errorf("bin %d, site %d: p = %v", j, i, p[j*cnt+i])
			}
		}
	}
}
