package adapter

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// meta mirrors testdata/meta.json, written by testdata/gen.py.
type meta struct {
	Torch      string   `json:"torch"`
	Dim        int64    `json:"dim"`
	Classes    []string `json:"classes"`
	Templates  []string `json:"templates"`
	LogitScale float64  `json:"logit_scale"`
	Reduction  int64    `json:"reduction"`
	ClipCases  []struct {
		Name    string   `json:"name"`
		Variant string   `json:"variant"`
		Alpha   float64  `json:"alpha"`
		Beta    float64  `json:"beta"`
		Learn   bool     `json:"learn"`
		ReLUOut bool     `json:"relu_out"`
		Params  []string `json:"params"`
	} `json:"clip_cases"`
	SGD struct {
		LR          float64 `json:"lr"`
		Momentum    float64 `json:"momentum"`
		WeightDecay float64 `json:"weight_decay"`
	} `json:"sgd"`
	Tip struct {
		InitAlpha   float64    `json:"init_alpha"`
		InitBeta    float64    `json:"init_beta"`
		SearchScale [2]float64 `json:"search_scale"`
		SearchSteps [2]int     `json:"search_steps"`
		BestAlpha   float64    `json:"best_alpha"`
		BestBeta    float64    `json:"best_beta"`
		BestCorrect int64      `json:"best_correct"`
		ValSize     int        `json:"val_size"`
		AdamW       struct {
			LR          float64    `json:"lr"`
			Eps         float64    `json:"eps"`
			WeightDecay float64    `json:"weight_decay"`
			Betas       [2]float64 `json:"betas"`
		} `json:"adamw"`
	} `json:"tip"`
}

func loadMeta(t *testing.T) *meta {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("testdata/meta.json: %v", err)
	}
	return &m
}

// array is a fixture array.
type array struct {
	shape []int64
	data  []float32
}

func readArray(t *testing.T, rel string) array {
	t.Helper()
	shape, data, err := npy.Read(filepath.Join("testdata", rel+".npy"))
	if err != nil {
		t.Fatalf("fixture %s: %v", rel, err)
	}
	s := make([]int64, len(shape))
	for i, v := range shape {
		s[i] = int64(v)
	}
	return array{s, data}
}

func (a array) tensor(t testing.TB) *ts.Tensor {
	t.Helper()
	x, err := torch.FromFloats(a.data, a.shape, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func readLabels(t *testing.T, rel string) []int64 {
	t.Helper()
	_, y, err := npy.ReadInt64(filepath.Join("testdata", rel+".npy"))
	if err != nil {
		t.Fatalf("fixture %s: %v", rel, err)
	}
	return y
}

func features(t *testing.T, x array, labels []int64) *train.Features {
	t.Helper()
	return &train.Features{X: x.tensor(t), Labels: ts.MustOfSlice(labels), Y: labels}
}

// lockThread pins the test to its OS thread with gradients on.
func lockThread(t testing.TB) {
	t.Helper()
	runtime.LockOSThread()
	if _, err := torch.SetGradEnabled(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(runtime.UnlockOSThread)
}

// fakeText is a train.TextEncoder that returns recorded features per text.
type fakeText struct {
	rows  map[string][]float32
	dim   int64
	scale float64
	calls int
}

func (f *fakeText) EncodeTexts(texts []string) (*ts.Tensor, error) {
	f.calls++
	data := make([]float32, 0, int64(len(texts))*f.dim)
	for _, s := range texts {
		r, ok := f.rows[s]
		if !ok {
			return nil, fmt.Errorf("fake encoder: unknown text %q", s)
		}
		data = append(data, r...)
	}
	return torch.FromFloats(data, []int64{int64(len(texts)), f.dim}, gotch.CPU)
}

func (f *fakeText) Tokenize([]string) (*ts.Tensor, error) {
	return nil, fmt.Errorf("fake encoder: no tokenizer")
}

func (f *fakeText) TokenEmbedding(*ts.Tensor) (*ts.Tensor, error) {
	return nil, fmt.Errorf("fake encoder: no token embedding")
}

func (f *fakeText) EncodeEmbeddings(*ts.Tensor, []int64) (*ts.Tensor, error) {
	return nil, fmt.Errorf("fake encoder: no transformer")
}

func (f *fakeText) LogitScale() (float64, error) { return f.scale, nil }

// fixtureContext returns a context whose encoder returns the fixture's text
// features (row t*C+c for class c in template t).
func fixtureContext(t *testing.T, m *meta) (*train.Context, *fakeText) {
	t.Helper()
	tf := readArray(t, "inputs/text_features")
	c := len(m.Classes)
	enc := &fakeText{rows: map[string][]float32{}, dim: m.Dim, scale: m.LogitScale}
	for ti, tmpl := range m.Templates {
		for ci, name := range m.Classes {
			row := int64(ti*c + ci)
			enc.rows[strings.Replace(tmpl, "{}", name, 1)] = tf.data[row*m.Dim : (row+1)*m.Dim]
		}
	}
	return &train.Context{Text: enc, ClassNames: m.Classes, Templates: m.Templates, FeatureDim: m.Dim,
		Device: gotch.CPU, Seed: 7}, enc
}

// tolerance: |got − want| ≤ rel·|want| + abs·max|want| for every element.
type tolerance struct{ rel, abs float64 }

// fp32 is the tolerance for float32 computations that PyTorch and gotch do
// in a possibly different order.
var fp32 = tolerance{rel: 1e-5, abs: 1e-6}

func assertClose(t *testing.T, name string, got *ts.Tensor, want array, tol tolerance) {
	t.Helper()
	shape := got.MustSize()
	ws := want.shape
	if len(ws) == 1 && ws[0] == 1 && len(shape) == 0 {
		ws = nil
	}
	if !slices.Equal(shape, ws) {
		t.Errorf("%s: shape %v, want %v", name, shape, want.shape)
		return
	}
	g := got.Float64Values()
	assertValues(t, name, g, want.data, tol)
}

func assertValues(t *testing.T, name string, got []float64, want []float32, tol tolerance) {
	t.Helper()
	var ref float64
	for _, w := range want {
		ref = math.Max(ref, math.Abs(float64(w)))
	}
	var maxAbs, maxRel float64
	bad := 0
	for i, w := range want {
		d := math.Abs(got[i] - float64(w))
		maxAbs = math.Max(maxAbs, d)
		if w != 0 {
			maxRel = math.Max(maxRel, d/math.Abs(float64(w)))
		}
		if d > tol.rel*math.Abs(float64(w))+tol.abs*ref || math.IsNaN(got[i]) {
			if bad < 3 {
				t.Errorf("%s[%d] = %.8g, want %.8g (diff %.3g)", name, i, got[i], w, d)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values out of tolerance %+v", name, bad, len(want), tol)
	}
	t.Logf("%s: max |diff| %.3g, max relative %.3g (max |want| %.3g)", name, maxAbs, maxRel, ref)
}

func accuracy(t *testing.T, logits *ts.Tensor, y []int64) float64 {
	t.Helper()
	pred, err := logits.Argmax([]int64{1}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	p, err := torch.Values[int64](pred)
	pred.MustDrop()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range p {
		if p[i] == y[i] {
			n++
		}
	}
	return float64(n) / float64(len(y))
}
