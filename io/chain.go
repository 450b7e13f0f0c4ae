package nfio

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"nfschwinger/internal/h5"
)

// ChainFormat and ChainVersion identify chain.h5 (root attributes "format"
// and "version").
const (
	ChainFormat  = "nfschwinger chain"
	ChainVersion = 1
)

// ChainObservables are the four observables of one configuration kept in
// chain.h5 (conventions of shared/vectors/README.md).
type ChainObservables struct {
	Condensate        float64 // Re Tr D⁻¹ / V
	Sign              float64 // sign of det D, ±1
	TopologicalCharge float64 // Σ_x wrap(P(x)) / 2π
	Plaquette         float64 // Σ_x cos P(x) / V
}

// ChainRow is one step of the NMCMC chain: the proposal offered at that
// step, whether it was accepted, and the state of the chain afterwards.
type ChainRow struct {
	Accepted bool             // the proposal became the state (the first step always does)
	LogQ     float64          // log q of the proposal
	LogP     float64          // log p = −S of the proposal, unnormalized
	LogW     float64          // LogP − LogQ of the proposal
	DH       float64          // HMC only: H(end of the trajectory) − H(start), +Inf where the integration failed
	State    ChainObservables // observables of the chain's state after the step
	Proposal ChainObservables // observables of the proposal (for importance sampling)
}

// ChainMeta describes a chain: what must agree for a chain to be continued.
type ChainMeta struct {
	L           int     // lattice extent
	Beta, Kappa float64 // couplings
	Seed        int64   // [sample] seed: key of the proposal and accept streams
	SaveConfigs bool    // the file has the dataset "configs"
	Precision   string  // "float32" or "float64", the flow's precision
	ModelHash   string  // hex SHA-256 of the flow's architecture and parameters
	Source      string  // checkpoint the model was read from ("" if none)

	// Method is "nmcmc" (the flow as independence proposal) or "hmc"
	// (hybrid Monte Carlo, no flow: Precision "float64", ModelHash "");
	// files without the attribute are "nmcmc".
	Method           string
	TrajectoryLength float64 // HMC: molecular-dynamics time per trajectory
	MDSteps          int     // HMC: leapfrog steps per trajectory
	Start            string  // HMC: "cold" or the chain file of the start configuration
	// Replica is an HMC chain's index among the independent chains of one
	// job, one per rank (attribute "replica"; 0 for files without it).
	Replica int
}

// HMC reports whether the chain is an HMC chain.
func (m ChainMeta) HMC() bool { return m.Method == MethodHMC }

// withMethod returns m with an empty Method read as MethodNMCMC.
func (m ChainMeta) withMethod() ChainMeta {
	if m.Method == "" {
		m.Method = MethodNMCMC
	}
	return m
}

// Same reports whether a chain with meta o continues one with meta m: all
// fields but Source agree (an empty Method is "nmcmc").
func (m ChainMeta) Same(o ChainMeta) bool {
	o.Source = m.Source
	return m.withMethod() == o.withMethod()
}

// chainColumn is one float64 dataset of chain.h5 with its description.
type chainColumn struct {
	name, doc string
	get       func(*ChainRow) *float64
}

// chainColumns are the float64 datasets of chain.h5 in file order (the
// uint8 dataset "accepted" and the float32 "configs" are handled apart).
var chainColumns = []chainColumn{
	{"logq", "log q(phi) of the proposal offered at this step", func(r *ChainRow) *float64 { return &r.LogQ }},
	{"logp", "log p(phi) = -S(phi) of the proposal, unnormalized", func(r *ChainRow) *float64 { return &r.LogP }},
	{"logw", "log weight logp - logq of the proposal", func(r *ChainRow) *float64 { return &r.LogW }},
	{"condensate", "chain state after the step: condensate Re Tr D^-1 / V", func(r *ChainRow) *float64 { return &r.State.Condensate }},
	{"sign", "chain state after the step: sign of det D", func(r *ChainRow) *float64 { return &r.State.Sign }},
	{"topological_charge", "chain state after the step: topological charge", func(r *ChainRow) *float64 { return &r.State.TopologicalCharge }},
	{"plaquette", "chain state after the step: mean cos P over the lattice", func(r *ChainRow) *float64 { return &r.State.Plaquette }},
	{"proposal/condensate", "proposal: condensate Re Tr D^-1 / V", func(r *ChainRow) *float64 { return &r.Proposal.Condensate }},
	{"proposal/sign", "proposal: sign of det D", func(r *ChainRow) *float64 { return &r.Proposal.Sign }},
	{"proposal/topological_charge", "proposal: topological charge", func(r *ChainRow) *float64 { return &r.Proposal.TopologicalCharge }},
	{"proposal/plaquette", "proposal: mean cos P over the lattice", func(r *ChainRow) *float64 { return &r.Proposal.Plaquette }},
}

// dHColumn is the extra float64 dataset of an HMC chain.
var dHColumn = chainColumn{"dH", "HMC: H(end of the trajectory) - H(start), the energy violation of the leapfrog; +inf where the integration failed",
	func(r *ChainRow) *float64 { return &r.DH }}

// columns returns the float64 datasets of a chain of meta m in file order.
func (m ChainMeta) columns() []chainColumn {
	if m.HMC() {
		return append(chainColumns[:len(chainColumns):len(chainColumns)], dHColumn)
	}
	return chainColumns
}

// ChainColumns returns the names of the one-dimensional datasets of an
// NMCMC chain.h5 (all of length Len): "accepted" first, then the float64
// ones. An HMC chain has "dH" as well (ChainMeta.Columns). "configs"
// (present with save_configs) has shape (Len, 2, L, L).
func ChainColumns() []string { return ChainMeta{}.Columns() }

// Columns returns the names of the one-dimensional datasets of a chain
// of meta m, "accepted" first.
func (m ChainMeta) Columns() []string {
	names := []string{"accepted"}
	for _, c := range m.columns() {
		names = append(names, c.name)
	}
	return names
}

// HMC state datasets: the chain state after every appended block, so that
// a continued HMC chain starts from the exact float64 configuration.
const (
	hmcStateSet     = "hmc/state"      // float64 rows of shape (2, L, L)
	hmcStateStepSet = "hmc/state_step" // int64: chain length at which the row above is the state
)

// chainChunkRows is the chunk length of the scalar columns (1024 rows of 8
// bytes); configurations are chunked by one row.
const chainChunkRows = 1024

// Chain is chain.h5 open for appending. It is written by one process (rank
// 0) only; its methods are not collective.
//
// The file is written in HDF5's SWMR mode (single writer, multiple
// readers): while a run appends to it, ReadChain and `nfschwinger analyze`
// read it as of the last appended block, and so does h5py with
// h5py.File(path, "r", swmr=True). A writer killed at any moment leaves
// every block it appended readable that way; OpenChain continues such a
// file (it clears the flags that the killed writer left, which until then
// make a plain, non-SWMR open fail). A second writer is kept out by the
// lock file LockPath(path), held while the Chain is open. Files of the
// format before SWMR (an older version of this program) are continued
// without it.
type Chain struct {
	f         *h5.File
	unlock    func() // releases LockPath(path)
	path      string
	meta      ChainMeta
	rows      int
	accepted  int64
	configLen int // 2·L·L
}

// CreateChain creates (truncating) a chain file at path with empty datasets
// and meta as root attributes.
func CreateChain(path string, meta ChainMeta) (*Chain, error) {
	unlock, err := LockFile(LockPath(path))
	if err != nil {
		return nil, fmt.Errorf("chain: another process is writing %s: %w", path, err)
	}
	f, err := h5.CreateLatest(path)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("chain: %w", err)
	}
	c := &Chain{f: f, unlock: unlock, path: path, meta: meta, configLen: 2 * meta.L * meta.L}
	if err := c.create(); err != nil {
		f.Close()
		unlock()
		os.Remove(path)
		return nil, fmt.Errorf("chain: %w", err)
	}
	if err := c.updateCounts(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.f.StartSWMR(); err != nil {
		c.Close()
		return nil, fmt.Errorf("chain: %w", err)
	}
	return c, nil
}

// create makes the datasets of a new chain file, each with its unit and
// description, and its metadata.
func (c *Chain) create() error {
	f := c.f
	if err := h5.CreateExtendible[uint8](f, "accepted", nil, chainChunkRows); err != nil {
		return err
	}
	if err := describe(f, "accepted", "1", "1 if the proposal of this step was accepted (the first step always is), else 0"); err != nil {
		return err
	}
	for _, col := range c.meta.columns() {
		if err := h5.CreateExtendible[float64](f, col.name, nil, chainChunkRows); err != nil {
			return err
		}
		if err := describe(f, col.name, "1", col.doc); err != nil {
			return err
		}
	}
	if c.meta.HMC() {
		L := c.meta.L
		if err := h5.CreateExtendible[float64](f, hmcStateSet, []int{2, L, L}, 1); err != nil {
			return err
		}
		if err := describe(f, hmcStateSet, "rad", "HMC chain state (link angles [mu, i, j], float64) after each appended block, to continue the chain exactly"); err != nil {
			return err
		}
		if err := h5.CreateExtendible[int64](f, hmcStateStepSet, nil, 64); err != nil {
			return err
		}
		if err := describe(f, hmcStateStepSet, "1", "chain length (steps) at which the same row of hmc/state is the state"); err != nil {
			return err
		}
	}
	if c.meta.SaveConfigs {
		L := c.meta.L
		if err := h5.CreateExtendible[float32](f, "configs", []int{2, L, L}, 1); err != nil {
			return err
		}
		if err := describe(f, "configs", "rad", "chain state after the step: link angles [step, mu, i, j] in [0, 2pi)"); err != nil {
			return err
		}
	}
	if err := h5.WriteStringAttr(f, "proposal", "description",
		"observables of the proposal offered at each step (not of the chain state), for importance sampling"); err != nil {
		return err
	}
	return c.writeMeta()
}

// writeMeta writes the chain's metadata as root attributes (the HMC
// parameters only for an HMC chain).
func (c *Chain) writeMeta() error {
	f, m := c.f, c.meta.withMethod()
	for _, a := range []struct{ name, val string }{
		{"format", ChainFormat},
		{"method", m.Method},
		{"description", "NMCMC chain of the Metropolized independence sampler, eq. (3): one row per chain step"},
		{"precision", m.Precision},
		{"model_sha256", m.ModelHash},
		{"source_checkpoint", m.Source},
	} {
		if err := h5.WriteStringAttr(f, "/", a.name, a.val); err != nil {
			return err
		}
	}
	saveConfigs := int64(0)
	if m.SaveConfigs {
		saveConfigs = 1
	}
	for _, a := range []struct {
		name string
		val  int64
	}{{"version", ChainVersion}, {"L", int64(m.L)}, {"seed", m.Seed}, {"save_configs", saveConfigs}} {
		if err := h5.WriteScalarAttr(f, "/", a.name, a.val); err != nil {
			return err
		}
	}
	if err := h5.WriteScalarAttr(f, "/", "beta", m.Beta); err != nil {
		return err
	}
	if err := h5.WriteScalarAttr(f, "/", "kappa", m.Kappa); err != nil {
		return err
	}
	if !m.HMC() {
		return nil
	}
	return errors.Join(
		h5.WriteScalarAttr(f, "/", "trajectory_length", m.TrajectoryLength),
		h5.WriteScalarAttr(f, "/", "replica", int64(m.Replica)),
		h5.WriteScalarAttr(f, "/", "md_steps", int64(m.MDSteps)),
		h5.WriteStringAttr(f, "/", "start", m.Start))
}

// describe writes the "unit" and "description" attributes of a dataset.
func describe(f *h5.File, path, unit, doc string) error {
	if err := h5.WriteStringAttr(f, path, "unit", unit); err != nil {
		return err
	}
	return h5.WriteStringAttr(f, path, "description", doc)
}

// ReadChainCounts returns the root attributes n_steps and n_accepted of
// the chain file at path (as of its writer's last block), without reading
// the columns.
func ReadChainCounts(path string) (steps, accepted int64, err error) {
	f, err := h5.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("chain: %w", err)
	}
	defer f.Close()
	if steps, err = h5.ReadScalarAttr[int64](f, "/", "n_steps"); err == nil {
		accepted, err = h5.ReadScalarAttr[int64](f, "/", "n_accepted")
	}
	if err != nil {
		return 0, 0, fmt.Errorf("chain: %s: %w", path, err)
	}
	return steps, accepted, nil
}

// ReadChainMeta reads the metadata of the chain file at path.
func ReadChainMeta(path string) (ChainMeta, error) {
	f, err := h5.Open(path)
	if err != nil {
		return ChainMeta{}, fmt.Errorf("chain: %w", err)
	}
	defer f.Close()
	m, err := readChainMeta(f)
	if err != nil {
		return ChainMeta{}, fmt.Errorf("chain: %w", err)
	}
	return m, nil
}

func readChainMeta(f *h5.File) (ChainMeta, error) {
	var m ChainMeta
	format, err := h5.ReadStringAttr(f, "/", "format")
	if err != nil || format != ChainFormat {
		return m, fmt.Errorf("%s: not a chain file of this program (root attribute format = %q)", f.Path(), format)
	}
	version, err := h5.ReadScalarAttr[int64](f, "/", "version")
	if err != nil {
		return m, err
	}
	if version != ChainVersion {
		return m, fmt.Errorf("%s: chain format version %d, this program reads %d", f.Path(), version, ChainVersion)
	}
	var L, save int64
	for _, a := range []struct {
		name string
		dst  *int64
	}{{"L", &L}, {"seed", &m.Seed}, {"save_configs", &save}} {
		if *a.dst, err = h5.ReadScalarAttr[int64](f, "/", a.name); err != nil {
			return m, err
		}
	}
	m.L, m.SaveConfigs = int(L), save != 0
	if m.Beta, err = h5.ReadScalarAttr[float64](f, "/", "beta"); err != nil {
		return m, err
	}
	if m.Kappa, err = h5.ReadScalarAttr[float64](f, "/", "kappa"); err != nil {
		return m, err
	}
	for _, a := range []struct {
		name string
		dst  *string
	}{{"precision", &m.Precision}, {"model_sha256", &m.ModelHash}, {"source_checkpoint", &m.Source}} {
		if *a.dst, err = h5.ReadStringAttr(f, "/", a.name); err != nil {
			return m, err
		}
	}
	m.Method = MethodNMCMC // files written before the HMC baseline have no "method"
	if h5.HasAttr(f, "/", "method") {
		if m.Method, err = h5.ReadStringAttr(f, "/", "method"); err != nil {
			return m, err
		}
	}
	switch m.Method {
	case MethodNMCMC:
	case MethodHMC:
		steps, err := h5.ReadScalarAttr[int64](f, "/", "md_steps")
		if err != nil {
			return m, err
		}
		m.MDSteps = int(steps)
		if m.TrajectoryLength, err = h5.ReadScalarAttr[float64](f, "/", "trajectory_length"); err != nil {
			return m, err
		}
		if m.Start, err = h5.ReadStringAttr(f, "/", "start"); err != nil {
			return m, err
		}
		if h5.HasAttr(f, "/", "replica") {
			r, err := h5.ReadScalarAttr[int64](f, "/", "replica")
			if err != nil {
				return m, err
			}
			m.Replica = int(r)
		}
	default:
		return m, fmt.Errorf("%s: unknown chain method %q", f.Path(), m.Method)
	}
	return m, nil
}

// OpenChain opens the chain file at path to continue it. Columns of
// unequal length (a run killed in the middle of an append) are cut to the
// shortest, so the file holds whole steps only; the counts in the root
// attributes are brought up to date.
//
// A file left by a writer killed in SWMR mode is continued too: holding
// the lock file, OpenChain knows that no writer is alive and clears the
// flags it left. The chain continues in SWMR mode when its file has the
// format for it.
func OpenChain(path string) (*Chain, error) {
	unlock, err := LockFile(LockPath(path))
	if err != nil {
		return nil, fmt.Errorf("chain: another process is writing %s: %w", path, err)
	}
	f, err := h5.OpenRW(path)
	if err != nil && h5.ClearStatus(path) == nil {
		f, err = h5.OpenRW(path) // the writer was killed in SWMR mode
	}
	if err != nil {
		unlock()
		return nil, fmt.Errorf("chain: %w", err)
	}
	c := &Chain{f: f, unlock: unlock, path: path}
	if err := c.open(); err != nil {
		f.Close()
		unlock()
		return nil, fmt.Errorf("chain: %w", err)
	}
	if err := c.updateCounts(); err != nil {
		c.Close()
		return nil, err
	}
	c.f.StartSWMR() // fails only for a file of the format before SWMR: continued without it
	return c, nil
}

func (c *Chain) open() error {
	var err error
	if c.meta, err = readChainMeta(c.f); err != nil {
		return err
	}
	c.configLen = 2 * c.meta.L * c.meta.L
	names := c.datasets()
	n := -1
	for _, name := range names {
		if !c.f.Exists(name) {
			return fmt.Errorf("%s: no dataset %s", c.path, name)
		}
		r, err := h5.Rows(c.f, name)
		if err != nil {
			return err
		}
		if n < 0 || r < n {
			n = r
		}
	}
	if c.meta.HMC() {
		if n, err = c.cutHMCState(n); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := h5.Truncate(c.f, name, n); err != nil {
			return err
		}
	}
	c.rows = n
	acc, _, err := h5.ReadRows[uint8](c.f, "accepted", 0, n)
	if err != nil {
		return err
	}
	for _, a := range acc {
		c.accepted += int64(a)
	}
	return nil
}

// cutHMCState drops the HMC states written for steps beyond n (a run
// killed between the rows and the state of a block) and returns the chain
// length of the last state left: the steps after it are cut as well, since
// the chain can only continue from a stored state.
func (c *Chain) cutHMCState(n int) (int, error) {
	k, err := h5.Rows(c.f, hmcStateStepSet)
	if err != nil {
		return 0, err
	}
	r, err := h5.Rows(c.f, hmcStateSet)
	if err != nil {
		return 0, err
	}
	k = min(k, r)
	steps, _, err := h5.ReadRows[int64](c.f, hmcStateStepSet, 0, k)
	if err != nil {
		return 0, err
	}
	for k > 0 && steps[k-1] > int64(n) {
		k--
	}
	last := 0
	if k > 0 {
		last = int(steps[k-1])
	}
	for _, name := range []string{hmcStateSet, hmcStateStepSet} {
		if err := h5.Truncate(c.f, name, k); err != nil {
			return 0, err
		}
	}
	return last, nil
}

// datasets lists every per-step dataset of the file.
func (c *Chain) datasets() []string {
	names := c.meta.Columns()
	if c.meta.SaveConfigs {
		names = append(names, "configs")
	}
	return names
}

// Path returns the file name.
func (c *Chain) Path() string { return c.path }

// Meta returns the chain's metadata.
func (c *Chain) Meta() ChainMeta { return c.meta }

// Len returns the number of chain steps in the file.
func (c *Chain) Len() int { return c.rows }

// Accepted returns the number of accepted steps in the file.
func (c *Chain) Accepted() int64 { return c.accepted }

// Append adds rows at the end of the chain, with their configurations
// (the chain states, len(rows)·2L², angles [step, μ, i, j]) when the file
// keeps them (configs must be nil otherwise), then updates the root
// attributes n_steps, n_accepted and acceptance_rate and flushes the file,
// so a run killed afterwards keeps them. Mismatched lengths panic, and so
// does Append on an HMC chain (AppendHMC).
func (c *Chain) Append(rows []ChainRow, configs []float32) error {
	if c.meta.HMC() {
		panic("nfio: Chain.Append on an HMC chain (AppendHMC)")
	}
	return c.appendRows(rows, configs, nil)
}

// AppendHMC is Append for an HMC chain: state (2L² float64 angles) is the
// chain state after the last of rows, stored so that a continued chain
// starts from it exactly. It panics on an NMCMC chain.
func (c *Chain) AppendHMC(rows []ChainRow, configs []float32, state []float64) error {
	if !c.meta.HMC() || len(state) != c.configLen {
		panic(fmt.Sprintf("nfio: Chain.AppendHMC: method %q, %d state values (want %d)", c.meta.Method, len(state), c.configLen))
	}
	return c.appendRows(rows, configs, state)
}

func (c *Chain) appendRows(rows []ChainRow, configs []float32, state []float64) (err error) {
	defer func() {
		// About what this append writes, and a chunk's worth of slack.
		need := int64(64<<10) + int64(len(rows))*int64(8*len(c.meta.columns())+1) + int64(4*len(configs)+8*len(state))
		err = NoSpace(err, filepath.Dir(c.path), need)
	}()
	if c.meta.SaveConfigs != (configs != nil) || configs != nil && len(configs) != len(rows)*c.configLen {
		panic(fmt.Sprintf("nfio: Chain.Append: %d configuration values for %d rows (save_configs %v, %d per row)",
			len(configs), len(rows), c.meta.SaveConfigs, c.configLen))
	}
	if len(rows) == 0 {
		return nil
	}
	acc := make([]uint8, len(rows))
	var nacc int64
	for i := range rows {
		if rows[i].Accepted {
			acc[i] = 1
			nacc++
		}
	}
	if err := h5.Append(c.f, "accepted", acc); err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	col := make([]float64, len(rows))
	for _, cc := range c.meta.columns() {
		for i := range rows {
			col[i] = *cc.get(&rows[i])
		}
		if err := h5.Append(c.f, cc.name, col); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
	}
	if configs != nil {
		if err := h5.Append(c.f, "configs", configs); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
	}
	c.rows += len(rows)
	c.accepted += nacc
	if state != nil { // after the rows: a state never refers to missing steps
		if err := h5.Append(c.f, hmcStateSet, state); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
		if err := h5.Append(c.f, hmcStateStepSet, []int64{int64(c.rows)}); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
	}
	return c.updateCounts()
}

// updateCounts writes n_steps, n_accepted and acceptance_rate and flushes.
func (c *Chain) updateCounts() error {
	rate := 0.0
	if c.rows > 0 {
		rate = float64(c.accepted) / float64(c.rows)
	}
	err := errors.Join(
		h5.WriteScalarAttr(c.f, "/", "n_steps", int64(c.rows)),
		h5.WriteScalarAttr(c.f, "/", "n_accepted", c.accepted),
		h5.WriteScalarAttr(c.f, "/", "acceptance_rate", rate),
	)
	if err == nil {
		err = c.f.Flush()
	}
	if err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	return nil
}

// Resume is what a continued chain needs from the file: the sampler state
// after the last step and the observables (and configuration) of that
// state.
type Resume struct {
	Steps    int64            // steps in the file
	Accepted int64            // accepted steps in the file
	Current  int64            // step whose proposal is the current state (the last accepted one); −1 for an empty chain
	LogW     float64          // log weight of the current state
	State    ChainObservables // its observables (those of the last row)
	Config   []float32        // its configuration (2L²), nil unless the file keeps them
	// HMCState is an HMC chain's state as float64 angles (2L²), nil for
	// an empty chain and for NMCMC. HMC chains have no Current and LogW.
	HMCState []float64
}

// Resume reads the state of the chain after its last step.
func (c *Chain) Resume() (Resume, error) {
	r := Resume{Steps: int64(c.rows), Accepted: c.accepted, Current: -1}
	if c.rows == 0 {
		return r, nil
	}
	acc, _, err := h5.ReadRows[uint8](c.f, "accepted", 0, c.rows)
	if err != nil {
		return r, fmt.Errorf("chain: %w", err)
	}
	for i := len(acc) - 1; i >= 0; i-- {
		if acc[i] != 0 {
			r.Current = int64(i)
			break
		}
	}
	if c.meta.HMC() {
		k, err := h5.Rows(c.f, hmcStateSet)
		if err == nil && k == 0 {
			err = errors.New("no stored state")
		}
		if err == nil {
			r.HMCState, _, err = h5.ReadRows[float64](c.f, hmcStateSet, k-1, 1)
		}
		if err != nil {
			return r, fmt.Errorf("chain: %s: HMC state: %w", c.path, err)
		}
		r.Current, r.LogW = -1, math.NaN()
	} else if r.Current < 0 {
		return r, fmt.Errorf("chain: %s: no accepted step, but the first step is always accepted: corrupt file", c.path)
	}
	read := func(name string, row int64) (float64, error) {
		v, _, err := h5.ReadRows[float64](c.f, name, int(row), 1)
		if err != nil {
			return 0, fmt.Errorf("chain: %w", err)
		}
		return v[0], nil
	}
	if r.Current >= 0 {
		if r.LogW, err = read("logw", r.Current); err != nil {
			return r, err
		}
	}
	last := int64(c.rows - 1)
	for _, o := range []struct {
		name string
		dst  *float64
	}{{"condensate", &r.State.Condensate}, {"sign", &r.State.Sign},
		{"topological_charge", &r.State.TopologicalCharge}, {"plaquette", &r.State.Plaquette}} {
		if *o.dst, err = read(o.name, last); err != nil {
			return r, err
		}
	}
	if c.meta.SaveConfigs {
		if r.Config, _, err = h5.ReadRows[float32](c.f, "configs", int(last), 1); err != nil {
			return r, fmt.Errorf("chain: %w", err)
		}
	}
	return r, nil
}

// WriteSummary stores the estimates of a finished (part of the) chain as
// float64 attributes of the group /summary, replacing earlier ones with the
// same names, and flushes. names and values have equal length.
func (c *Chain) WriteSummary(names []string, values []float64) error {
	if len(names) != len(values) {
		panic("nfio: Chain.WriteSummary: names and values differ in length")
	}
	if c.f.SWMR() { // the summary creates objects: reopen without SWMR
		if err := c.f.Close(); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
		f, err := h5.OpenRW(c.path)
		if err != nil {
			return fmt.Errorf("chain: %w", err)
		}
		c.f = f
	}
	if err := h5.WriteStringAttr(c.f, "summary", "description",
		"estimates from the chain (Gamma method) and by importance sampling on the proposals (bootstrap errors), written when sampling ends"); err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	for i, n := range names {
		if err := h5.WriteScalarAttr(c.f, "summary", n, values[i]); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
	}
	if err := c.f.Flush(); err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	return nil
}

// ObservableColumns are the four observables of a chain as columns.
type ObservableColumns struct {
	Condensate, Sign, TopologicalCharge, Plaquette []float64
}

// ChainData is the whole content of a chain file except the
// configurations (see ReadChainConfigs).
type ChainData struct {
	Meta     ChainMeta
	Accepted []bool    // per step
	LogQ     []float64 // of the proposals
	LogP     []float64
	LogW     []float64
	DH       []float64         // HMC only (nil for NMCMC): ΔH of each trajectory
	State    ObservableColumns // chain state after each step
	Proposal ObservableColumns // proposals
	// Summary holds the attributes of /summary (empty before the first
	// WriteSummary).
	Summary map[string]float64
}

// Len returns the number of steps.
func (d *ChainData) Len() int { return len(d.Accepted) }

// ReadChain reads the chain file at path. Columns of unequal length are cut
// to the shortest.
func ReadChain(path string) (*ChainData, error) {
	f, err := h5.Open(path)
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	defer f.Close()
	d := &ChainData{Summary: map[string]float64{}}
	if d.Meta, err = readChainMeta(f); err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	n := -1
	for _, name := range d.Meta.Columns() {
		if !f.Exists(name) {
			return nil, fmt.Errorf("chain: %s: no dataset %s", path, name)
		}
		r, err := h5.Rows(f, name)
		if err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
		if n < 0 || r < n {
			n = r
		}
	}
	acc, _, err := h5.ReadRows[uint8](f, "accepted", 0, n)
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	d.Accepted = make([]bool, n)
	for i, a := range acc {
		d.Accepted[i] = a != 0
	}
	dst := map[string]*[]float64{
		"logq": &d.LogQ, "logp": &d.LogP, "logw": &d.LogW,
		"condensate": &d.State.Condensate, "sign": &d.State.Sign,
		"topological_charge": &d.State.TopologicalCharge, "plaquette": &d.State.Plaquette,
		"proposal/condensate": &d.Proposal.Condensate, "proposal/sign": &d.Proposal.Sign,
		"proposal/topological_charge": &d.Proposal.TopologicalCharge, "proposal/plaquette": &d.Proposal.Plaquette,
		"dH": &d.DH,
	}
	for _, col := range d.Meta.columns() {
		if *dst[col.name], _, err = h5.ReadRows[float64](f, col.name, 0, n); err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
	}
	for _, name := range SummaryNames {
		if h5.HasAttr(f, "summary", name) {
			if d.Summary[name], err = h5.ReadScalarAttr[float64](f, "summary", name); err != nil {
				return nil, fmt.Errorf("chain: %w", err)
			}
		}
	}
	return d, nil
}

// ReadChainConfigs reads the configurations of steps [start, start+n) of
// the chain file at path (n·2L² angles); an error if the file keeps none.
func ReadChainConfigs(path string, start, n int) ([]float32, error) {
	f, err := h5.Open(path)
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	defer f.Close()
	if !f.Exists("configs") {
		return nil, fmt.Errorf("chain: %s has no configurations (sample.save_configs was false)", path)
	}
	v, _, err := h5.ReadRows[float32](f, "configs", start, n)
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	return v, nil
}

// Close closes the file.
func (c *Chain) Close() error {
	err := c.f.Close()
	c.unlock()
	if err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	return nil
}

// ChainObservableNames are the names of the four observables, as datasets
// of chain.h5 and in the summary attribute names.
var ChainObservableNames = []string{"condensate", "sign", "topological_charge", "plaquette"}

// SusceptibilityName is the derived observable of the summary: the
// topological susceptibility χ_t = ⟨Q²⟩/V, estimated from the chain's and
// the proposals' topological charges.
const SusceptibilityName = "topological_susceptibility"

// SummaryObservableNames are the observables of /summary: those of the
// chain and SusceptibilityName.
var SummaryObservableNames = append(append([]string(nil), ChainObservableNames...), SusceptibilityName)

// SummaryNames are the attributes of /summary in chain.h5, written when
// sampling ends: for every observable X of ChainObservableNames
//
//	X_mean, X_err               chain average and its error (Γ-method)
//	X_tau_int, X_tau_int_err    integrated autocorrelation time in chain steps
//	X_nis_mean, X_nis_err       importance-sampling estimate on the proposals
//	                            (self-normalized weights w = p/q) with its
//	                            bootstrap error
//
// and free_energy_q (−mean log w, the variational bound), free_energy_nis
// (−log mean w), each with _err (bootstrap), ess (effective sample size per
// proposal, eq. (26)), n_steps, acceptance_rate, longest_rejection_run
// and sign_changes (steps where the sign of det D of the state changed).
// An HMC chain has no importance sampling (its _nis_, free energies and
// ess are NaN) and adds exp_minus_dH_mean, exp_minus_dH_err (Γ-method;
// 1 for an exact integrator's area preservation) and dH_mean.
// Free energies are −log Z for the unnormalized p = exp(−S) in units of
// the lattice action, not divided by the volume.
var SummaryNames = summaryNames()

func summaryNames() []string {
	var names []string
	for _, o := range SummaryObservableNames {
		for _, s := range []string{"_mean", "_err", "_tau_int", "_tau_int_err", "_nis_mean", "_nis_err"} {
			names = append(names, o+s)
		}
	}
	return append(names, "free_energy_q", "free_energy_q_err", "free_energy_nis", "free_energy_nis_err",
		"ess", "n_steps", "acceptance_rate", "longest_rejection_run", "sign_changes",
		"exp_minus_dH_mean", "exp_minus_dH_err", "dH_mean")
}
