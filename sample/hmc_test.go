package sample

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"nfschwinger/comm"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// hmcMeta is the chain meta of an HMC test chain at L.
func hmcMeta(L int, seed int64, length float64, md int, save bool) nfio.ChainMeta {
	return nfio.ChainMeta{L: L, Beta: lgt.PaperBeta, Kappa: lgt.PaperKappa, Seed: seed, SaveConfigs: save,
		Precision: "float64", Method: "hmc", TrajectoryLength: length, MDSteps: md, Start: "cold"}
}

// thermalized returns the state of an HMC chain at L after n trajectories
// from the cold start.
func thermalized(t *testing.T, h *HMC, L, n int) *HMCState {
	t.Helper()
	st, err := h.NewState(make([]float64, 2*L*L))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		h.Trajectory(uint64(1000000+i), st)
	}
	return st
}

// phaseSpacePoint returns copies of the links and force of st, Gaussian
// momenta from the stream of seed, and H there.
func phaseSpacePoint(st *HMCState, seed uint64) (theta, force, p []float64, h float64) {
	theta = append([]float64(nil), st.Links...)
	force = append([]float64(nil), st.Force...)
	p = make([]float64, len(theta))
	rng := nf.Stream(seed, 0, 0, 0)
	for i := range p {
		p[i] = rng.NormFloat64()
	}
	return theta, force, p, kinetic(p) + st.Obs.Action
}

// TestLeapfrogReversible: integrating forward, flipping the momenta and
// integrating again returns the links and H to rounding, on a thermalized
// configuration at L = 4 and 8.
func TestLeapfrogReversible(t *testing.T) {
	for _, L := range []int{4, 8} {
		h := NewHMC(lgt.Paper(L), 1, 20, 3)
		st := thermalized(t, h, L, 20)
		theta, force, p, h0 := phaseSpacePoint(st, 7)
		mid, err := h.Leapfrog(theta, p, force)
		if err != nil {
			t.Fatal(err)
		}
		hMid := kinetic(p) + mid.Action
		for i := range p {
			p[i] = -p[i]
		}
		end, err := h.Leapfrog(theta, p, force)
		if err != nil {
			t.Fatal(err)
		}
		h1 := kinetic(p) + end.Action
		maxDiff := 0.0
		for i := range theta {
			maxDiff = math.Max(maxDiff, math.Abs(theta[i]-st.Links[i]))
		}
		// Rounding of 2×20 leapfrog steps on O(1) angles, with forces of
		// O(10): a few hundred ulps at most.
		if maxDiff > 1e-11 {
			t.Errorf("L=%d: links return to within %.3g, want 1e-11", L, maxDiff)
		}
		if d := math.Abs(h1 - h0); d > 1e-9*math.Abs(h0) {
			t.Errorf("L=%d: H returns to %.15g from %.15g (|Δ| %.3g)", L, h1, h0, d)
		}
		if math.Abs(hMid-h0) < 1e-12 {
			t.Errorf("L=%d: the trajectory did not move H at all (%.15g): no integration happened?", L, hMid)
		}
		t.Logf("L=%d: |Δθ| %.2g, H %.12g → %.12g → %.12g", L, maxDiff, h0, hMid, h1)
	}
}

// TestLeapfrogSecondOrder: the energy violation of the leapfrog falls as
// ε²: halving the step size at a fixed trajectory quarters |ΔH|.
func TestLeapfrogSecondOrder(t *testing.T) {
	const L = 4
	st := thermalized(t, NewHMC(lgt.Paper(L), 1, 10, 3), L, 20)
	var dH []float64
	for _, md := range []int{20, 40, 80} {
		h := NewHMC(lgt.Paper(L), 0.5, md, 3)
		theta, force, p, h0 := phaseSpacePoint(st, 9)
		end, err := h.Leapfrog(theta, p, force)
		if err != nil {
			t.Fatal(err)
		}
		dH = append(dH, math.Abs(kinetic(p)+end.Action-h0))
	}
	for i := 1; i < len(dH); i++ {
		if r := dH[i-1] / dH[i]; r < 3.5 || r > 4.5 {
			t.Errorf("|ΔH| %v: ratio %.3f between step sizes ε and ε/2, want 4 (second order)", dH, r)
		}
	}
}

// TestHMCEnergyViolation: ⟨e^{−ΔH}⟩ = 1 within its error (the identity
// of an area-preserving, reversible integrator) on an HMC chain at L = 4,
// and the acceptance is that of a sensible step size.
func TestHMCEnergyViolation(t *testing.T) {
	const L = 4
	path := filepath.Join(t.TempDir(), "chain.h5")
	h := NewHMC(lgt.Paper(L), 1, 8, 11)
	opts := Options{Path: path, N: 4000, Seed: 11, Meta: hmcMeta(L, 11, 1, 8, false)}
	if err := RunHMC(context.Background(), h, make([]float64, 2*L*L), opts); err != nil {
		t.Fatal(err)
	}
	d, err := nfio.ReadChain(path)
	if err != nil {
		t.Fatal(err)
	}
	r := Summarize(d, 10, DefaultLongRun)
	e, de := float64(r.ExpMinusDH.Value), float64(r.ExpMinusDH.Err)
	t.Logf("acceptance %.3f, <exp(-dH)> %s, <dH> %.4f", float64(r.Acceptance), FormatPM(r.ExpMinusDH.Value, r.ExpMinusDH.Err), float64(r.MeanDH))
	if !(de > 0) || math.Abs(e-1) > 4*de {
		t.Errorf("<exp(-dH)> = %s, want 1 within 4σ", FormatPM(r.ExpMinusDH.Value, r.ExpMinusDH.Err))
	}
	if a := float64(r.Acceptance); a < 0.5 || a > 0.999 {
		t.Errorf("acceptance %.3f: the step size 1/8 should accept most trajectories at L = 4", a)
	}
	if !(float64(r.MeanDH) > 0) {
		t.Errorf("<dH> = %g, want > 0 (Jensen: <exp(-dH)> = 1 implies <dH> ≥ 0)", float64(r.MeanDH))
	}
	for _, o := range r.Observables {
		if !math.IsNaN(float64(o.NIS.Value)) {
			t.Errorf("%s: importance sampling estimate %g on an HMC chain, want NaN", o.Name, float64(o.NIS.Value))
		}
	}
}

// TestHMCStoppedAndContinued: an HMC chain stopped after one block and
// continued from its stored state is bit for bit the uninterrupted chain;
// a chain killed between the rows and the state of a block continues from
// the last stored state.
func TestHMCStoppedAndContinued(t *testing.T) {
	const L, N = 4, 350
	dir := t.TempDir()
	for _, save := range []bool{false, true} {
		full, parts := filepath.Join(dir, "full.h5"), filepath.Join(dir, "parts.h5")
		start := make([]float64, 2*L*L)
		opts := Options{Path: full, N: N, Seed: 4, Meta: hmcMeta(L, 4, 1, 6, save)}
		if err := RunHMC(context.Background(), NewHMC(lgt.Paper(L), 1, 6, 4), start, opts); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		opts.Path = parts
		err := RunHMC(ctx, NewHMC(lgt.Paper(L), 1, 6, 4), start, opts)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped run: %v, want context.Canceled", err)
		}
		if d, _ := nfio.ReadChain(parts); d == nil || d.Len() != hmcBlock {
			t.Fatalf("stopped chain: want one block of %d trajectories", hmcBlock)
		}
		if err := RunHMC(context.Background(), NewHMC(lgt.Paper(L), 1, 6, 4), start, opts); err != nil {
			t.Fatal(err)
		}
		a, _ := nfio.ReadChain(full)
		b, _ := nfio.ReadChain(parts)
		if a.Len() != N || b.Len() != N {
			t.Fatalf("lengths %d and %d, want %d", a.Len(), b.Len(), N)
		}
		for i := range N {
			if a.Accepted[i] != b.Accepted[i] || a.DH[i] != b.DH[i] || a.LogP[i] != b.LogP[i] ||
				a.State.Condensate[i] != b.State.Condensate[i] || a.State.Plaquette[i] != b.State.Plaquette[i] {
				t.Fatalf("save=%v: trajectory %d differs between the continued and the uninterrupted chain", save, i)
			}
		}
		if save {
			ca, err := nfio.ReadChainConfigs(full, N-1, 1)
			if err != nil {
				t.Fatal(err)
			}
			cb, _ := nfio.ReadChainConfigs(parts, N-1, 1)
			for i := range ca {
				if ca[i] != cb[i] || ca[i] < 0 || ca[i] >= 2*math.Pi {
					t.Fatalf("configuration angle %d: %v and %v (want equal, in [0, 2π))", i, ca[i], cb[i])
				}
			}
		}
	}
}

// TestHMCAgreesWithNMCMC: HMC and the NMCMC chain of a briefly trained flow
// sample the same distribution: ⟨cos P⟩ at L = 4 agrees within 4σ.
func TestHMCAgreesWithNMCMC(t *testing.T) {
	if raceDetector {
		// A statistical test of one goroutine's numerics, 100 s under the
		// race detector; make test runs it in the plain pass.
		t.Skip("statistics only: run without -race")
	}
	const L = 4
	dir := t.TempDir()
	hpath := filepath.Join(dir, "hmc.h5")
	if err := RunHMC(context.Background(), NewHMC(lgt.Paper(L), 1, 8, 21), make([]float64, 2*L*L),
		Options{Path: hpath, N: 6000, Seed: 21, Meta: hmcMeta(L, 21, 1, 8, false)}); err != nil {
		t.Fatal(err)
	}
	arch := nf.DefaultArch(L)
	arch.NLayers, arch.Hidden = 8, []int{16, 16}
	flow, err := nf.NewFlow[float32](arch, nf.CPU(0))
	if err != nil {
		t.Fatal(err)
	}
	flow.Init(nf.Stream(1, nf.DomainInit, 0, 0))
	pool := lgt.NewPool(lgt.Paper(L), 0)
	defer pool.Close()
	// A short training: an untrained flow is almost never accepted.
	const batch, steps = 128, 400
	st := &nf.Stepper[float32]{Trainer: nf.NewTrainer(flow, pool, nf.REINFORCE, batch, 1),
		Adam: nf.NewAdam(flow.Params.Len(), 3e-3, 0.9, 0.999, 1e-8)}
	for s := range steps {
		if _, err := st.Step(nf.Single{}, uint64(s), 0, batch, batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	npath := filepath.Join(dir, "nmcmc.h5")
	meta := nfio.ChainMeta{L: L, Beta: lgt.PaperBeta, Kappa: lgt.PaperKappa, Seed: 22, Precision: "float32", ModelHash: ModelHash(flow)}
	if err := Run(context.Background(), comm.Single(), NewFlowSource(comm.Single(), flow, pool, 22, 512, false),
		Options{Path: npath, N: 30000, Seed: 22, Meta: meta}); err != nil {
		t.Fatal(err)
	}
	var rep [2]*Report
	for i, p := range []string{hpath, npath} {
		d, err := nfio.ReadChain(p)
		if err != nil {
			t.Fatal(err)
		}
		rep[i] = Summarize(d, 10, DefaultLongRun)
	}
	obs := func(r *Report, name string) ObservableReport {
		for _, o := range r.Observables {
			if o.Name == name {
				return o
			}
		}
		t.Fatalf("no observable %s", name)
		return ObservableReport{}
	}
	for _, name := range []string{"plaquette", "sign"} {
		a, b := obs(rep[0], name), obs(rep[1], name)
		t.Logf("%s: HMC %s (τ_int %.1f, %d sign changes), NMCMC %s (τ_int %.1f, %d sign changes, acceptance %.3f)", name,
			FormatPM(a.Mean, a.Err), float64(a.TauInt), rep[0].SignChanges, FormatPM(b.Mean, b.Err), float64(b.TauInt), rep[1].SignChanges, float64(rep[1].Acceptance))
	}
	a, b := obs(rep[0], "plaquette"), obs(rep[1], "plaquette")
	if sigma := math.Hypot(float64(a.Err), float64(b.Err)); math.Abs(float64(a.Mean-b.Mean)) > 4*sigma {
		t.Errorf("<cos P>: HMC %s, NMCMC %s: differ by more than 4σ", FormatPM(a.Mean, a.Err), FormatPM(b.Mean, b.Err))
	}
}
