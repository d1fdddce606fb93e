package clip

import (
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch/ts"
)

// TestPreProjectionTimesProjectionIsEncodeImage checks, on the models whose
// EncodeImage matches PyTorch (TestLoadMatchesPyTorch), that the
// pre-projection features have the tower's width and that applying
// ImageProjection to them gives EncodeImage.
func TestPreProjectionTimesProjectionIsEncodeImage(t *testing.T) {
	lockThread(t)
	for _, tc := range []struct {
		file, ref string
		width     int64
		bias      bool
	}{
		{"vit.pt", "vit", int64(vitConfig.VisionWidth), false},
		{"rn.pt", "rn", int64(32 * rnConfig.VisionWidth), true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m := loadModel(t, filepath.Join("testdata", tc.file))
			images := tensorFrom(t, mustNpy(t, tc.ref+"_images"), false)
			pre, err := m.EncodeImagePreProjection(images)
			if err != nil {
				t.Fatal(err)
			}
			defer pre.Drop()
			if s := pre.MustSize(); len(s) != 2 || s[1] != tc.width {
				t.Fatalf("pre-projection features of shape %v, want [N, %d]", s, tc.width)
			}
			w, b, err := m.ImageProjection()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Drop()
			if (b != nil) != tc.bias {
				t.Fatalf("bias %v, want one: %v", b, tc.bias)
			}
			if s := w.MustSize(); s[0] != int64(m.Config().EmbedDim) || s[1] != tc.width {
				t.Fatalf("projection of shape %v, want [%d, %d]", s, m.Config().EmbedDim, tc.width)
			}
			bias := ts.None
			if b != nil {
				defer b.Drop()
				bias = b
			}
			got := ts.MustLinear(pre, w, bias)
			defer got.Drop()
			compare(t, "projected pre-projection features", got, mustNpy(t, tc.ref+"_image_features"), relTol)
		})
	}
}
