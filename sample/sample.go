package sample

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"nfschwinger/comm"
	"nfschwinger/internal/stats"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// Defaults of the chain statistics.
const (
	DefaultLongRun       = 100 // rejection runs longer than this are counted (and marked in plots)
	DefaultBootstrapReps = 200 // bootstrap resamples of the importance-sampling errors
	bootstrapSeed        = 1   // fixed: the analysis of a file is reproducible
)

// ChainFile is the name of the chain file in the output directory.
const ChainFile = "chain.h5"

// proposalBlock holds the proposals [first, first+n) of the chain in
// global order, complete on rank 0 (other ranks may hold anything).
type proposalBlock struct {
	logq, logp []float64
	obs        []nfio.ChainObservables
	configs    []float32 // n·2V angles when configurations are kept, else nil
}

// proposalSource produces the proposals of the sampling chain. Proposal i
// must depend on its index only (and the source's seed), never on how the
// indices are blocked, so that a continued chain is the uninterrupted one.
type proposalSource interface {
	// block is the number of proposals generate makes at once (over all
	// ranks).
	block() int
	// generate makes proposals [first, first+n), n ≤ block(), and gathers
	// them to rank 0. Collective; every rank gets the same error.
	generate(ctx context.Context, first int64, n int) (*proposalBlock, error)
}

// Options are the settings of the chain loop.
type Options struct {
	Path     string         // chain.h5
	N        int64          // chain length to reach (steps in the file)
	Seed     uint64         // key of the accept uniforms (nf.AcceptUniform)
	Meta     nfio.ChainMeta // what the file must match to be continued
	Progress io.Writer      // rank 0's progress lines and summary; nil: silent
}

// progressEvery bounds the rate of progress lines of the chain loop.
const chainProgressEvery = 10 * time.Second

// Run runs the NMCMC chain of eq. (3) with proposals from src until
// the file at opts.Path has opts.N steps, appending and flushing one block
// at a time; the chain already in the file is continued where it stopped
// (bit for bit the chain of an uninterrupted run). A file of a different
// chain (another model, seed, lattice or save_configs) is kept as
// chain.prev.h5 and a new chain is started. When the chain is complete,
// rank 0 computes the estimates, stores them in /summary and prints them.
// Collective; cancellation of ctx on any rank stops every rank after the
// current block, with what was written kept.
func Run(ctx context.Context, c comm.Comm, src proposalSource, opts Options) error {
	var ch *nfio.Chain
	var m nf.Metropolis
	var st chainState
	start := []float64{0}
	if c.Rank() == 0 {
		var r nfio.Resume
		var err error
		ch, r, err = openChainFile(opts)
		if err == nil {
			defer ch.Close()
			m = nf.Metropolis{Steps: r.Steps, Accepted: r.Accepted, Current: r.Current, LogW: r.LogW}
			st = chainState{obs: r.State, config: r.Config}
			start[0] = float64(m.Steps)
		}
		if err := c.AgreeError(err); err != nil {
			return err
		}
	} else if err := c.AgreeError(nil); err != nil {
		return err
	}
	c.Bcast(start, 0)
	first := int64(start[0])
	if c.Rank() == 0 && opts.Progress != nil && first < opts.N {
		if first > 0 {
			fmt.Fprintf(opts.Progress, "sample: continuing the chain in %s at step %d of %d\n", opts.Path, first, opts.N)
		} else {
			fmt.Fprintf(opts.Progress, "sample: %d chain steps into %s\n", opts.N, opts.Path)
		}
	}
	t0, last := time.Now(), time.Now()
	done0 := first
	for first < opts.N {
		n := int(min(int64(src.block()), opts.N-first))
		p, err := src.generate(ctx, first, n)
		if err != nil {
			return err
		}
		var werr error
		if c.Rank() == 0 {
			rows, configs := st.steps(&m, p, first, opts.Seed)
			werr = ch.Append(rows, configs)
		}
		if err := c.AgreeError(errors.Join(werr, ctx.Err())); err != nil {
			return fmt.Errorf("sample: stopped after step %d (the chain in %s is kept): %w", first+int64(n), opts.Path, err)
		}
		first += int64(n)
		if c.Rank() == 0 && opts.Progress != nil && (time.Since(last) > chainProgressEvery || first == opts.N) {
			last = time.Now()
			rate := float64(first-done0) / time.Since(t0).Seconds()
			fmt.Fprintf(opts.Progress, "sample: step %d/%d  acceptance %.3f  %.1f proposals/s\n", first, opts.N, m.Rate(), rate)
		}
	}
	if c.Rank() != 0 {
		return nil
	}
	return finishChain(ch, opts)
}

// chainState is rank 0's copy of the chain's current state.
type chainState struct {
	obs    nfio.ChainObservables
	config []float32 // nil unless configurations are kept
}

// steps runs the chain over one block of proposals (global indices first,
// first+1, …) and returns the rows to append and the configurations of the
// states (nil unless kept).
func (st *chainState) steps(m *nf.Metropolis, p *proposalBlock, first int64, seed uint64) ([]nfio.ChainRow, []float32) {
	n := len(p.logq)
	rows := make([]nfio.ChainRow, n)
	var configs []float32
	var cl int
	if p.configs != nil {
		cl = len(p.configs) / n
		configs = make([]float32, len(p.configs))
	}
	for i := range rows {
		logw := p.logp[i] - p.logq[i]
		acc := m.Step(logw, nf.AcceptUniform(seed, uint64(first)+uint64(i)))
		if acc {
			st.obs = p.obs[i]
			if cl > 0 {
				st.config = p.configs[i*cl : (i+1)*cl]
			}
		}
		rows[i] = nfio.ChainRow{Accepted: acc, LogQ: p.logq[i], LogP: p.logp[i], LogW: logw, State: st.obs, Proposal: p.obs[i]}
		if cl > 0 {
			copy(configs[i*cl:], st.config)
		}
	}
	if cl > 0 { // the state must outlive the block's buffers
		st.config = append([]float32(nil), st.config...)
	}
	return rows, configs
}

// openChainFile opens the chain at opts.Path for continuing, or creates
// it, and returns the chain's state after its last step (that of an empty
// chain for a new file).
func openChainFile(opts Options) (*nfio.Chain, nfio.Resume, error) {
	empty := nfio.Resume{Current: -1}
	if _, err := os.Stat(opts.Path); err == nil {
		// The file is read in a child process first: the HDF5 library can
		// crash or hang on a damaged file (nfio.ProbeChain).
		var why string
		if err := nfio.ProbeChain(opts.Path); errors.Is(err, nfio.ErrInUse) {
			return nil, empty, fmt.Errorf("sample: %w", err) // another run's chain: never move it
		} else if err != nil {
			why = fmt.Sprintf("it cannot be continued: %v", err)
		} else if old, err := nfio.ReadChainMeta(opts.Path); err != nil {
			why = "it is not a chain file of this program"
		} else if !old.Same(opts.Meta) {
			why = "it is a chain of another model, method, seed, lattice or save_configs"
		} else {
			ch, err := nfio.OpenChain(opts.Path)
			if err != nil {
				return nil, empty, err
			}
			r, err := ch.Resume()
			if err != nil {
				ch.Close()
				return nil, empty, err
			}
			return ch, r, nil
		}
		prev := nfio.PrevPath(opts.Path)
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "sample: %s is kept as %s: %s\n", opts.Path, prev, why)
		}
		if err := os.Rename(opts.Path, prev); err != nil {
			return nil, empty, fmt.Errorf("sample: %w", err)
		}
	}
	ch, err := nfio.CreateChain(opts.Path, opts.Meta)
	return ch, empty, err
}

// finishChain computes the estimates of the whole chain file, stores them
// in /summary and prints them.
func finishChain(ch *nfio.Chain, opts Options) error {
	d, err := nfio.ReadChain(opts.Path)
	if err != nil {
		return err
	}
	rep := summarizeDefault(d)
	names, values := rep.summaryAttrs()
	if err := ch.WriteSummary(names, values); err != nil {
		return err
	}
	if opts.Progress != nil {
		PrintReport(opts.Progress, rep)
	}
	return nil
}

// FlowSource generates proposals with the flow: every rank makes its
// share of a block (ranks take consecutive slices of perRank proposals),
// measures them, and the block is gathered with one allreduce of
// zero-filled buffers.
type FlowSource[T nf.Float] struct {
	c       comm.Comm
	density *nf.Density[T]
	pool    *lgt.Pool
	seed    uint64
	perRank int
	save    bool
	v2      int // 2V link angles per configuration

	x       []T // the links of this rank's share, as the flow computed them
	logq    []float64
	links   []float64
	obs     []lgt.Observables
	gather  []float64
	configs []float32
}

func NewFlowSource[T nf.Float](c comm.Comm, flow *nf.Flow[T], pool *lgt.Pool, seed uint64, perRank int, save bool) *FlowSource[T] {
	v2 := 2 * pool.Params().V()
	return &FlowSource[T]{c: c, density: nf.NewDensity(flow), pool: pool, seed: seed, perRank: perRank, save: save, v2: v2,
		logq: make([]float64, perRank), links: make([]float64, perRank*v2), obs: make([]lgt.Observables, perRank)}
}

func (s *FlowSource[T]) block() int { return s.perRank * s.c.Size() }

// gatherColumns is the number of float64 values gathered per proposal:
// log q, log p and the four observables.
const gatherColumns = 6

func (s *FlowSource[T]) generate(ctx context.Context, first int64, n int) (*proposalBlock, error) {
	lo := min(s.c.Rank()*s.perRank, n)
	hi := min(lo+s.perRank, n)
	m := hi - lo
	err := ctx.Err()
	if m > 0 && err == nil {
		nv := m * s.v2
		s.x = s.density.Draw(s.links[:nv], s.logq[:m], m, s.seed, nf.DomainSample, 0, uint64(first)+uint64(lo))
		err = s.pool.Measure(s.obs[:m], nil, s.links[:nv])
		if err != nil {
			err = fmt.Errorf("sample: proposals %d..%d: %w", first+int64(lo), first+int64(hi)-1, err)
		}
	}
	if err := s.c.AgreeError(err); err != nil {
		return nil, err
	}
	if cap(s.gather) < gatherColumns*n {
		s.gather = make([]float64, gatherColumns*n)
	}
	g := s.gather[:gatherColumns*n]
	clear(g)
	for i := range m {
		o := s.obs[i]
		for k, v := range [gatherColumns]float64{s.logq[i], -o.Action, o.Condensate, o.SignDetD, o.TopologicalCharge, o.MeanCosPlaquette} {
			g[k*n+lo+i] = v
		}
	}
	s.c.AllreduceSum(g)
	p := &proposalBlock{logq: g[:n], logp: g[n : 2*n], obs: make([]nfio.ChainObservables, n)}
	for i := range p.obs {
		p.obs[i] = nfio.ChainObservables{Condensate: g[2*n+i], Sign: g[3*n+i], TopologicalCharge: g[4*n+i], Plaquette: g[5*n+i]}
	}
	if s.save {
		if cap(s.configs) < n*s.v2 {
			s.configs = make([]float32, n*s.v2)
		}
		p.configs = s.configs[:n*s.v2]
		clear(p.configs)
		if m > 0 {
			for i, v := range s.x[:m*s.v2] {
				p.configs[lo*s.v2+i] = float32(v)
			}
		}
		s.c.AllreduceSum32(p.configs)
	}
	return p, nil
}

// ModelHash returns the hex SHA-256 of the flow's architecture and
// parameters (as float64 bits, so float32 and float64 models of the same
// values agree): the identity of the proposal distribution.
func ModelHash[T nf.Float](flow *nf.Flow[T]) string {
	h := sha256.New()
	fmt.Fprintf(h, "%+v\n", flow.Arch)
	var b [8]byte
	for _, v := range flow.Params.Data {
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(float64(v)))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Probe is what an acceptance probe measures on its M proposals.
type Probe struct {
	Acceptance float64 // acceptance rate of the chain over them
	// ESS is their effective sample size per proposal, eq. (26), and
	// ESSErr its bootstrap error (DefaultBootstrapReps resamples). It is
	// the figure the chain's efficiency follows; the ESS of a training
	// batch, with far fewer samples, overestimates it when the weights are
	// heavy-tailed (a small batch rarely holds the rare large weights).
	ESS, ESSErr float64
}

// Acceptance measures the acceptance rate of the NMCMC chain for the
// flow as it is after training step step: M proposals from
// SamplePrior(…, seed, DomainProbe, step, i), each rank making a
// consecutive share of at most perRank per pass, and a chain over them in
// index order with the uniforms nf.ProbeUniform(seed, step, i), and the
// ESS of the same proposals. Every rank returns the same result.
// Collective.
func Acceptance[T nf.Float](c comm.Comm, flow *nf.Flow[T], pool *lgt.Pool, seed uint64, step int64, M, perRank int) (Probe, error) {
	v2 := 2 * pool.Params().V()
	share := (M + c.Size() - 1) / c.Size()
	lo := min(c.Rank()*share, M)
	hi := min(lo+share, M)
	logw := make([]float64, M)
	B := max(min(perRank, hi-lo), 1)
	links := make([]float64, B*v2)
	logq, action := make([]float64, B), make([]float64, B)
	d := nf.NewDensity(flow)
	var err error
	for i := lo; i < hi && err == nil; i += B {
		m := min(B, hi-i)
		d.Draw(links[:m*v2], logq[:m], m, seed, nf.DomainProbe, uint64(step), uint64(i))
		if err = pool.Action(action[:m], nil, links[:m*v2]); err != nil {
			err = fmt.Errorf("acceptance probe at step %d: %w", step, err)
			break
		}
		for k := range m {
			logw[i+k] = -action[k] - logq[k]
		}
	}
	if err := c.AgreeError(err); err != nil {
		return Probe{math.NaN(), math.NaN(), math.NaN()}, err
	}
	c.AllreduceSum(logw)
	p := Probe{Acceptance: nf.ChainAcceptance(logw, func(i int) float64 { return nf.ProbeUniform(seed, uint64(step), uint64(i)) }),
		ESS: nf.ESS(logw)}
	rng := rand.New(rand.NewPCG(bootstrapSeed, uint64(step)))
	pick := make([]float64, M)
	p.ESSErr = stats.Bootstrap(M, DefaultBootstrapReps, rng, func(idx []int) float64 {
		for k, i := range idx {
			pick[k] = logw[i]
		}
		return nf.ESS(pick)
	})
	return p, nil
}

// Num is a float64 that encodes NaN and ±Inf as JSON null.
type Num float64

func (x Num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(x), 'g', -1, 64), nil
}

// Estimate is a value with its error.
type Estimate struct {
	Value Num `json:"value"`
	Err   Num `json:"err"`
}

// ObservableReport is one observable of the chain.
type ObservableReport struct {
	Name      string   `json:"name"`
	Mean      Num      `json:"mean"`        // chain average
	Err       Num      `json:"err"`         // its error by the Γ-method
	TauInt    Num      `json:"tau_int"`     // integrated autocorrelation time, chain steps
	TauIntErr Num      `json:"tau_int_err"` // its error
	Window    int      `json:"window"`      // Γ-method summation window
	NIS       Estimate `json:"nis"`         // importance sampling on the proposals
}

// Report summarizes chain.h5.
type Report struct {
	Steps        int    `json:"steps"`
	Accepted     int    `json:"accepted"`
	Acceptance   Num    `json:"acceptance"`
	LongestRun   int    `json:"longest_rejection_run"`
	LongestRunAt int    `json:"longest_rejection_run_start"`
	LongRuns     int    `json:"long_rejection_runs"` // runs longer than LongRun
	LongRun      int    `json:"long_run"`            // the threshold of LongRuns (-long-run)
	ESS          Num    `json:"ess"`                 // of the proposals, eq. (26); NaN for HMC
	SignChanges  int    `json:"sign_changes"`        // steps where the sign of det D of the state changed
	Method       string `json:"method"`              // "nmcmc" or "hmc"
	// HMC only (NaN for NMCMC): ⟨e^{−ΔH}⟩ with its Γ-method error (1 for
	// a correct reversible, area-preserving integrator) and ⟨ΔH⟩.
	ExpMinusDH    Estimate           `json:"exp_minus_dH"`
	MeanDH        Num                `json:"dH_mean"`
	Observables   []ObservableReport `json:"observables"`
	FreeEnergyQ   Estimate           `json:"free_energy_q"`
	FreeEnergyNIS Estimate           `json:"free_energy_nis"`
	Seed          int64              `json:"seed"`
	Source        string             `json:"source_checkpoint"`
	ModelHash     string             `json:"model_sha256"`
	L             int                `json:"L"`

	// Data is the chain the report was made from, Runs its rejection
	// runs (for plots; not in JSON).
	Data *nfio.ChainData `json:"-"`
	Runs []nf.Run        `json:"-"`
}

// summarizeDefault computes the chain report with DefaultBootstrapReps
// resamples, counting rejection runs longer than DefaultLongRun.
func summarizeDefault(d *nfio.ChainData) *Report {
	return Summarize(d, DefaultBootstrapReps, DefaultLongRun)
}

// Summarize computes the chain report with reps bootstrap
// resamples, counting rejection runs longer than longRun.
func Summarize(d *nfio.ChainData, reps, longRun int) *Report {
	r := &Report{Steps: d.Len(), Data: d, Seed: d.Meta.Seed, Source: d.Meta.Source, ModelHash: d.Meta.ModelHash, L: d.Meta.L, LongRun: longRun,
		Method: d.Meta.Method, ESS: Num(math.NaN()), ExpMinusDH: Estimate{Num(math.NaN()), Num(math.NaN())}, MeanDH: Num(math.NaN())}
	r.countRejections(d.Accepted)
	r.SignChanges = signChanges(d.State.Sign)
	if d.Meta.HMC() {
		r.energyViolation(d.DH)
	} else {
		r.ESS = Num(nf.ESS(d.LogW))
	}
	r.importanceSampling(d, reps)
	return r
}

// signChanges counts the steps whose sign differs from the step before.
func signChanges(sign []float64) int {
	n := 0
	for i := 1; i < len(sign); i++ {
		if sign[i] != sign[i-1] {
			n++
		}
	}
	return n
}

// energyViolation fills ⟨e^{−ΔH}⟩ (Γ-method error) and ⟨ΔH⟩ of an HMC
// chain.
func (r *Report) energyViolation(dH []float64) {
	e := make([]float64, len(dH))
	sum := 0.0
	for i, v := range dH {
		e[i] = math.Exp(-v)
		sum += v
	}
	g := stats.GammaMethod(e, 0)
	r.ExpMinusDH = Estimate{Num(g.Mean), Num(g.Err)}
	r.MeanDH = Num(sum / float64(len(dH)))
}

// countRejections fills the acceptance and the rejection-run statistics.
func (r *Report) countRejections(accepted []bool) {
	for _, a := range accepted {
		if a {
			r.Accepted++
		}
	}
	r.Acceptance = Num(float64(r.Accepted) / float64(len(accepted)))
	r.Runs = nf.RejectionRuns(accepted)
	for _, run := range r.Runs {
		if run.Len > r.LongestRun {
			r.LongestRun, r.LongestRunAt = run.Len, run.Start
		}
		if run.Len > r.LongRun {
			r.LongRuns++
		}
	}
}

// importanceSampling fills, for every observable, the chain estimate (the
// Γ-method) and the neural importance sampling estimate on the proposals
// (self-normalized weights, bootstrap error with reps resamples), and the
// two free-energy estimates. An HMC chain has no proposal density: its
// importance-sampling estimates and free energies are NaN.
func (r *Report) importanceSampling(d *nfio.ChainData, reps int) {
	n := d.Len()
	// Self-normalized weights, shifted by the maximal log weight.
	shift := math.Inf(-1)
	for _, v := range d.LogW {
		if !math.IsNaN(v) {
			shift = math.Max(shift, v)
		}
	}
	w := make([]float64, n)
	for i, v := range d.LogW {
		w[i] = math.Exp(v - shift)
	}
	nis := func(o []float64) func(idx []int) float64 {
		return func(idx []int) float64 {
			s, sw := 0.0, 0.0
			for _, i := range idx {
				s += w[i] * o[i]
				sw += w[i]
			}
			return s / sw
		}
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	boot := func(f func([]int) float64) Estimate {
		if d.Meta.HMC() {
			return Estimate{Num(math.NaN()), Num(math.NaN())}
		}
		rng := rand.New(rand.NewPCG(bootstrapSeed, 0))
		return Estimate{Num(f(all)), Num(stats.Bootstrap(n, reps, rng, f))}
	}
	cols := [][2][]float64{
		{d.State.Condensate, d.Proposal.Condensate}, {d.State.Sign, d.Proposal.Sign},
		{d.State.TopologicalCharge, d.Proposal.TopologicalCharge}, {d.State.Plaquette, d.Proposal.Plaquette},
	}
	// χ_t = ⟨Q²⟩/V from the charges of the states and of the proposals.
	V := float64(d.Meta.L * d.Meta.L)
	chi := [2][]float64{make([]float64, n), make([]float64, n)}
	for i := range n {
		chi[0][i] = d.State.TopologicalCharge[i] * d.State.TopologicalCharge[i] / V
		chi[1][i] = d.Proposal.TopologicalCharge[i] * d.Proposal.TopologicalCharge[i] / V
	}
	cols = append(cols, chi)
	for k, name := range nfio.SummaryObservableNames {
		g := stats.GammaMethod(cols[k][0], 0)
		r.Observables = append(r.Observables, ObservableReport{Name: name, Mean: Num(g.Mean), Err: Num(g.Err),
			TauInt: Num(g.TauInt), TauIntErr: Num(g.TauIntErr), Window: g.W, NIS: boot(nis(cols[k][1]))})
	}
	r.FreeEnergyQ = boot(func(idx []int) float64 {
		s := 0.0
		for _, i := range idx {
			s += d.LogW[i]
		}
		return -s / float64(len(idx))
	})
	r.FreeEnergyNIS = boot(func(idx []int) float64 {
		s := 0.0
		for _, i := range idx {
			s += w[i]
		}
		return -(shift + math.Log(s/float64(len(idx))))
	})
}

// summaryAttrs returns the report as the /summary attributes of chain.h5
// (nfio.SummaryNames).
func (r *Report) summaryAttrs() ([]string, []float64) {
	var names []string
	var vals []float64
	add := func(n string, v Num) { names, vals = append(names, n), append(vals, float64(v)) }
	for _, o := range r.Observables {
		add(o.Name+"_mean", o.Mean)
		add(o.Name+"_err", o.Err)
		add(o.Name+"_tau_int", o.TauInt)
		add(o.Name+"_tau_int_err", o.TauIntErr)
		add(o.Name+"_nis_mean", o.NIS.Value)
		add(o.Name+"_nis_err", o.NIS.Err)
	}
	add("free_energy_q", r.FreeEnergyQ.Value)
	add("free_energy_q_err", r.FreeEnergyQ.Err)
	add("free_energy_nis", r.FreeEnergyNIS.Value)
	add("free_energy_nis_err", r.FreeEnergyNIS.Err)
	add("ess", r.ESS)
	add("n_steps", Num(r.Steps))
	add("acceptance_rate", r.Acceptance)
	add("longest_rejection_run", Num(r.LongestRun))
	add("sign_changes", Num(r.SignChanges))
	if r.Method == nfio.MethodHMC {
		add("exp_minus_dH_mean", r.ExpMinusDH.Value)
		add("exp_minus_dH_err", r.ExpMinusDH.Err)
		add("dH_mean", r.MeanDH)
	}
	return names, vals
}

// PrintReport prints the chain tables.
func PrintReport(w io.Writer, r *Report) {
	hmc := r.Method == nfio.MethodHMC
	if hmc {
		m := r.Data.Meta
		fmt.Fprintf(w, "\nHMC chain (seed %d, L = %d, trajectory length %g, %d leapfrog steps)\n", r.Seed, r.L, m.TrajectoryLength, m.MDSteps)
	} else {
		fmt.Fprintf(w, "\nNMCMC chain (seed %d, L = %d)\n", r.Seed, r.L)
	}
	fmt.Fprintf(w, "  steps                      %d\n", r.Steps)
	fmt.Fprintf(w, "  acceptance rate            %.4f (%d accepted)\n", float64(r.Acceptance), r.Accepted)
	fmt.Fprintf(w, "  longest rejection run      %d steps (from step %d); %d runs > %d\n", r.LongestRun, r.LongestRunAt, r.LongRuns, r.LongRun)
	fmt.Fprintf(w, "  sign changes of det D      %d\n", r.SignChanges)
	if hmc {
		fmt.Fprintf(w, "  <exp(-dH)>                 %s (1 for an exact integrator)\n", FormatPM(r.ExpMinusDH.Value, r.ExpMinusDH.Err))
		fmt.Fprintf(w, "  <dH>                       %.4g\n", float64(r.MeanDH))
	} else {
		fmt.Fprintf(w, "  ESS of the proposals       %.4f\n", float64(r.ESS))
	}
	fmt.Fprintf(w, "\n  %-27s %-26s %-18s %s\n", "observable", "chain mean ± error", "tau_int ± error", "importance sampling")
	for _, o := range r.Observables {
		fmt.Fprintf(w, "  %-27s %-26s %-18s %s\n", o.Name, FormatPM(o.Mean, o.Err), FormatPM(o.TauInt, o.TauIntErr), FormatPM(o.NIS.Value, o.NIS.Err))
	}
	if hmc {
		return
	}
	fmt.Fprintf(w, "\n  free energy F_q   = -mean log w  %s\n", FormatPM(r.FreeEnergyQ.Value, r.FreeEnergyQ.Err))
	fmt.Fprintf(w, "  free energy F_NIS = -log mean w  %s\n", FormatPM(r.FreeEnergyNIS.Value, r.FreeEnergyNIS.Err))
}

// pm formats "v ± e" with the value to the precision of its error.
func FormatPM(v, e Num) string {
	x, dx := float64(v), float64(e)
	if math.IsNaN(x) {
		return "n/a"
	}
	if math.IsNaN(dx) || dx <= 0 || math.IsInf(dx, 0) {
		return strconv.FormatFloat(x, 'g', 6, 64) + " ± " + strconv.FormatFloat(dx, 'g', 2, 64)
	}
	digits := max(0, 1-int(math.Floor(math.Log10(dx))))
	digits = min(digits, 12)
	return strconv.FormatFloat(x, 'f', digits, 64) + " ± " + strconv.FormatFloat(dx, 'f', digits, 64)
}
