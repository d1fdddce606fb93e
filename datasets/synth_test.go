package datasets

import (
	"bytes"
	"image"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSynthRoundTrip(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	if err := Synth(dir, 10, 30, 7); err != nil {
		t.Fatal(err)
	}
	t.Logf("Synth(10 classes x 30 images): %v", time.Since(start))
	d, err := Load(SynthName, dir)
	if err != nil {
		t.Fatal(err)
	}
	// 30 per class split 50/20/30 %.
	if len(d.ClassNames) != 10 || len(d.Train) != 150 || len(d.Val) != 60 || len(d.Test) != 90 {
		t.Fatalf("%d classes, %d/%d/%d items; want 10, 150/60/90", len(d.ClassNames), len(d.Train), len(d.Val), len(d.Test))
	}
	if !slices.IsSorted(d.ClassNames) {
		t.Errorf("labels do not follow sorted folder names (Caltech101's rule): %q", d.ClassNames)
	}
	seen := map[string]bool{}
	for _, l := range [][]Item{d.Train, d.Val, d.Test} {
		for _, it := range l {
			if seen[it.Path] || !strings.HasPrefix(it.Path, d.ClassNames[it.Label]+"/") {
				t.Errorf("bad or repeated item %+v", it)
			}
			seen[it.Path] = true
		}
	}
	// Every image decodes, is 64..96 pixels a side, and shows its class's
	// colour over a good part of the image.
	for _, it := range d.Train {
		f, err := os.ReadFile(d.File(it))
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(bytes.NewReader(f))
		if err != nil {
			t.Fatalf("%s: %v", it.Path, err)
		}
		b := img.Bounds()
		if b.Dx() < 64 || b.Dx() > 96 || b.Dy() < 64 || b.Dy() > 96 {
			t.Errorf("%s: size %v", it.Path, b.Size())
		}
		if frac := colourFraction(img, classColour(t, it.ClassName)); frac < 0.04 {
			t.Errorf("%s: only %.3f of the pixels near the class colour", it.Path, frac)
		}
	}
	// Few-shot sampling works on it like on any split-file dataset.
	train, val, err := FewShot(d, 4, 1)
	if err != nil || len(train) != 40 || len(val) != 40 {
		t.Errorf("4-shot: %d train, %d val, %v; want 40, 40", len(train), len(val), err)
	}
}

func classColour(t *testing.T, class string) [3]float64 {
	for _, c := range synthColors {
		if strings.HasPrefix(class, c.name+"_") {
			return c.rgb
		}
	}
	t.Fatalf("class %q has no colour", class)
	return [3]float64{}
}

func colourFraction(img image.Image, rgb [3]float64) float64 {
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			dr, dg, db := float64(r>>8)-rgb[0], float64(g>>8)-rgb[1], float64(bb>>8)-rgb[2]
			if math.Sqrt(dr*dr+dg*dg+db*db) < 60 {
				n++
			}
		}
	}
	return float64(n) / float64(b.Dx()*b.Dy())
}

func TestSynthDeterministic(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := Synth(dir, 3, 4, 11); err != nil {
			t.Fatal(err)
		}
	}
	if err := Synth(c, 3, 4, 12); err != nil {
		t.Fatal(err)
	}
	files := 0
	differ := 0
	filepath.WalkDir(a, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		x, _ := os.ReadFile(p)
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs with the same seed", rel)
		}
		if z, _ := os.ReadFile(filepath.Join(c, rel)); strings.HasSuffix(rel, ".jpg") && !bytes.Equal(x, z) {
			differ++
		}
		files++
		return nil
	})
	if files != 3*4+2 {
		t.Errorf("%d files, want 12 images + split file + marker", files)
	}
	if differ != 12 {
		t.Errorf("%d of 12 images differ between seeds 11 and 12", differ)
	}
}

func TestSynthGuards(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"caltech-101/split_zhou_Caltech101.json": "{}"})
	if err := Synth(dir, 2, 2, 1); err == nil || !strings.Contains(err.Error(), "does not hold a synthetic dataset") {
		t.Errorf("foreign caltech-101: err = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "caltech-101", "split_zhou_Caltech101.json")); string(b) != "{}" {
		t.Error("foreign split file was touched")
	}
	// Replacing an earlier synthetic dataset drops its classes and caches.
	dir2 := t.TempDir()
	if err := Synth(dir2, 5, 3, 1); err != nil {
		t.Fatal(err)
	}
	writeTree(t, dir2, map[string]string{"caltech-101/split_fewshot/shot_1-seed_1.json": "{}"})
	if err := Synth(dir2, 2, 3, 1); err != nil {
		t.Fatal(err)
	}
	d, err := Load(SynthName, dir2)
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := listDirs(d.ImageDir)
	if len(d.ClassNames) != 2 || len(dirs) != 2 {
		t.Errorf("after re-synth: %d classes, %d folders; want 2, 2", len(d.ClassNames), len(dirs))
	}
	if _, err := os.Stat(filepath.Join(d.Dir, CacheDir)); err == nil {
		t.Error("stale few-shot cache kept")
	}
	for _, bad := range [][2]int{{0, 3}, {241, 3}, {3, 0}} {
		if err := Synth(t.TempDir(), bad[0], bad[1], 1); err == nil {
			t.Errorf("Synth(classes=%d, perClass=%d) accepted", bad[0], bad[1])
		}
	}
}

func TestSynthClassNames(t *testing.T) {
	cls := synthClasses(MaxSynthClasses)
	if len(synthColors)*len(synthShapes)*len(synthTextures) != MaxSynthClasses {
		t.Fatal("MaxSynthClasses does not match the tables")
	}
	seen := map[string]bool{}
	for _, c := range cls {
		if seen[c.name] {
			t.Errorf("duplicate class %q", c.name)
		}
		seen[c.name] = true
	}
	// The first classes differ in colour and are solid.
	for i, c := range cls[:10] {
		if c.color != i || c.texture != 0 {
			t.Errorf("class %d = %+v", i, c)
		}
	}
	if cls[0].name != "red_circle" || cls[60].name != "red_striped_circle" {
		t.Errorf("names %q, %q", cls[0].name, cls[60].name)
	}
}

func TestSynthExists(t *testing.T) {
	dir := t.TempDir()
	if SynthExists(dir) {
		t.Fatal("empty dir reported as synthetic")
	}
	if err := Synth(dir, 2, 3, 1); err != nil {
		t.Fatal(err)
	}
	if !SynthExists(dir) {
		t.Fatal("Synth output not recognized")
	}
}
