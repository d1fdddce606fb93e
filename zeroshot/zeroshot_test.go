package zeroshot

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/train"
)

// fakeText returns fixed features for known texts and records the batches
// it was asked to encode.
type fakeText struct {
	features map[string][]float32
	scale    float64
	batches  []int
}

func (f *fakeText) EncodeTexts(texts []string) (*ts.Tensor, error) {
	f.batches = append(f.batches, len(texts))
	var data []float32
	d := 0
	for _, t := range texts {
		v, ok := f.features[t]
		if !ok {
			return nil, fmt.Errorf("fake: unknown text %q", t)
		}
		data = append(data, v...)
		d = len(v)
	}
	return ts.MustOfSlice(data).MustView([]int64{int64(len(texts)), int64(d)}, true), nil
}

func (f *fakeText) Tokenize([]string) (*ts.Tensor, error) {
	return nil, errors.New("fake: no tokenizer")
}
func (f *fakeText) TokenEmbedding(*ts.Tensor) (*ts.Tensor, error) {
	return nil, errors.New("fake: no token embedding")
}
func (f *fakeText) EncodeEmbeddings(*ts.Tensor, []int64) (*ts.Tensor, error) {
	return nil, errors.New("fake: no transformer")
}
func (f *fakeText) LogitScale() (float64, error) { return f.scale, nil }

// Hand-chosen features: the normalized ones are 3-4-5 triangles and axes.
//
//	"a cat."   (3, 4)  → (0.6, 0.8)     "the cat!" (0, 2)  → (0, 1)
//	"a dog."   (5, 0)  → (1, 0)         "the dog!" (0, -7) → (0, -1)
//
// Ensembles: cat = normalize((0.3, 0.9)) = (1, 3)/√10,
// dog = normalize((0.5, -0.5)) = (1, -1)/√2.
func newFake() *fakeText {
	return &fakeText{scale: 50, features: map[string][]float32{
		"a cat.":   {3, 4},
		"the cat!": {0, 2},
		"a dog.":   {5, 0},
		"the dog!": {0, -7},
	}}
}

func newContext(text train.TextEncoder) *train.Context {
	return &train.Context{
		Text:       text,
		ClassNames: []string{"cat", "dog"},
		Templates:  []string{"a {}.", "the {}!"},
		FeatureDim: 2,
		Device:     gotch.CPU,
	}
}

func near(got, want []float64, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol*(1+math.Abs(want[i])) {
			return false
		}
	}
	return true
}

func TestZeroShot(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r10, r2 := math.Sqrt(10), math.Sqrt(2)
	// Image features (1, 0), (0, 2), (3, -4) normalize to (1, 0), (0, 1),
	// (0.6, -0.8).
	images := []float32{1, 0, 0, 2, 3, -4}
	tests := []struct {
		name        string
		opts        Options
		weights     []float64
		logits      []float64
		wantBatches []int
	}{
		{
			name:    "ensemble",
			opts:    Options{},
			weights: []float64{1 / r10, 3 / r10, 1 / r2, -1 / r2},
			logits: []float64{
				50 / r10, 50 / r2,
				150 / r10, -50 / r2,
				-90 / r10, 70 / r2,
			},
			wantBatches: []int{2, 2},
		},
		{
			name:    "single template",
			opts:    Options{Templates: 1},
			weights: []float64{0.6, 0.8, 1, 0},
			logits: []float64{
				30, 50,
				40, 0,
				50 * (0.36 - 0.64), 30,
			},
			wantBatches: []int{2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t)
			fake := newFake()
			m := New(tc.opts)
			defer m.Drop()
			if err := m.Init(newContext(fake), nil); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(fake.batches) != fmt.Sprint(tc.wantBatches) {
				t.Errorf("encoded batches %v, want %v", fake.batches, tc.wantBatches)
			}
			if got := m.Weights().Float64Values(); !near(got, tc.weights, 1e-6) {
				t.Errorf("weights = %v, want %v", got, tc.weights)
			}
			if ps := m.Parameters(); len(ps) != 0 {
				t.Errorf("Parameters() = %v, want none", ps)
			}
			f := ts.MustOfSlice(images).MustView([]int64{3, 2}, true)
			defer f.MustDrop()
			for _, training := range []bool{false, true} {
				l, err := m.Logits(f, training)
				if err != nil {
					t.Fatal(err)
				}
				if s := l.MustSize(); fmt.Sprint(s) != "[3 2]" {
					t.Errorf("logits shape %v, want [3 2]", s)
				}
				if got := l.Float64Values(); !near(got, tc.logits, 1e-5) {
					t.Errorf("training=%v: logits = %v, want %v", training, got, tc.logits)
				}
				l.MustDrop()
			}
		})
	}
}

func TestZeroShotErrors(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tests := []struct {
		name   string
		edit   func(*train.Context)
		opts   Options
		errSub string
	}{
		{"no text encoder", func(c *train.Context) { c.Text = nil }, Options{}, "no text encoder"},
		{"no classes", func(c *train.Context) { c.ClassNames = nil }, Options{}, "no class names"},
		{"no templates", func(c *train.Context) { c.Templates = nil }, Options{}, "no prompt templates"},
		{"template without {}", func(c *train.Context) { c.Templates = []string{"a {}.", "a photo"} }, Options{}, `"a photo"`},
		{"too many templates", func(*train.Context) {}, Options{Templates: 3}, "3 templates requested"},
		{"encoder error", func(c *train.Context) { c.ClassNames = []string{"cat", "cow"} }, Options{}, `unknown text "a cow."`},
		{"wrong dimension", func(c *train.Context) { c.FeatureDim = 3 }, Options{}, "D = 3"},
		{"bad logit scale", func(c *train.Context) { c.Text.(*fakeText).scale = math.NaN() }, Options{}, "logit scale is NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t)
			ctx := newContext(newFake())
			tc.edit(ctx)
			m := New(tc.opts)
			defer m.Drop()
			err := m.Init(ctx, nil)
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Fatalf("Init error = %v, want one containing %q", err, tc.errSub)
			}
		})
	}
	m := New(Options{})
	if _, err := m.Logits(ts.MustOfSlice([]float32{1, 0}).MustView([]int64{1, 2}, true), false); err == nil {
		t.Error("Logits before Init succeeded")
	}
	if err := m.Init(newContext(newFake()), nil); err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	bad := ts.MustOfSlice([]float32{1, 0, 0}).MustView([]int64{1, 3}, true)
	defer bad.MustDrop()
	if _, err := m.Logits(bad, false); err == nil || !strings.Contains(err.Error(), "[1 3]") {
		t.Errorf("Logits on [1 3] features: error %v, want a shape error", err)
	}
}

// lockThread pins the test's goroutine to its OS thread (libtorch's grad
// mode is per thread) until the test ends.
func lockThread(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}
