package preprocess

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/internal/npy"
)

// modeCase is one entry of manifest.json's "modes" (testdata/gen.py).
type modeCase struct {
	Src     string `json:"src"`
	PILMode string `json:"pil_mode"`
	W, H    int
	Cases   []struct {
		Order         string `json:"order"`
		Size          int    `json:"size"`
		ResizeMode    string `json:"resize_mode"`
		Interpolation string `json:"interpolation"`
		Ref           string `json:"ref"`
		Error         string `json:"error"`
	} `json:"cases"`
	ResizedCrop []struct {
		Top, Left, H, W int
		Size            int    `json:"size"`
		Ref             string `json:"ref"`
	} `json:"resized_crop"`
}

// openModeSource opens a fixture source: an image file through
// OpenSource, or a raw .npy array of mode I or F.
func openModeSource(t *testing.T, c modeCase) *Source {
	t.Helper()
	path := fixturePath(c.Src)
	if filepath.Ext(path) != ".npy" {
		s, err := OpenSource(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	switch Mode(c.PILMode) {
	case ModeI:
		shape, v, err := npy.ReadInt64(path)
		if err != nil {
			t.Fatal(err)
		}
		s := newSource(ModeI, shape[1], shape[0], nil)
		for i, x := range v {
			s.Int[i] = int32(x)
		}
		return s
	case ModeF:
		shape, v, err := npy.Read(path)
		if err != nil {
			t.Fatal(err)
		}
		return &Source{Mode: ModeF, W: shape[1], H: shape[0], Float: v}
	}
	t.Fatalf("%s: no raw reader for mode %s", c.Src, c.PILMode)
	return nil
}

// TestModesMatchPillow checks the two orders against Pillow 9.4 and
// torchvision 0.14 for every image mode (testdata/gen.py, "modes"): the
// decoded mode is Pillow's; OrderOpenAI (resize and crop in the image's
// mode, then convert("RGB"), as OpenAI's and OpenCLIP's preprocess do)
// and OrderDassl (convert("RGB") first) give Pillow's pixels exactly, for
// down- and up-scaling, odd sizes, OpenCLIP's longest (padding) and
// squash resize modes and the bilinear filter; and the resized crop of
// the train transform, done in the image's mode, too. Mode I;16, which
// Pillow cannot resize with a bicubic filter, is an error exactly where
// Pillow raised one. Without libjpeg (jpegExact false) the JPEG source is
// held to one level per pixel (Go's inverse DCT; see Decode).
func TestModesMatchPillow(t *testing.T) {
	m := loadModes(t)
	if len(m) < 16 {
		t.Fatalf("manifest has %d mode sources", len(m))
	}
	modes := map[string]ResizeMode{"shortest": ResizeShortest, "longest": ResizeLongest, "squash": ResizeSquash}
	interps := map[string]Interpolation{"bicubic": Bicubic, "bilinear": Bilinear}
	for _, c := range m {
		t.Run(c.Src, func(t *testing.T) {
			s := openModeSource(t, c)
			if string(s.Mode) != c.PILMode || s.W != c.W || s.H != c.H {
				t.Fatalf("decoded as %s %dx%d, Pillow opens %s %dx%d", s.Mode, s.W, s.H, c.PILMode, c.W, c.H)
			}
			for _, k := range c.Cases {
				order := OrderOpenAI
				if k.Order == "dassl" {
					order = OrderDassl
				}
				cfg := Config{ResizeMode: modes[k.ResizeMode], Interpolation: interps[k.Interpolation]}
				got := make([]float32, 3*k.Size*k.Size)
				err := ApplyOrdered(TestWith(k.Size, cfg), s, order, nil, got)
				name := k.Order + "/" + k.ResizeMode + "/" + k.Interpolation
				if k.Error != "" {
					if !errors.Is(err, ErrModeNotResizable) {
						t.Errorf("%s %d: err %v, want ErrModeNotResizable (Pillow: %s)", name, k.Size, err, k.Error)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s %d: %v", name, k.Size, err)
					continue
				}
				ref := readU8(t, k.Ref)
				want := make([]float32, len(got))
				Normalize(ref, want)
				if !jpegExact && strings.HasSuffix(c.Src, ".jpg") {
					// compare levels: recover them from the normalized values
					if d := maxLevelDiff(got, ref); d > 1 {
						t.Errorf("%s %d: differs from Pillow's by %d levels (> 1 without libjpeg)", name, k.Size, d)
					}
					continue
				}
				if n, first := countDiff(got, want); n > 0 {
					t.Errorf("%s %d: %d of %d values differ from Pillow's (first at %d: %v, want %v)",
						name, k.Size, n, len(got), first, got[first], want[first])
				}
			}
			for _, k := range c.ResizedCrop {
				part, err := resizedCropSource(s, k.Left, k.Top, k.W, k.H, k.Size, filterOf(Bicubic))
				if err != nil {
					t.Fatal(err)
				}
				if d := compare(t, part.RGB(), readU8(t, k.Ref)); d.max > 1 || (d.max != 0 && (jpegExact || !strings.HasSuffix(c.Src, ".jpg"))) {
					t.Errorf("resized crop %+v: %v", k, d)
				}
			}
		})
	}
}

// maxLevelDiff returns the largest difference, in 8-bit levels, between
// normalized CHW values got and the RGB image ref (levels recovered as the
// nearest level whose normalized value is closest).
func maxLevelDiff(got []float32, ref *Image) int {
	want := make([]float32, len(got))
	Normalize(ref, want)
	plane := ref.W * ref.H
	worst := 0
	for i := range got {
		c := i / plane
		// one level is 1/255/std[c] in normalized units
		step := 1 / 255.0 / float64(Std[c])
		d := int(math.Round(math.Abs(float64(got[i]-want[i])) / step))
		worst = max(worst, d)
	}
	return worst
}

// loadModes returns the "modes" entries of the manifest.
func loadModes(t *testing.T) []modeCase {
	t.Helper()
	var m struct {
		Modes []modeCase `json:"modes"`
	}
	readJSON(t, fixturePath("manifest.json"), &m)
	return m.Modes
}

// countDiff returns how many values of got differ from want and the first
// that does (-1 if none).
func countDiff(got, want []float32) (n, first int) {
	first = -1
	for i := range got {
		if got[i] != want[i] {
			n++
			if first < 0 {
				first = i
			}
		}
	}
	return n, first
}

// TestOrdersDiffer checks that the two orders are really different paths
// where Pillow's are (the fixtures above would not notice if both orders
// were the same code): on the RGBA, palette and 16-bit images, OrderDassl
// differs from OrderOpenAI.
func TestOrdersDiffer(t *testing.T) {
	for _, c := range loadModes(t) {
		if !strings.Contains("modes/rgba.png modes/p.gif modes/p_trns.png modes/gray16.png modes/cmyk.jpg", c.Src) {
			continue
		}
		s := openModeSource(t, c)
		a, b := make([]float32, 3*29*29), make([]float32, 3*29*29)
		if err := ApplyOrdered(Test(29), s, OrderOpenAI, nil, a); err != nil {
			t.Fatal(err)
		}
		if err := ApplyOrdered(Test(29), s, OrderDassl, nil, b); err != nil {
			t.Fatal(err)
		}
		if n, _ := countDiff(a, b); n == 0 {
			t.Errorf("%s: the orders give the same pixels", c.Src)
		}
	}
}

// readJSON decodes the JSON file at path into v.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}
