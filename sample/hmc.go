package sample

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// HMC is the hybrid Monte Carlo baseline on the exact action S = S_G + S_F
// of the two-flavour theory: momenta p conjugate to the 2V link angles,
// H = ½ Σ p² + S(θ), leapfrog integration of dθ/dt = p, dp/dt = −dS/dθ
// over MDSteps steps of size Eps, and a Metropolis decision on ΔH.
//
// Trajectory t draws its momenta from nf.Stream(seed, nf.DomainHMC, t, 0)
// and its accept uniform from nf.Stream(seed, nf.DomainHMC, t, 1), so the
// chain is a function of the seed and the start configuration only and a
// continued chain is the uninterrupted one bit for bit.
//
// With two flavours S_F = −2 log|det D| grows without bound where det D
// changes sign, and the force with it: molecular dynamics never crosses
// det D = 0, so an HMC chain keeps the sign of det D of its start (the
// sector problem that NMCMC does not have).
type HMC struct {
	ev      *lgt.Evaluator
	Eps     float64 // leapfrog step size, trajectory length / MDSteps
	MDSteps int     // leapfrog steps per trajectory
	// Replica selects one of the independent chains of a job (one per
	// rank): trajectory t draws its momenta from nf.Stream(seed,
	// DomainHMC, t, 2·Replica) and its accept uniform from index
	// 2·Replica+1, as the flow's streams are split by global index.
	// Replica 0 is the chain of a one-process run.
	Replica uint64
	seed    uint64

	p, theta, force []float64 // workspace of a trajectory, 2V each
}

// NewHMC returns the HMC sampler of the lattice lat with trajectories of
// molecular-dynamics time length in mdSteps leapfrog steps, keyed by seed.
// It panics on invalid arguments (validated configuration expected).
func NewHMC(lat lgt.Params, length float64, mdSteps int, seed uint64) *HMC {
	if !(length > 0) || mdSteps < 1 {
		panic(fmt.Sprintf("sample: NewHMC(length %v, md steps %d)", length, mdSteps))
	}
	n := 2 * lat.V()
	return &HMC{ev: lgt.NewEvaluator(lat), Eps: length / float64(mdSteps), MDSteps: mdSteps, seed: seed,
		p: make([]float64, n), theta: make([]float64, n), force: make([]float64, n)}
}

// HMCState is the state of an HMC chain: the links, the force dS/dθ there
// and the observables (with the action) of the links.
type HMCState struct {
	Links []float64 // 2V angles, not reduced to [0, 2π) (the integration's own values)
	Force []float64 // dS/dθ at Links
	Obs   lgt.Observables
}

// NewState measures links (2V angles, copied) as the start of a chain.
func (h *HMC) NewState(links []float64) (*HMCState, error) {
	st := &HMCState{Links: append([]float64(nil), links...), Force: make([]float64, len(links))}
	var err error
	if st.Obs, err = h.ev.Measure(st.Links, st.Force); err != nil {
		return nil, fmt.Errorf("hmc: start configuration: %w", err)
	}
	return st, nil
}

// Leapfrog integrates Hamilton's equations of H = ½ Σ p² + S(θ) over
// MDSteps steps of size Eps in place: theta and p (2V each) go from the
// start to the end point, and force, which must hold dS/dθ at theta on
// entry, holds it at the end point on return. It returns the observables
// of the end point (the last force comes from Evaluator.Measure, so a
// state restored from its links is measured bit for bit alike). An error
// (a singular D or a non-finite action on the way) leaves the arguments
// at an unspecified point.
func (h *HMC) Leapfrog(theta, p, force []float64) (lgt.Observables, error) {
	kick(p, force, 0.5*h.Eps)
	for k := 1; k < h.MDSteps; k++ {
		drift(theta, p, h.Eps)
		if _, err := h.ev.Action(theta, force); err != nil {
			return lgt.Observables{}, fmt.Errorf("hmc: leapfrog step %d: %w", k, err)
		}
		kick(p, force, h.Eps)
	}
	drift(theta, p, h.Eps)
	obs, err := h.ev.Measure(theta, force)
	if err != nil {
		return lgt.Observables{}, fmt.Errorf("hmc: leapfrog step %d: %w", h.MDSteps, err)
	}
	kick(p, force, 0.5*h.Eps)
	return obs, nil
}

// drift moves the links: θ += dt·p.
func drift(theta, p []float64, dt float64) {
	for i := range theta {
		theta[i] += dt * p[i]
	}
}

// kick moves the momenta: p −= dt·dS/dθ.
func kick(p, force []float64, dt float64) {
	for i := range p {
		p[i] -= dt * force[i]
	}
}

// kinetic returns ½ Σ p².
func kinetic(p []float64) float64 {
	s := 0.0
	for _, v := range p {
		s += v * v
	}
	return 0.5 * s
}

// Trajectory runs trajectory t from st: fresh momenta, leapfrog, and the
// Metropolis decision accept iff u < exp(−ΔH). st becomes the end point
// when accepted. The row has LogP = −S of the end point (the proposal),
// ΔH (+Inf where the integration failed, which is a rejection) and NaN
// LogQ and LogW (HMC has no proposal density).
func (h *HMC) Trajectory(t uint64, st *HMCState) nfio.ChainRow {
	rng := nf.Stream(h.seed, nf.DomainHMC, t, 2*h.Replica)
	for i := range h.p {
		h.p[i] = rng.NormFloat64()
	}
	h0 := kinetic(h.p) + st.Obs.Action
	copy(h.theta, st.Links)
	copy(h.force, st.Force)
	obs, err := h.Leapfrog(h.theta, h.p, h.force)
	dH := math.Inf(1)
	prop := nfio.ChainObservables{Condensate: math.NaN(), Sign: math.NaN(), TopologicalCharge: math.NaN(), Plaquette: math.NaN()}
	logp := math.NaN()
	if err == nil {
		dH = kinetic(h.p) + obs.Action - h0
		prop, logp = chainObservables(obs), -obs.Action
		if math.IsNaN(dH) {
			dH = math.Inf(1)
		}
	}
	u := nf.Stream(h.seed, nf.DomainHMC, t, 2*h.Replica+1).Float64()
	acc := nf.Accept(0, -dH, u)
	if acc {
		st.Links, h.theta = h.theta, st.Links
		st.Force, h.force = h.force, st.Force
		st.Obs = obs
	}
	return nfio.ChainRow{Accepted: acc, LogQ: math.NaN(), LogP: logp, LogW: math.NaN(), DH: dH,
		State: chainObservables(st.Obs), Proposal: prop}
}

// chainObservables are the observables of o that chain.h5 keeps.
func chainObservables(o lgt.Observables) nfio.ChainObservables {
	return nfio.ChainObservables{Condensate: o.Condensate, Sign: o.SignDetD,
		TopologicalCharge: o.TopologicalCharge, Plaquette: o.MeanCosPlaquette}
}

// hmcBlock is the number of trajectories appended (and flushed) at once.
const hmcBlock = 100

// RunHMC runs the HMC chain until the file at opts.Path has opts.N
// trajectories (opts.Meta must be an HMC meta, opts.Seed the seed of h),
// appending and flushing one block at a time with the state after it; a
// chain already in the file is continued from its stored state (bit for
// bit the uninterrupted chain), a file of another chain is kept as
// chain.prev.h5. start (2V angles) is the first state of a new chain.
// When the chain is complete the estimates are stored in /summary and
// printed. Not collective: each rank of a job runs its own replica. Cancelling ctx stops
// after the current block, with what was written kept.
func RunHMC(ctx context.Context, h *HMC, start []float64, opts Options) error {
	if !opts.Meta.HMC() {
		panic("sample: RunHMC with an NMCMC chain meta")
	}
	ch, r, err := openChainFile(opts)
	if err != nil {
		return err
	}
	defer ch.Close()
	links := start
	if r.Steps > 0 {
		links = r.HMCState
	}
	st, err := h.NewState(links)
	if err != nil {
		return err
	}
	first := r.Steps
	accepted := r.Accepted
	if opts.Progress != nil && first < opts.N {
		if first > 0 {
			fmt.Fprintf(opts.Progress, "hmc: continuing the chain in %s at trajectory %d of %d\n", opts.Path, first, opts.N)
		} else {
			fmt.Fprintf(opts.Progress, "hmc: %d trajectories (length %g, %d leapfrog steps of %g) into %s\n",
				opts.N, float64(h.MDSteps)*h.Eps, h.MDSteps, h.Eps, opts.Path)
		}
	}
	t0, last := time.Now(), time.Now()
	done0 := first
	sumExp, nBlock := 0.0, 0
	save := opts.Meta.SaveConfigs
	for first < opts.N {
		n := int(min(hmcBlock, opts.N-first))
		rows := make([]nfio.ChainRow, n)
		var configs []float32
		if save {
			configs = make([]float32, 0, n*len(start))
		}
		for i := range rows {
			rows[i] = h.Trajectory(uint64(first)+uint64(i), st)
			if rows[i].Accepted {
				accepted++
			}
			sumExp += math.Exp(-rows[i].DH)
			nBlock++
			if save {
				for _, v := range st.Links {
					configs = append(configs, float32(lgt.Mod2Pi(v)))
				}
			}
		}
		werr := ch.AppendHMC(rows, configs, st.Links)
		if err := errors.Join(werr, ctx.Err()); err != nil {
			return fmt.Errorf("hmc: stopped after trajectory %d (the chain in %s is kept): %w", first+int64(n), opts.Path, err)
		}
		first += int64(n)
		if opts.Progress != nil && (time.Since(last) > chainProgressEvery || first == opts.N) {
			last = time.Now()
			rate := float64(first-done0) / time.Since(t0).Seconds()
			fmt.Fprintf(opts.Progress, "hmc: trajectory %d/%d  acceptance %.3f  <exp(-dH)> %.3f  %.1f trajectories/s\n",
				first, opts.N, float64(accepted)/float64(first), sumExp/float64(nBlock), rate)
		}
	}
	return finishChain(ch, opts)
}
