package report

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"image/color"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/rundir"
)

// Files written by WriteManifold.
const (
	ManifoldFile    = "manifold" // .png, .svg
	ManifoldCSVFile = "manifold.csv"
)

// Manifold spaces: what a panel embeds.
const (
	// SpaceLogits (the default) embeds the per-image class logits: the
	// image feature as the method's classifier sees it, expressed through
	// its class weights. Every method changes them (CoOp through its
	// prompts, the linear probe through its weights, CLIP-Adapter through
	// its adapted features and classifier).
	SpaceLogits = "logits"
	// SpaceFeatures embeds the test image features as the method's
	// classifier compares them (CLIP-Adapter's adapted features; the raw
	// CLIP features for methods that leave them unchanged, so zero-shot
	// CLIP, CoOp and the linear probe share one picture), L2-normalized
	// as the cosine classifier sees them.
	SpaceFeatures = "features"
)

// ManifoldOptions configures Manifold.
type ManifoldOptions struct {
	// Space is SpaceLogits (default) or SpaceFeatures.
	Space string
	// MaxPoints caps the test images embedded per run (every k-th image,
	// the same ones for runs on the same test set); 0 means 1000.
	MaxPoints int
	TSNE      TSNEOptions
}

// ManifoldPanel is one run's embedding.
type ManifoldPanel struct {
	Dir        string
	Label      string
	MethodInfo MethodInfo
	// N is the number of points embedded, Dim the input dimension.
	N, Dim int
	Labels []int
	// Embedding holds N rows of (x, y).
	Embedding []float64
	// Silhouette is the mean silhouette of the classes in the 2-D
	// embedding (the number on the panel); SilhouetteInput the same in
	// the embedded space itself (Euclidean, after normalization for
	// features).
	Silhouette, SilhouetteInput float64
}

// Manifold reads the saved test features (output.save_test_features) of
// each run directory, embeds them with t-SNE and scores the classes'
// separation with the silhouette coefficient.
func Manifold(dirs []string, o ManifoldOptions) ([]ManifoldPanel, error) {
	if o.Space == "" {
		o.Space = SpaceLogits
	}
	if o.MaxPoints == 0 {
		o.MaxPoints = 1000
	}
	var file string
	switch o.Space {
	case SpaceFeatures:
		file = rundir.TestFeaturesFile
	case SpaceLogits:
		file = rundir.TestLogitsFile
	default:
		return nil, fmt.Errorf("manifold: space %q: want %s or %s", o.Space, SpaceFeatures, SpaceLogits)
	}
	if o.MaxPoints < 3 {
		return nil, fmt.Errorf("manifold: at most %d points: want at least 3", o.MaxPoints)
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("manifold: no run directories")
	}
	var panels []ManifoldPanel
	labelCount := map[string]int{}
	for _, dir := range dirs {
		res, err := rundir.ReadResult(dir)
		if err != nil {
			return nil, fmt.Errorf("manifold: %s is not a finished run: %w", dir, err)
		}
		path := filepath.Join(dir, file)
		shape, data, err := npy.Read(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("manifold: %s has no %s: run it with output.save_test_features = true (-set output.save_test_features=true)", dir, file)
		}
		if err != nil {
			return nil, fmt.Errorf("manifold: %w", err)
		}
		lpath := filepath.Join(dir, rundir.TestLabelsFile)
		lshape, labels, err := npy.ReadInt64(lpath)
		if err != nil {
			return nil, fmt.Errorf("manifold: %w", err)
		}
		if len(shape) != 2 || len(lshape) != 1 || shape[0] != lshape[0] || shape[0] < 3 {
			return nil, fmt.Errorf("manifold: %s has shape %v and %s %v: want [N, D] and [N], N >= 3", path, shape, lpath, lshape)
		}
		n, d := shape[0], shape[1]
		step := (n + o.MaxPoints - 1) / o.MaxPoints
		var x []float64
		var y []int
		for i := 0; i < n; i += step {
			row := data[i*d : (i+1)*d]
			norm := 1.0
			if o.Space == SpaceFeatures {
				s := 0.0
				for _, v := range row {
					s += float64(v) * float64(v)
				}
				if s > 0 {
					norm = math.Sqrt(s)
				}
			}
			for _, v := range row {
				x = append(x, float64(v)/norm)
			}
			y = append(y, int(labels[i]))
		}
		m := len(y)
		p := ManifoldPanel{Dir: dir, N: m, Dim: d, Labels: y, MethodInfo: methodInfoOf(Run{Method: res.Method, Result: res})}
		p.Label = p.MethodInfo.Label
		labelCount[p.Label]++
		if p.SilhouetteInput, err = Silhouette(x, m, d, y); err != nil {
			return nil, fmt.Errorf("manifold: %s: %w", dir, err)
		}
		if p.Embedding, err = TSNE(x, m, d, o.TSNE); err != nil {
			return nil, fmt.Errorf("manifold: %s: %w", dir, err)
		}
		if p.Silhouette, err = Silhouette(p.Embedding, m, 2, y); err != nil {
			return nil, fmt.Errorf("manifold: %s: %w", dir, err)
		}
		panels = append(panels, p)
	}
	// Panels in the registry's order (zero-shot CLIP first), runs of one
	// method in the order given.
	sort.SliceStable(panels, func(i, j int) bool { return panels[i].MethodInfo.less(panels[j].MethodInfo) })
	// Runs of the same method are told apart by their directories.
	for i := range panels {
		if labelCount[panels[i].Label] > 1 {
			panels[i].Label += " (" + filepath.Base(panels[i].Dir) + ")"
		}
	}
	return panels, nil
}

// classColors is a 20-colour palette for classes (cycled beyond 20).
var classColors = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xd6, 0x27, 0x28, 0xff},
	{0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff}, {0x7f, 0x7f, 0x7f, 0xff},
	{0xbc, 0xbd, 0x22, 0xff}, {0x17, 0xbe, 0xcf, 0xff}, {0xae, 0xc7, 0xe8, 0xff}, {0xff, 0xbb, 0x78, 0xff},
	{0x98, 0xdf, 0x8a, 0xff}, {0xff, 0x98, 0x96, 0xff}, {0xc5, 0xb0, 0xd5, 0xff}, {0xc4, 0x9c, 0x94, 0xff},
	{0xf7, 0xb6, 0xd2, 0xff}, {0xc7, 0xc7, 0xc7, 0xff}, {0xdb, 0xdb, 0x8d, 0xff}, {0x9e, 0xda, 0xe5, 0xff},
}

// ClassColor is the colour of class label c in manifold plots.
func ClassColor(c int) color.RGBA {
	if c < 0 {
		c = -c
	}
	return classColors[c%len(classColors)]
}

// WriteManifold draws one panel per run (points coloured by class, the
// silhouette in the title) side by side, four per row, as manifold.png
// and manifold.svg, and writes manifold.csv (run, label, points,
// dimension, silhouettes), into dir.
func WriteManifold(panels []ManifoldPanel, space, dir string) ([]string, error) {
	if len(panels) == 0 {
		return nil, fmt.Errorf("manifold: no runs to draw")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("manifold: %w", err)
	}
	var plots []*plot.Plot
	for _, pn := range panels {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s\nsilhouette %.3f", pn.Label, pn.Silhouette)
		p.HideAxes()
		byClass := map[int]plotter.XYs{}
		var classes []int
		for i, c := range pn.Labels {
			if _, ok := byClass[c]; !ok {
				classes = append(classes, c)
			}
			byClass[c] = append(byClass[c], plotter.XY{X: pn.Embedding[2*i], Y: pn.Embedding[2*i+1]})
		}
		for _, c := range classes {
			sc, err := plotter.NewScatter(byClass[c])
			if err != nil {
				return nil, fmt.Errorf("manifold %s: %w", pn.Dir, err)
			}
			sc.Color, sc.Shape, sc.Radius = ClassColor(c), draw.CircleGlyph{}, vg.Points(2.2)
			p.Add(sc)
		}
		plots = append(plots, p)
	}
	grid, widths := figureGrid(plots, 3.6)
	var paths []string
	for _, f := range plotFormats {
		path := filepath.Join(dir, ManifoldFile+"."+f)
		if err := saveFigure(grid, widths, 3.8, f, path); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"run", "label", "space", "points", "dim", "silhouette_2d", "silhouette_input"})
	for _, pn := range panels {
		w.Write([]string{pn.Dir, pn.Label, space, strconv.Itoa(pn.N), strconv.Itoa(pn.Dim),
			fmtFloat(pn.Silhouette, 4), fmtFloat(pn.SilhouetteInput, 4)})
	}
	w.Flush()
	path := filepath.Join(dir, ManifoldCSVFile)
	if err := rundir.WriteFileAtomic(path, b.Bytes()); err != nil {
		return nil, err
	}
	return append(paths, path), nil
}
