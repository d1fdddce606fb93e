package adapter

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// learn_ratios keeps reading true and false, and reads "hypernet"; a
// resolved config writes it back the same way.
func TestRatioModeTOML(t *testing.T) {
	tests := []struct {
		in   string
		want RatioMode
		out  string
		err  string
	}{
		{"learn_ratios = false", RatiosFixed, "learn_ratios = false", ""},
		{"learn_ratios = true", RatiosScalar, "learn_ratios = true", ""},
		{`learn_ratios = "hypernet"`, RatiosHypernet, `learn_ratios = "hypernet"`, ""},
		{`learn_ratios = "scalar"`, RatiosScalar, "learn_ratios = true", ""},
		{`learn_ratios = "hyper"`, "", "", `want false, true or "hypernet"`},
		{"learn_ratios = 1", "", "", `want false, true or "hypernet"`},
	}
	for _, tt := range tests {
		o := DefaultCLIPAdapterOptions()
		_, err := toml.Decode(tt.in, &o)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || o.LearnRatios != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.in, o.LearnRatios, err, tt.want)
			continue
		}
		var b bytes.Buffer
		if err := toml.NewEncoder(&b).Encode(o); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tt.out+"\n") {
			t.Errorf("%s: encoded as\n%s", tt.in, b.String())
		}
	}
	if (DefaultCLIPAdapterOptions().LearnRatios.Learned()) || !RatiosHypernet.Learned() || RatioMode("").Learned() {
		t.Error("Learned")
	}
}

func logitsOf(t *testing.T, m *CLIPAdapter, x *ts.Tensor, training bool) []float64 {
	t.Helper()
	l, err := m.Logits(x, training)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Drop()
	v, err := torch.Values[float64](l)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func maxAbsDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// With α = β = 0 every variant is zero-shot CLIP: the logits equal the
// scaled cosine with the frozen text classifier.
func TestZeroRatiosEqualZeroShot(t *testing.T) {
	lockThread(t)
	s := newSynthetic(32, 6, 2, 3, 11)
	x := s.testX.tensor(t)
	for _, variant := range []string{VariantVisual, VariantText, VariantBoth} {
		o := DefaultCLIPAdapterOptions()
		o.Variant, o.Alpha, o.Beta = variant, 0, 0
		m := NewCLIPAdapter(o)
		if err := m.Init(s.context(3), nil); err != nil {
			t.Fatal(err)
		}
		zs, err := zeroshot.ScaledCosine(x, m.classifier, m.scale)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := torch.Values[float64](zs)
		zs.Drop()
		for _, training := range []bool{true, false} {
			// Exact up to float32 rounding of the 0·A(x) + 1·x mix.
			if d := maxAbsDiff(logitsOf(t, m, x, training), want); d > 1e-4 {
				t.Errorf("%s (training %v): logits differ from zero-shot by %g", variant, training, d)
			}
		}
		m.Drop()
	}
}

// The hyper-network starts at the configured ratios (fc2 = 0, bias =
// logits of α, β), so an untrained adapter with it gives the fixed-ratio
// adapter's logits for every variant; the closed-form per-image text
// classifier agrees with the normalized one.
func TestHypernetStartsAtFixedRatios(t *testing.T) {
	lockThread(t)
	s := newSynthetic(32, 6, 2, 3, 12)
	x := s.testX.tensor(t)
	for _, variant := range []string{VariantVisual, VariantText, VariantBoth} {
		o := DefaultCLIPAdapterOptions()
		o.Variant, o.Alpha, o.Beta = variant, 0.3, 0.6
		fixed := NewCLIPAdapter(o)
		o.LearnRatios = RatiosHypernet
		hyper := NewCLIPAdapter(o)
		for _, m := range []*CLIPAdapter{fixed, hyper} {
			if err := m.Init(s.context(4), nil); err != nil {
				t.Fatal(err)
			}
			defer m.Drop()
		}
		var names []string
		for _, p := range hyper.Parameters() {
			names = append(names, p.Name)
		}
		if !strings.HasPrefix(strings.Join(names, ","), "hypernet.fc1.weight,hypernet.fc1.bias,hypernet.fc2.weight,hypernet.fc2.bias") {
			t.Errorf("%s: parameters %v", variant, names)
		}
		want := logitsOf(t, fixed, x, true)
		if d := maxAbsDiff(logitsOf(t, hyper, x, true), want); d > 1e-3 {
			t.Errorf("%s: untrained hypernet logits differ from fixed ratios by %g", variant, d)
		}
		a, b, err := hyper.PredictRatios(x)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if math.Abs(a[i]-0.3) > 1e-6 || math.Abs(b[i]-0.6) > 1e-6 {
				t.Fatalf("%s: image %d ratios %g, %g; want 0.3, 0.6", variant, i, a[i], b[i])
			}
		}
	}
	o := DefaultCLIPAdapterOptions()
	o.LearnRatios, o.Alpha = RatiosHypernet, 0
	if err := NewCLIPAdapter(o).Init(s.context(1), nil); err == nil || !strings.Contains(err.Error(), "alpha = 0 cannot be learned") {
		t.Errorf("alpha 0 with hypernet: %v", err)
	}
}

// Trained with the adapters on a synthetic few-shot problem, the
// hyper-network variant learns well above chance and above zero-shot, its
// ratios move away from their start and differ between images.
func TestHypernetLearns(t *testing.T) {
	lockThread(t)
	s := newSynthetic(64, 10, 8, 30, 3)
	o := DefaultCLIPAdapterOptions()
	o.Variant, o.LearnRatios = VariantBoth, RatiosHypernet
	m := NewCLIPAdapter(o)
	if err := m.Init(s.context(5), nil); err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	testX, trainX := s.testX.tensor(t), s.trainX.tensor(t)
	zs, err := zeroshot.ScaledCosine(testX, m.classifier, m.scale)
	if err != nil {
		t.Fatal(err)
	}
	zsAcc := accuracy(t, zs, s.testY)
	zs.Drop()
	trainY := ts.MustOfSlice(s.trainY)
	opt := train.NewSGD(m.Parameters(), 0.9, 5e-4)
	for step := 0; step < 100; step++ {
		logits, err := m.Logits(trainX, true)
		if err != nil {
			t.Fatal(err)
		}
		loss := logits.CrossEntropyForLogits(trainY)
		loss.MustBackward()
		loss.MustDrop()
		logits.MustDrop()
		if err := opt.Step(0.01); err != nil {
			t.Fatal(err)
		}
	}
	logits, err := m.Logits(testX, false)
	if err != nil {
		t.Fatal(err)
	}
	acc := accuracy(t, logits, s.testY)
	logits.Drop()
	a, b, err := m.PredictRatios(testX)
	if err != nil {
		t.Fatal(err)
	}
	minA, maxA, meanA, meanB := math.Inf(1), math.Inf(-1), 0.0, 0.0
	for i := range a {
		minA, maxA = min(minA, a[i]), max(maxA, a[i])
		meanA += a[i] / float64(len(a))
		meanB += b[i] / float64(len(b))
	}
	t.Logf("chance %.3f, zero-shot %.3f, hypernet adapter %.3f; alpha in [%.3f, %.3f] (mean %.3f), mean beta %.3f", 1/float64(s.c), zsAcc, acc, minA, maxA, meanA, meanB)
	if acc < 1/float64(s.c)+0.3 || acc < zsAcc+0.1 {
		t.Errorf("accuracy %.3f: want above chance %.3f + 0.3 and zero-shot %.3f + 0.1", acc, 1/float64(s.c), zsAcc)
	}
	if math.Abs(meanA-0.2) < 1e-3 || maxA-minA < 1e-4 {
		t.Errorf("alpha did not learn: mean %.4f, range [%.4f, %.4f]", meanA, minA, maxA)
	}
}
