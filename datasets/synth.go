package datasets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/clipadapter/clipgo/internal/fsutil"
)

// SynthName is the dataset whose layout Synth writes: Load(SynthName, dir)
// reads a synthetic dataset written to dir.
const SynthName = "Caltech101"

// synthMarker marks a dataset folder as written by Synth, so that Synth may
// replace it.
const synthMarker = "SYNTHETIC"

var (
	synthColors = []struct {
		name string
		rgb  [3]float64
	}{
		{"red", [3]float64{215, 35, 35}}, {"green", [3]float64{35, 165, 55}},
		{"blue", [3]float64{35, 75, 215}}, {"yellow", [3]float64{235, 205, 30}},
		{"purple", [3]float64{135, 55, 185}}, {"orange", [3]float64{240, 125, 25}},
		{"cyan", [3]float64{30, 195, 205}}, {"pink", [3]float64{235, 115, 175}},
		{"brown", [3]float64{125, 75, 35}}, {"black", [3]float64{20, 20, 20}},
	}
	synthShapes   = []string{"circle", "square", "triangle", "ring", "cross", "diamond"}
	synthTextures = []string{"", "striped", "dotted", "checkered"}
)

// MaxSynthClasses is the number of distinct classes Synth can draw (10
// colours x 6 shapes x 4 textures).
const MaxSynthClasses = 240

// MaxSynthPerClass is the most images per class Synth writes.
const MaxSynthPerClass = 100000

// synthClass is one class: a colour, a shape and a texture.
type synthClass struct {
	name                  string
	color, shape, texture int
}

// synthClasses returns n distinct classes, chosen so that the first ones
// differ in both colour and shape (all solid before any textured ones).
func synthClasses(n int) []synthClass {
	nc, ns := len(synthColors), len(synthShapes)
	out := make([]synthClass, n)
	for i := range out {
		t, p := i/(nc*ns), i%(nc*ns)
		c := p % nc
		s := (c + p/nc) % ns
		name := synthColors[c].name + "_"
		if synthTextures[t] != "" {
			name += synthTextures[t] + "_"
		}
		out[i] = synthClass{name + synthShapes[s], c, s, t}
	}
	return out
}

// SynthExists reports whether dir (a data root) holds a dataset written by
// Synth.
func SynthExists(dir string) bool {
	s, _ := lookup(SynthName)
	_, err := os.Stat(filepath.Join(dir, s.folder, synthMarker))
	return err == nil
}

// Synth writes a synthetic dataset of JPEG images (64 to 96 pixels a side)
// whose class is visible: a coloured shape (colour x shape x texture, class
// names like "red_circle" or "blue_striped_square") at a random position
// and size on a noisy tinted background. It uses Caltech101's layout under
// dir (caltech-101/101_ObjectCategories/<class>/image_NNNN.jpg and
// caltech-101/split_zhou_Caltech101.json), so Load(SynthName, dir) reads
// it; each class's images are split 50/20/30 % into train/val/test like
// the published Caltech101 split (train keeps at least one). The output
// depends only on the arguments. A caltech-101 folder that Synth did not
// write is never overwritten.
func Synth(dir string, classes, perClass int, seed uint64) error {
	if classes < 1 || classes > MaxSynthClasses {
		return fmt.Errorf("synthetic dataset: classes must be 1..%d, got %d", MaxSynthClasses, classes)
	}
	if perClass < 1 || perClass > MaxSynthPerClass {
		return fmt.Errorf("synthetic dataset: images per class must be 1..%d, got %d", MaxSynthPerClass, perClass)
	}
	s, _ := lookup(SynthName)
	dsDir := filepath.Join(dir, s.folder)
	if err := prepareSynthDir(dsDir); err != nil {
		return err
	}
	imageDir := filepath.Join(dsDir, s.imageDir)

	cls := synthClasses(classes)
	slices.SortFunc(cls, func(a, b synthClass) int { return strings.Compare(a.name, b.name) })
	for _, c := range cls {
		if err := os.MkdirAll(filepath.Join(imageDir, c.name), 0o755); err != nil {
			return fmt.Errorf("synthetic dataset: %w", err)
		}
	}

	// Draw and encode the images in parallel; each image has its own
	// generator, so the result does not depend on scheduling.
	type job struct{ label, k int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for j := range jobs {
				rng := rand.New(rand.NewPCG(seed, uint64(j.label)<<32|uint64(j.k)))
				img := drawSynth(rng, cls[j.label])
				buf.Reset()
				err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
				if err == nil {
					err = os.WriteFile(filepath.Join(imageDir, synthPath(cls[j.label].name, j.k)), buf.Bytes(), 0o644)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("synthetic dataset: %w", err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for label := range cls {
		for k := range perClass {
			jobs <- job{label, k}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}

	// 50/20/30 split per class, train first, in label order.
	split := map[string][][3]any{"train": {}, "val": {}, "test": {}}
	nTrain := max(1, int(math.RoundToEven(0.5*float64(perClass))))
	nVal := min(int(math.RoundToEven(0.2*float64(perClass))), perClass-nTrain)
	for label, c := range cls {
		for k := range perClass {
			key := "test"
			switch {
			case k < nTrain:
				key = "train"
			case k < nTrain+nVal:
				key = "val"
			}
			split[key] = append(split[key], [3]any{synthPath(c.name, k), label, c.name})
		}
	}
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, key := range []string{"train", "val", "test"} {
		list, err := json.MarshalIndent(split[key], "    ", "    ")
		if err != nil {
			return fmt.Errorf("synthetic dataset: %w", err)
		}
		fmt.Fprintf(&b, "    %q: %s", key, list)
		if i < 2 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	return fsutil.WriteFile(filepath.Join(dsDir, s.split), b.Bytes(), 0o644)
}

func synthPath(class string, k int) string {
	return fmt.Sprintf("%s/image_%04d.jpg", class, k+1)
}

// prepareSynthDir makes dsDir ready for a fresh synthetic dataset: it must
// not exist, be empty, or hold an earlier synthetic dataset (which is
// removed, few-shot caches included).
func prepareSynthDir(dsDir string) error {
	entries, err := os.ReadDir(dsDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("synthetic dataset: %w", err)
	case len(entries) == 0:
	default:
		if _, err := os.Stat(filepath.Join(dsDir, synthMarker)); err != nil {
			return fmt.Errorf("synthetic dataset: %s exists and does not hold a synthetic dataset; choose another output folder", dsDir)
		}
		if err := os.RemoveAll(dsDir); err != nil {
			return fmt.Errorf("synthetic dataset: remove the previous one: %w", err)
		}
	}
	if err := os.MkdirAll(dsDir, 0o755); err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	note := "This folder holds a synthetic dataset written by `data synth` (package datasets);\n" +
		"it is not Caltech101. Running synth again replaces it.\n"
	return os.WriteFile(filepath.Join(dsDir, synthMarker), []byte(note), 0o644)
}

// drawSynth draws one image of class c.
func drawSynth(rng *rand.Rand, c synthClass) *image.RGBA {
	w, h := 64+rng.IntN(33), 64+rng.IntN(33)
	img := image.NewRGBA(image.Rect(0, 0, w, h))

	// Background: a light tint with a gentle gradient.
	var bg, grad [3]float64
	base := 175 + 50*rng.Float64()
	for i := range bg {
		bg[i] = base + 20*(rng.Float64()-0.5)
		grad[i] = 30 * (rng.Float64() - 0.5)
	}
	fg := synthColors[c.color].rgb
	for i := range fg {
		fg[i] += 24 * (rng.Float64() - 0.5)
	}
	dark := [3]float64{fg[0] * 0.45, fg[1] * 0.45, fg[2] * 0.45}
	if synthColors[c.color].name == "black" {
		dark = [3]float64{110, 110, 110}
	}

	short := float64(min(w, h))
	radius := short * (0.28 + 0.14*rng.Float64())
	cx := radius + (float64(w)-2*radius)*rng.Float64()
	cy := radius + (float64(h)-2*radius)*rng.Float64()
	angle := 0.5 * (rng.Float64() - 0.5)
	sin, cos := math.Sincos(angle)
	period := 5 + 4*rng.Float64()
	noise := 10 + 8*rng.Float64()

	for y := range h {
		for x := range w {
			var px [3]float64
			for i := range px {
				px[i] = bg[i] + grad[i]*(float64(x)/float64(w)-float64(y)/float64(h))
			}
			dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy
			u, v := (cos*dx+sin*dy)/radius, (-sin*dx+cos*dy)/radius
			if insideShape(c.shape, u, v) {
				px = fg
				if textured(c.texture, dx, dy, period) {
					px = dark
				}
			}
			off := img.PixOffset(x, y)
			for i := range px {
				img.Pix[off+i] = clamp8(px[i] + noise*(2*rng.Float64()-1))
			}
			img.Pix[off+3] = 255
		}
	}
	return img
}

// insideShape reports whether (u, v), in units of the shape's radius,
// lies inside shape s.
func insideShape(s int, u, v float64) bool {
	au, av := math.Abs(u), math.Abs(v)
	switch synthShapes[s] {
	case "circle":
		return u*u+v*v <= 1
	case "square":
		return au <= 0.8 && av <= 0.8
	case "triangle":
		return v >= -0.95 && v <= 0.8 && au <= 0.55*(v+0.95)
	case "ring":
		r := u*u + v*v
		return r <= 1 && r >= 0.36
	case "cross":
		return (au <= 0.3 && av <= 1) || (av <= 0.3 && au <= 1)
	case "diamond":
		return au+av <= 1
	}
	return false
}

// textured reports whether the pixel at offset (dx, dy) from the shape's
// centre takes the texture's second colour.
func textured(t int, dx, dy, period float64) bool {
	switch synthTextures[t] {
	case "striped":
		return math.Mod(math.Abs(dx+dy)+1000*period, period) < period/2
	case "dotted":
		mx := math.Mod(dx+1000*period, period) - period/2
		my := math.Mod(dy+1000*period, period) - period/2
		return mx*mx+my*my <= period*period/9
	case "checkered":
		ix := int(math.Floor(dx / period))
		iy := int(math.Floor(dy / period))
		return (ix+iy)&1 == 0
	}
	return false
}

func clamp8(v float64) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}
