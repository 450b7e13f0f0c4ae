package nf

import (
	"math"
	"math/rand/v2"
	"testing"

	"nfschwinger/internal/stats"
)

// mcmcSigmas is the tolerance of the statistical chain tests in units of
// the Γ-method error of the measured rate (which includes the chain's
// autocorrelation): 4σ, with fixed seeds.
const mcmcSigmas = 4

// runChain runs a chain over logw with the sampling uniforms of seed and
// returns the accepted flags and the index of the state after every step.
func runChain(logw []float64, seed uint64) (acc []bool, state []int64) {
	m := NewMetropolis()
	acc = make([]bool, len(logw))
	state = make([]int64, len(logw))
	for i, lw := range logw {
		acc[i] = m.Step(lw, AcceptUniform(seed, uint64(i)))
		state[i] = m.Current
	}
	return acc, state
}

func indicator(b []bool) []float64 {
	x := make([]float64, len(b))
	for i, v := range b {
		if v {
			x[i] = 1
		}
	}
	return x
}

// TestMetropolisLogNormal: for log w ~ N(0, σ²) under q the stationary
// acceptance of the independence sampler is E_p E_q min(1, w'/w) = erfc(σ/2)
// (log w' − log w ~ N(−σ², 2σ²) with the state distributed as p).
func TestMetropolisLogNormal(t *testing.T) {
	const n = 100000
	for k, sigma := range []float64{0.3, 1, 2, 3} {
		rng := rand.New(rand.NewPCG(uint64(k), 7))
		logw := make([]float64, n)
		for i := range logw {
			logw[i] = sigma*rng.NormFloat64() - 12.5 // an arbitrary normalization of p
		}
		acc, _ := runChain(logw, uint64(100+k))
		r := stats.GammaMethod(indicator(acc), 0)
		want := math.Erfc(sigma / 2)
		if math.Abs(r.Mean-want) > mcmcSigmas*r.Err {
			t.Errorf("σ = %g: acceptance %.4f ± %.4f, exact %.4f", sigma, r.Mean, r.Err, want)
		}
	}
}

// TestMetropolisDiscrete: proposals from a three-state q with weights w;
// the chain must visit state j with the target probability p_j ∝ q_j w_j
// and accept at the rate Σ_jk p_j q_k min(1, w_k/w_j).
func TestMetropolisDiscrete(t *testing.T) {
	q := []float64{0.5, 0.3, 0.2}
	w := []float64{1, 2, 5}
	const n = 100000
	z := 0.0
	for j := range q {
		z += q[j] * w[j]
	}
	p := make([]float64, len(q))
	for j := range q {
		p[j] = q[j] * w[j] / z
	}
	wantAcc := 0.0
	for j := range q {
		for k := range q {
			wantAcc += p[j] * q[k] * math.Min(1, w[k]/w[j])
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	kind := make([]int, n)
	logw := make([]float64, n)
	for i := range kind {
		u := rng.Float64()
		switch {
		case u < q[0]:
			kind[i] = 0
		case u < q[0]+q[1]:
			kind[i] = 1
		default:
			kind[i] = 2
		}
		logw[i] = math.Log(w[kind[i]])
	}
	acc, state := runChain(logw, 42)
	r := stats.GammaMethod(indicator(acc), 0)
	if math.Abs(r.Mean-wantAcc) > mcmcSigmas*r.Err {
		t.Errorf("acceptance %.4f ± %.4f, exact %.4f", r.Mean, r.Err, wantAcc)
	}
	for j := range p {
		in := make([]float64, n)
		for i, s := range state {
			if kind[s] == j {
				in[i] = 1
			}
		}
		r := stats.GammaMethod(in, 0)
		if math.Abs(r.Mean-p[j]) > mcmcSigmas*r.Err {
			t.Errorf("state %d: chain frequency %.4f ± %.4f, target p = %.4f", j, r.Mean, r.Err, p[j])
		}
	}
}

// TestMetropolisExactProposal: q = p (constant log weight) accepts every
// proposal, whatever the constant.
func TestMetropolisExactProposal(t *testing.T) {
	for _, c := range []float64{0, -1234.5, 77.25} {
		logw := make([]float64, 5000)
		for i := range logw {
			logw[i] = c
		}
		acc, state := runChain(logw, 9)
		for i, a := range acc {
			if !a || state[i] != int64(i) {
				t.Fatalf("log w = %g: step %d rejected", c, i)
			}
		}
	}
}

// TestMetropolisRejectKeepsState compares the chain with a direct
// transcription of eq. (3) in linear weights: a rejected step keeps the
// previous state, an accepted one moves to the proposal.
func TestMetropolisRejectKeepsState(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	logw := make([]float64, 2000)
	for i := range logw {
		logw[i] = 1.5 * rng.NormFloat64()
	}
	acc, state := runChain(logw, 17)
	cur := 0
	rejected := 0
	for i := range logw {
		want := i == 0 || AcceptUniform(17, uint64(i)) < math.Exp(logw[i])/math.Exp(logw[cur])
		if want {
			cur = i
		} else {
			rejected++
		}
		if acc[i] != want || state[i] != int64(cur) {
			t.Fatalf("step %d: accepted %v state %d, want %v state %d", i, acc[i], state[i], want, cur)
		}
	}
	if rejected == 0 {
		t.Fatal("no rejections: the test does not test rejection")
	}
	// Continuing from the saved state gives the same chain.
	m := NewMetropolis()
	for i := range 1000 {
		m.Step(logw[i], AcceptUniform(17, uint64(i)))
	}
	saved := m
	for i := 1000; i < len(logw); i++ {
		if got := saved.Step(logw[i], AcceptUniform(17, uint64(i))); got != acc[i] || saved.Current != state[i] {
			t.Fatalf("continued chain differs at step %d", i)
		}
	}
}

func TestAccept(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	cases := []struct {
		cur, prop, u float64
		want         bool
		prob         float64
	}{
		{0, 0, 0.999, true, 1},
		{0, 1, 0.999, true, 1},
		{0, -1, math.Exp(-1) * 0.999, true, math.Exp(-1)},
		{0, -1, math.Exp(-1) * 1.001, false, math.Exp(-1)},
		{0, -1, 0, true, math.Exp(-1)},
		{0, -inf, 0, false, 0},
		{-inf, -inf, 0.5, true, 1},
		{-inf, -3, 0.5, true, 1},
		{0, nan, 0, false, 0},
		{nan, -3, 0.999, true, 1},
		{0, inf, 0.999, true, 1},
	}
	for _, c := range cases {
		if got := Accept(c.cur, c.prop, c.u); got != c.want {
			t.Errorf("Accept(%g, %g, %g) = %v, want %v", c.cur, c.prop, c.u, got, c.want)
		}
		if got := AcceptProb(c.cur, c.prop); math.Abs(got-c.prob) > 1e-15 {
			t.Errorf("AcceptProb(%g, %g) = %g, want %g", c.cur, c.prop, got, c.prob)
		}
	}
}

func TestRejectionRuns(t *testing.T) {
	T, F := true, false
	cases := []struct {
		acc  []bool
		want []Run
	}{
		{nil, nil},
		{[]bool{T, T, T}, nil},
		{[]bool{T, F, F, T, F}, []Run{{1, 2}, {4, 1}}},
		{[]bool{F, F}, []Run{{0, 2}}},
	}
	for _, c := range cases {
		got := RejectionRuns(c.acc)
		if len(got) != len(c.want) {
			t.Fatalf("RejectionRuns(%v) = %v, want %v", c.acc, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("RejectionRuns(%v) = %v, want %v", c.acc, got, c.want)
			}
		}
	}
}

func TestChainAcceptanceAndUniforms(t *testing.T) {
	if got := ChainAcceptance([]float64{0, -100, -100, 5}, func(int) float64 { return 0.5 }); got != 0.5 {
		t.Errorf("ChainAcceptance = %g, want 0.5 (first and last accepted)", got)
	}
	// The uniforms of the chain, of a probe and of the proposals are
	// different streams.
	a, b := AcceptUniform(1, 0), ProbeUniform(1, 0, 0)
	c := Stream(1, DomainSample, 0, 0).Float64()
	if a == b || a == c || b == c || a < 0 || a >= 1 {
		t.Errorf("uniform streams not separated: %g %g %g", a, b, c)
	}
}
