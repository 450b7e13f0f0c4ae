package app

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"nfschwinger/internal/stats"
	nfio "nfschwinger/io"
	"nfschwinger/sample"
)

// comparedRun is one run directory of `nfschwinger analyze DIR1 DIR2 …`.
type comparedRun struct {
	Dir       string         `json:"dir"`
	Label     string         `json:"label"`               // legend: estimator and seed (the directory name if unknown)
	Estimator string         `json:"estimator,omitempty"` // [train] estimator of the run's checkpoint
	Seed      *int64         `json:"seed,omitempty"`      // [train] seed
	L         int            `json:"L,omitempty"`
	Training  *trainingStats `json:"training"`
}

// estimatorGroup summarizes the runs of one estimator.
type estimatorGroup struct {
	Estimator      string     `json:"estimator"`
	Runs           int        `json:"runs"`
	FinalESSMean   sample.Num `json:"final_ess_mean"`   // mean over the runs of their final ESS
	FinalESSSpread sample.Num `json:"final_ess_spread"` // standard deviation over the runs (NaN for one run)
	TimePerStep    sample.Num `json:"time_per_step"`    // mean over the runs, seconds
}

// comparison is the output of analyze with several run directories.
type comparison struct {
	Runs       []comparedRun    `json:"runs"`
	Estimators []estimatorGroup `json:"estimators"`
	Plots      []string         `json:"plots,omitempty"`
}

// runCompare is `nfschwinger analyze DIR1 DIR2 …`: the training histories
// of several runs side by side — a table of each run's final ESS and time
// per step, their mean and spread per estimator, and the ESS moving
// averages of all runs against step and against wall time in one plot each
// (figure 2 of the paper for your own runs).
func runCompare(opts analyzeOptions, dirs []string, stdout io.Writer) error {
	var cmp comparison
	for _, dir := range dirs {
		hist := filepath.Join(dir, "history.h5")
		if !fileExists(hist) {
			return usagef("analyze: %s has no history.h5 (comparing runs needs their training histories)", dir)
		}
		t, err := readTraining(hist, opts.Window)
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		r := comparedRun{Dir: dir, Training: t}
		r.describe()
		cmp.Runs = append(cmp.Runs, r)
	}
	cmp.label()
	cmp.group()
	if opts.Plots {
		dir := opts.PlotDir
		if dir == "" {
			dir = commonParent(dirs)
		}
		files, err := cmp.plot(dir, opts.Window)
		cmp.Plots = files
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
	}
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cmp)
	}
	cmp.print(stdout)
	return nil
}

// describe reads the estimator, seed and L of the run from the params.toml
// text in its checkpoint; a run without a readable checkpoint keeps them
// unknown.
func (r *comparedRun) describe() {
	text, err := nfio.ReadCheckpointConfig(filepath.Join(r.Dir, "checkpoint.h5"))
	if err != nil {
		return
	}
	cfg, err := nfio.Parse(text)
	if err != nil {
		return
	}
	seed := cfg.Train.Seed
	r.Estimator, r.Seed, r.L = cfg.Train.Estimator, &seed, cfg.Lat.L
}

// group is the estimator the run is grouped under ("unknown" without a
// readable checkpoint).
func (r *comparedRun) group() string {
	if r.Estimator == "" {
		return "unknown"
	}
	return r.Estimator
}

// label sets the legend of every run: "estimator, seed N", with L where the
// runs differ in it, and the directory name where the run is unknown or
// the label is not unique.
func (c *comparison) label() {
	Ls := map[int]bool{}
	for _, r := range c.Runs {
		Ls[r.L] = true
	}
	seen := map[string]int{}
	for i := range c.Runs {
		r := &c.Runs[i]
		if r.Estimator == "" {
			r.Label = filepath.Base(filepath.Clean(r.Dir))
		} else {
			r.Label = fmt.Sprintf("%s, seed %d", r.Estimator, *r.Seed)
			if len(Ls) > 1 {
				r.Label += fmt.Sprintf(", L = %d", r.L)
			}
		}
		seen[r.Label]++
	}
	for i := range c.Runs {
		if r := &c.Runs[i]; seen[r.Label] > 1 {
			r.Label += " (" + filepath.Clean(r.Dir) + ")"
		}
	}
}

// group fills the per-estimator summary, in order of first appearance.
func (c *comparison) group() {
	var order []string
	byEst := map[string][]*trainingStats{}
	for _, r := range c.Runs {
		e := r.group()
		if _, ok := byEst[e]; !ok {
			order = append(order, e)
		}
		byEst[e] = append(byEst[e], r.Training)
	}
	for _, e := range order {
		var ess, tps []float64
		for _, t := range byEst[e] {
			ess = append(ess, float64(t.FinalESS))
			tps = append(tps, float64(t.TimePerStep))
		}
		m, v := meanVar(ess)
		spread := math.NaN()
		if len(ess) > 1 {
			spread = math.Sqrt(v)
		}
		tm, _ := meanVar(tps)
		c.Estimators = append(c.Estimators, estimatorGroup{Estimator: e, Runs: len(ess),
			FinalESSMean: sample.Num(m), FinalESSSpread: sample.Num(spread), TimePerStep: sample.Num(tm)})
	}
}

// print writes the tables.
func (c *comparison) print(w io.Writer) {
	width := len("run")
	for _, r := range c.Runs {
		width = max(width, len(r.Label))
	}
	fmt.Fprintf(w, "Runs (final ESS: mean ± error over the last logged rows)\n")
	fmt.Fprintf(w, "  %-*s  %8s  %-18s  %-12s  %s\n", width, "run", "steps", "final ESS", "time/step", "directory")
	for _, r := range c.Runs {
		t := r.Training
		fmt.Fprintf(w, "  %-*s  %8d  %-18s  %-12s  %s\n", width, r.Label, t.Steps, sample.FormatPM(t.FinalESS, t.FinalESSErr),
			fmt.Sprintf("%.4g s", float64(t.TimePerStep)), r.Dir)
	}
	fmt.Fprintf(w, "\nBy estimator (final ESS: mean ± spread over the runs)\n")
	for _, g := range c.Estimators {
		fmt.Fprintf(w, "  %-10s %2d run(s)  final ESS %.4f ± %.4f  time per step %.4g s\n", g.Estimator, g.Runs,
			float64(g.FinalESSMean), float64(g.FinalESSSpread), float64(g.TimePerStep))
	}
	if len(c.Plots) > 0 {
		fmt.Fprintln(w, "\nplots:")
		for _, p := range c.Plots {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}

// commonParent returns the deepest directory that holds all dirs ("." if
// they share none).
func commonParent(dirs []string) string {
	split := func(d string) []string {
		abs, err := filepath.Abs(d)
		if err != nil {
			abs = d
		}
		return strings.Split(filepath.Dir(filepath.Clean(abs)), string(filepath.Separator))
	}
	common := split(dirs[0])
	for _, d := range dirs[1:] {
		parts := split(d)
		n := 0
		for n < min(len(common), len(parts)) && common[n] == parts[n] {
			n++
		}
		common = common[:n]
	}
	if p := strings.Join(common, string(filepath.Separator)); p != "" {
		return p
	}
	if len(common) > 0 { // the root
		return string(filepath.Separator)
	}
	return "."
}

// plot writes compare_ess_step.png and compare_ess_time.png into dir: the
// ESS moving average (over window logged rows) of every run against the
// gradient step and against the training wall time, one line per run,
// a colour per estimator and a dash pattern per seed.
func (c *comparison) plot(dir string, window int) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var ests []string
	for _, g := range c.Estimators {
		ests = append(ests, g.Estimator)
	}
	var files []string
	for _, axis := range []struct {
		file, xlabel string
		x            func(*trainingStats) []float64
	}{
		{"compare_ess_step.png", "gradient step", func(t *trainingStats) []float64 { return t.step }},
		{"compare_ess_time.png", "training wall time (s)", func(t *trainingStats) []float64 { return t.wall }},
	} {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("ESS during training (moving average over %d logged steps)", window)
		p.X.Label.Text = axis.xlabel
		p.Y.Label.Text = "ESS"
		p.Add(plotter.NewGrid())
		perEst := map[string]int{}
		for _, r := range c.Runs {
			t := r.Training
			if t.Rows == 0 {
				continue
			}
			l, err := plotter.NewLine(finiteXY(axis.x(t), stats.MovingAverage(t.ess, min(window, t.Rows))))
			if err != nil {
				return files, fmt.Errorf("plot %s: %w", axis.file, err)
			}
			e := r.group()
			l.Color = plotutil.Color(slices.Index(ests, e))
			l.Dashes = plotutil.Dashes(perEst[e])
			l.Width = vg.Points(1.3)
			perEst[e]++
			p.Add(l)
			p.Legend.Add(r.Label, l)
		}
		// Bottom right: the ESS rises during training, so the lines are
		// mostly elsewhere.
		p.Legend.Top, p.Legend.Left = false, false
		p.Legend.YOffs = vg.Points(8)
		p.Y.Min = 0
		path := filepath.Join(dir, axis.file)
		if err := savePlot(p, path); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

// analyzeCompareUsage is the part of analyze's usage about several runs.
var analyzeCompareUsage = strings.TrimSpace(`
With several run directories, analyze compares their training: a table of
every run's final ESS and time per step, the mean and spread of the final
ESS per estimator, and the plots compare_ess_step.png and
compare_ess_time.png (ESS moving averages against step and wall time, one
line per run) in the directory that holds the runs (or -plots DIR).`)
