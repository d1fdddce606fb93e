package preprocess

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/clipadapter/clipgo/internal/npy"
)

// TestOpenCLIPTransformMatches compares TestWith with OpenCLIP's own test
// transform (open_clip.image_transform: shortest, longest and squash
// resize modes, bicubic and bilinear, a non-CLIP mean and std) on images
// of odd sizes, written by clip/testdata/gen_openclip.py. The outputs must
// be equal: the same 8-bit pixels normalized in float32 the same way.
func TestOpenCLIPTransformMatches(t *testing.T) {
	dir := filepath.Join("testdata", "openclip")
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Versions  map[string]string `json:"versions"`
		Mean, Std [3]float32
		Cases     []struct {
			Src, Ref      string
			Size          int
			ResizeMode    string `json:"resize_mode"`
			Interpolation string
		}
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	t.Logf("reference: %v", m.Versions)
	modes := map[string]ResizeMode{"shortest": ResizeShortest, "longest": ResizeLongest, "squash": ResizeSquash}
	interps := map[string]Interpolation{"bicubic": Bicubic, "bilinear": Bilinear}
	if len(m.Cases) < 12 {
		t.Fatalf("manifest has %d cases", len(m.Cases))
	}
	for _, c := range m.Cases {
		t.Run(c.Ref, func(t *testing.T) {
			shape, pix, err := npy.ReadInt64(filepath.Join(dir, c.Src))
			if err != nil {
				t.Fatal(err)
			}
			img := NewImage(shape[1], shape[0])
			for i, v := range pix {
				img.Pix[i] = uint8(v)
			}
			_, want, err := npy.Read(filepath.Join(dir, c.Ref))
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{Mean: m.Mean, Std: m.Std, ResizeMode: modes[c.ResizeMode], Interpolation: interps[c.Interpolation]}
			tr := TestWith(c.Size, cfg)
			got := make([]float32, 3*c.Size*c.Size)
			if err := tr.Apply(img, nil, got); err != nil {
				t.Fatal(err)
			}
			bad, first := 0, -1
			for i := range got {
				if got[i] != want[i] {
					bad++
					if first < 0 {
						first = i
					}
				}
			}
			if bad > 0 {
				t.Errorf("%dx%d %s/%s: %d of %d values differ (first at %d: %v, want %v)",
					img.W, img.H, c.ResizeMode, c.Interpolation, bad, len(got), first, got[first], want[first])
			}
		})
	}
}
