package app

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	nfio "nfschwinger/io"
	"nfschwinger/sample"
)

var analyzeUsage = `usage: nfschwinger analyze [flags] DIR
       nfschwinger analyze [flags] DIR1 DIR2 ...

Reads DIR/history.h5 (training) and DIR/chain.h5 (NMCMC chain), whichever
exist, prints a training summary (steps, ESS averaged over the last window,
time per step), a chain summary (length, acceptance rate, longest run of
rejections), for every observable the chain average with its error and
integrated autocorrelation time (Γ-method of Wolff) next to the
importance-sampling estimate on the proposals (bootstrap error), and the
free energies F_q = −mean log w and F_NIS = −log mean w (bootstrap errors).
Writes the plots DIR/ess.png, DIR/acceptance.png and DIR/chain_history.png.
An HMC chain (sample.method = "hmc") has no importance sampling; analyze
prints <exp(-dH)> and <dH> instead.

` + analyzeCompareUsage + `

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
	defaultESSWindow = 100
	defaultExcerpt   = 2000
	bootstrapSeed    = 1 // fixed: the analysis of a file is reproducible
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
	fs.IntVar(&opts.LongRun, "long-run", sample.DefaultLongRun, "rejection runs longer than this are marked red")
	fs.IntVar(&opts.Bootstrap, "bootstrap", sample.DefaultBootstrapReps, "bootstrap resamples")
	pos, err := parseFlags(fs, args, analyzeUsage, stdout)
	if err != nil || pos == nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("analyze: need a run directory (or several to compare; see nfschwinger analyze -h)")
	}
	opts.Plots = !*noPlots
	if opts.Window < 1 || opts.Excerpt < 1 || opts.From < 0 || opts.LongRun < 0 || opts.Bootstrap < 2 {
		return usagef("analyze: -window and -excerpt must be ≥ 1, -from and -long-run ≥ 0, -bootstrap ≥ 2")
	}
	if len(pos) > 1 {
		return runCompare(opts, pos, stdout)
	}
	opts.Dir = pos[0]
	return runAnalyze(opts, stdout)
}

// analysis is everything analyze reports; it is also the JSON output.
type analysis struct {
	Dir      string         `json:"dir"`
	Training *trainingStats `json:"training,omitempty"`
	Chain    *sample.Report `json:"chain,omitempty"`
	Plots    []string       `json:"plots,omitempty"`
	// Replicas combines the chains of an HMC job on several ranks
	// (chain.h5, chain.replica1.h5, …); nil for one chain.
	Replicas *sample.Combined `json:"replicas,omitempty"`
}

// trainingStats summarizes history.h5.
type trainingStats struct {
	Rows        int        `json:"rows"`
	Steps       int64      `json:"steps"`         // optimizer steps completed at the last row
	FinalESS    sample.Num `json:"final_ess"`     // mean ESS over the last Window rows
	FinalESSErr sample.Num `json:"final_ess_err"` // its standard error (rows taken as independent)
	Window      int        `json:"window"`        // rows averaged
	TimePerStep sample.Num `json:"time_per_step"` // wall-clock seconds per step, over the whole run
	FinalLoss   sample.Num `json:"final_loss"`
	Skipped     int64      `json:"skipped"`
	// FinalAcceptance is the last acceptance probe (history column
	// "acceptance"), NaN/null when the history has none.
	FinalAcceptance sample.Num `json:"final_acceptance"`
	// FinalProbeESS is the ESS of the last acceptance probe's proposals
	// (history column "probe_ess") with its bootstrap error, NaN/null
	// when the history has none.
	FinalProbeESS    sample.Num `json:"final_probe_ess"`
	FinalProbeESSErr sample.Num `json:"final_probe_ess_err"`
	Recoveries       int64      `json:"recoveries"`    // rollbacks after a divergence
	LearningRate     sample.Num `json:"learning_rate"` // of the last logged step

	step, ess, wall, acceptance, probeESS, probeESSErr []float64 // for the plots
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
	t := &trainingStats{Rows: len(rows), Window: min(window, max(1, len(rows)/4)), FinalESS: sample.Num(math.NaN()),
		FinalESSErr: sample.Num(math.NaN()), TimePerStep: sample.Num(math.NaN()), FinalLoss: sample.Num(math.NaN()), FinalAcceptance: sample.Num(math.NaN())}
	for _, r := range rows {
		t.step = append(t.step, float64(r.Step))
		t.ess = append(t.ess, r.ESS)
		t.wall = append(t.wall, r.WallTime)
	}
	if len(rows) > 0 {
		last := rows[len(rows)-1]
		t.Steps, t.Skipped, t.FinalLoss = last.Step, last.Skipped, sample.Num(last.Loss)
		if last.Step > 0 {
			t.TimePerStep = sample.Num(last.WallTime / float64(last.Step))
		}
		tail := t.ess[len(t.ess)-t.Window:]
		m, v := meanVar(tail)
		t.FinalESS = sample.Num(m)
		if len(tail) > 1 {
			t.FinalESSErr = sample.Num(math.Sqrt(v / float64(len(tail))))
		}
	}
	// The acceptance probes: NaN where not measured.
	t.FinalProbeESS, t.FinalProbeESSErr = sample.Num(math.NaN()), sample.Num(math.NaN())
	for _, r := range rows {
		t.acceptance = append(t.acceptance, r.Acceptance)
		t.probeESS = append(t.probeESS, r.ProbeESS)
		t.probeESSErr = append(t.probeESSErr, r.ProbeESSErr)
		if !math.IsNaN(r.Acceptance) {
			t.FinalAcceptance = sample.Num(r.Acceptance)
		}
		if !math.IsNaN(r.ProbeESS) {
			t.FinalProbeESS, t.FinalProbeESSErr = sample.Num(r.ProbeESS), sample.Num(r.ProbeESSErr)
		}
	}
	if len(rows) > 0 {
		t.Recoveries, t.LearningRate = rows[len(rows)-1].Recoveries, sample.Num(rows[len(rows)-1].LearningRate)
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
	fmt.Fprintf(w, "  %-27s%s\n", fmt.Sprintf("final ESS (last %d rows)", t.Window), sample.FormatPM(t.FinalESS, t.FinalESSErr))
	fmt.Fprintf(w, "  final loss                 %.6g\n", float64(t.FinalLoss))
	fmt.Fprintf(w, "  time per step              %.4g s\n", float64(t.TimePerStep))
	if !math.IsNaN(float64(t.FinalAcceptance)) {
		fmt.Fprintf(w, "  last acceptance probe      %.4f\n", float64(t.FinalAcceptance))
	}
	if !math.IsNaN(float64(t.FinalProbeESS)) {
		fmt.Fprintf(w, "  last probe ESS             %s\n", sample.FormatPM(t.FinalProbeESS, t.FinalProbeESSErr))
	}
	fmt.Fprintf(w, "  learning rate (last row)   %.4g (%d recoveries from divergence)\n", float64(t.LearningRate), t.Recoveries)
}

// runAnalyze analyses opts.Dir: whatever of history.h5 and chain.h5 exists.
// Neither is a UsageError.
// readRun reads and summarizes whatever of history.h5 and chain.h5 the run
// directory holds (each first read by a probe: HDF5 may crash on a damaged
// file).
func readRun(opts analyzeOptions) (*analysis, error) {
	hist := filepath.Join(opts.Dir, "history.h5")
	chain := filepath.Join(opts.Dir, sample.ChainFile)
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
			a.Chain = sample.Summarize(d, opts.Bootstrap, opts.LongRun)
		}
		if files := sample.ReplicaFiles(opts.Dir); len(files) > 1 && a.Chain != nil {
			c, err := combineReplicas(files, a.Chain, opts)
			if err != nil {
				return nil, err
			}
			a.Replicas = c
		}
	}
	return a, nil
}

// combineReplicas summarizes the replica chains files[1:] (each probed
// first) and combines them with first, the summary of files[0].
func combineReplicas(files []string, first *sample.Report, opts analyzeOptions) (*sample.Combined, error) {
	reps := []*sample.Report{first}
	for _, p := range files[1:] {
		if err := nfio.ProbeChain(p); err != nil {
			return nil, err
		}
		d, err := nfio.ReadChain(p)
		if err != nil {
			return nil, err
		}
		if d.Len() == 0 {
			return nil, nil // a replica not started yet: nothing to combine
		}
		reps = append(reps, sample.Summarize(d, opts.Bootstrap, opts.LongRun))
	}
	c := sample.Combine(reps)
	return &c, nil
}

func runAnalyze(opts analyzeOptions, stdout io.Writer) error {
	if opts.Window < 1 {
		opts.Window = defaultESSWindow
	}
	if opts.Excerpt < 1 {
		opts.Excerpt = defaultExcerpt
	}
	if opts.Bootstrap < 2 {
		opts.Bootstrap = sample.DefaultBootstrapReps
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
		sample.PrintReport(stdout, a.Chain)
	}
	if a.Replicas != nil {
		sample.PrintCombined(stdout, *a.Replicas)
	}
	if len(a.Plots) > 0 {
		fmt.Fprintln(stdout, "\nplots:")
		for _, p := range a.Plots {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
	}
	return nil
}
