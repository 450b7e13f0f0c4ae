package app

import (
	"fmt"
	"image/color"
	"math"
	"nfschwinger/nf"
	"nfschwinger/sample"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"nfschwinger/internal/stats"
)

// Plot sizes and colours.
var (
	plotWidth  = 16 * vg.Centimeter
	plotHeight = 10 * vg.Centimeter
	grey       = color.RGBA{R: 170, G: 170, B: 170, A: 255}
	blue       = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	red        = color.RGBA{R: 214, G: 39, B: 40, A: 255}
)

// writePlots writes the plots that the available data allow and returns
// their paths: ess.png (training ESS against step with its moving
// average), acceptance.png (acceptance probes against step, if the
// history has them), chain_history.png (an excerpt of the Monte Carlo
// history of the sign and the condensate, long rejection runs in red).
func writePlots(a *analysis, opts analyzeOptions) ([]string, error) {
	var files []string
	if err := os.MkdirAll(opts.PlotDir, 0o755); err != nil {
		return nil, err
	}
	if t := a.Training; t != nil && t.Rows > 0 {
		path := filepath.Join(opts.PlotDir, "ess.png")
		if err := plotESS(path, t, t.Window); err != nil {
			return files, err
		}
		files = append(files, path)
		if xy := finiteXY(t.step, t.acceptance); len(xy) > 0 {
			path := filepath.Join(opts.PlotDir, "acceptance.png")
			if err := plotAcceptance(path, xy); err != nil {
				return files, err
			}
			files = append(files, path)
		}
	}
	if c := a.Chain; c != nil && c.Steps > 0 {
		path := filepath.Join(opts.PlotDir, "chain_history.png")
		if err := plotChainHistory(path, c, opts); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

// finiteXY pairs x and y where y is finite.
func finiteXY(x, y []float64) plotter.XYs {
	var xy plotter.XYs
	for i := range min(len(x), len(y)) {
		if !math.IsNaN(y[i]) && !math.IsInf(y[i], 0) {
			xy = append(xy, plotter.XY{X: x[i], Y: y[i]})
		}
	}
	return xy
}

func plotESS(path string, t *trainingStats, window int) error {
	p := plot.New()
	p.Title.Text = "Effective sample size during training"
	p.X.Label.Text = "gradient step"
	p.Y.Label.Text = "ESS"
	raw, err := plotter.NewLine(finiteXY(t.step, t.ess))
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	raw.Color = grey
	avg, err := plotter.NewLine(finiteXY(t.step, stats.MovingAverage(t.ess, window)))
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	avg.Color, avg.Width = blue, vg.Points(1.5)
	p.Add(plotter.NewGrid(), raw, avg)
	p.Legend.Add("training batches (logged steps)", raw)
	p.Legend.Add(fmt.Sprintf("moving average over %d logged steps", window), avg)
	if err := addProbeESS(p, t); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Min = 0
	return savePlot(p, path)
}

// addProbeESS draws the acceptance probes' ESS with their bootstrap error
// bars, where measured.
func addProbeESS(p *plot.Plot, t *trainingStats) error {
	var pts errorPoints
	for i := range t.step {
		if !math.IsNaN(t.probeESS[i]) {
			pts.XYs = append(pts.XYs, plotter.XY{X: t.step[i], Y: t.probeESS[i]})
			pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{t.probeESSErr[i], t.probeESSErr[i]})
		}
	}
	if len(pts.XYs) == 0 {
		return nil
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	bars, err := plotter.NewYErrorBars(pts)
	if err != nil {
		return err
	}
	s.Color, bars.Color = red, red
	p.Add(s, bars)
	p.Legend.Add("acceptance probes (train.acceptance_samples proposals each)", s)
	return nil
}

// errorPoints are points with symmetric y errors, for plotter's error
// bars.
type errorPoints struct {
	plotter.XYs
	plotter.YErrors
}

func plotAcceptance(path string, xy plotter.XYs) error {
	p := plot.New()
	p.Title.Text = "Metropolis acceptance during training"
	p.X.Label.Text = "gradient step"
	p.Y.Label.Text = "acceptance rate"
	l, s, err := plotter.NewLinePoints(xy)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	l.Color, s.Color = blue, blue
	p.Add(plotter.NewGrid(), l, s)
	p.Y.Min, p.Y.Max = 0, 1
	p.X.Tick.Marker = integerTicks{}
	return savePlot(p, path)
}

// plotChainHistory draws steps [from, from+excerpt) of the sign and the
// condensate of the chain, one panel each, with the rejection runs longer
// than opts.LongRun in red.
// markLongRuns draws in red, on the excerpt [from, to) of the series y,
// every rejection run longer than longRun (it repeats the state of the step
// before it).
func markLongRuns(p *plot.Plot, runs []nf.Run, y []float64, from, to, longRun int) error {
	for _, r := range runs {
		if r.Len <= longRun || r.Start+r.Len <= from || r.Start >= to {
			continue
		}
		a, b := max(r.Start-1, from), min(r.Start+r.Len-1, to-1)
		seg, err := plotter.NewLine(plotter.XYs{{X: float64(a), Y: y[b]}, {X: float64(b), Y: y[b]}})
		if err != nil {
			return err
		}
		seg.Color, seg.Width = red, vg.Points(2.5)
		p.Add(seg)
	}
	return nil
}

func plotChainHistory(path string, c *sample.Report, opts analyzeOptions) error {
	from := min(opts.From, c.Steps-1)
	to := min(from+opts.Excerpt, c.Steps)
	series := []struct {
		name string
		y    []float64
	}{{"sign of det D", c.Data.State.Sign}, {"condensate", c.Data.State.Condensate}}
	rows := make([][]*plot.Plot, len(series))
	for k, s := range series {
		p := plot.New()
		p.Y.Label.Text = s.name
		if k == len(series)-1 {
			p.X.Label.Text = "chain step"
		} else {
			p.Title.Text = fmt.Sprintf("Monte Carlo history, steps %d to %d (red: rejection runs > %d steps)", from, to-1, opts.LongRun)
		}
		xy := make(plotter.XYs, 0, to-from)
		for i := from; i < to; i++ {
			xy = append(xy, plotter.XY{X: float64(i), Y: s.y[i]})
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		l.Width = vg.Points(0.6)
		p.Add(l)
		if k == 0 { // the sign of det D is ±1: show both values
			p.Y.Min, p.Y.Max = -1.2, 1.2
			p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: -1, Label: "−1"}, {Value: 0, Label: "0"}, {Value: 1, Label: "+1"}})
		}
		if err := markLongRuns(p, c.Runs, s.y, from, to, opts.LongRun); err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		p.X.Min, p.X.Max = float64(from), float64(max(to-1, from+1))
		rows[k] = []*plot.Plot{p}
	}
	img := vgimg.New(plotWidth, 1.4*plotHeight)
	dc := draw.New(img)
	canvases := plot.Align(rows, draw.Tiles{Rows: len(rows), Cols: 1, PadY: vg.Millimeter}, dc)
	for k := range rows {
		rows[k][0].Draw(canvases[k][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}

// savePlot writes p as PNG to path.
func savePlot(p *plot.Plot, path string) error {
	if err := p.Save(plotWidth, plotHeight, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// integerTicks labels an axis of step numbers without decimals.
type integerTicks struct{}

// Ticks returns gonum/plot's default ticks with integer labels.
func (integerTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', 0, 64)
		}
	}
	return ts
}
