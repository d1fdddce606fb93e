package gda

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
	"gonum.org/v1/gonum/mat"

	"github.com/clipadapter/clipgo/internal/fixture"
	"github.com/clipadapter/clipgo/train"
)

type fixtureMeta struct {
	Classes     []string  `json:"classes"`
	Template    string    `json:"template"`
	Alphas      []float64 `json:"alphas"`
	BestAlpha   float64   `json:"best_alpha"`
	BestCorrect int64     `json:"best_correct"`
}

func feats(t testing.TB, data []float32, d int64, y []int64) *train.Features {
	t.Helper()
	return &train.Features{X: fixture.TensorOf(t, data, int64(len(y)), d), Labels: ts.MustOfSlice(y), Y: y}
}

// fakeText returns recorded features per text.
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
	x := ts.MustOfSlice(data)
	return x.View([]int64{int64(len(texts)), f.dim}, true)
}
func (f *fakeText) Tokenize([]string) (*ts.Tensor, error) { return nil, fmt.Errorf("no tokenizer") }
func (f *fakeText) TokenEmbedding(*ts.Tensor) (*ts.Tensor, error) {
	return nil, fmt.Errorf("no embedding")
}
func (f *fakeText) EncodeEmbeddings(*ts.Tensor, []int64) (*ts.Tensor, error) {
	return nil, fmt.Errorf("no transformer")
}
func (f *fakeText) LogitScale() (float64, error) { return 100, nil }

func methodContext(classes []string, template string, text []float32, d int64) *train.Context {
	enc := &fakeText{rows: map[string][]float32{}, dim: d}
	for i, name := range classes {
		enc.rows[strings.Replace(template, "{}", name, 1)] = text[int64(i)*d : int64(i+1)*d]
	}
	return &train.Context{Text: enc, ClassNames: classes, Templates: []string{template}, FeatureDim: d, Device: gotch.CPU}
}

func lock(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

// TestMatchesReference checks the discriminant, the logits and the α
// search against testdata/gen.py, which follows the reference code.
func TestMatchesReference(t *testing.T) {
	lock(t)
	b, err := os.ReadFile("testdata/meta.json")
	if err != nil {
		t.Fatal(err)
	}
	var m fixtureMeta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	text, views := fixture.Read(t, "text"), fixture.Read(t, "views")
	d := text.Shape[1]
	y := fixture.ReadInt64(t, "train_labels")
	nk := views.Shape[1]
	var vs []*train.Features
	for v := int64(0); v < views.Shape[0]; v++ {
		f := feats(t, views.Data[v*nk*d:(v+1)*nk*d], d, y)
		defer f.Drop()
		vs = append(vs, f)
	}
	o := DefaultOptions()
	o.AugmentViews = len(vs)
	g := New(o)
	defer g.Drop()
	if err := g.Init(methodContext(m.Classes, m.Template, text.Data, d), vs); err != nil {
		t.Fatal(err)
	}
	w, bias := g.Weights()
	// float64 on both sides, float32 at the end: a few ulps of float32.
	fixture.AssertClose(t, "weights", w.Float64Values(), fixture.Read(t, "weights").Data, 1e-5, 1e-6)
	fixture.AssertClose(t, "bias", bias.Float64Values(), fixture.Read(t, "bias").Data, 1e-5, 1e-6)

	test := feats(t, fixture.Read(t, "test").Data, d, fixture.ReadInt64(t, "test_labels"))
	defer test.Drop()
	logits, err := g.Logits(test.X, false)
	if err != nil {
		t.Fatal(err)
	}
	defer logits.Drop()
	fixture.AssertClose(t, "logits", logits.Float64Values(), fixture.Read(t, "logits").Data, 1e-5, 1e-6)

	val := feats(t, fixture.Read(t, "val").Data, d, fixture.ReadInt64(t, "val_labels"))
	defer val.Drop()
	counts, err := g.AlphaCounts(val)
	if err != nil {
		t.Fatal(err)
	}
	want := fixture.ReadInt64(t, "counts")
	for i := range want {
		if counts[i] != want[i] {
			t.Errorf("alpha %g: %d correct, reference %d", m.Alphas[i], counts[i], want[i])
		}
	}
	tuned, err := g.Tune(context.Background(), val)
	if err != nil {
		t.Fatal(err)
	}
	if tuned["alpha"] != m.BestAlpha || g.Alpha() != m.BestAlpha {
		t.Errorf("tuned alpha %g (in effect %g), reference %g", tuned["alpha"], g.Alpha(), m.BestAlpha)
	}
	if acc := float64(m.BestCorrect) / float64(val.Len()); math.Abs(tuned["val_accuracy"]-acc) > 1e-12 {
		t.Errorf("val accuracy %g, want %g", tuned["val_accuracy"], acc)
	}
}

// TestEstimateMatchesGonum checks the closed form against an independent
// float64 computation with gonum (explicit inverse of the shrunk scatter).
func TestEstimateMatchesGonum(t *testing.T) {
	lock(t)
	const n, d, c = 30, 6, 3
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, n*d)
	y := make([]int64, n)
	for i := range n {
		y[i] = int64(i % c)
		for j := range d {
			x[i*d+j] = rng.NormFloat64() + float64(y[i]*int64(j%2))
		}
	}
	xt := ts.MustOfSlice(x).MustView([]int64{n, d}, true)
	defer xt.MustDrop()
	w, b, err := Estimate(xt, y, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.MustDrop()
	defer b.MustDrop()

	X := mat.NewDense(n, d, x)
	mu := mat.NewDense(c, d, nil)
	cnt := make([]float64, c)
	for i := range n {
		cnt[y[i]]++
		for j := range d {
			mu.Set(int(y[i]), j, mu.At(int(y[i]), j)+X.At(i, j))
		}
	}
	for k := range c {
		for j := range d {
			mu.Set(k, j, mu.At(k, j)/cnt[k])
		}
	}
	cen := mat.NewDense(n, d, nil)
	mean := make([]float64, d)
	for i := range n {
		for j := range d {
			v := X.At(i, j) - mu.At(int(y[i]), j)
			cen.Set(i, j, v)
			mean[j] += v / n
		}
	}
	for i := range n {
		for j := range d {
			cen.Set(i, j, cen.At(i, j)-mean[j])
		}
	}
	var S mat.Dense
	S.Mul(cen.T(), cen)
	tr := mat.Trace(&S) / (n - 1)
	for j := range d {
		S.Set(j, j, S.At(j, j)+tr)
	}
	var inv mat.Dense
	if err := inv.Inverse(&S); err != nil {
		t.Fatal(err)
	}
	inv.Scale(d, &inv)
	var W mat.Dense
	W.Mul(mu, &inv)
	wantW := make([]float32, 0, c*d)
	wantB := make([]float32, c)
	for k := range c {
		for j := range d {
			wantW = append(wantW, float32(W.At(k, j)))
			wantB[k] -= float32(0.5 * W.At(k, j) * mu.At(k, j))
		}
		wantB[k] += float32(-math.Log(c))
	}
	fixture.AssertClose(t, "W", w.Float64Values(), wantW, 1e-5, 1e-6)
	fixture.AssertClose(t, "b", b.Float64Values(), wantB, 1e-5, 1e-6)
}

// TestLearnsAboveChance: with an uninformative text classifier, GDA on a
// few shots of Gaussian classes classifies held-out samples well.
func TestLearnsAboveChance(t *testing.T) {
	lock(t)
	const c, d, k, nt = 5, 12, 8, 200
	rng := rand.New(rand.NewPCG(3, 4))
	protos := make([][]float64, c)
	for i := range protos {
		protos[i] = make([]float64, d)
		for j := range protos[i] {
			protos[i][j] = rng.NormFloat64()
		}
	}
	sample := func(label int64) []float32 {
		v := make([]float32, d)
		for j := range v {
			v[j] = float32(protos[label][j] + 0.6*rng.NormFloat64())
		}
		return v
	}
	set := func(n int) *train.Features {
		var x []float32
		y := make([]int64, n)
		for i := range y {
			y[i] = int64(i % c)
			x = append(x, sample(y[i])...)
		}
		return feats(t, x, d, y)
	}
	classes := make([]string, c)
	text := make([]float32, c*d)
	for i := range classes {
		classes[i] = fmt.Sprintf("c%d", i)
		for j := range d {
			text[i*d+j] = float32(1 + 1e-3*rng.NormFloat64()) // all classes alike
		}
	}
	train1, train2, val, test := set(c*k), set(c*k), set(c*4), set(nt)
	for _, f := range []*train.Features{train1, train2, val, test} {
		defer f.Drop()
	}
	// The views must list the same labels; set() cycles through classes.
	g := New(DefaultOptions())
	defer g.Drop()
	if err := g.Init(methodContext(classes, "{}", text, d), []*train.Features{train1, train2}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Tune(context.Background(), val); err != nil {
		t.Fatal(err)
	}
	logits, err := g.Logits(test.X, false)
	if err != nil {
		t.Fatal(err)
	}
	defer logits.MustDrop()
	pred := logits.MustArgmax([]int64{1}, false, false)
	defer pred.MustDrop()
	p := pred.Int64Values()
	hit := 0
	for i := range p {
		if p[i] == test.Y[i] {
			hit++
		}
	}
	acc := float64(hit) / float64(len(p))
	t.Logf("accuracy %.3f (chance %.2f), alpha %g", acc, 1.0/c, g.Alpha())
	if acc < 0.8 {
		t.Errorf("accuracy %.3f, want >= 0.8 (chance is %.2f)", acc, 1.0/c)
	}
}

func TestErrors(t *testing.T) {
	lock(t)
	text := make([]float32, 3*4)
	for i := range text {
		text[i] = float32(i%5) + 1
	}
	ctx := methodContext([]string{"a", "b", "cat"}, "{}", text, 4)
	x := make([]float32, 4*4)
	for i := range x {
		x[i] = float32(i*7%11) - 5
	}
	for _, tc := range []struct {
		name string
		opts func(*Options)
		y    []int64
		d    int64
		want string
	}{
		{"class without samples", nil, []int64{0, 1, 0, 1}, 4, `class 2 ("cat") has no training sample`},
		{"label outside the classes", nil, []int64{0, 1, 2, 3}, 4, "outside the 3 classes"},
		{"wrong feature size", nil, []int64{0, 1, 2, 0, 1, 2, 0, 1}, 2, "want [8, 4]"},
		{"empty grid", func(o *Options) { o.Alphas = nil }, []int64{0, 1, 2, 0}, 4, "alphas is empty"},
		{"more templates than the context has", func(o *Options) { o.Templates = 2 }, []int64{0, 1, 2, 0}, 4, "2 templates requested, the context has 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			if tc.opts != nil {
				tc.opts(&o)
			}
			f := feats(t, x, tc.d, tc.y)
			defer f.Drop()
			g := New(o)
			defer g.Drop()
			err := g.Init(ctx, []*train.Features{f})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, _, err := Build(Options{AugmentViews: -1}); err == nil {
		t.Error("Build accepted augment_views = -1")
	}
}
