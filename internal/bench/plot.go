package bench

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// benchPlotColors are the line colours of the estimators, in the order of
// their first appearance in the rows.
var benchPlotColors = []color.RGBA{
	{R: 214, G: 39, B: 40, A: 255},  // red
	{R: 31, G: 119, B: 180, A: 255}, // blue
	{R: 44, G: 160, B: 44, A: 255},  // green
	{R: 255, G: 127, B: 14, A: 255}, // orange
	{R: 148, G: 103, B: 189, A: 255},
}

// writeStepPlot writes a PNG (the extension of path chooses the format) of
// the median time per gradient step against L, one line with markers per
// estimator.
func writeStepPlot(path string, rows []StepRow) error {
	p := plot.New()
	if len(rows) > 0 {
		r := rows[0]
		p.Title.Text = fmt.Sprintf("Time per gradient step (batch %d, micro-batch %d, %d layers)", r.Batch, r.MicroBatch, r.Layers)
	}
	p.X.Label.Text = "L"
	p.Y.Label.Text = "seconds per step"
	p.Add(plotter.NewGrid())
	var ests []string
	var ticks []plot.Tick
	for _, r := range rows {
		if !slices.Contains(ests, r.label()) {
			ests = append(ests, r.label())
		}
		if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Value == float64(r.L) }) {
			ticks = append(ticks, plot.Tick{Value: float64(r.L), Label: fmt.Sprint(r.L)})
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	for i, e := range ests {
		var xy plotter.XYs
		for _, r := range rows {
			if r.label() == e {
				xy = append(xy, plotter.XY{X: float64(r.L), Y: r.StepSeconds})
			}
		}
		slices.SortFunc(xy, func(a, b plotter.XY) int { return int(a.X - b.X) })
		ln, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		c := benchPlotColors[i%len(benchPlotColors)]
		ln.Color, ln.Width = c, vg.Points(1.5)
		pts.Color, pts.Shape = c, draw.CircleGlyph{}
		p.Add(ln, pts)
		p.Legend.Add(e, ln, pts)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Min = 0
	if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}
