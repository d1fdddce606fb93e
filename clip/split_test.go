package clip

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

// Splitting the image encoder after any block (ViT) or stage (ResNet) and
// running the rest gives exactly EncodeImage's features, which the PyTorch
// fixtures check; gradients reach the activation at the split.
func TestEncodeImageSplitIsExact(t *testing.T) {
	lockThread(t)
	for _, tc := range []struct {
		file, ref string
		layers    int
	}{{"vit.pt", "vit", vitConfig.VisionLayers[0]}, {"rn.pt", "rn", 4}} {
		t.Run(tc.file, func(t *testing.T) {
			lockThread(t) // subtests run on their own goroutines
			m := loadModel(t, filepath.Join("testdata", tc.file))
			if m.ImageLayers() != tc.layers {
				t.Fatalf("ImageLayers %d, want %d", m.ImageLayers(), tc.layers)
			}
			images := tensorFrom(t, mustNpy(t, tc.ref+"_images"), false)
			full, err := m.EncodeImage(images)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := torch.Values[float32](full)
			full.Drop()
			for k := 0; k <= m.ImageLayers(); k++ {
				h, err := m.EncodeImageUpTo(images, k)
				if err != nil {
					t.Fatal(err)
				}
				// The activation's width is what ImageLayerChannels says
				// (dimension 2 of ViT tokens, 1 of ResNet maps).
				c, err := m.ImageLayerChannels(k)
				shape := h.MustSize()
				if dim := map[string]int{"vit": 2, "rn": 1}[tc.ref]; err != nil || shape[dim] != c {
					t.Errorf("layer %d: activation shape %v, ImageLayerChannels %d (%v)", k, shape, c, err)
				}
				f, err := m.EncodeImageFrom(h, k)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := torch.Values[float32](f)
				if tc.ref == "vit" && k == m.ImageLayers() {
					// EncodeImage runs the last block for the class token
					// alone; EncodeImageUpTo ran it for every token. Same
					// function, products of other sizes: fp32 rounding.
					if rel := relDiff(got, want); rel > 2e-6 {
						t.Errorf("split after the last layer: features differ from EncodeImage by %.3g relative; want < 2e-6", rel)
					}
				} else if !slices.Equal(got, want) {
					t.Errorf("split after layer %d: features differ from EncodeImage", k)
				}
				f.Drop()
				// Gradients flow into the activation at the split.
				hg, err := h.SetRequiresGrad(true, false)
				if err != nil {
					t.Fatal(err)
				}
				f2, err := m.EncodeImageFrom(hg, k)
				if err != nil {
					t.Fatal(err)
				}
				loss := f2.MustSum(f2.DType(), false)
				loss.MustBackward()
				g := hg.MustGrad(false)
				if !g.MustDefined() || g.MustAbs(false).MustSum(g.DType(), true).Float64Values()[0] == 0 {
					t.Errorf("split after layer %d: no gradient reaches the activation", k)
				}
				for _, x := range []*ts.Tensor{g, loss, f2, hg, h} {
					x.MustDrop()
				}
			}
			if _, err := m.EncodeImageUpTo(images, tc.layers+1); err == nil || !strings.Contains(err.Error(), "want 0 to") {
				t.Errorf("layer %d: %v", tc.layers+1, err)
			}
		})
	}
}
