package nf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"nfschwinger/lgt"
)

// threePassTol: the three-pass and four-pass REINFORCE gradients in
// float64, relative to the largest entry. They differ only by the rounding
// of the preimages (the reverse pass's solution of g(P) = P' − t against
// the forward pass's P, a few ulps) propagated through the layers:
// measured ≈ 1e-14.
const threePassTol = 1e-10

// maxRelDiff returns max|a − b| / max|b|.
func maxRelDiff(a, b []float64) float64 {
	d, s := 0.0, 0.0
	for i := range b {
		d = math.Max(d, math.Abs(a[i]-b[i]))
		s = math.Max(s, math.Abs(b[i]))
	}
	return d / math.Max(s, 1e-300)
}

// TestBackwardReverseFromForward compares the reverse flow's VJP computed
// from a Forward tape (three passes) with Reverse + BackwardReverse (four
// passes) at x = f(z), for both tape modes and mixed modes: parameter
// gradients and the link gradient ∂L/∂x, for a loss with both a log J and
// a z' term.
func TestBackwardReverseFromForward(t *testing.T) {
	const L, B = 4, 3
	fl := newTestFlow(t, smallArch(L, 10), 5)
	rng := rand.New(rand.NewPCG(6, 7))
	n := B * 2 * L * L
	z := uniformLinks(rng, B, L)
	gz := make([]float64, n)
	for i := range gz {
		gz[i] = rng.NormFloat64()
	}
	glogJ := []float64{0.7, -1.3, 0.4}
	x := make([]float64, n)
	zr := make([]float64, n)
	logJ, logJr := make([]float64, B), make([]float64, B)

	for _, c := range []struct{ fwdRecompute, revRecompute bool }{
		{false, false}, {true, true}, {true, false}, {false, true},
	} {
		t.Run(fmt.Sprintf("recompute=%v/%v", c.fwdRecompute, c.revRecompute), func(t *testing.T) {
			fl.SetRecompute(c.revRecompute)
			tape4 := fl.NewTape(B)
			fl.SetRecompute(c.fwdRecompute)
			tape3 := fl.NewTape(B)
			fl.Forward(x, z, logJ, B, tape3)
			fl.Params.ZeroGrad()
			gx3 := make([]float64, n)
			fl.BackwardReverseFromForward(tape3, gx3, gz, glogJ)
			grad3 := append([]float64(nil), fl.Params.Grad...)

			fl.SetRecompute(c.revRecompute)
			fl.Reverse(zr, x, logJr, B, tape4)
			for b := range logJ {
				if d := math.Abs(logJr[b] + logJ[b]); d > invTol {
					t.Fatalf("logJ_rev[%d] = %v, −logJ_fwd = %v", b, logJr[b], -logJ[b])
				}
			}
			fl.Params.ZeroGrad()
			gx4 := make([]float64, n)
			fl.BackwardReverse(tape4, gx4, gz, glogJ)

			dp := maxRelDiff(grad3, fl.Params.Grad)
			dx := maxRelDiff(gx3, gx4)
			t.Logf("parameter gradients: %.1e, link gradients: %.1e relative", dp, dx)
			if !(dp <= threePassTol && dx <= threePassTol) {
				t.Errorf("three-pass against four-pass: parameters %.2e, links %.2e relative (tolerance %g)", dp, dx, threePassTol)
			}
		})
	}
	fl.SetRecompute(DefaultRecompute)
}

// TestThreePassReinforceAgainstVectors: the REINFORCE gradient of
// flow_L8.h5 (grad_reinforce, φ = forward/x) from the forward pass of z
// with its tape and BackwardReverseFromForward, in both tape modes.
func TestThreePassReinforceAgainstVectors(t *testing.T) {
	fl, f := referenceFlow[float64](t)
	defer f.Close()
	L := fl.Arch.L
	z := read64(t, f, "z")
	phi := read64(t, f, "forward/x")
	signal := read64(t, f, "grad_reinforce/signal")
	B := len(signal)
	mean := 0.0
	for _, s := range signal {
		mean += s / float64(B)
	}
	glogJ := make([]float64, B)
	for b := range glogJ {
		glogJ[b] = (signal[b] - mean) / float64(B)
	}
	x := make([]float64, len(z))
	logJ := make([]float64, B)
	for _, recompute := range []bool{false, true} {
		t.Run(fmt.Sprintf("recompute=%v", recompute), func(t *testing.T) {
			fl.SetRecompute(recompute)
			tape := fl.NewTape(B)
			fl.Forward(x, z, logJ, B, tape)
			if d := compareLinks(x, phi); d > vecTol64 {
				t.Fatalf("f(z) against forward/x: %.2e rad", d)
			}
			fl.Params.ZeroGrad()
			fl.BackwardReverseFromForward(tape, nil, make([]float64, len(z)), glogJ)
			// log q(φ) = LogPrior + logJ_rev = LogPrior − logJ_fwd.
			loss := 0.0
			for b := range signal {
				loss += (LogPrior(L) - logJ[b]) * glogJ[b]
			}
			compareGrads(t, fl, f, "grad_reinforce", loss, reinforceGradTol)
		})
	}
	fl.SetRecompute(DefaultRecompute)
}

// TestReinforceThreePassStep: Trainer.Step with the local batch in one
// micro-batch (three-pass form), in two (four-pass form), and in one with
// FourPass set (four-pass form, as bench times it) gives the same gradient
// and statistics on the same samples, and StepStats says which form ran.
func TestReinforceThreePassStep(t *testing.T) {
	const L, N = 4, 6
	fl := newTestFlow(t, smallArch(L, 8), 9)
	pool := lgt.NewPool(lgt.Params{L: L, Beta: 2, Kappa: 0.276}, 1)
	var grads [3][]float64
	var stats [3]StepStats
	for i, micro := range []int{N, N / 2, N} {
		tr := NewTrainer(fl, pool, REINFORCE, micro, 11)
		tr.FourPass = i == 2
		fl.Params.ZeroGrad()
		st, err := tr.Step(Local{}, 3, 0, N, N)
		if err != nil {
			t.Fatal(err)
		}
		grads[i], stats[i] = append([]float64(nil), fl.Params.Grad...), st
	}
	if !stats[0].ThreePass || stats[1].ThreePass || stats[2].ThreePass {
		t.Errorf("ThreePass = %v (one micro-batch), %v (two), %v (FourPass): want true, false, false",
			stats[0].ThreePass, stats[1].ThreePass, stats[2].ThreePass)
	}
	if d := maxRelDiff(grads[2], grads[1]); !(d <= threePassTol) {
		t.Errorf("FourPass against two micro-batches: %.2e relative, tolerance %g", d, threePassTol)
	}
	if d := math.Abs(stats[0].Loss - stats[1].Loss); d > threePassTol*math.Max(1, math.Abs(stats[1].Loss)) {
		t.Errorf("loss %v (three-pass) against %v (four-pass)", stats[0].Loss, stats[1].Loss)
	}
	d := maxRelDiff(grads[0], grads[1])
	t.Logf("three-pass against four-pass gradient: %.1e relative", d)
	if !(d <= threePassTol) {
		t.Errorf("three-pass against four-pass gradient: %.2e relative, tolerance %g", d, threePassTol)
	}
	norm := 0.0
	for _, g := range grads[1] {
		norm += g * g
	}
	if norm == 0 {
		t.Error("zero gradient: the comparison proves nothing")
	}
}

// TestTapeModes: the recompute-mode tape gives exactly the gradients of the
// store-everything tape (Forward and Reverse recordings), a tape follows a
// change of mode, and the recompute mode keeps at most half the bytes of
// storing every activation for the paper's architecture.
func TestTapeModes(t *testing.T) {
	const L, B = 8, 2
	fl := newTestFlow(t, smallArch(L, 8), 13)
	rng := rand.New(rand.NewPCG(14, 15))
	n := B * 2 * L * L
	in := uniformLinks(rng, B, L)
	gout := make([]float64, n)
	for i := range gout {
		gout[i] = rng.NormFloat64()
	}
	glogJ := []float64{0.3, -0.8}
	out := make([]float64, n)
	logJ := make([]float64, B)
	fl.SetRecompute(false)
	tape := fl.NewTape(B)
	storeAll := tape.BytesPerConfigLayer()
	for _, dir := range []string{"forward", "reverse"} {
		var grads, gins [2][]float64
		for i, recompute := range []bool{false, true} {
			fl.SetRecompute(recompute)
			if dir == "forward" {
				fl.Forward(out, in, logJ, B, tape)
			} else {
				fl.Reverse(out, in, logJ, B, tape)
			}
			if tape.Recompute() != recompute {
				t.Fatalf("tape mode %v after recording with mode %v", tape.Recompute(), recompute)
			}
			fl.Params.ZeroGrad()
			gin := make([]float64, n)
			if dir == "forward" {
				fl.BackwardForward(tape, gin, gout, glogJ)
			} else {
				fl.BackwardReverse(tape, gin, gout, glogJ)
			}
			grads[i], gins[i] = append([]float64(nil), fl.Params.Grad...), gin
		}
		// The recompute mode rebuilds the store-everything record with the
		// same arithmetic on the same data (and keeps the spline argument,
		// the preimage in reverse): the gradients agree bit for bit.
		dp, dx := maxRelDiff(grads[1], grads[0]), maxRelDiff(gins[1], gins[0])
		t.Logf("%s: recompute against store-everything: parameters %.1e, links %.1e", dir, dp, dx)
		if dp != 0 || dx != 0 {
			t.Errorf("%s: recompute against store-everything: parameters %.2e, links %.2e relative, want identical", dir, dp, dx)
		}
	}
	if got, want := tape.Buffers(), 3*fl.Arch.NLayers; got != want {
		t.Errorf("recompute tape: %d buffers, want %d", got, want)
	}
	if got := tape.BytesPerConfigLayer(); got >= storeAll || storeAll != fl.StoreAllBytesPerConfigLayer() {
		t.Errorf("recompute tape keeps %d B per configuration and layer, store-everything %d (flow says %d)", got, storeAll, fl.StoreAllBytesPerConfigLayer())
	}
	if tape.Bytes() != B*fl.Arch.NLayers*tape.BytesPerConfigLayer() {
		t.Errorf("Bytes %d ≠ B·layers·BytesPerConfigLayer", tape.Bytes())
	}
	fl.SetRecompute(DefaultRecompute)

	// The paper's architecture: at most half of storing everything.
	for _, L := range []int{8, 16, 24} {
		a := DefaultArch(L)
		a.NLayers = 1
		pf, err := NewFlow[float32](a, CPU(1))
		if err != nil {
			t.Fatal(err)
		}
		pf.SetRecompute(true)
		tp := pf.NewTape(1)
		kept, all := tp.BytesPerConfigLayer(), pf.StoreAllBytesPerConfigLayer()
		t.Logf("L = %d: %d of %d bytes per configuration and layer (%.0f%%), %d buffers", L, kept, all, 100*float64(kept)/float64(all), tp.Buffers())
		if 2*kept > all {
			t.Errorf("L = %d: recompute tape keeps %d bytes per configuration and layer, more than half of %d", L, kept, all)
		}
	}
}
