package cocoop

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/internal/fixture"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/train"
)

type meta struct {
	Classes []string           `json:"classes"`
	CtxInit string             `json:"ctx_init"`
	Scale   float64            `json:"scale"`
	Tokens  map[string][]int64 `json:"tokens"`
	SGD     struct {
		LR, Momentum, WeightDecay float64
	} `json:"sgd"`
}

// fakeText is the differentiable stand-in of testdata/gen.py: features =
// mean over positions l <= eot of tanh(x + pos), times proj.
type fakeText struct {
	tokens          map[string][]int64
	table, pos, prj *ts.Tensor
	length          int64
	scale           float64
	calls, prompts  int
}

func (f *fakeText) Tokenize(texts []string) (*ts.Tensor, error) {
	var ids []int64
	for _, s := range texts {
		r, ok := f.tokens[s]
		if !ok {
			return nil, fmt.Errorf("fake tokenizer: unknown text %q", s)
		}
		ids = append(ids, r...)
	}
	return ts.MustOfSlice(ids).MustView([]int64{int64(len(texts)), f.length}, true), nil
}

func (f *fakeText) TokenEmbedding(tokens *ts.Tensor) (*ts.Tensor, error) {
	s := tokens.MustSize()
	flat := tokens.MustView([]int64{-1}, false)
	defer flat.MustDrop()
	e := f.table.MustIndexSelect(0, flat, false)
	return e.MustView([]int64{s[0], s[1], -1}, true), nil
}

func (f *fakeText) EncodeEmbeddings(x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	f.calls++
	f.prompts += len(eot)
	s := x.MustSize()
	mask := make([]float32, s[0]*s[1])
	for n, e := range eot {
		for l := int64(0); l <= e; l++ {
			mask[int64(n)*s[1]+l] = 1
		}
	}
	m := ts.MustOfSlice(mask).MustView([]int64{s[0], s[1], 1}, true)
	defer m.MustDrop()
	h := x.MustAdd(f.pos, false).MustTanh(true).MustMul(m, true)
	sum := h.MustSumDimIntlist([]int64{1}, false, gotch.Float, true)
	cnt := m.MustSumDimIntlist([]int64{1}, false, gotch.Float, false)
	mean := sum.MustDiv(cnt, true)
	cnt.MustDrop()
	return mean.MustMm(f.prj, true), nil
}

func (f *fakeText) EncodeTexts([]string) (*ts.Tensor, error) { return nil, fmt.Errorf("unused") }
func (f *fakeText) LogitScale() (float64, error)             { return f.scale, nil }

func loadMeta(t *testing.T) *meta {
	b, err := os.ReadFile("testdata/meta.json")
	if err != nil {
		t.Fatal(err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func fixtureText(t *testing.T, m *meta) *fakeText {
	pos := fixture.Read(t, "pos")
	f := &fakeText{tokens: m.Tokens, table: fixture.Read(t, "table").Tensor(t), pos: pos.Tensor(t), prj: fixture.Read(t, "proj").Tensor(t),
		length: pos.Shape[0], scale: m.Scale}
	t.Cleanup(func() { f.table.MustDrop(); f.pos.MustDrop(); f.prj.MustDrop() })
	return f
}

func assertClose(t *testing.T, name string, got *ts.Tensor, want fixture.Array, rel, abs float64) {
	t.Helper()
	fixture.AssertClose(t, name, got.Float64Values(), want.Data, rel, abs)
}

var paramNames = []string{ParamCtx, ParamLinear1, ParamBias1, ParamLinear2, ParamBias2}

// TestMatchesReference checks the per-image prompts, logits, loss,
// gradients of the context and the meta-network, and one SGD step against
// testdata/gen.py, for several prompt batches (chunking must not change
// anything).
func TestMatchesReference(t *testing.T) {
	fixture.LockGrad(t)
	m := loadMeta(t)
	for _, batch := range []int{0, 5, 2, 1} {
		t.Run(fmt.Sprintf("prompt_batch=%d", batch), func(t *testing.T) {
			text := fixtureText(t, m)
			feat := fixture.Read(t, "features")
			o := DefaultOptions()
			o.PromptBatch = batch
			c := New(o)
			defer c.Drop()
			ctx := &train.Context{Text: text, ClassNames: m.Classes, FeatureDim: feat.Shape[1], Device: gotch.CPU, Seed: 1}
			if err := c.Init(ctx, nil); err != nil {
				t.Fatal(err)
			}
			// The context comes from the words; the meta-network from the fixture.
			assertClose(t, "init ctx", c.ctx, fixture.Read(t, "init/ctx"), 0, 0)
			init := map[string]*ts.Tensor{}
			for _, n := range paramNames {
				init[n] = fixture.Read(t, "init/"+n).Tensor(t)
				defer init[n].MustDrop()
			}
			if err := train.CopyParameters(c.Parameters(), init, ""); err != nil {
				t.Fatal(err)
			}
			x := feat.Tensor(t)
			defer x.MustDrop()
			_, y, err := npy.ReadInt64("testdata/labels.npy")
			if err != nil {
				t.Fatal(err)
			}
			labels := ts.MustOfSlice(y)
			defer labels.MustDrop()
			logits, err := c.Logits(x, true)
			if err != nil {
				t.Fatal(err)
			}
			defer logits.MustDrop()
			assertClose(t, "logits", logits, fixture.Read(t, "logits"), 1e-5, 1e-6)
			loss := logits.CrossEntropyForLogits(labels)
			defer loss.MustDrop()
			assertClose(t, "loss", loss, fixture.Read(t, "loss"), 1e-5, 1e-6)
			loss.MustBackward()
			for _, p := range c.Parameters() {
				g := p.Tensor.MustGrad(false)
				assertClose(t, "grad "+p.Name, g, fixture.Read(t, "grad/"+p.Name), 1e-4, 1e-5)
				g.MustDrop()
			}
			opt := train.NewSGD(c.Parameters(), m.SGD.Momentum, m.SGD.WeightDecay)
			if err := opt.Step(m.SGD.LR); err != nil {
				t.Fatal(err)
			}
			for _, p := range c.Parameters() {
				assertClose(t, "step "+p.Name, p.Tensor, fixture.Read(t, "step/"+p.Name), 1e-5, 1e-6)
			}
			// Evaluation gives the updated logits without gradients, with
			// at most prompt_batch prompts per encoder call.
			text.calls, text.prompts = 0, 0
			ev, err := c.Logits(x, false)
			if err != nil {
				t.Fatal(err)
			}
			defer ev.MustDrop()
			if ev.MustRequiresGrad() {
				t.Error("evaluation logits record gradients")
			}
			pb := batch
			if pb == 0 {
				pb = 1024
			}
			if text.prompts != 4*3 || text.prompts > text.calls*pb {
				t.Errorf("%d prompts in %d calls, want 12 prompts, at most %d per call", text.prompts, text.calls, pb)
			}
		})
	}
}

// TestLearnsAboveChance trains CoCoOp with the loop through the
// production text side (CLIP's BPE tokenizer, a small random CLIP text
// tower) on synthetic features of four classes and checks that held-out
// accuracy rises well above chance.
func TestLearnsAboveChance(t *testing.T) {
	fixture.LockGrad(t)
	tok, err := tokenizer.New()
	if err != nil {
		t.Fatal(err)
	}
	const d = 16
	model, err := clip.New(clip.Config{
		EmbedDim: d, ImageResolution: 32, VisionLayers: []int{1}, VisionWidth: 64, VisionPatchSize: 16,
		ContextLength: 77, VocabSize: 49408, TransformerWidth: 64, TransformerHeads: 1, TransformerLayers: 1,
	}, gotch.CPU, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer model.Drop()
	text := &clip.TextSide{Model: model, Tokenizer: tok, Device: gotch.CPU}
	classes := []string{"golden retriever", "hot-air balloon", "Abyssinian", "rock beauty"}
	c4 := len(classes)
	rng := rand.New(rand.NewPCG(7, 8))
	protos := make([]float64, c4*d)
	for i := range protos {
		protos[i] = rng.NormFloat64()
	}
	set := func(n int) *train.Features {
		x := make([]float32, n*d)
		y := make([]int64, n)
		for i := range y {
			y[i] = int64(i % c4)
			for j := range d {
				x[i*d+j] = float32(protos[int(y[i])*d+j] + 0.4*rng.NormFloat64())
			}
		}
		return &train.Features{X: ts.MustOfSlice(x).MustView([]int64{int64(n), d}, true), Labels: ts.MustOfSlice(y), Y: y}
	}
	tr, test := set(4*c4), set(100)
	defer tr.Drop()
	defer test.Drop()
	o := DefaultOptions()
	o.MetaReduction = 4
	c := New(o)
	defer c.Drop()
	ctx := &train.Context{Text: text, ClassNames: classes, FeatureDim: d, Device: gotch.CPU, Seed: 3}
	if err := c.Init(ctx, []*train.Features{tr}); err != nil {
		t.Fatal(err)
	}
	acc := func() float64 {
		ev, err := train.EvaluateMethod(context.Background(), c, test, 64)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Top1
	}
	before := acc()
	opt := train.NewAdamW(c.Parameters(), 0.9, 0.999, 1e-8, 0)
	loop := train.NewLoop(c, opt, train.Constant(0.01), 30, 4, []*train.Features{tr}, 1)
	if err := loop.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := acc()
	t.Logf("test accuracy %.1f%% before, %.1f%% after training (chance 25%%)", before, after)
	if after < 70 {
		t.Errorf("accuracy %.1f%% after training, want >= 70%% (chance 25%%)", after)
	}
}

func TestInitErrors(t *testing.T) {
	fixture.LockGrad(t)
	m := loadMeta(t)
	text := fixtureText(t, m)
	for _, tc := range []struct {
		opts func(*Options)
		d    int64
		want string
	}{
		{func(o *Options) { o.CtxInit = ""; o.NCtx = 0 }, 32, "n_ctx = 0"},
		{func(o *Options) { o.MetaReduction = 64 }, 32, "leaves no hidden unit"},
		{func(o *Options) { o.CtxInit = "a photo of dog" }, 32, "unknown text"},
	} {
		o := DefaultOptions()
		tc.opts(&o)
		c := New(o)
		err := c.Init(&train.Context{Text: text, ClassNames: m.Classes, FeatureDim: tc.d, Device: gotch.CPU}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", o, err, tc.want)
		}
		c.Drop()
	}
}

// TestPrefixSharingIsExact runs CoCoOp's training logits and backward
// pass with the text savings (each image's start token and context
// encoded once, in the same pass as its prompts' class positions, cut
// after the last end-of-text token) and against the full computation
// (every prompt whole over all 77 positions: no_prefix_sharing with a
// full-context model, as CoCoOp's code runs), on a two-layer random CLIP
// text tower with class names of 2 to 15 tokens, three images and several
// prompt batches. Logits agree within 5e-6 relative and the
// gradients of the context and the meta-network within 3e-5 (fp32 sums
// taken in another order).
func TestPrefixSharingIsExact(t *testing.T) {
	fixture.LockGrad(t)
	tok, err := tokenizer.New()
	if err != nil {
		t.Fatal(err)
	}
	const d = 16
	cfg := clip.Config{
		EmbedDim: d, ImageResolution: 32, VisionLayers: []int{1}, VisionWidth: 64, VisionPatchSize: 16,
		ContextLength: 77, VocabSize: 49408, TransformerWidth: 64, TransformerHeads: 2, TransformerLayers: 2,
	}
	// Names of 2 to 15 tokens: the shared encoding sorts and groups them by
	// length (here into two groups).
	classes := []string{"golden retriever", "hot-air balloon", "Abyssinian", "rock beauty",
		"yellow lady's slipper orchid from the wet forests of the southern mountains", "yellow lady's slipper"}
	x := make([]float32, 3*d)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.7))
	}
	feats := ts.MustOfSlice(x).MustView([]int64{3, d}, true)
	defer feats.MustDrop()
	labels := ts.MustOfSlice([]int64{0, 3, 4})
	defer labels.MustDrop()

	// run returns the logits and every parameter's gradient.
	run := func(sharing bool, promptBatch int) ([]float64, map[string][]float64) {
		var opts []clip.Option
		if !sharing {
			opts = append(opts, clip.WithFullTextContext())
		}
		model, err := clip.New(cfg, gotch.CPU, 3, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer model.Drop()
		o := DefaultOptions()
		o.MetaReduction = 4
		o.PromptBatch = promptBatch
		o.NoPrefixSharing = !sharing
		c := New(o)
		defer c.Drop()
		text := &clip.TextSide{Model: model, Tokenizer: tok, Device: gotch.CPU}
		if err := c.Init(&train.Context{Text: text, ClassNames: classes, FeatureDim: d, Device: gotch.CPU, Seed: 5}, nil); err != nil {
			t.Fatal(err)
		}
		if (c.prefixText != nil) != sharing {
			t.Fatalf("prefix sharing %v, want %v", c.prefixText != nil, sharing)
		}
		logits, err := c.Logits(feats, true)
		if err != nil {
			t.Fatal(err)
		}
		defer logits.MustDrop()
		loss := logits.CrossEntropyForLogits(labels)
		defer loss.MustDrop()
		loss.MustBackward()
		grads := map[string][]float64{}
		for _, p := range c.Parameters() {
			g := p.Tensor.MustGrad(false)
			grads[p.Name] = g.Float64Values()
			g.MustDrop()
		}
		return logits.Float64Values(), grads
	}
	relDiff := func(got, want []float64) float64 {
		var diff, ref float64
		for i := range want {
			diff = math.Max(diff, math.Abs(got[i]-want[i]))
			ref = math.Max(ref, math.Abs(want[i]))
		}
		return diff / ref
	}
	wantLogits, wantGrads := run(false, 0)
	for _, pb := range []int{0, 7, 2} {
		name := fmt.Sprintf("prompt_batch=%d", pb)
		logits, grads := run(true, pb)
		if r := relDiff(logits, wantLogits); r > 5e-6 {
			t.Errorf("%s: logits differ by %.3g relative (> 5e-6)", name, r)
		} else {
			t.Logf("%s: logits differ by %.3g relative", name, r)
		}
		for n, want := range wantGrads {
			r := relDiff(grads[n], want)
			if r > 3e-5 {
				t.Errorf("%s: gradient of %s differs by %.3g relative (> 3e-5)", name, n, r)
			} else {
				t.Logf("%s: gradient of %s differs by %.3g relative", name, n, r)
			}
		}
	}
}
