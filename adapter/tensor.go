package adapter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// pcgStream is the PCG stream ("adapter" in ASCII) paired with
// Context.Seed, so that this package's draws differ from those of other
// packages seeded with the same value.
const pcgStream = 0x61646170746572

// newRNG returns the package's generator for a seed.
func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, pcgStream)) }

// uniformLinear draws the weight of a bias-free Linear(in → out) the way
// PyTorch initializes nn.Linear by default (Kaiming-uniform with a = √5),
// which is U(−1/√in, 1/√in), in row-major [out, in] order.
func uniformLinear(rng *rand.Rand, out, in int64) []float32 {
	bound := 1 / math.Sqrt(float64(in))
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return w
}

// shapeOf returns x's shape or an error.
func shapeOf(x *ts.Tensor, what string) ([]int64, error) {
	if x == nil {
		return nil, fmt.Errorf("%s: nil tensor", what)
	}
	s, err := x.Size()
	if err != nil {
		return nil, torch.Err("shape of "+what, err)
	}
	return s, nil
}

// checkFeatures verifies that x is a [B, d] matrix and returns B.
func checkFeatures(x *ts.Tensor, d int64, what string) (int64, error) {
	s, err := shapeOf(x, what)
	if err != nil {
		return 0, err
	}
	if len(s) != 2 || s[1] != d {
		return 0, fmt.Errorf("%s: shape %v, want [N, %d]", what, s, d)
	}
	return s[0], nil
}

// textClassifier builds the zero-shot classifier (zeroshot.Classifier:
// prompt-ensembled, a [C, D] matrix of unit rows, without gradients) from
// ctx.ClassNames and the first n of ctx.Templates (0: all), and moves it to
// ctx.Device.
func textClassifier(ctx *train.Context, n int) (*ts.Tensor, error) {
	if ctx.Text == nil {
		return nil, fmt.Errorf("text classifier: the context has no text encoder")
	}
	templates, err := zeroshot.FirstTemplates(ctx.Templates, n)
	if err != nil {
		return nil, fmt.Errorf("text classifier: %w", err)
	}
	// A batch holds every class: one encoder call per template.
	w, err := zeroshot.Classifier(ctx.Text, ctx.ClassNames, templates)
	if err != nil {
		return nil, err
	}
	s, err := shapeOf(w, "text classifier")
	if err != nil {
		w.Drop()
		return nil, err
	}
	if len(s) != 2 || s[1] != ctx.FeatureDim {
		w.Drop()
		return nil, fmt.Errorf("text classifier: text features have shape %v, the context says D = %d", s, ctx.FeatureDim)
	}
	wd, err := w.To(ctx.Device, true)
	if err != nil {
		return nil, torch.Err("text classifier: move to "+torch.DeviceName(ctx.Device), err)
	}
	return wd, nil
}

// setParams copies values into params by name, without recording
// gradients. Every parameter must be present with its exact shape, and no
// other name may appear.
func setParams(params []train.Param, values map[string]*ts.Tensor) error {
	if len(params) == 0 && len(values) > 0 {
		return fmt.Errorf("set parameters: the method has no parameters (is it initialized?), got %d", len(values))
	}
	known := make(map[string]bool, len(params))
	for _, p := range params {
		known[p.Name] = true
		v, ok := values[p.Name]
		if !ok || v == nil {
			return fmt.Errorf("set parameters: missing %s", p.Name)
		}
		want, err := shapeOf(p.Tensor, "parameter "+p.Name)
		if err != nil {
			return fmt.Errorf("set parameters: %w", err)
		}
		got, err := shapeOf(v, p.Name)
		if err != nil {
			return fmt.Errorf("set parameters: %w", err)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("set parameters: %s has shape %v, want %v", p.Name, got, want)
		}
		if !isFloat(v.DType()) {
			return fmt.Errorf("set parameters: %s has dtype %v, want a floating-point tensor", p.Name, v.DType())
		}
	}
	var extra []string
	for name := range values {
		if !known[name] {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return fmt.Errorf("set parameters: unknown %s", strings.Join(extra, ", "))
	}
	return torch.NoGrad(func() error {
		for _, p := range params {
			if err := torch.CopyInto("set parameters: copy "+p.Name, p.Tensor, values[p.Name]); err != nil {
				return err
			}
		}
		return nil
	})
}

// isFloat reports whether dt is a real floating-point type.
func isFloat(dt gotch.DType) bool {
	switch dt {
	case gotch.Half, gotch.BFloat16, gotch.Float, gotch.Double:
		return true
	}
	return false
}
