package experiment

import (
	"context"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/configs"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/report"
	"github.com/clipadapter/clipgo/rundir"
)

// The demo's zero-shot CLIP, linear probe and CLIP-Adapter runs save their
// test features; the manifold plot of them decodes as PNG and SVG, and the
// classes separate better (silhouette) for the methods trained to separate
// them than for zero-shot CLIP, whose random text side is at chance.
func TestManifoldOfDemoRuns(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := []string{"model.device=cpu", "data.root=" + filepath.Join(dir, "data"), "output.dir=" + dir,
		"output.save_test_features=true", "data.num_workers=1"}
	var dirs []string
	for _, m := range []struct {
		name string
		sets []string
	}{
		{"zeroshot", nil},
		{"linear-probe", nil},
		{"clip-adapter", []string{"method.alpha=0.8", "train.optimizer=adamw"}},
	} {
		cfg, err := config.Parse(configs.Demo, append(append(slices.Clone(base), "method.name="+m.name), m.sets...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Run(context.Background(), Options{Config: cfg, Progress: io.Discard, Log: log}); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		d := filepath.Join(dir, cfg.RunName())
		dirs = append(dirs, d)
		shape, _, err := npy.Read(filepath.Join(d, rundir.TestFeaturesFile))
		if err != nil || len(shape) != 2 || shape[1] != 64 {
			t.Fatalf("%s: test features %v, %v", m.name, shape, err)
		}
		lshape, labels, err := npy.ReadInt64(filepath.Join(d, rundir.TestLabelsFile))
		if err != nil || lshape[0] != shape[0] || slices.Max(labels) != 9 {
			t.Fatalf("%s: labels %v, %v", m.name, lshape, err)
		}
	}
	// CLIP-Adapter's saved features are its adapted ones, not CLIP's.
	_, raw, _ := npy.Read(filepath.Join(dirs[0], rundir.TestFeaturesFile))
	_, adapted, _ := npy.Read(filepath.Join(dirs[2], rundir.TestFeaturesFile))
	if slices.Equal(raw, adapted) {
		t.Error("CLIP-Adapter saved the raw CLIP features")
	}

	panels, err := report.Manifold([]string{dirs[2], dirs[0], dirs[1]}, report.ManifoldOptions{TSNE: report.TSNEOptions{Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	sil := map[string]float64{}
	var order []string
	for _, p := range panels {
		sil[p.Label] = p.Silhouette
		order = append(order, p.Label)
		t.Logf("%-15s silhouette %.3f in 2-D, %.3f in the %d logits", p.Label, p.Silhouette, p.SilhouetteInput, p.Dim)
	}
	if !slices.Equal(order, []string{"Zero-shot CLIP", "Linear probe", "CLIP-Adapter"}) {
		t.Errorf("panels %q, want the registry's order", order)
	}
	for _, m := range []string{"Linear probe", "CLIP-Adapter"} {
		if sil[m] <= sil["Zero-shot CLIP"] {
			t.Errorf("%s silhouette %.3f, not above zero-shot's %.3f", m, sil[m], sil["Zero-shot CLIP"])
		}
	}
	out := filepath.Join(dir, "report")
	paths, err := report.WriteManifold(panels, report.SpaceLogits, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("wrote %q", paths)
	}
	f, err := os.Open(filepath.Join(out, "manifold.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Three panels side by side, every class's colour drawn.
	b := img.Bounds()
	if b.Dx() < 2*b.Dy() {
		t.Errorf("manifold.png is %v: want three panels in a row", b)
	}
	for c := 0; c < 10; c++ {
		want := report.ClassColor(c)
		found := false
		for y := b.Min.Y; y < b.Max.Y && !found; y++ {
			for x := b.Min.X; x < b.Max.X && !found; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				found = r>>8 == uint32(want.R) && g>>8 == uint32(want.G) && bl>>8 == uint32(want.B)
			}
		}
		if !found {
			t.Errorf("no point of class %d's colour in manifold.png", c)
		}
	}
	sf, err := os.Open(filepath.Join(out, "manifold.svg"))
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	dec := xml.NewDecoder(sf)
	var texts []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("manifold.svg: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok {
			texts = append(texts, string(cd))
		}
	}
	for _, p := range panels {
		want := "silhouette " + strconvF(p.Silhouette)
		if !slices.ContainsFunc(texts, func(s string) bool { return s == want }) {
			t.Errorf("manifold.svg has no title %q", want)
		}
	}
}

func strconvF(x float64) string { return fmt.Sprintf("%.3f", x) }
