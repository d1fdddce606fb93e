package clip

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
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

// TestCUDAMatchesPyTorchOnGPU compares the fixture models' features on CUDA
// with PyTorch's own, computed on the same GPU by bench/gpu/parity.py into
// the folder $CLIPGO_CUDA_REFS (scripts/gpu-check.sh sets it): fp32 within
// 1e-4 of PyTorch's fp32 (relative to the largest magnitude), and fp16 no
// further from PyTorch's fp32 than twice PyTorch's own fp16 model is (with
// a floor of 1e-3). Skipped without a GPU or without the folder.
func TestCUDAMatchesPyTorchOnGPU(t *testing.T) {
	refs := os.Getenv("CLIPGO_CUDA_REFS")
	if refs == "" || !gotch.CUDA.IsAvailable() {
		t.Skip("needs a CUDA device and CLIPGO_CUDA_REFS (bench/gpu/parity.py's output)")
	}
	lockThread(t)
	dev := gotch.CudaBuilder(0)
	for _, ref := range []string{"vit", "rn"} {
		for _, kind := range []string{"image", "text"} {
			for _, prec := range []Precision{FP32, FP16} {
				t.Run(ref+"/"+kind+"/"+prec.String(), func(t *testing.T) {
					lockThread(t)
					m, err := Load(filepath.Join("testdata", ref+".pt"), dev, WithPrecision(prec))
					if err != nil {
						t.Fatal(err)
					}
					defer m.Drop()
					var f *ts.Tensor
					if kind == "image" {
						f, err = m.EncodeImage(tensorFrom(t, mustNpy(t, ref+"_images"), false).MustTo(dev, true))
					} else {
						f, err = m.EncodeText(tensorFrom(t, mustNpy(t, ref+"_tokens"), true).MustTo(dev, true))
					}
					if err != nil {
						t.Fatal(err)
					}
					want32 := mustNpyFile(t, filepath.Join(refs, ref+"_"+kind+"_cuda_fp32.npy"))
					if prec == FP32 {
						compare(t, "Go fp32 vs PyTorch fp32 on CUDA", f.MustTo(gotch.CPU, true), want32, 1e-4)
						return
					}
					torch16 := mustNpyFile(t, filepath.Join(refs, ref+"_"+kind+"_cuda_fp16.npy"))
					own := relDiff(torch16.data, want32.data)
					tol := math.Max(2*own, 1e-3)
					t.Logf("PyTorch's fp16 vs its fp32: relative %.3g; tolerance %.3g", own, tol)
					compare(t, "Go fp16 vs PyTorch fp32 on CUDA", f.MustTo(gotch.CPU, true), want32, tol)
				})
			}
		}
	}
}

// relDiff is max |a - b| / max |b|.
func relDiff[T float32 | float64](a, b []T) float64 {
	var d, m float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	return d / m
}
