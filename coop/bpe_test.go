package coop

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/train"
)

// TestWithCLIPTokenizer runs CoOp through the toolkit's production text
// side (clip.TextSide: CLIP's BPE tokenizer and a clip.Model) on a small
// randomly initialized model with CLIP's full vocabulary, and checks the
// skeleton facts against the tokenizer itself.
func TestWithCLIPTokenizer(t *testing.T) {
	lockThread(t)
	tok, err := tokenizer.New()
	if err != nil {
		t.Fatal(err)
	}
	model, err := clip.New(clip.Config{
		EmbedDim: 16, ImageResolution: 32, VisionLayers: []int{1}, VisionWidth: 64, VisionPatchSize: 16,
		ContextLength: 77, VocabSize: 49408, TransformerWidth: 64, TransformerHeads: 1, TransformerLayers: 1,
	}, cpu, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer model.Drop()
	text := &clip.TextSide{Model: model, Tokenizer: tok, Device: cpu}
	classes := []string{"golden retriever", "hot-air balloon", "Abyssinian", "rock beauty"}
	var nameLens []int64
	for _, c := range classes {
		ids, err := tok.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		nameLens = append(nameLens, int64(len(ids)))
	}
	ctx := &train.Context{Text: text, ClassNames: classes, FeatureDim: 16, Device: cpu, Seed: 9}

	t.Run("random", func(t *testing.T) {
		lockThread(t)
		m := New(Options{ClassTokenPosition: PositionFront})
		if err := m.Init(ctx, nil); err != nil {
			t.Fatal(err)
		}
		defer m.Drop()
		if fmt.Sprint(m.nameLens) != fmt.Sprint(nameLens) {
			t.Errorf("name lengths %v, the tokenizer encodes %v", m.nameLens, nameLens)
		}
		for i, n := range nameLens {
			if want := 1 + 16 + n + 1; m.eot[i] != want { // SOT, X×16, name, "."
				t.Errorf("class %q: end-of-text at %d, want %d", classes[i], m.eot[i], want)
			}
		}
		// The 16 placeholders are "X", token 343; the frozen skeleton keeps
		// their embedding rows (unused) at 1..16.
		ids, err := text.Tokenize([]string{strings.TrimSpace(strings.Repeat("X ", 16)) + " " + classes[0] + "."})
		if err != nil {
			t.Fatal(err)
		}
		row := ids.Int64Values()
		ids.MustDrop()
		for j := 1; j <= 16; j++ {
			if row[j] != 343 {
				t.Fatalf("skeleton token %d = %d, want 343 (X)", j, row[j])
			}
		}
		x := ts.MustRandn([]int64{5, 16}, 6, cpu)
		defer x.MustDrop()
		l, err := m.Logits(x, true)
		if err != nil {
			t.Fatal(err)
		}
		defer l.MustDrop()
		if s := l.MustSize(); fmt.Sprint(s) != "[5 4]" {
			t.Errorf("logits shape %v, want [5 4]", s)
		}
		loss := l.MustSum(l.DType(), false)
		loss.MustBackward()
		loss.MustDrop()
		g := m.ctx.MustGrad(false)
		defer g.MustDrop()
		var norm float64
		for _, v := range g.Float64Values() {
			norm += v * v
		}
		if norm == 0 || math.IsNaN(norm) {
			t.Errorf("|d sum(logits)/d ctx|² = %g, want a positive number", norm)
		}
	})

	t.Run("words", func(t *testing.T) {
		lockThread(t)
		m := New(Options{CtxInit: "a photo of a"})
		if err := m.Init(ctx, nil); err != nil {
			t.Fatal(err)
		}
		defer m.Drop()
		ids, err := tok.Encode("a photo of a")
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 4 {
			t.Fatalf("the tokenizer encodes %q as %v, want 4 tokens", "a photo of a", ids)
		}
		words := make([]int64, len(ids))
		for i, id := range ids {
			words[i] = int64(id)
		}
		w := ts.MustOfSlice(words).MustView([]int64{1, 4}, true)
		want, err := model.TokenEmbedding(w)
		w.MustDrop()
		if err != nil {
			t.Fatal(err)
		}
		defer want.MustDrop()
		if got, w := m.ctx.Float64Values(), want.Float64Values(); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Error("the word-initialized context differs from the token embedding of the words")
		}
	})

	t.Run("too long", func(t *testing.T) {
		lockThread(t)
		long := strings.TrimSpace(strings.Repeat("very ", 60)) + " long name"
		bad := &train.Context{Text: text, ClassNames: []string{"cat", long}, FeatureDim: 16, Device: cpu}
		m := New(Options{})
		defer m.Drop()
		err := m.Init(bad, nil)
		if err == nil || !strings.Contains(err.Error(), "very very") || !strings.Contains(err.Error(), "needs 81 tokens") {
			t.Errorf("Init with a 62-token class name: error %v, want one naming the class and 81 tokens", err)
		}
		longer := strings.Repeat("very ", 80) + "long"
		bad.ClassNames = []string{"cat", longer}
		err = m.Init(bad, nil)
		if err == nil || !strings.Contains(err.Error(), `class "very very`) {
			t.Errorf("Init with an 81-token class name: error %v, want one naming the class", err)
		}
	})
}
