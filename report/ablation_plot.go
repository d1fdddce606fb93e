package report

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// WritePlots draws accuracy against the swept key: for each backbone one
// file per dataset and for the average over datasets
// (ablation_<key>_<backbone>_<dataset>) and a grid of all of them
// (ablation_<key>_<backbone>_all), PNG and SVG. Each line is a method (and
// shot count and series values), its points the means over seeds with ±std
// error bars; the x values are equally spaced and labelled.
func (a *Ablation) WritePlots(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plots: %w", err)
	}
	var paths []string
	colors := a.lineColors()
	for _, bb := range a.Backbones() {
		written, err := writeDatasetFigures(dir, bb, a.Datasets(bb), datasetFigures{
			base: "ablation_" + fileName(a.Options.X) + "_" + fileName(bb), legendWidth: 2.6, legendFont: 11,
			panel: func(ds, title string) (*plot.Plot, error) { return a.panel(a.Select(bb, ds), colors, title) },
		})
		if err != nil {
			return nil, err
		}
		paths = append(paths, written...)
	}
	return paths, nil
}

// lineColors gives every line one colour in all panels: a method with a
// single line takes its registry colour, the lines of a method with
// several take the palette in order.
func (a *Ablation) lineColors() map[string]color.RGBA {
	perMethod := map[string][]string{}
	var order []string
	info := map[string]MethodInfo{}
	for _, s := range a.Stats {
		l := s.line()
		if !slices.Contains(perMethod[s.Method], l) {
			perMethod[s.Method] = append(perMethod[s.Method], l)
			order = append(order, l)
			info[l] = s.MethodInfo
		}
	}
	out := map[string]color.RGBA{}
	var others []string
	next := 0
	for _, l := range order {
		mi := info[l]
		if len(perMethod[mi.Name]) == 1 {
			out[l] = methodColor(mi, &others)
			continue
		}
		out[l] = rankColors[(3+next)%len(rankColors)]
		next++
	}
	return out
}

func (a *Ablation) panel(stats []AblationStat, colors map[string]color.RGBA, title string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = a.Options.X
	p.Y.Label.Text = "top-1 accuracy (%)"
	p.NominalX(a.XValues...)
	p.Add(plotter.NewGrid())
	p.Legend.TextStyle.Font.Size = 9
	for _, line := range a.lines(stats) {
		var pts errPoints
		for _, s := range line {
			std := s.Std
			if math.IsNaN(std) {
				std = 0
			}
			pts.XYs = append(pts.XYs, plotter.XY{X: float64(slices.Index(a.XValues, s.X)), Y: s.Mean})
			pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{std, std})
		}
		col := colors[line[0].line()]
		l, sc, err := plotter.NewLinePoints(pts.XYs)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", title, err)
		}
		l.Color, l.Width = col, vg.Points(1.5)
		sc.Color, sc.Shape, sc.Radius = col, draw.CircleGlyph{}, vg.Points(2.5)
		bars, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", title, err)
		}
		bars.Color = col
		p.Add(l, sc, bars)
		p.Legend.Add(a.lineLabel(line[0]), l, sc)
	}
	return p, nil
}
