package app

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"nfschwinger/internal/stats"
	nfio "nfschwinger/io"
	"nfschwinger/nf"
)

const analyzeUsage = `usage: nfschwinger analyze [flags] DIR

Reads DIR/history.h5 (training) and DIR/chain.h5 (NMCMC chain), whichever
exist, prints a training summary (steps, ESS averaged over the last window,
time per step), a chain summary (length, acceptance rate, longest run of
rejections), for every observable the chain average with its error and
integrated autocorrelation time (Γ-method of Wolff) next to the
importance-sampling estimate on the proposals (bootstrap error), and the
free energies F_q = −mean log w and F_NIS = −log mean w (bootstrap errors).
Writes the plots DIR/ess.png, DIR/acceptance.png and DIR/chain_history.png.

flags:
`

// analyzeOptions are the settings of `nfschwinger analyze`.
type analyzeOptions struct {
	Dir       string // run directory
	JSON      bool   // print JSON instead of tables
	Plots     bool   // write PNG plots into PlotDir
	PlotDir   string // where the plots go; "" = Dir
	Window    int    // rows of the ESS moving average and of the final-ESS average
	Excerpt   int    // chain steps shown in the Monte Carlo history plot
	From      int    // first chain step of the excerpt
	LongRun   int    // rejection runs longer than this are marked in red
	Bootstrap int    // bootstrap resamples
}

// Defaults of the analyze flags.
const (
	defaultESSWindow     = 100
	defaultExcerpt       = 2000
	defaultLongRun       = 100
	defaultBootstrapReps = 200
	bootstrapSeed        = 1 // fixed: the analysis of a file is reproducible
)

// cmdAnalyze parses the command line of `nfschwinger analyze` and runs it.
func cmdAnalyze(args []string, stdout io.Writer) error {
	opts := analyzeOptions{Plots: true}
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.BoolVar(&opts.JSON, "json", false, "print the numbers as JSON instead of tables")
	noPlots := fs.Bool("no-plots", false, "do not write PNG plots")
	fs.StringVar(&opts.PlotDir, "plots", "", "directory of the plots (default: DIR)")
	fs.IntVar(&opts.Window, "window", defaultESSWindow, "history rows of the ESS moving average and final-ESS average")
	fs.IntVar(&opts.Excerpt, "excerpt", defaultExcerpt, "chain steps in the Monte Carlo history plot")
	fs.IntVar(&opts.From, "from", 0, "first chain step of the Monte Carlo history plot")
	fs.IntVar(&opts.LongRun, "long-run", defaultLongRun, "rejection runs longer than this are marked red")
	fs.IntVar(&opts.Bootstrap, "bootstrap", defaultBootstrapReps, "bootstrap resamples")
	pos, err := parseFlags(fs, args, analyzeUsage, stdout)
	if err != nil || pos == nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("analyze: need one run directory, got %d arguments (see nfschwinger analyze -h)", len(pos))
	}
	opts.Dir = pos[0]
	opts.Plots = !*noPlots
	if opts.Window < 1 || opts.Excerpt < 1 || opts.From < 0 || opts.LongRun < 0 || opts.Bootstrap < 2 {
		return usagef("analyze: -window and -excerpt must be ≥ 1, -from and -long-run ≥ 0, -bootstrap ≥ 2")
	}
	return runAnalyze(opts, stdout)
}

// analysis is everything analyze reports; it is also the JSON output.
type analysis struct {
	Dir      string         `json:"dir"`
	Training *trainingStats `json:"training,omitempty"`
	Chain    *chainReport   `json:"chain,omitempty"`
	Plots    []string       `json:"plots,omitempty"`
}

// num is a float64 that encodes NaN and ±Inf as JSON null.
type num float64

func (x num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(x), 'g', -1, 64), nil
}

// trainingStats summarizes history.h5.
type trainingStats struct {
	Rows        int   `json:"rows"`
	Steps       int64 `json:"steps"`         // optimizer steps completed at the last row
	FinalESS    num   `json:"final_ess"`     // mean ESS over the last Window rows
	FinalESSErr num   `json:"final_ess_err"` // its standard error (rows taken as independent)
	Window      int   `json:"window"`        // rows averaged
	TimePerStep num   `json:"time_per_step"` // wall-clock seconds per step, over the whole run
	FinalLoss   num   `json:"final_loss"`
	Skipped     int64 `json:"skipped"`
	// FinalAcceptance is the last acceptance probe (history column
	// "acceptance"), NaN/null when the history has none.
	FinalAcceptance num `json:"final_acceptance"`

	step, ess, acceptance []float64 // for the plots
}

// estimate is a value with its error.
type estimate struct {
	Value num `json:"value"`
	Err   num `json:"err"`
}

// observableReport is one observable of the chain.
type observableReport struct {
	Name      string   `json:"name"`
	Mean      num      `json:"mean"`        // chain average
	Err       num      `json:"err"`         // its error by the Γ-method
	TauInt    num      `json:"tau_int"`     // integrated autocorrelation time, chain steps
	TauIntErr num      `json:"tau_int_err"` // its error
	Window    int      `json:"window"`      // Γ-method summation window
	NIS       estimate `json:"nis"`         // importance sampling on the proposals
}

// chainReport summarizes chain.h5.
type chainReport struct {
	Steps         int                `json:"steps"`
	Accepted      int                `json:"accepted"`
	Acceptance    num                `json:"acceptance"`
	LongestRun    int                `json:"longest_rejection_run"`
	LongestRunAt  int                `json:"longest_rejection_run_start"`
	LongRuns      int                `json:"long_rejection_runs"` // runs longer than LongRun
	LongRun       int                `json:"long_run"`            // the threshold of LongRuns (-long-run)
	ESS           num                `json:"ess"`                 // of the proposals, eq. (26)
	Observables   []observableReport `json:"observables"`
	FreeEnergyQ   estimate           `json:"free_energy_q"`
	FreeEnergyNIS estimate           `json:"free_energy_nis"`
	Seed          int64              `json:"seed"`
	Source        string             `json:"source_checkpoint"`
	ModelHash     string             `json:"model_sha256"`
	L             int                `json:"L"`

	data *nfio.ChainData
	runs []nf.Run
}

// summarizeChain computes the chain report with defaultBootstrapReps
// resamples, counting rejection runs longer than defaultLongRun.
func summarizeChain(d *nfio.ChainData) *chainReport {
	return summarizeChainReps(d, defaultBootstrapReps, defaultLongRun)
}

// summarizeChainReps computes the chain report with reps bootstrap
// resamples, counting rejection runs longer than longRun.
func summarizeChainReps(d *nfio.ChainData, reps, longRun int) *chainReport {
	r := &chainReport{Steps: d.Len(), data: d, Seed: d.Meta.Seed, Source: d.Meta.Source, ModelHash: d.Meta.ModelHash, L: d.Meta.L, LongRun: longRun}
	r.countRejections(d.Accepted)
	r.ESS = num(nf.ESS(d.LogW))
	r.importanceSampling(d, reps)
	return r
}

// countRejections fills the acceptance and the rejection-run statistics.
func (r *chainReport) countRejections(accepted []bool) {
	for _, a := range accepted {
		if a {
			r.Accepted++
		}
	}
	r.Acceptance = num(float64(r.Accepted) / float64(len(accepted)))
	r.runs = nf.RejectionRuns(accepted)
	for _, run := range r.runs {
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
// two free-energy estimates.
func (r *chainReport) importanceSampling(d *nfio.ChainData, reps int) {
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
	boot := func(f func([]int) float64) estimate {
		rng := rand.New(rand.NewPCG(bootstrapSeed, 0))
		return estimate{num(f(all)), num(stats.Bootstrap(n, reps, rng, f))}
	}
	cols := [][2][]float64{
		{d.State.Condensate, d.Proposal.Condensate}, {d.State.Sign, d.Proposal.Sign},
		{d.State.TopologicalCharge, d.Proposal.TopologicalCharge}, {d.State.Plaquette, d.Proposal.Plaquette},
	}
	for k, name := range nfio.ChainObservableNames {
		g := stats.GammaMethod(cols[k][0], 0)
		r.Observables = append(r.Observables, observableReport{Name: name, Mean: num(g.Mean), Err: num(g.Err),
			TauInt: num(g.TauInt), TauIntErr: num(g.TauIntErr), Window: g.W, NIS: boot(nis(cols[k][1]))})
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
func (r *chainReport) summaryAttrs() ([]string, []float64) {
	var names []string
	var vals []float64
	add := func(n string, v num) { names, vals = append(names, n), append(vals, float64(v)) }
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
	add("n_steps", num(r.Steps))
	add("acceptance_rate", r.Acceptance)
	add("longest_rejection_run", num(r.LongestRun))
	return names, vals
}

// printChainReport prints the chain tables.
func printChainReport(w io.Writer, r *chainReport) {
	fmt.Fprintf(w, "\nNMCMC chain (seed %d, L = %d)\n", r.Seed, r.L)
	fmt.Fprintf(w, "  steps                      %d\n", r.Steps)
	fmt.Fprintf(w, "  acceptance rate            %.4f (%d accepted)\n", float64(r.Acceptance), r.Accepted)
	fmt.Fprintf(w, "  longest rejection run      %d steps (from step %d); %d runs > %d\n", r.LongestRun, r.LongestRunAt, r.LongRuns, r.LongRun)
	fmt.Fprintf(w, "  ESS of the proposals       %.4f\n", float64(r.ESS))
	fmt.Fprintf(w, "\n  %-19s %-26s %-18s %s\n", "observable", "chain mean ± error", "tau_int ± error", "importance sampling")
	for _, o := range r.Observables {
		fmt.Fprintf(w, "  %-19s %-26s %-18s %s\n", o.Name, pm(o.Mean, o.Err), pm(o.TauInt, o.TauIntErr), pm(o.NIS.Value, o.NIS.Err))
	}
	fmt.Fprintf(w, "\n  free energy F_q   = -mean log w  %s\n", pm(r.FreeEnergyQ.Value, r.FreeEnergyQ.Err))
	fmt.Fprintf(w, "  free energy F_NIS = -log mean w  %s\n", pm(r.FreeEnergyNIS.Value, r.FreeEnergyNIS.Err))
}

// pm formats "v ± e" with the value to the precision of its error.
func pm(v, e num) string {
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

// readTraining reads history.h5 and summarizes it.
func readTraining(path string, window int) (*trainingStats, error) {
	if err := nfio.ProbeHistory(path); err != nil { // HDF5 may crash on a damaged file
		return nil, err
	}
	rows, err := nfio.ReadHistory(path)
	if err != nil {
		return nil, err
	}
	// The final ESS averages the last window rows, at most the last quarter
	// of the run, so that it describes the end of training.
	t := &trainingStats{Rows: len(rows), Window: min(window, max(1, len(rows)/4)), FinalESS: num(math.NaN()),
		FinalESSErr: num(math.NaN()), TimePerStep: num(math.NaN()), FinalLoss: num(math.NaN()), FinalAcceptance: num(math.NaN())}
	for _, r := range rows {
		t.step = append(t.step, float64(r.Step))
		t.ess = append(t.ess, r.ESS)
	}
	if len(rows) > 0 {
		last := rows[len(rows)-1]
		t.Steps, t.Skipped, t.FinalLoss = last.Step, last.Skipped, num(last.Loss)
		if last.Step > 0 {
			t.TimePerStep = num(last.WallTime / float64(last.Step))
		}
		tail := t.ess[len(t.ess)-t.Window:]
		m, v := meanVar(tail)
		t.FinalESS = num(m)
		if len(tail) > 1 {
			t.FinalESSErr = num(math.Sqrt(v / float64(len(tail))))
		}
	}
	// The acceptance probes (issue 6): NaN where not measured.
	t.acceptance = make([]float64, len(rows))
	for i, r := range rows {
		t.acceptance[i] = r.Acceptance
	}
	for i := len(rows) - 1; i >= 0; i-- {
		if !math.IsNaN(rows[i].Acceptance) {
			t.FinalAcceptance = num(rows[i].Acceptance)
			break
		}
	}
	return t, nil
}

// meanVar returns the mean and the sample variance of x.
func meanVar(x []float64) (mean, variance float64) {
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	for _, v := range x {
		variance += (v - mean) * (v - mean)
	}
	if len(x) > 1 {
		variance /= float64(len(x) - 1)
	}
	return mean, variance
}

// printTraining prints the training table.
func printTraining(w io.Writer, t *trainingStats) {
	fmt.Fprintf(w, "Training (history.h5, %d rows)\n", t.Rows)
	fmt.Fprintf(w, "  steps                      %d (%d skipped for non-finite gradients)\n", t.Steps, t.Skipped)
	fmt.Fprintf(w, "  %-27s%s\n", fmt.Sprintf("final ESS (last %d rows)", t.Window), pm(t.FinalESS, t.FinalESSErr))
	fmt.Fprintf(w, "  final loss                 %.6g\n", float64(t.FinalLoss))
	fmt.Fprintf(w, "  time per step              %.4g s\n", float64(t.TimePerStep))
	if !math.IsNaN(float64(t.FinalAcceptance)) {
		fmt.Fprintf(w, "  last acceptance probe      %.4f\n", float64(t.FinalAcceptance))
	}
}

// runAnalyze analyses opts.Dir: whatever of history.h5 and chain.h5 exists.
// Neither is a UsageError.
// readRun reads and summarizes whatever of history.h5 and chain.h5 the run
// directory holds (each first read by a probe: HDF5 may crash on a damaged
// file).
func readRun(opts analyzeOptions) (*analysis, error) {
	hist := filepath.Join(opts.Dir, "history.h5")
	chain := filepath.Join(opts.Dir, ChainFile)
	a := &analysis{Dir: opts.Dir}
	if fileExists(hist) {
		t, err := readTraining(hist, opts.Window)
		if err != nil {
			return nil, err
		}
		a.Training = t
	}
	if fileExists(chain) {
		if err := nfio.ProbeChain(chain); err != nil {
			return nil, err
		}
		d, err := nfio.ReadChain(chain)
		if err != nil {
			return nil, err
		}
		if d.Len() > 0 {
			a.Chain = summarizeChainReps(d, opts.Bootstrap, opts.LongRun)
		}
	}
	return a, nil
}

func runAnalyze(opts analyzeOptions, stdout io.Writer) error {
	if opts.Window < 1 {
		opts.Window = defaultESSWindow
	}
	if opts.Excerpt < 1 {
		opts.Excerpt = defaultExcerpt
	}
	if opts.Bootstrap < 2 {
		opts.Bootstrap = defaultBootstrapReps
	}
	if opts.PlotDir == "" {
		opts.PlotDir = opts.Dir
	}
	a, err := readRun(opts)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	if a.Training == nil && a.Chain == nil {
		if _, err := os.Stat(opts.Dir); err != nil {
			return usagef("analyze: %v", err)
		}
		return usagef("analyze: %s has neither history.h5 nor a non-empty chain.h5", opts.Dir)
	}
	if opts.Plots {
		files, err := writePlots(a, opts)
		a.Plots = files
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
	}
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(a)
	}
	if a.Training != nil {
		printTraining(stdout, a.Training)
	}
	if a.Chain != nil {
		printChainReport(stdout, a.Chain)
	}
	if len(a.Plots) > 0 {
		fmt.Fprintln(stdout, "\nplots:")
		for _, p := range a.Plots {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
	}
	return nil
}
