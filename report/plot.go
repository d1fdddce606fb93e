package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/clipadapter/clipgo/rundir"
)

// plotFormats are the formats WritePlots writes.
var plotFormats = []string{"png", "svg"}

// rankColors colour methods by their registry rank, so a method has the
// same colour in every panel and every report; unranked methods take
// otherColors in order of appearance.
var rankColors = []color.RGBA{
	{R: 0x33, G: 0x33, B: 0x33, A: 0xff}, // zero-shot CLIP
	{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}, // linear probe
	{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // CoOp
	{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // CLIP-Adapter
	{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // Tip-Adapter
	{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // Tip-Adapter-F
	{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
	{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff},
	{R: 0xbc, G: 0xbd, B: 0x22, A: 0xff},
}

var otherColors = []color.RGBA{{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, {R: 0xae, G: 0xc7, B: 0xe8, A: 0xff}, {R: 0xff, G: 0xbb, B: 0x78, A: 0xff}}

func methodColor(m MethodInfo, others *[]string) color.RGBA {
	if m.Rank >= 0 && m.Rank < len(rankColors) {
		return rankColors[m.Rank]
	}
	i := slices.Index(*others, m.Name)
	if i < 0 {
		*others = append(*others, m.Name)
		i = len(*others) - 1
	}
	return otherColors[i%len(otherColors)]
}

// WritePlots draws accuracy against shots per class, like the paper's main
// figure: for each backbone one file per dataset and for the average over
// datasets (<backbone>_<dataset>), and one grid of all of them
// (<backbone>_all), each as PNG and SVG. Our means are solid lines with
// filled markers and ±std error bars; the published numbers are dashed
// lines with hollow markers; zero-shot CLIP is a square at 0 shots.
func (t *Table) WritePlots(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plots: %w", err)
	}
	var paths []string
	for _, bb := range t.Backbones() {
		axis := shotColumns(t.selectBackbone(bb))
		written, err := writeDatasetFigures(dir, bb, t.Datasets(bb), datasetFigures{
			base: fileName(bb), legendWidth: 2.2, legendFont: 12, gridAlways: true,
			panel: func(ds, title string) (*plot.Plot, error) { return accuracyPlot(t.Select(bb, ds), axis, title) },
		})
		if err != nil {
			return nil, err
		}
		paths = append(paths, written...)
	}
	return paths, nil
}

// datasetFigures describes the figures of one backbone, a panel per
// dataset, for writeDatasetFigures.
type datasetFigures struct {
	// base starts the file names: <base>_<dataset> and <base>_all.
	base string
	// legendWidth is the width of a one-dataset figure's legend column
	// (inches; the panel's is 5).
	legendWidth float64
	// legendFont is the font size of the grid's legend.
	legendFont vg.Length
	// gridAlways writes the grid for a single dataset too; otherwise that
	// dataset's file is the whole figure.
	gridAlways bool
	// panel draws one dataset's panel under title.
	panel func(ds, title string) (*plot.Plot, error)
}

// writeDatasetFigures writes, for the datasets dss of backbone bb, one
// figure per dataset (the panel with its legend beside it) and a grid of
// every panel, four to a row, led by the average over datasets (as in the
// paper's figures) with the first panel's legend (the average: every
// line) in the slot after the last; each as PNG and SVG under dir. It
// returns the files written.
func writeDatasetFigures(dir, bb string, dss []string, f datasetFigures) ([]string, error) {
	if i := slices.Index(dss, AverageDataset); i > 0 {
		dss = append([]string{AverageDataset}, append(dss[:i:i], dss[i+1:]...)...)
	}
	var paths []string
	save := func(grid [][]*plot.Plot, widths []float64, height float64, base string) error {
		for _, format := range plotFormats {
			p := filepath.Join(dir, base+"."+format)
			if err := saveFigure(grid, widths, height, format, p); err != nil {
				return err
			}
			paths = append(paths, p)
		}
		return nil
	}
	var panels []*plot.Plot
	var legend plot.Legend
	for i, ds := range dss {
		title := ds
		if ds == AverageDataset {
			title = "Average over datasets"
		}
		single, err := f.panel(ds, fmt.Sprintf("%s (%s)", title, bb))
		if err != nil {
			return nil, err
		}
		if err := save([][]*plot.Plot{{single, legendPanel(single)}}, []float64{5, f.legendWidth}, 4, f.base+"_"+fileName(ds)); err != nil {
			return nil, err
		}
		panel, err := f.panel(ds, title)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			legend = panel.Legend
		}
		panel.Legend = plot.NewLegend()
		panels = append(panels, panel)
	}
	if len(dss) == 1 && !f.gridAlways {
		return paths, nil
	}
	lp := plot.New()
	lp.Legend = legend
	lp.Legend.TextStyle.Font.Size = f.legendFont
	panels = append(panels, legendPanel(lp))
	grid, widths := figureGrid(panels, 4)
	if err := save(grid, widths, 3.4, f.base+"_all"); err != nil {
		return nil, err
	}
	return paths, nil
}

func (t *Table) selectBackbone(bb string) []Stat {
	var out []Stat
	for _, s := range t.Stats {
		if s.Backbone == bb {
			out = append(out, s)
		}
	}
	return out
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileName(s string) string { return unsafeName.ReplaceAllString(s, "-") }

// errPoints are points with symmetric y error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// accuracyPlot draws one panel: x is the position of the shot count on
// axis (equally spaced, labelled with the counts).
func accuracyPlot(stats []Stat, axis []int, title string) (*plot.Plot, error) {
	const legend = true
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "shots per class"
	p.Y.Label.Text = "top-1 accuracy (%)"
	labels := make([]string, len(axis))
	for i, k := range axis {
		labels[i] = strconv.Itoa(k)
	}
	p.NominalX(labels...)
	p.Add(plotter.NewGrid())
	p.Legend.TextStyle.Font.Size = 9
	var others []string
	for _, mi := range methodsOf(stats) {
		m := mi.Name
		col := methodColor(mi, &others)
		var ours, pub errPoints
		var oursZero, pubZero plotter.XYs
		for _, s := range stats {
			if s.Method != m {
				continue
			}
			x := float64(slices.Index(axis, s.Shots))
			std := s.Std
			if math.IsNaN(std) {
				std = 0
			}
			if s.Shots == 0 {
				oursZero = append(oursZero, plotter.XY{X: x, Y: s.Mean})
			} else {
				ours.XYs = append(ours.XYs, plotter.XY{X: x, Y: s.Mean})
				ours.YErrors = append(ours.YErrors, struct{ Low, High float64 }{std, std})
			}
			if s.Published != nil {
				if s.Shots == 0 {
					pubZero = append(pubZero, plotter.XY{X: x, Y: s.Published.Top1})
				} else {
					pub.XYs = append(pub.XYs, plotter.XY{X: x, Y: s.Published.Top1})
				}
			}
		}
		label := mi.Label
		if len(ours.XYs) > 0 {
			line, pts, err := plotter.NewLinePoints(ours.XYs)
			if err != nil {
				return nil, fmt.Errorf("plot %s %s: %w", title, m, err)
			}
			line.Color, line.Width = col, vg.Points(1.5)
			pts.Color, pts.Shape, pts.Radius = col, draw.CircleGlyph{}, vg.Points(2.5)
			bars, err := plotter.NewYErrorBars(ours)
			if err != nil {
				return nil, fmt.Errorf("plot %s %s: %w", title, m, err)
			}
			bars.Color = col
			p.Add(line, pts, bars)
			if legend {
				p.Legend.Add(label, line, pts)
			}
		}
		if len(oursZero) > 0 {
			pts, err := plotter.NewScatter(oursZero)
			if err != nil {
				return nil, fmt.Errorf("plot %s %s: %w", title, m, err)
			}
			pts.Color, pts.Shape, pts.Radius = col, draw.BoxGlyph{}, vg.Points(3.5)
			p.Add(pts)
			if legend && len(ours.XYs) == 0 {
				p.Legend.Add(label, pts)
			}
		}
		if len(pub.XYs) > 0 {
			line, pts, err := plotter.NewLinePoints(pub.XYs)
			if err != nil {
				return nil, fmt.Errorf("plot %s %s: %w", title, m, err)
			}
			line.Color, line.Width, line.Dashes = col, vg.Points(1), []vg.Length{vg.Points(4), vg.Points(3)}
			pts.Color, pts.Shape, pts.Radius = col, draw.RingGlyph{}, vg.Points(3)
			p.Add(line, pts)
			if legend {
				p.Legend.Add(label+" (published)", line, pts)
			}
		}
		if len(pubZero) > 0 {
			pts, err := plotter.NewScatter(pubZero)
			if err != nil {
				return nil, fmt.Errorf("plot %s %s: %w", title, m, err)
			}
			pts.Color, pts.Shape, pts.Radius = col, draw.SquareGlyph{}, vg.Points(4.5)
			p.Add(pts)
			if legend && len(pub.XYs) == 0 {
				p.Legend.Add(label+" (published)", pts)
			}
		}
	}
	return p, nil
}

// legendPanel returns a plot that shows only p's legend, to sit beside
// the panels; p keeps no legend.
func legendPanel(p *plot.Plot) *plot.Plot {
	lp := plot.New()
	lp.HideAxes()
	lp.Legend = p.Legend
	lp.Legend.Top, lp.Legend.Left = true, true
	lp.Legend.XOffs, lp.Legend.YOffs = 0, -8*vg.Millimeter
	p.Legend = plot.NewLegend()
	return lp
}

// saveFigure draws a grid of plots (nil slots stay empty) into one file:
// column c is widths[c] inches wide, every row height inches high.
func saveFigure(plots [][]*plot.Plot, widths []float64, height float64, format, path string) error {
	total := 0.0
	for _, w := range widths {
		total += w
	}
	w, h := vg.Length(total)*vg.Inch, vg.Length(height*float64(len(plots)))*vg.Inch
	var canvas vg.CanvasWriterTo
	switch format {
	case "png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	case "svg":
		canvas = vgsvg.New(w, h)
	default:
		return fmt.Errorf("plot %s: unknown format %q", path, format)
	}
	dc := draw.New(canvas)
	// White background (PNG canvases start transparent).
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	pad := 4 * vg.Millimeter
	for r, row := range plots {
		top := h - vg.Length(float64(r)*height)*vg.Inch
		left := vg.Length(0)
		for c, p := range row {
			cw := vg.Length(widths[c]) * vg.Inch
			if p != nil {
				cell := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
					Min: vg.Point{X: left + pad, Y: top - vg.Length(height)*vg.Inch + pad},
					Max: vg.Point{X: left + cw - pad, Y: top - pad},
				}}
				p.Draw(cell)
			}
			left += cw
		}
	}
	var buf bytes.Buffer
	if _, err := canvas.WriteTo(&buf); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return rundir.WriteFileAtomic(path, buf.Bytes())
}

// figureGrid lays panels out four to a row, each width inches wide.
func figureGrid(panels []*plot.Plot, width float64) ([][]*plot.Plot, []float64) {
	cols := min(4, len(panels))
	rows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
		for c := range grid[r] {
			if i := r*cols + c; i < len(panels) {
				grid[r][c] = panels[i]
			}
		}
	}
	widths := make([]float64, cols)
	for c := range widths {
		widths[c] = width
	}
	return grid, widths
}
