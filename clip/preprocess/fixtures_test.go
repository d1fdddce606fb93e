package preprocess

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/internal/npy"
)

// manifest is testdata/manifest.json, written by testdata/gen.py from
// Pillow 9.4 / torchvision 0.14 outputs.
type manifest struct {
	Versions map[string]string `json:"versions"`
	Decode   []struct {
		File    string `json:"file"`
		Ref     string `json:"ref"`
		PILMode string `json:"pil_mode"`
		Format  string `json:"format"`
	} `json:"decode"`
	DecodeErrors []string `json:"decode_errors"`
	Resize       []struct {
		Src     string `json:"src"`
		W       int    `json:"w"`
		H       int    `json:"h"`
		Shorter int    `json:"shorter"`
		Ref     string `json:"ref"`
	} `json:"resize"`
	Crop []struct {
		Op   string `json:"op"`
		Box  []int  `json:"box"`
		Size int    `json:"size"`
		Src  string `json:"src"`
		Ref  string `json:"ref"`
	} `json:"crop"`
	ResizedCrop []struct {
		Src             string `json:"src"`
		Top, Left, H, W int
		Size            int    `json:"size"`
		Flip            bool   `json:"flip"`
		Ref             string `json:"ref"`
	} `json:"resized_crop"`
	TestTransform []struct {
		Src   string `json:"src"`
		Size  int    `json:"size"`
		Ref   string `json:"ref"`
		RefU8 string `json:"ref_u8"`
	} `json:"test_transform"`
	RRCStats []struct {
		W, H  int
		Scale [2]float64 `json:"scale"`
		Ratio [2]float64 `json:"ratio"`
		N     int        `json:"n"`
		Stats struct {
			X, Y, W, H, Area, Aspect moments
			FallbackBox              struct{ X, Y, W, H int } `json:"fallback_box"`
			FallbackFrac             float64                  `json:"fallback_frac"`
		} `json:"stats"`
	} `json:"rrc_stats"`
}

type moments struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

func loadManifest(t testing.TB) *manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest{}
	if err := json.Unmarshal(raw, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func fixturePath(rel string) string { return filepath.Join("testdata", filepath.FromSlash(rel)) }

// readU8 loads an HxWx3 uint8 array written by gen.py as an Image.
func readU8(t testing.TB, rel string) *Image {
	t.Helper()
	shape, data, err := npy.ReadInt64(fixturePath(rel))
	if err != nil {
		t.Fatal(err)
	}
	if len(shape) != 3 || shape[2] != 3 {
		t.Fatalf("%s: shape %v, want [H W 3]", rel, shape)
	}
	m := NewImage(shape[1], shape[0])
	for i, v := range data {
		m.Pix[i] = uint8(v)
	}
	return m
}

func openFixture(t testing.TB, rel string) *Image {
	t.Helper()
	m, err := Open(fixturePath(rel))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// diff summarizes the per-byte difference of two images of the same size.
type diff struct {
	max   int
	mean  float64
	nDiff int // bytes that differ
	first string
}

func (d diff) String() string {
	return fmt.Sprintf("max |diff| %d, mean %.4f, %d bytes differ%s", d.max, d.mean, d.nDiff, d.first)
}

func compare(t testing.TB, got, want *Image) diff {
	t.Helper()
	if got.W != want.W || got.H != want.H {
		t.Fatalf("size %dx%d, want %dx%d", got.W, got.H, want.W, want.H)
	}
	var d diff
	sum := 0
	for i := range got.Pix {
		v := int(got.Pix[i]) - int(want.Pix[i])
		if v < 0 {
			v = -v
		}
		if v != 0 {
			if d.nDiff == 0 {
				p := i / 3
				d.first = fmt.Sprintf(" (first at x=%d y=%d c=%d: got %d want %d)", p%got.W, p/got.W, i%3, got.Pix[i], want.Pix[i])
			}
			d.nDiff++
		}
		sum += v
		d.max = max(d.max, v)
	}
	if len(got.Pix) > 0 {
		d.mean = float64(sum) / float64(len(got.Pix))
	}
	return d
}

// TestDecodeMatchesPillow decodes every test image and compares it with
// np.asarray(Image.open(f).convert("RGB")) from Pillow 9.4. Every image is
// pixel-exact, JPEGs included: with cgo they are decoded by libjpeg(-turbo),
// the library Pillow uses, set up the same way. Without cgo, photographic
// JPEGs go through Go's decoder, whose inverse DCT differs from libjpeg's
// in the last bit, and are held to the tolerances below instead.
func TestDecodeMatchesPillow(t *testing.T) {
	m := loadManifest(t)
	if len(m.Decode) < 30 {
		t.Fatalf("manifest lists %d decode cases", len(m.Decode))
	}
	for _, c := range m.Decode {
		t.Run(filepath.Base(c.File), func(t *testing.T) {
			got := openFixture(t, c.File)
			want := readU8(t, c.Ref)
			d := compare(t, got, want)
			name := filepath.Base(c.File)
			if !jpegExact && strings.HasPrefix(name, "jpeg_") {
				t.Logf("%s (%s): %v", name, c.PILMode, d)
				if d.max > jpegMaxDiff || d.mean > jpegMeanDiff {
					t.Errorf("%s: %v; want max <= %d, mean <= %g", name, d, jpegMaxDiff, jpegMeanDiff)
				}
				return
			}
			if d.max != 0 {
				t.Errorf("%s (Pillow mode %s): %v; want pixel-exact", name, c.PILMode, d)
			}
		})
	}
}

// Tolerances for photographic JPEGs decoded by Go's decoder (builds
// without cgo; see TestDecodeMatchesPillow): the measured differences
// with a margin.
const (
	jpegMaxDiff  = 4
	jpegMeanDiff = 0.15
)

func TestDecodeErrors(t *testing.T) {
	m := loadManifest(t)
	if len(m.DecodeErrors) == 0 {
		t.Fatal("no broken fixtures")
	}
	for _, rel := range m.DecodeErrors {
		path := fixturePath(rel)
		t.Run(filepath.Base(rel), func(t *testing.T) {
			img, err := Open(path)
			if err == nil {
				t.Fatalf("decoded a broken file into %dx%d", img.W, img.H)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.jpg")); err == nil || !strings.Contains(err.Error(), "missing.jpg") {
		t.Errorf("missing file: err = %v", err)
	}
}

// TestResizeMatchesPillow compares Resize with Image.resize((w, h),
// BICUBIC) for up-, down- and mixed scaling, one-dimensional resizes and
// degenerate sizes: all pixel-exact.
func TestResizeMatchesPillow(t *testing.T) {
	m := loadManifest(t)
	n := 0
	for _, c := range m.Resize {
		t.Run(filepath.Base(c.Ref), func(t *testing.T) {
			src := openFixture(t, c.Src)
			var got *Image
			if c.Shorter > 0 {
				got = ResizeShorter(src, c.Shorter)
			} else {
				got = Resize(src, c.W, c.H)
			}
			want := readU8(t, c.Ref)
			if d := compare(t, got, want); d.max != 0 {
				t.Errorf("%dx%d -> %dx%d: %v; want pixel-exact", src.W, src.H, c.W, c.H, d)
			}
		})
		n++
	}
	if n < 20 {
		t.Errorf("only %d resize cases", n)
	}
}

// TestCropMatchesPillow checks Crop against Image.crop (including boxes
// beyond the image), CenterCrop against torchvision's center_crop
// (including the padding case) and FlipHorizontal against
// FLIP_LEFT_RIGHT.
func TestCropMatchesPillow(t *testing.T) {
	m := loadManifest(t)
	for _, c := range m.Crop {
		t.Run(filepath.Base(c.Ref), func(t *testing.T) {
			src := openFixture(t, c.Src)
			var got *Image
			switch c.Op {
			case "crop":
				got = Crop(src, c.Box[0], c.Box[1], c.Box[2]-c.Box[0], c.Box[3]-c.Box[1])
			case "center_crop":
				got = CenterCrop(src, c.Size)
			case "hflip":
				got = FlipHorizontal(src)
			default:
				t.Fatalf("unknown op %q", c.Op)
			}
			if d := compare(t, got, readU8(t, c.Ref)); d.max != 0 {
				t.Errorf("%s: %v", c.Op, d)
			}
		})
	}
}

// TestResizedCropMatchesTorchvision checks the crop-and-resize step of the
// train transform (given the crop box) and the folded flip against
// torchvision's resized_crop (+ hflip).
func TestResizedCropMatchesTorchvision(t *testing.T) {
	m := loadManifest(t)
	for _, c := range m.ResizedCrop {
		t.Run(filepath.Base(c.Ref), func(t *testing.T) {
			src := openFixture(t, c.Src)
			want := readU8(t, c.Ref)
			got := ResizedCrop(src, c.Left, c.Top, c.W, c.H, c.Size, c.Size)
			if c.Flip {
				got = FlipHorizontal(got)
			}
			if d := compare(t, got, want); d.max != 0 {
				t.Errorf("%v", d)
			}
			// The transform's normalization with the flip folded in gives
			// the same tensor as normalizing the flipped reference.
			dst := make([]float32, 3*c.Size*c.Size)
			normalize(ResizedCrop(src, c.Left, c.Top, c.W, c.H, c.Size, c.Size), dst, c.Flip, Config{})
			ref := make([]float32, len(dst))
			Normalize(want, ref)
			for i := range dst {
				if dst[i] != ref[i] {
					t.Fatalf("normalized value %d: %v, want %v", i, dst[i], ref[i])
				}
			}
		})
	}
}

// TestTestTransformMatchesTorchvision compares Test(n) with CLIP's
// _transform(n) applied by torchvision to the same PIL image: the uint8
// crop must be pixel-exact and the normalized tensor within 1e-6.
func TestTestTransformMatchesTorchvision(t *testing.T) {
	m := loadManifest(t)
	for _, c := range m.TestTransform {
		t.Run(filepath.Base(c.Ref), func(t *testing.T) {
			src := openFixture(t, c.Src)
			shape, want, err := npy.Read(fixturePath(c.Ref))
			if err != nil {
				t.Fatal(err)
			}
			if len(shape) != 3 || shape[0] != 3 || shape[1] != c.Size || shape[2] != c.Size {
				t.Fatalf("reference shape %v", shape)
			}
			tr := Test(c.Size)
			if tr.Size() != c.Size {
				t.Fatalf("Size() = %d", tr.Size())
			}
			got := make([]float32, 3*c.Size*c.Size)
			if err := tr.Apply(src, nil, got); err != nil {
				t.Fatal(err)
			}
			maxAbs, exact := 0.0, 0
			for i := range got {
				d := math.Abs(float64(got[i]) - float64(want[i]))
				maxAbs = max(maxAbs, d)
				if got[i] == want[i] {
					exact++
				}
			}
			t.Logf("%dx%d at %d: max |diff| %.3g, %d of %d values bit-identical", src.W, src.H, c.Size, maxAbs, exact, len(got))
			if maxAbs > 1e-6 {
				t.Errorf("max |diff| %g > 1e-6", maxAbs)
			}
			if c.RefU8 != "" {
				crop := CenterCrop(ResizeShorter(src, c.Size), c.Size)
				if d := compare(t, crop, readU8(t, c.RefU8)); d.max != 0 {
					t.Errorf("uint8 crop: %v", d)
				}
			}
		})
	}
}
