package adapter

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// TestCLIPAdapterMatchesPyTorch checks, for every variant recorded by
// testdata/gen.py, the logits, the cross-entropy loss, the gradients and
// the parameters after one SGD step against PyTorch.
func TestCLIPAdapterMatchesPyTorch(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	feats := readArray(t, "inputs/features")
	labels := readLabels(t, "inputs/labels")
	for _, c := range m.ClipCases {
		t.Run(c.Name, func(t *testing.T) {
			lockThread(t) // subtests run on their own goroutines
			ctx, _ := fixtureContext(t, m)
			a := NewCLIPAdapter(CLIPAdapterOptions{Variant: c.Variant, Reduction: m.Reduction, Alpha: c.Alpha,
				Beta: c.Beta, LearnRatios: LearnScalars(c.Learn), ReLUAfterSecond: c.ReLUOut})
			if err := a.Init(ctx, nil); err != nil {
				t.Fatal(err)
			}
			defer a.Drop()
			params := a.Parameters()
			var names []string
			values := map[string]*ts.Tensor{}
			for _, p := range params {
				names = append(names, p.Name)
				if strings.HasSuffix(p.Name, "_logit") {
					// Learned ratios start from the options; PyTorch's
					// start is logit(α) too, so keep ours.
					values[p.Name] = p.Tensor.MustDetach(false)
					continue
				}
				values[p.Name] = readArray(t, "inputs/init/"+p.Name).tensor(t)
			}
			if strings.Join(names, ",") != strings.Join(c.Params, ",") {
				t.Fatalf("parameters %v, want PyTorch's %v", names, c.Params)
			}
			if err := a.SetParameters(values); err != nil {
				t.Fatal(err)
			}
			x := feats.tensor(t)
			y := ts.MustOfSlice(labels)
			dir := "clip_" + c.Name + "/"

			logits, err := a.Logits(x, true)
			if err != nil {
				t.Fatal(err)
			}
			assertClose(t, "logits", logits, readArray(t, dir+"logits"), fp32)
			loss := logits.CrossEntropyForLogits(y)
			assertClose(t, "loss", loss, readArray(t, dir+"loss"), fp32)
			loss.MustBackward()
			for _, p := range params {
				assertClose(t, "grad "+p.Name, p.Tensor.MustGrad(false), readArray(t, dir+"grad/"+p.Name), gradTol)
			}
			opt := train.NewSGD(params, m.SGD.Momentum, m.SGD.WeightDecay)
			if err := opt.Step(m.SGD.LR); err != nil {
				t.Fatal(err)
			}
			for _, p := range params {
				assertClose(t, "stepped "+p.Name, p.Tensor, readArray(t, dir+"step/"+p.Name), fp32)
			}
		})
	}
}

// gradTol allows for gradients that are sums of many float32 terms: an
// element may lose relative precision when its terms cancel, so the
// absolute part is relative to the largest gradient of the tensor.
var gradTol = tolerance{rel: 1e-4, abs: 1e-5}

// TestTextClassifierEnsemble checks prompt ensembling (normalize, average,
// normalize) against PyTorch, and that one template gives the normalized
// single-template features.
func TestTextClassifierEnsemble(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	ctx, enc := fixtureContext(t, m)
	w, err := textClassifier(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "ensembled classifier", w, readArray(t, "inputs/classifier"), fp32)
	if enc.calls != len(m.Templates) {
		t.Errorf("encoder called %d times, want once per template (%d)", enc.calls, len(m.Templates))
	}

	w1, err := textClassifier(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	raw := readArray(t, "inputs/text_features")
	c, d := len(m.Classes), int(m.Dim)
	want := make([]float32, c*d)
	for i := 0; i < c; i++ {
		var n float64
		for _, v := range raw.data[i*d : (i+1)*d] {
			n += float64(v) * float64(v)
		}
		for j := 0; j < d; j++ {
			want[i*d+j] = float32(float64(raw.data[i*d+j]) / math.Sqrt(n))
		}
	}
	assertClose(t, "single-template classifier", w1, array{[]int64{int64(c), m.Dim}, want}, fp32)

	ctx.Templates = []string{"no placeholder"}
	if _, err := textClassifier(ctx, 0); err == nil || !strings.Contains(err.Error(), "no placeholder") {
		t.Errorf("template without {}: err = %v, want an error naming it", err)
	}
}

// TestCLIPAdapterInit checks the parameter shapes for several feature
// sizes, PyTorch's default bound U(±1/√fan_in), and that the seed alone
// decides the draw.
func TestCLIPAdapterInit(t *testing.T) {
	lockThread(t)
	for _, tc := range []struct {
		variant   string
		d, r      int64
		learn     bool
		wantNames []string
	}{
		{VariantVisual, 1024, 4, false, []string{"visual.fc1.weight", "visual.fc2.weight"}},
		{VariantText, 512, 4, false, []string{"text.fc1.weight", "text.fc2.weight"}},
		{VariantBoth, 768, 8, true, []string{"alpha_logit", "beta_logit", "visual.fc1.weight", "visual.fc2.weight", "text.fc1.weight", "text.fc2.weight"}},
		{VariantVisual, 40, 32, true, []string{"alpha_logit", "visual.fc1.weight", "visual.fc2.weight"}},
	} {
		build := func(seed uint64) *CLIPAdapter {
			ctx := syntheticContext(t, tc.d, 3, seed)
			o := DefaultCLIPAdapterOptions()
			o.Variant, o.Reduction, o.LearnRatios, o.Beta = tc.variant, tc.r, LearnScalars(tc.learn), 0.7
			a := NewCLIPAdapter(o)
			if err := a.Init(ctx, nil); err != nil {
				t.Fatal(err)
			}
			return a
		}
		a, b, c := build(1), build(1), build(2)
		h := tc.d / tc.r
		ps := a.Parameters()
		if len(ps) != len(tc.wantNames) {
			t.Fatalf("%s d=%d: %d parameters, want %v", tc.variant, tc.d, len(ps), tc.wantNames)
		}
		for i, p := range ps {
			if p.Name != tc.wantNames[i] {
				t.Errorf("parameter %d = %s, want %s", i, p.Name, tc.wantNames[i])
			}
			if !p.Tensor.MustRequiresGrad() {
				t.Errorf("%s does not require gradients", p.Name)
			}
			v := p.Tensor.Float64Values()
			same := equalValues(v, b.Parameters()[i].Tensor.Float64Values())
			diff := !equalValues(v, c.Parameters()[i].Tensor.Float64Values())
			switch {
			case strings.HasSuffix(p.Name, "fc1.weight"), strings.HasSuffix(p.Name, "fc2.weight"):
				want := []int64{h, tc.d}
				fanIn := tc.d
				if strings.HasSuffix(p.Name, "fc2.weight") {
					want, fanIn = []int64{tc.d, h}, h
				}
				if s := p.Tensor.MustSize(); s[0] != want[0] || s[1] != want[1] {
					t.Errorf("%s d=%d r=%d: shape %v, want %v", p.Name, tc.d, tc.r, s, want)
				}
				bound := 1 / math.Sqrt(float64(fanIn))
				var maxAbs, sumSq float64
				for _, x := range v {
					maxAbs = math.Max(maxAbs, math.Abs(x))
					sumSq += x * x
				}
				// U(−b, b): the largest of n draws exceeds (1 − 10/n)·b
				// but for a 1e-4 chance, and the sample variance is b²/3
				// within 5 standard errors (relative error √(0.8/n)).
				n := float64(len(v))
				if maxAbs > bound || maxAbs < (1-10/n)*bound {
					t.Errorf("%s: max |w| = %g, want just under %g", p.Name, maxAbs, bound)
				}
				if vr := sumSq / n; math.Abs(vr/(bound*bound/3)-1) > 5*math.Sqrt(0.8/n) {
					t.Errorf("%s: variance %g, want %g", p.Name, vr, bound*bound/3)
				}
				if !same || !diff {
					t.Errorf("%s: same seed same values = %v, other seed other values = %v; want both", p.Name, same, diff)
				}
			case p.Name == "alpha_logit":
				if math.Abs(v[0]-math.Log(0.2/0.8)) > 1e-6 {
					t.Errorf("alpha_logit = %g, want logit(0.2) = %g", v[0], math.Log(0.25))
				}
			case p.Name == "beta_logit":
				if math.Abs(v[0]-math.Log(0.7/0.3)) > 1e-6 {
					t.Errorf("beta_logit = %g, want logit(0.7)", v[0])
				}
			}
		}
		alpha, beta, err := a.Ratios()
		if err != nil || math.Abs(alpha-0.2) > 1e-6 || math.Abs(beta-0.7) > 1e-6 {
			t.Errorf("Ratios() = %g, %g, %v; want 0.2, 0.7", alpha, beta, err)
		}
		a.Drop()
		b.Drop()
		c.Drop()
	}
}

func equalValues(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCLIPAdapterErrors checks that bad options and inputs are errors that
// say what is wrong.
func TestCLIPAdapterErrors(t *testing.T) {
	lockThread(t)
	for _, tc := range []struct {
		name string
		o    func(*CLIPAdapterOptions)
		want string
	}{
		{"variant", func(o *CLIPAdapterOptions) { o.Variant = "image" }, `unknown variant "image"`},
		{"alpha", func(o *CLIPAdapterOptions) { o.Alpha = 1.5 }, "alpha = 1.5"},
		{"learned zero", func(o *CLIPAdapterOptions) { o.LearnRatios, o.Beta = RatiosScalar, 0 }, "beta = 0 cannot be learned"},
		{"reduction", func(o *CLIPAdapterOptions) { o.Reduction = 64 }, "no bottleneck"},
		{"templates", func(o *CLIPAdapterOptions) { o.Templates = 9 }, "9 templates requested"},
	} {
		o := DefaultCLIPAdapterOptions()
		tc.o(&o)
		a := NewCLIPAdapter(o)
		err := a.Init(syntheticContext(t, 32, 3, 1), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}

	a := NewCLIPAdapter(DefaultCLIPAdapterOptions())
	x := ts.MustOnes([]int64{2, 16}, gotch.Float, gotch.CPU)
	if _, err := a.Logits(x, false); err == nil {
		t.Error("Logits before Init succeeded")
	}
	if err := a.Init(syntheticContext(t, 32, 3, 1), nil); err != nil {
		t.Fatal(err)
	}
	defer a.Drop()
	if _, err := a.Logits(x, false); err == nil || !strings.Contains(err.Error(), "want [N, 32]") {
		t.Errorf("Logits on [2, 16] features: err = %v, want a shape error", err)
	}
	w := ts.MustOnes([]int64{8, 32}, gotch.Float, gotch.CPU)
	for _, tc := range []struct {
		values map[string]*ts.Tensor
		want   string
	}{
		{map[string]*ts.Tensor{"visual.fc1.weight": w}, "missing visual.fc2.weight"},
		{map[string]*ts.Tensor{"visual.fc1.weight": w, "visual.fc2.weight": w}, "visual.fc2.weight has shape [8 32], want [32 8]"},
		{map[string]*ts.Tensor{"visual.fc1.weight": w, "visual.fc2.weight": w.MustT(false), "text.fc1.weight": w}, "unknown text.fc1.weight"},
	} {
		if err := a.SetParameters(tc.values); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetParameters: err = %v, want one containing %q", err, tc.want)
		}
	}
}

// TestCLIPAdapterEvalCacheFollowsTraining checks that evaluation logits
// (which reuse the adapted text classifier) follow parameter updates, and
// that the reduced-to-zero-shot case α = β = 0 gives the zero-shot logits.
func TestCLIPAdapterEvalCacheFollowsTraining(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	ctx, _ := fixtureContext(t, m)
	o := DefaultCLIPAdapterOptions()
	o.Variant, o.Beta = VariantBoth, 0.5
	a := NewCLIPAdapter(o)
	if err := a.Init(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer a.Drop()
	feats := readArray(t, "inputs/features")
	x := feats.tensor(t)
	y := ts.MustOfSlice(readLabels(t, "inputs/labels"))
	opt := train.NewSGD(a.Parameters(), 0.9, 0)
	for step := 0; step < 3; step++ {
		lt, err := a.Logits(x, true)
		if err != nil {
			t.Fatal(err)
		}
		le, err := a.Logits(x, false)
		if err != nil {
			t.Fatal(err)
		}
		assertValues(t, "eval logits", le.Float64Values(), float32s(lt.Float64Values()), fp32)
		loss := lt.CrossEntropyForLogits(y)
		loss.MustBackward()
		if err := opt.Step(0.5); err != nil {
			t.Fatal(err)
		}
		loss.MustDrop()
		lt.MustDrop()
		le.MustDrop()
	}
	// A checkpoint copied into the parameters in place, between two
	// evaluations, must reach the evaluation logits.
	if _, err := a.Logits(x, false); err != nil {
		t.Fatal(err)
	}
	if err := torch.NoGrad(func() error {
		for _, p := range a.Parameters() {
			if strings.HasPrefix(p.Name, "text.") {
				p.Tensor.MustMulScalar_(ts.FloatScalar(3))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	le, err := a.Logits(x, false)
	if err != nil {
		t.Fatal(err)
	}
	lt, err := a.Logits(x, true)
	if err != nil {
		t.Fatal(err)
	}
	assertValues(t, "eval logits after an in-place parameter change", le.Float64Values(), float32s(lt.Float64Values()), fp32)

	zs := NewCLIPAdapter(CLIPAdapterOptions{Variant: VariantBoth, ReLUAfterSecond: true})
	if err := zs.Init(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer zs.Drop()
	got, err := zs.Logits(x, false)
	if err != nil {
		t.Fatal(err)
	}
	w := readArray(t, "inputs/classifier")
	assertValues(t, "alpha = beta = 0 logits", got.Float64Values(), zeroShot(feats, w, m.LogitScale), fp32)
}

func float32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// zeroShot computes scale · f̂·Wᵀ in float64 for unit-row W.
func zeroShot(x, w array, scale float64) []float32 {
	n, d, c := int(x.shape[0]), int(x.shape[1]), int(w.shape[0])
	out := make([]float32, n*c)
	for i := 0; i < n; i++ {
		var norm float64
		for k := 0; k < d; k++ {
			norm += float64(x.data[i*d+k]) * float64(x.data[i*d+k])
		}
		norm = math.Sqrt(norm)
		for j := 0; j < c; j++ {
			var dot float64
			for k := 0; k < d; k++ {
				dot += float64(x.data[i*d+k]) * float64(w.data[j*d+k])
			}
			out[i*c+j] = float32(scale * dot / norm)
		}
	}
	return out
}

// synthetic is a separable few-shot problem: class prototypes, a text side
// that only partly agrees with them, and noisy image features around them.
type synthetic struct {
	d, c             int64
	protos, text     [][]float64
	trainX, testX    array
	trainY, testY    []int64
	textByName       map[string][]float32
	classes, prompts []string
}

func newSynthetic(d, c int64, shots, tests int, seed uint64) *synthetic {
	rng := rand.New(rand.NewPCG(seed, 99))
	s := &synthetic{d: d, c: c, textByName: map[string][]float32{}, prompts: []string{"a photo of a {}."}}
	unitVec := func() []float64 {
		v := make([]float64, d)
		var n float64
		for i := range v {
			v[i] = rng.NormFloat64()
			n += v[i] * v[i]
		}
		for i := range v {
			v[i] /= math.Sqrt(n)
		}
		return v
	}
	for k := int64(0); k < c; k++ {
		s.protos = append(s.protos, unitVec())
	}
	for k := int64(0); k < c; k++ {
		// The text side of classes 0↔1 and 2↔3 is mostly the other class's
		// prototype: zero-shot gets those classes wrong and the rest right.
		j := k
		if k < 4 && k^1 < c {
			j = k ^ 1
		}
		tv := make([]float32, d)
		for i := range tv {
			tv[i] = float32(0.3*s.protos[k][i] + 0.7*s.protos[j][i])
		}
		name := "class " + string(rune('A'+k))
		s.classes = append(s.classes, name)
		s.textByName["a photo of a "+name+"."] = tv
	}
	sample := func(n int) (array, []int64) {
		a := array{shape: []int64{int64(n) * c, d}}
		var y []int64
		for k := int64(0); k < c; k++ {
			for j := 0; j < n; j++ {
				for i := int64(0); i < d; i++ {
					a.data = append(a.data, float32(3*s.protos[k][i]+0.35*rng.NormFloat64()))
				}
				y = append(y, k)
			}
		}
		return a, y
	}
	s.trainX, s.trainY = sample(shots)
	s.testX, s.testY = sample(tests)
	return s
}

func (s *synthetic) context(seed uint64) *train.Context {
	return &train.Context{Text: &fakeText{rows: s.textByName, dim: s.d, scale: 100}, ClassNames: s.classes,
		Templates: s.prompts, FeatureDim: s.d, Device: gotch.CPU, Seed: seed}
}

// syntheticContext returns a context for a d-dimensional problem with c
// classes.
func syntheticContext(t *testing.T, d, c int64, seed uint64) *train.Context {
	t.Helper()
	return newSynthetic(d, c, 1, 1, seed).context(seed)
}

// TestCLIPAdapterBeatsZeroShot trains the default (visual, α = 0.2)
// adapter with train.NewSGD on a synthetic few-shot problem and checks that
// its held-out accuracy beats the zero-shot accuracy of its own text
// classifier.
func TestCLIPAdapterBeatsZeroShot(t *testing.T) {
	lockThread(t)
	s := newSynthetic(64, 10, 8, 30, 3)
	ctx := s.context(5)
	a := NewCLIPAdapter(DefaultCLIPAdapterOptions())
	if err := a.Init(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer a.Drop()
	testX := s.testX.tensor(t)
	w := array{[]int64{s.c, s.d}, float32s(a.classifier.Float64Values())}
	zsLogits := ts.MustOfSlice(zeroShot(s.testX, w, 100)).MustView([]int64{int64(len(s.testY)), s.c}, true)
	zsAcc := accuracy(t, zsLogits, s.testY)

	trainX := s.trainX.tensor(t)
	trainY := ts.MustOfSlice(s.trainY)
	opt := train.NewSGD(a.Parameters(), 0.9, 5e-4)
	const steps, lr = 100, 0.01
	var first, last float64
	for step := 0; step < steps; step++ {
		logits, err := a.Logits(trainX, true)
		if err != nil {
			t.Fatal(err)
		}
		loss := logits.CrossEntropyForLogits(trainY)
		loss.MustBackward()
		v := loss.Float64Values()[0]
		if step == 0 {
			first = v
		}
		last = v
		loss.MustDrop()
		logits.MustDrop()
		if err := opt.Step(lr); err != nil {
			t.Fatal(err)
		}
	}
	logits, err := a.Logits(testX, false)
	if err != nil {
		t.Fatal(err)
	}
	acc := accuracy(t, logits, s.testY)
	t.Logf("zero-shot accuracy %.3f; after %d SGD steps: train loss %.3f -> %.3f, accuracy %.3f", zsAcc, steps, first, last, acc)
	if zsAcc > 0.8 || zsAcc < 0.2 {
		t.Fatalf("synthetic problem: zero-shot accuracy %.3f, want a weak but informative classifier", zsAcc)
	}
	if acc < zsAcc+0.1 {
		t.Errorf("trained CLIP-Adapter accuracy %.3f, want at least zero-shot %.3f + 0.1", acc, zsAcc)
	}
}
