package coop

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/train"
)

// savingsClasses are class names of 1 to 6 tokens, so that one batch holds
// prompts of different lengths.
var savingsClasses = []string{"cat", "golden retriever", "sea lion pup", "lion", "a photo of a cat sea lion", "pup"}

// stepResult is what one training call and one evaluation call give.
type stepResult struct {
	logits, grad, eval []float64
}

// coopStep initializes CoOp with o on text, sets the context to ctx (nil:
// keep the seeded one), runs a training call of Logits, the loss's
// backward pass and FinishBackward, and an evaluation call.
func coopStep(t *testing.T, text train.TextEncoder, o Options, images, labels *ts.Tensor) stepResult {
	t.Helper()
	m := New(o)
	ctx := &train.Context{Text: text, ClassNames: savingsClasses, FeatureDim: 32, Device: cpu, Seed: 3}
	if err := m.Init(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	logits, err := m.Logits(images, true)
	if err != nil {
		t.Fatal(err)
	}
	loss := logits.CrossEntropyForLogits(labels)
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	if err := m.FinishBackward(); err != nil {
		t.Fatal(err)
	}
	g := m.ctx.MustGrad(false)
	var r stepResult
	r.logits, r.grad = logits.Float64Values(), g.Float64Values()
	g.MustDrop()
	loss.MustDrop()
	logits.MustDrop()
	ev, err := m.Logits(images, false)
	if err != nil {
		t.Fatal(err)
	}
	r.eval = ev.Float64Values()
	ev.MustDrop()
	return r
}

// TestTextSavingsAreExact compares CoOp's text side with its savings (cut
// after the last end-of-text token, shared prefix encoded once, chunks of
// similar length with activation recomputation) against the full
// computation (every prompt whole over 77 positions, all classes at once),
// for every class-token position and kind of context, with six prompts of
// 1 to 6 name tokens in one batch. Tolerances are relative to the largest
// value (max |difference| / max |value|), fp32 rounding of sums taken in
// another order: logits within 5e-6 (1.6e-6 at most measured on libtorch
// 1.13), the context's gradient within 3e-5 (1.2e-5 at most measured, for
// a class-specific context at the end, whose gradient changes by 6e-6
// between batch compositions alone, e.g. chunks of two without the
// prefix; 1e-6 to 5e-6 elsewhere).
func TestTextSavingsAreExact(t *testing.T) {
	lockThread(t)
	b, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref pyReference
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	feats := flat(ref.ImageFeatures)
	feats = append(feats, flat(ref.ImageFeatures)[:64]...) // 6 images
	images := ts.MustOfSlice(float32s(feats)).MustView([]int64{6, 32}, true)
	defer images.MustDrop()
	labels := ts.MustOfSlice([]int64{0, 1, 2, 3, 4, 5})
	defer labels.MustDrop()

	saving, err := newClipText("../clip/testdata/vit.pt", "testdata/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	defer saving.model.Drop()
	full, err := newClipText("../clip/testdata/vit.pt", "testdata/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	full.model.Drop()
	if full.model, err = clip.Load("../clip/testdata/vit.pt", cpu, clip.WithFullTextContext()); err != nil {
		t.Fatal(err)
	}
	defer full.model.Drop()

	for _, pos := range []string{PositionEnd, PositionMiddle, PositionFront} {
		for _, kind := range []struct {
			name string
			o    Options
		}{
			{"shared16", Options{NCtx: 16}},
			{"csc4", Options{NCtx: 4, ClassSpecific: true}},
			{"words", Options{CtxInit: "a photo of a"}},
		} {
			base := kind.o
			base.ClassTokenPosition = pos
			off := base
			off.NoPrefixSharing = true
			want := coopStep(t, full, off, images, labels)
			for _, mode := range []struct {
				name string
				o    func(Options) Options
			}{
				{"cut", func(o Options) Options { o.NoPrefixSharing = true; return o }},
				{"cut+prefix", func(o Options) Options { return o }},
				{"cut+prefix+chunks4", func(o Options) Options { o.MaxTextBatch = 4; return o }},
				{"cut+prefix+chunks1", func(o Options) Options { o.MaxTextBatch = 1; return o }},
				{"cut+chunks2", func(o Options) Options { o.NoPrefixSharing = true; o.MaxTextBatch = 2; return o }},
			} {
				name := fmt.Sprintf("%s/%s/%s", pos, kind.name, mode.name)
				got := coopStep(t, saving, mode.o(base), images, labels)
				for _, d := range []struct {
					what      string
					got, want []float64
				}{{"training logits", got.logits, want.logits}, {"evaluation logits", got.eval, want.eval}, {"context gradient", got.grad, want.grad}} {
					if len(d.got) != len(d.want) {
						t.Fatalf("%s: %s have %d values, want %d", name, d.what, len(d.got), len(d.want))
					}
					r, tol := relDiffs(d.got, d.want), 5e-6
					if d.what == "context gradient" {
						tol = 3e-5
					}
					if r > tol {
						t.Errorf("%s: %s differ by %.3g relative (> %g)", name, d.what, r, tol)
					} else if testing.Verbose() {
						t.Logf("%s: %s differ by %.3g", name, d.what, r)
					}
				}
			}
		}
	}
}

// relDiffs is max |a - b| / max |b|.
func relDiffs(a, b []float64) float64 {
	var d, m float64
	for i := range b {
		d = max(d, abs(a[i]-b[i]))
		m = max(m, abs(b[i]))
	}
	return d / m
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
