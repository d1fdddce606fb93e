package prolip

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/fixture"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/train"
)

type fakeText struct {
	rows map[string][]float32
	dim  int64
}

func (f *fakeText) EncodeTexts(texts []string) (*ts.Tensor, error) {
	var data []float32
	for _, s := range texts {
		r, ok := f.rows[s]
		if !ok {
			return nil, fmt.Errorf("fake encoder: unknown text %q", s)
		}
		data = append(data, r...)
	}
	return ts.MustOfSlice(data).View([]int64{int64(len(texts)), f.dim}, true)
}
func (f *fakeText) Tokenize([]string) (*ts.Tensor, error) { return nil, fmt.Errorf("no tokenizer") }
func (f *fakeText) TokenEmbedding(*ts.Tensor) (*ts.Tensor, error) {
	return nil, fmt.Errorf("no embedding")
}
func (f *fakeText) EncodeEmbeddings(*ts.Tensor, []int64) (*ts.Tensor, error) {
	return nil, fmt.Errorf("no transformer")
}
func (f *fakeText) LogitScale() (float64, error) { return 100, nil }

func newContext(classes []string, template string, text []float32, d int64, proj *train.Projection) *train.Context {
	enc := &fakeText{rows: map[string][]float32{}, dim: d}
	for i, name := range classes {
		enc.rows[strings.Replace(template, "{}", name, 1)] = text[int64(i)*d : int64(i+1)*d]
	}
	return &train.Context{Text: enc, ClassNames: classes, Templates: []string{template}, FeatureDim: d,
		Device: gotch.CPU, Projection: proj}
}

type reference struct {
	meta struct {
		Classes  []string `json:"classes"`
		Template string   `json:"template"`
		LR       float64  `json:"lr"`
		Epochs   int      `json:"epochs"`
		Lambda   float64  `json:"lambda"`
	}
	views []*train.Features
	text  fixture.Array
	proj  *train.Projection
}

func loadFixture(t *testing.T) *reference {
	t.Helper()
	f := &reference{}
	b, err := os.ReadFile("testdata/meta.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f.meta); err != nil {
		t.Fatal(err)
	}
	_, y, err := npy.ReadInt64("testdata/labels.npy")
	if err != nil {
		t.Fatal(err)
	}
	v := fixture.Read(t, "views")
	n := v.Shape[1] * v.Shape[2]
	for i := int64(0); i < v.Shape[0]; i++ {
		x := fixture.TensorOf(t, v.Data[i*n:(i+1)*n], v.Shape[1], v.Shape[2])
		f.views = append(f.views, &train.Features{X: x, Labels: ts.MustOfSlice(y), Y: y})
	}
	f.text = fixture.Read(t, "text")
	f.proj = &train.Projection{Weight: fixture.Read(t, "weight0").Tensor(t), Bias: fixture.Read(t, "bias").Tensor(t)}
	t.Cleanup(func() {
		for _, v := range f.views {
			v.Drop()
		}
		f.proj.Weight.MustDrop()
		f.proj.Bias.MustDrop()
	})
	return f
}

func (f *reference) method(t *testing.T) *ProLIP {
	t.Helper()
	m := New(DefaultOptions())
	if err := m.Init(newContext(f.meta.Classes, f.meta.Template, f.text.Data, f.text.Shape[1], f.proj), f.views); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Drop)
	return m
}

// TestMatchesReference checks the forward pass, the first step's loss and
// gradient, and the projection after training with the loop (Adam(W) with
// eps 1e-4 and no weight decay, cosine per step, full batch) against
// testdata/gen.py.
func TestMatchesReference(t *testing.T) {
	fixture.LockGrad(t)
	f := loadFixture(t)
	test := fixture.Read(t, "test").Tensor(t)
	defer test.MustDrop()

	m := f.method(t)
	if m.Lambda() != f.meta.Lambda {
		t.Fatalf("lambda %g, want 1/N = %g", m.Lambda(), f.meta.Lambda)
	}
	l0, err := m.Logits(test, false)
	if err != nil {
		t.Fatal(err)
	}
	fixture.AssertClose(t, "logits0", l0.Float64Values(), fixture.Read(t, "logits0").Data, 1e-5, 1e-6)
	l0.MustDrop()

	// First step by hand: CE + penalty, backward.
	logits, err := m.Logits(f.views[0].X, true)
	if err != nil {
		t.Fatal(err)
	}
	ce := logits.CrossEntropyForLogits(f.views[0].Labels)
	pen, err := m.Penalty()
	if err != nil {
		t.Fatal(err)
	}
	loss := ce.MustAdd(pen, false)
	fixture.AssertClose(t, "loss0", loss.Float64Values(), fixture.Read(t, "loss0").Data, 1e-5, 1e-6)
	loss.MustBackward()
	g := m.weight.MustGrad(false)
	fixture.AssertClose(t, "grad0", g.Float64Values(), fixture.Read(t, "grad0").Data, 1e-4, 1e-6)
	for _, x := range []*ts.Tensor{logits, ce, pen, loss, g} {
		x.MustDrop()
	}

	// Training with the loop, on a fresh instance.
	m2 := f.method(t)
	batch := f.views[0].Len()
	opt := train.NewAdamW(m2.Parameters(), 0.9, 0.999, 1e-4, 0)
	loop := train.NewLoop(m2, opt, train.CosinePerStep{Base: f.meta.LR, Epochs: f.meta.Epochs}, f.meta.Epochs, batch, f.views, 1)
	if err := loop.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	fixture.AssertClose(t, "weight_final", m2.weight.Float64Values(), fixture.Read(t, "weight_final").Data, 1e-4, 1e-5)
	lf, err := m2.Logits(test, false)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.MustDrop()
	fixture.AssertClose(t, "logits_final", lf.Float64Values(), fixture.Read(t, "logits_final").Data, 1e-4, 1e-5)
}

// TestLearnsAboveChance: from a random projection and uninformative text,
// training the projection on a few shots classifies held-out samples.
func TestLearnsAboveChance(t *testing.T) {
	fixture.LockGrad(t)
	const c, p, d, k = 4, 16, 8, 8
	rng := rand.New(rand.NewPCG(5, 6))
	protos := make([]float64, c*p)
	for i := range protos {
		protos[i] = 2 * rng.NormFloat64()
	}
	set := func(n int) *train.Features {
		x := make([]float32, n*p)
		y := make([]int64, n)
		for i := range y {
			y[i] = int64(i % c)
			for j := range p {
				x[i*p+j] = float32(protos[int(y[i])*p+j] + rng.NormFloat64())
			}
		}
		return &train.Features{X: fixture.TensorOf(t, x, int64(n), p), Labels: ts.MustOfSlice(y), Y: y}
	}
	w := make([]float32, d*p)
	for i := range w {
		w[i] = float32(rng.NormFloat64() / 4)
	}
	text := make([]float32, c*d)
	for i := range text {
		text[i] = float32(rng.NormFloat64())
	}
	proj := &train.Projection{Weight: fixture.TensorOf(t, w, d, p)}
	defer proj.Weight.MustDrop()
	classes := []string{"a", "b", "c", "d"}
	views := []*train.Features{set(c * k), set(c * k)}
	test := set(200)
	defer test.Drop()
	for _, v := range views {
		defer v.Drop()
	}
	m := New(DefaultOptions())
	defer m.Drop()
	if err := m.Init(newContext(classes, "{}", text, d, proj), views); err != nil {
		t.Fatal(err)
	}
	acc := func() float64 {
		l, err := m.Logits(test.X, false)
		if err != nil {
			t.Fatal(err)
		}
		defer l.MustDrop()
		pred := l.MustArgmax([]int64{1}, false, true).Int64Values()
		n := 0
		for i := range pred {
			if pred[i] == test.Y[i] {
				n++
			}
		}
		return float64(n) / float64(len(pred))
	}
	before := acc()
	opt := train.NewAdamW(m.Parameters(), 0.9, 0.999, 1e-4, 0)
	loop := train.NewLoop(m, opt, train.CosinePerStep{Base: 0.01, Epochs: 150}, 150, 1<<20, views, 1)
	if err := loop.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := acc()
	t.Logf("accuracy %.3f before, %.3f after training (chance %.2f)", before, after, 1.0/c)
	if after < 0.8 {
		t.Errorf("accuracy %.3f after training, want >= 0.8 (chance %.2f)", after, 1.0/c)
	}
}

func TestErrors(t *testing.T) {
	fixture.LockGrad(t)
	f := loadFixture(t)
	ctx := newContext(f.meta.Classes, f.meta.Template, f.text.Data, f.text.Shape[1], nil)
	m := New(DefaultOptions())
	if err := m.Init(ctx, f.views); err == nil || !strings.Contains(err.Error(), "no image projection") {
		t.Errorf("Init without projection: %v", err)
	}
	for _, o := range []Options{{LambdaRule: "1/K"}, {LambdaRule: LambdaFixed, Lambda: -1}, {AugmentViews: -2, LambdaRule: LambdaInverseShots}} {
		if _, _, err := Build(o); err == nil {
			t.Errorf("Build(%+v) succeeded", o)
		}
	}
	o := DefaultOptions()
	o.Templates = len(ctx.Templates) + 1
	pm := New(o)
	defer pm.Drop()
	if err := pm.Init(newContext(f.meta.Classes, f.meta.Template, f.text.Data, f.text.Shape[1], f.proj), f.views); err == nil || !strings.Contains(err.Error(), "templates requested") {
		t.Errorf("Init with %d templates of %d: %v", o.Templates, len(ctx.Templates), err)
	}
	// Projected (not pre-projection) features are rejected by name.
	m = f.method(t)
	x := fixture.TensorOf(t, make([]float32, 2*f.text.Shape[1]), 2, f.text.Shape[1])
	defer x.MustDrop()
	if _, err := m.Logits(x, false); err == nil || !strings.Contains(err.Error(), "pre-projection") {
		t.Errorf("Logits on projected features: %v", err)
	}
}
