package nf

import (
	"fmt"
	"math"
	"testing"

	"nfschwinger/internal/h5"
	"nfschwinger/lgt"
)

// Tolerances of the surrogate-loss gradients against flow_L8.h5, relative
// to the largest entry of each tensor (and to max(1, |value|) for losses and
// log p).
const (
	// reinforceGradTol: the REINFORCE gradient involves only the flow (no
	// action derivative): agreement to rounding, measured 3e-14.
	reinforceGradTol = 1e-10
	// actionGradTol: the r.t. and path gradients also involve S and its
	// force. Against flow_L8.h5 as regenerated with a complex128
	// determinant: measured 1.2e-14 (r.t.) and 6.7e-14 (path), float64
	// rounding through the flow, the determinant and the force. (The file
	// first had forward/logp, grad_rt and grad_path from a complex64
	// determinant, which showed here as 2e-8.) The issue asked for 1e-8;
	// 1e-10 is tighter and still leaves three orders of margin.
	actionGradTol = 1e-10
	// logpTol: −S(x) from lgt against forward/logp, relative to
	// max(1, |log p|): rounding of a log-determinant of a 128×128 matrix.
	logpTol = 1e-10
)

// TestEstimatorGradientsAgainstVectors computes the gradients of the
// REINFORCE, reparameterization-trick and path-gradient surrogate losses of
// shared/vectors/README.md on flow_L8.h5 with the Trainer (its backward
// passes and the lgt force), and compares them (and the losses and log p)
// with the reference.
func TestEstimatorGradientsAgainstVectors(t *testing.T) {
	fl, f := referenceFlow[float64](t)
	defer f.Close()
	L := fl.Arch.L
	beta, err := h5.ReadScalarAttr[float64](f, "/", "beta")
	if err != nil {
		t.Fatal(err)
	}
	kappa, err := h5.ReadScalarAttr[float64](f, "/", "kappa")
	if err != nil {
		t.Fatal(err)
	}
	pool := lgt.NewPool(lgt.Params{L: L, Beta: beta, Kappa: kappa}, 1)
	z := read64(t, f, "z")
	B := len(z) / (2 * L * L)

	for _, c := range []struct {
		est   Estimator
		group string
	}{{ReparamTrick, "grad_rt"}, {PathGradient, "grad_path"}} {
		tr := NewTrainer(fl, pool, c.est, B, 0)
		tr.ensure(B)
		fl.Params.ZeroGrad()
		if err := tr.ReparamGradient(z, 0, B); err != nil {
			t.Fatal(err)
		}
		// log p = −S(x) against the file, and the loss of each estimator.
		logp := read64(t, f, "forward/logp")
		loss := 0.0
		for b := 0; b < B; b++ {
			if math.Abs(tr.logp[b]-logp[b]) > logpTol*math.Max(1, math.Abs(logp[b])) {
				t.Errorf("log p[%d] = %v, reference %v", b, tr.logp[b], logp[b])
			}
			loss += tr.sig[b] / float64(B) // log q + S
		}
		if c.est == PathGradient {
			// mean_b[Σ φ_b·G_b + S(φ_b)]: recompute G to form the value.
			loss = pathLoss(t, fl, tr, B)
		}
		compareGrads(t, fl, f, c.group, loss, actionGradTol)
	}

	// REINFORCE: mean_b[log q(φ_b)(s_b − mean s)], φ = forward/x fixed.
	phi := read64(t, f, "forward/x")
	signal := read64(t, f, "grad_reinforce/signal")
	mean := 0.0
	for _, s := range signal {
		mean += s / float64(B)
	}
	tr := NewTrainer(fl, pool, REINFORCE, B, 0)
	fl.Params.ZeroGrad()
	tr.ReinforceGradient(phi, signal, mean, B)
	lossRE := 0.0
	zr := make([]float64, len(phi))
	logJr := make([]float64, B)
	fl.Reverse(zr, phi, logJr, B, nil)
	for b := range signal {
		lossRE += (LogPrior(L) + logJr[b]) * (signal[b] - mean) / float64(B)
	}
	compareGrads(t, fl, f, "grad_reinforce", lossRE, reinforceGradTol)
}

// pathLoss returns mean_b[Σ φ_b·G_b + S(φ_b)] for the micro-batch the
// trainer processed last, with G = ∂ log q/∂φ from the reverse flow.
func pathLoss(t *testing.T, fl *Flow[float64], tr *Trainer[float64], B int) float64 {
	t.Helper()
	n := len(tr.x)
	save := append([]float64(nil), fl.Params.Grad...)
	defer copy(fl.Params.Grad, save)
	tape := fl.NewTape(B)
	zr := make([]float64, n)
	logJr := make([]float64, B)
	fl.Reverse(zr, tr.x, logJr, B, tape)
	G := make([]float64, n)
	ones := make([]float64, B)
	for b := range ones {
		ones[b] = 1
	}
	fl.BackwardReverse(tape, G, make([]float64, n), ones)
	loss := 0.0
	for i := range G {
		loss += tr.x[i] * G[i] / float64(B)
	}
	for b := 0; b < B; b++ {
		loss -= tr.logp[b] / float64(B)
	}
	return loss
}

// compareGrads compares f.Params.Grad with the tree group/layers/… and the
// loss with group/loss.
func compareGrads(t *testing.T, fl *Flow[float64], f *h5.File, group string, loss, tol float64) {
	t.Helper()
	want := readScalarDataset(t, f, group+"/loss")
	if math.Abs(loss-want) > tol*math.Max(1, math.Abs(want)) {
		t.Errorf("%s: loss %v, reference %v", group, loss, want)
	}
	worst := 0.0
	for _, ti := range fl.Params.Tensors {
		ref := read64(t, f, fmt.Sprintf("%s/%s", group, ti.Name))
		got := fl.Params.Grad[ti.Offset : ti.Offset+ti.Size]
		scale := 0.0
		for _, v := range ref {
			scale = math.Max(scale, math.Abs(v))
		}
		for i := range ref {
			d := math.Abs(got[i]-ref[i]) / math.Max(scale, 1e-300)
			worst = math.Max(worst, d)
			if d > tol {
				t.Fatalf("%s/%s[%d]: %v, reference %v (relative to max %g)", group, ti.Name, i, got[i], ref[i], scale)
			}
		}
	}
	t.Logf("%s: worst relative deviation %.2e, loss %v vs %v", group, worst, loss, want)
}

// readScalarDataset reads a scalar (rank-0) float64 dataset.
func readScalarDataset(t *testing.T, f *h5.File, path string) float64 {
	t.Helper()
	v, _, err := h5.Read[float64](f, path)
	if err != nil || len(v) != 1 {
		t.Fatalf("%s: %v (%d values)", path, err, len(v))
	}
	return v[0]
}
