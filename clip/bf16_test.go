package clip

import (
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestBF16MatchesFP32 loads the fixture models in BF16 on the CPU and
// compares their image and text features, and the gradient reaching token
// embeddings, with fp32's: within 3e-2 relative (max |difference| / max
// |value|; bf16 keeps 8 significant bits, 3.9e-3 relative rounding per
// operation, over a few layers; 1.2e-2 at most measured on libtorch 1.13,
// whose CPU kernels run these models in bf16, 1.5e-2 on 2.11). Features
// come back as fp32.
func TestBF16MatchesFP32(t *testing.T) {
	lockThread(t)
	tokens := tensorFrom(t, mustNpy(t, "vit_tokens"), true)
	for _, name := range []string{"vit", "rn"} {
		path := filepath.Join("testdata", name+".pt")
		f32 := loadModel(t, path)
		b16, err := Load(path, gotch.CPU, WithPrecision(BF16))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b16.Drop)
		if b16.DType() != gotch.BFloat16 {
			t.Fatalf("%s: BF16 model computes in %v", name, b16.DType())
		}
		images := tensorFrom(t, mustNpy(t, name+"_images"), false)
		for _, c := range []struct {
			what string
			run  func(m *Model) (*ts.Tensor, error)
		}{
			{"image features", func(m *Model) (*ts.Tensor, error) { return m.EncodeImage(images) }},
			{"text features", func(m *Model) (*ts.Tensor, error) { return m.EncodeText(tokens) }},
			{"token-embedding gradient", func(m *Model) (*ts.Tensor, error) {
				e, err := m.TokenEmbedding(tokens)
				if err != nil {
					return nil, err
				}
				x := e.MustSetRequiresGrad(true, true)
				eot, _ := m.EOTPositions(tokens)
				h, err := m.EncodeTextEmbeddings(x, eot)
				if err != nil {
					return nil, err
				}
				h.MustSum(gotch.Float, true).MustBackward()
				return x.MustGrad(false).MustTotype(gotch.Float, true), nil
			}},
		} {
			want, err := c.run(f32)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.run(b16)
			if err != nil {
				t.Fatalf("%s %s in bf16: %v", name, c.what, err)
			}
			if got.DType() != gotch.Float {
				t.Errorf("%s %s: %v, want fp32", name, c.what, got.DType())
			}
			_, g := valuesOf(t, got)
			_, w := valuesOf(t, want)
			d := relDiff(g, w)
			t.Logf("%s %s: bf16 differs from fp32 by %.3g relative", name, c.what, d)
			if d > 3e-2 {
				t.Errorf("%s %s: bf16 differs from fp32 by %.3g relative (> 3e-2)", name, c.what, d)
			}
		}
	}
}
