package sample

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nfschwinger/comm"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// discreteSource proposes one of three states k with probabilities q_k
// and log weight log w_k, proposal i drawn from nf.Stream(seed, 99, 0, i);
// observables are functions of k (condensate = k), so the exact target
// expectations are known: p_k ∝ q_k w_k, Z = Σ q_k w_k.
type discreteSource struct {
	seed     uint64
	size     int
	save     bool
	cancel   func()
	cancelAt int64 // cancel the context when a block reaches this index (0: never)
}

var (
	discQ = []float64{0.5, 0.3, 0.2}
	discW = []float64{1, 2, 5}
)

const discL = 4 // lattice of the fake configurations

func (s *discreteSource) block() int { return s.size }

func (s *discreteSource) generate(ctx context.Context, first int64, n int) (*proposalBlock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.cancelAt > 0 && first+int64(n) >= s.cancelAt {
		s.cancel()
	}
	p := &proposalBlock{logq: make([]float64, n), logp: make([]float64, n), obs: make([]nfio.ChainObservables, n)}
	v2 := 2 * discL * discL
	if s.save {
		p.configs = make([]float32, n*v2)
	}
	for i := range n {
		r := nf.Stream(s.seed, 99, 0, uint64(first)+uint64(i))
		u := r.Float64()
		k := 0
		for u >= discQ[k] && k < 2 {
			u -= discQ[k]
			k++
		}
		p.logq[i] = math.Log(discQ[k])
		p.logp[i] = math.Log(discQ[k] * discW[k])
		p.obs[i] = nfio.ChainObservables{Condensate: float64(k), Sign: 1 - 2*float64(k%2), TopologicalCharge: float64(k - 1), Plaquette: r.Float64()}
		for j := range v2 {
			if s.save {
				p.configs[i*v2+j] = float32(first+int64(i)) + float32(j)/1000
			}
		}
	}
	return p, nil
}

func discreteMeta(save bool) nfio.ChainMeta {
	return nfio.ChainMeta{L: discL, Beta: 2, Kappa: 0.276, Seed: 5, SaveConfigs: save, Precision: "float32", ModelHash: "test"}
}

// TestChainKilledAndContinued: a chain stopped (as by a signal) and then
// continued, with a different block size, is bit for bit the chain of an
// uninterrupted run: no gap, no repeated step.
func TestChainKilledAndContinued(t *testing.T) {
	const n = 3000
	dir := t.TempDir()
	for _, save := range []bool{false, true} {
		full := filepath.Join(dir, "full.h5")
		parts := filepath.Join(dir, "parts.h5")
		opts := Options{Path: full, N: n, Seed: 5, Meta: discreteMeta(save)}
		if err := Run(context.Background(), comm.Single(), &discreteSource{seed: 1, size: 128, save: save}, opts); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		opts.Path = parts
		err := Run(ctx, comm.Single(), &discreteSource{seed: 1, size: 100, save: save, cancel: cancel, cancelAt: 1234}, opts)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped run: error %v, want context.Canceled", err)
		}
		d, err := nfio.ReadChain(parts)
		if err != nil {
			t.Fatal(err)
		}
		if d.Len() != 1300 {
			t.Fatalf("stopped chain has %d steps, want 1300 (13 blocks of 100)", d.Len())
		}
		if err := Run(context.Background(), comm.Single(), &discreteSource{seed: 1, size: 77, save: save}, opts); err != nil {
			t.Fatal(err)
		}
		a, _ := nfio.ReadChain(full)
		b, _ := nfio.ReadChain(parts)
		if a.Len() != n || b.Len() != n {
			t.Fatalf("lengths %d and %d, want %d", a.Len(), b.Len(), n)
		}
		for i := range n {
			if a.Accepted[i] != b.Accepted[i] || a.LogW[i] != b.LogW[i] || a.LogQ[i] != b.LogQ[i] ||
				a.State.Condensate[i] != b.State.Condensate[i] || a.State.Plaquette[i] != b.State.Plaquette[i] ||
				a.Proposal.Plaquette[i] != b.Proposal.Plaquette[i] {
				t.Fatalf("save=%v: step %d differs between the continued and the uninterrupted chain", save, i)
			}
		}
		for k, v := range a.Summary {
			if w := b.Summary[k]; w != v && !(math.IsNaN(v) && math.IsNaN(w)) {
				t.Errorf("summary %s: %g vs %g", k, v, w)
			}
		}
		if save {
			ca, _ := nfio.ReadChainConfigs(full, 0, n)
			cb, _ := nfio.ReadChainConfigs(parts, 0, n)
			for i := range ca {
				if ca[i] != cb[i] {
					t.Fatalf("configuration value %d differs", i)
				}
			}
		}
		// Running again with the chain complete changes nothing.
		if err := Run(context.Background(), comm.Single(), &discreteSource{seed: 1, size: 50, save: save}, opts); err != nil {
			t.Fatal(err)
		}
		if c, _ := nfio.ReadChain(parts); c.Len() != n {
			t.Errorf("completed chain grew to %d steps", c.Len())
		}
		os.Remove(full)
		os.Remove(parts)
	}
}

// TestChainStatesAndEstimates: rejected steps repeat the previous state
// (observables and configuration), and the chain and importance-sampling
// estimates (the condensate, χ_t = ⟨Q²⟩/V, the free energies) agree with
// the exact values of the discrete target within 4 standard errors.
func TestChainStatesAndEstimates(t *testing.T) {
	const n = 20000
	path := filepath.Join(t.TempDir(), "chain.h5")
	var out strings.Builder
	opts := Options{Path: path, N: n, Seed: 5, Meta: discreteMeta(true), Progress: &out}
	if err := Run(context.Background(), comm.Single(), &discreteSource{seed: 2, size: 512, save: true}, opts); err != nil {
		t.Fatal(err)
	}
	d, err := nfio.ReadChain(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := nfio.ReadChainConfigs(path, 0, 200)
	v2 := 2 * discL * discL
	rejected := 0
	for i := range d.Len() {
		if i == 0 && !d.Accepted[0] {
			t.Fatal("first step not accepted")
		}
		if d.LogW[i] != d.LogP[i]-d.LogQ[i] {
			t.Fatalf("step %d: logw ≠ logp − logq", i)
		}
		if d.Accepted[i] {
			if d.State.Condensate[i] != d.Proposal.Condensate[i] || d.State.Plaquette[i] != d.Proposal.Plaquette[i] {
				t.Fatalf("step %d accepted but the state is not the proposal", i)
			}
			continue
		}
		rejected++
		if d.State.Condensate[i] != d.State.Condensate[i-1] || d.State.Plaquette[i] != d.State.Plaquette[i-1] ||
			d.State.Sign[i] != d.State.Sign[i-1] || d.State.TopologicalCharge[i] != d.State.TopologicalCharge[i-1] {
			t.Fatalf("step %d rejected but the state changed", i)
		}
		if i < 200 && cfg[i*v2+5] != cfg[(i-1)*v2+5] {
			t.Fatalf("step %d rejected but the configuration changed", i)
		}
	}
	if rejected == 0 {
		t.Fatal("no rejections: the test tests nothing")
	}
	z, mean := 0.0, 0.0
	for k := range discQ {
		z += discQ[k] * discW[k]
		mean += discQ[k] * discW[k] * float64(k)
	}
	mean /= z
	r := summarizeDefault(d)
	c := r.Observables[0]
	if c.Name != "condensate" || math.Abs(float64(c.Mean)-mean) > 4*float64(c.Err) {
		t.Errorf("chain mean of k: %v ± %v, exact %g", c.Mean, c.Err, mean)
	}
	if math.Abs(float64(c.NIS.Value)-mean) > 4*float64(c.NIS.Err) {
		t.Errorf("NIS mean of k: %v ± %v, exact %g", c.NIS.Value, c.NIS.Err, mean)
	}
	if c.TauInt < 1 {
		t.Errorf("τ_int of the condensate %v: rejections must correlate the chain", c.TauInt)
	}
	// χ_t = ⟨Q²⟩/V with Q = k − 1 and V = discL².
	chiExact := 0.0
	for k := range discQ {
		chiExact += discQ[k] * discW[k] * float64((k-1)*(k-1))
	}
	chiExact /= z * discL * discL
	if x := r.Observables[4]; x.Name != nfio.SusceptibilityName ||
		math.Abs(float64(x.Mean)-chiExact) > 4*float64(x.Err) || math.Abs(float64(x.NIS.Value)-chiExact) > 4*float64(x.NIS.Err) {
		t.Errorf("χ_t: chain %v ± %v, NIS %v ± %v, exact %g", x.Mean, x.Err, x.NIS.Value, x.NIS.Err, chiExact)
	}
	fq := -(discQ[1]*math.Log(discW[1]) + discQ[2]*math.Log(discW[2]))
	if e := r.FreeEnergyNIS; math.Abs(float64(e.Value)+math.Log(z)) > 4*float64(e.Err) {
		t.Errorf("F_NIS = %v ± %v, exact −log Z = %g", e.Value, e.Err, -math.Log(z))
	}
	if e := r.FreeEnergyQ; math.Abs(float64(e.Value)-fq) > 4*float64(e.Err) {
		t.Errorf("F_q = %v ± %v, exact %g", e.Value, e.Err, fq)
	}
	if s := d.Summary; s["condensate_mean"] != float64(c.Mean) || s["free_energy_nis"] != float64(r.FreeEnergyNIS.Value) ||
		s["n_steps"] != n {
		t.Errorf("stored summary %v does not match the report", s)
	}
	for _, want := range []string{"acceptance rate", "condensate", "F_NIS", "tau_int"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed summary lacks %q:\n%s", want, out.String())
		}
	}
	// A chain of another model is kept aside, a new one started.
	opts.Meta.ModelHash = "other"
	opts.N = 10
	opts.Progress = nil
	if err := Run(context.Background(), comm.Single(), &discreteSource{seed: 2, size: 512, save: true}, opts); err != nil {
		t.Fatal(err)
	}
	if d, _ := nfio.ReadChain(path); d.Len() != 10 || d.Meta.ModelHash != "other" {
		t.Errorf("new chain: %d steps of model %q", d.Len(), d.Meta.ModelHash)
	}
	if d, err := nfio.ReadChain(nfio.PrevPath(path)); err != nil || d.Len() != n {
		t.Errorf("old chain not kept as %s: %v", nfio.PrevPath(path), err)
	}
}

// testFlow returns a small random flow on an L = 4 lattice.
func testFlow[T nf.Float](t *testing.T) *nf.Flow[T] {
	a := nf.DefaultArch(4)
	a.NLayers, a.Hidden = 2, []int{4}
	a.Dilation = []int{1, 1}
	f, err := nf.NewFlow[T](a, nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	f.Init(nf.Stream(3, nf.DomainInit, 0, 0))
	return f
}

// flowSourceTol is the relative tolerance of TestFlowSource. A block of B
// proposals runs the conditioner's convolutions as GEMMs over B·V sites, and
// OpenBLAS picks its kernels (and their edge handling) by shape and CPU, so
// the same proposal computed in blocks of different sizes agrees only to
// rounding: in float64 a few ulps per layer, amplified by the spline and the
// determinant by at most a few orders. Measured on Sapphire Rapids with
// every OpenBLAS core type (Haswell, SkylakeX, Zen): at most 7e-15 on
// log q ≈ −60 (1e-16 relative). 1e-11 leaves a wide margin over that and is
// still far below any real error (a wrong stream or sample index changes
// log q by O(1)).
const flowSourceTol = 1e-11

// near reports whether a and b agree to flowSourceTol, relative to their
// size (absolute below 1).
func near(a, b float64) bool { return math.Abs(a-b) <= flowSourceTol*max(1, math.Abs(a), math.Abs(b)) }

// nearObs is near for every observable of a chain row; the sign of det D
// must agree exactly.
func nearObs(a, b nfio.ChainObservables) bool {
	return a.Sign == b.Sign && near(a.Condensate, b.Condensate) &&
		near(a.TopologicalCharge, b.TopologicalCharge) && near(a.Plaquette, b.Plaquette)
}

// TestFlowSource: the proposals of the flow source are independent of the
// block size up to rounding (flowSourceTol) and match a direct computation:
// log q = log prior − log J of the flow on the prior stream of the
// proposal's index, log p = −S. The direct computation runs the flow on one
// configuration, the source on a block of 7, so it too agrees to rounding;
// the kept configuration is the float32 rounding of the links and agrees
// exactly when the links do, to within one float32 ulp otherwise.
func TestFlowSource(t *testing.T) {
	flow := testFlow[float64](t)
	p := lgt.Params{L: 4, Beta: 2, Kappa: 0.276}
	pool := lgt.NewPool(p, 1)
	ctx := context.Background()
	a, err := NewFlowSource(comm.Single(), flow, pool, 8, 7, true).generate(ctx, 10, 7)
	if err != nil {
		t.Fatal(err)
	}
	s3 := NewFlowSource(comm.Single(), flow, pool, 8, 3, false)
	v2 := 2 * p.V()
	for first := 10; first < 17; first += 3 {
		n := min(3, 17-first)
		b, err := s3.generate(ctx, int64(first), n)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			j := first - 10 + i
			if !near(b.logq[i], a.logq[j]) || !near(b.logp[i], a.logp[j]) || !nearObs(b.obs[i], a.obs[j]) {
				t.Fatalf("proposal %d differs between block sizes 7 and 3: log q %v / %v, log p %v / %v, %+v / %+v",
					first+i, b.logq[i], a.logq[j], b.logp[i], a.logp[j], b.obs[i], a.obs[j])
			}
		}
	}
	// Direct computation of proposal 12.
	z := make([]float64, v2)
	nf.SamplePrior(z, 1, 8, nf.DomainSample, 0, 12)
	x := make([]float64, v2)
	logJ := []float64{0}
	flow.Forward(x, z, logJ, 1, nil)
	ev := lgt.NewEvaluator(p)
	o, err := ev.Measure(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := nf.LogPrior(4) - logJ[0]; !near(a.logq[2], want) || !near(a.logp[2], -o.Action) || !near(a.obs[2].Condensate, o.Condensate) {
		t.Errorf("proposal 12: logq %g logp %g, want %g %g", a.logq[2], a.logp[2], want, -o.Action)
	}
	if d := math.Abs(float64(a.configs[2*v2+5]) - x[5]); d > 0x1p-23*2*math.Pi {
		t.Errorf("configuration of proposal 12 not kept")
	}
	// The acceptance probe runs and gives a rate and an ESS in (0, 1],
	// the ESS with a positive error below it.
	pr, err := Acceptance(comm.Single(), flow, pool, 8, 3, 50, 16)
	if err != nil || !(pr.Acceptance > 0 && pr.Acceptance <= 1) || !(pr.ESS > 0 && pr.ESS <= 1) || !(pr.ESSErr > 0 && pr.ESSErr < pr.ESS) {
		t.Errorf("Acceptance = %+v, %v", pr, err)
	}
	// The model hash identifies the parameters.
	h1 := ModelHash(flow)
	flow.Params.Data[0] += 1e-3
	if h2 := ModelHash(flow); h1 == h2 {
		t.Error("ModelHash does not change with the parameters")
	}
}

// TestChainDamagedStartsFresh: a chain.h5 that cannot be read (here bytes
// that are no HDF5 file; a crash or hang of HDF5 in the probe is handled
// alike, see nfio.TestProbe) is kept as chain.prev.h5 with a line saying
// why, and a new chain starts — equal to the chain of an undisturbed run,
// since proposals depend only on the model, the seed and the index.
func TestChainDamagedStartsFresh(t *testing.T) {
	const n = 500
	dir := t.TempDir()
	full := filepath.Join(dir, "full.h5")
	opts := Options{Path: full, N: n, Seed: 5, Meta: discreteMeta(false)}
	if err := Run(context.Background(), comm.Single(), &discreteSource{seed: 1, size: 100}, opts); err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(dir, "chain.h5")
	junk := []byte("\x89HDF\r\n\x1a\n\x00\x00 damaged beyond repair")
	if err := os.WriteFile(damaged, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	opts.Path, opts.Progress = damaged, &out
	if err := Run(context.Background(), comm.Single(), &discreteSource{seed: 1, size: 100}, opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kept as "+nfio.PrevPath(damaged)+": it cannot be continued") {
		t.Errorf("no line about the damaged chain:\n%s", out.String())
	}
	if b, err := os.ReadFile(nfio.PrevPath(damaged)); err != nil || !bytes.Equal(b, junk) {
		t.Errorf("the damaged file is not kept as %s: %v", nfio.PrevPath(damaged), err)
	}
	a, _ := nfio.ReadChain(full)
	b, err := nfio.ReadChain(damaged)
	if err != nil || b.Len() != n {
		t.Fatalf("new chain: %v", err)
	}
	for i := range n {
		if a.Accepted[i] != b.Accepted[i] || a.LogW[i] != b.LogW[i] || a.State.Condensate[i] != b.State.Condensate[i] {
			t.Fatalf("step %d differs from the undisturbed chain", i)
		}
	}
}
