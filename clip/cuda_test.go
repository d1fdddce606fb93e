package clip

import (
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
)

// TestCUDAMatchesPyTorch runs the fixture models on CUDA in fp32 and in
// fp16 (weights as the archives store them, LayerNorm in fp32, features
// returned as fp32) and compares them with the PyTorch references. It is
// skipped without a CUDA device; scripts/gpu-check.sh runs it on a GPU.
func TestCUDAMatchesPyTorch(t *testing.T) {
	if !gotch.CUDA.IsAvailable() {
		t.Skip("no CUDA device")
	}
	lockThread(t)
	dev := gotch.CudaBuilder(0)
	for _, tc := range []struct {
		file, ref string
		prec      Precision
		tol       float64
	}{
		{"vit.pt", "vit", FP32, 1e-3}, // TF32 and other kernels: looser than on CPU
		{"rn.pt", "rn", FP32, 1e-3},
		{"vit.pt", "vit", FP16, 2e-2},
		{"rn.pt", "rn", FP16, 2e-2},
	} {
		t.Run(tc.file+"/"+tc.prec.String(), func(t *testing.T) {
			lockThread(t)
			m, err := Load(filepath.Join("testdata", tc.file), dev, WithPrecision(tc.prec))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Drop()
			images := tensorFrom(t, mustNpy(t, tc.ref+"_images"), false).MustTo(dev, false)
			tokens := tensorFrom(t, mustNpy(t, tc.ref+"_tokens"), true).MustTo(dev, false)
			f, err := m.EncodeImage(images)
			if err != nil {
				t.Fatal(err)
			}
			if f.DType() != gotch.Float {
				t.Errorf("image features are %v, want float32", f.DType())
			}
			compare(t, "EncodeImage", f.MustTo(gotch.CPU, true), mustNpy(t, tc.ref+"_image_features"), tc.tol)
			g, err := m.EncodeText(tokens)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "EncodeText", g.MustTo(gotch.CPU, true), mustNpy(t, tc.ref+"_text_features"), tc.tol)
		})
	}
}
