package cocoop

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

type array struct {
	shape []int64
	data  []float32
}

func read(t *testing.T, name string) array {
	t.Helper()
	shape, data, err := npy.Read(filepath.Join("testdata", name+".npy"))
	if err != nil {
		t.Fatal(err)
	}
	s := make([]int64, len(shape))
	for i, v := range shape {
		s[i] = int64(v)
	}
	return array{s, data}
}

func (a array) tensor() *ts.Tensor { return ts.MustOfSlice(a.data).MustView(a.shape, true) }

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
func (f *fakeText) LogitScale() float64                      { return f.scale }

func lockGrad(t *testing.T) {
	runtime.LockOSThread()
	if _, err := torch.SetGradEnabled(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(runtime.UnlockOSThread)
}

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
	pos := read(t, "pos")
	f := &fakeText{tokens: m.Tokens, table: read(t, "table").tensor(), pos: pos.tensor(), prj: read(t, "proj").tensor(),
		length: pos.shape[0], scale: m.Scale}
	t.Cleanup(func() { f.table.MustDrop(); f.pos.MustDrop(); f.prj.MustDrop() })
	return f
}

func assertClose(t *testing.T, name string, got *ts.Tensor, want array, rel, abs float64) {
	t.Helper()
	g := got.Float64Values()
	if len(g) != len(want.data) {
		t.Fatalf("%s: %d values, want %d", name, len(g), len(want.data))
	}
	var ref, worst float64
	for _, w := range want.data {
		ref = math.Max(ref, math.Abs(float64(w)))
	}
	bad := 0
	for i, w := range want.data {
		d := math.Abs(g[i] - float64(w))
		worst = math.Max(worst, d)
		if d > rel*math.Abs(float64(w))+abs*ref || math.IsNaN(g[i]) {
			if bad < 3 {
				t.Errorf("%s[%d] = %.7g, want %.7g", name, i, g[i], w)
			}
			bad++
		}
	}
	t.Logf("%s: max |diff| %.3g (max |want| %.3g)", name, worst, ref)
}

var paramNames = []string{ParamCtx, ParamLinear1, ParamBias1, ParamLinear2, ParamBias2}

// TestMatchesReference checks the per-image prompts, logits, loss,
// gradients of the context and the meta-network, and one SGD step against
// testdata/gen.py, for several prompt batches (chunking must not change
// anything).
func TestMatchesReference(t *testing.T) {
	lockGrad(t)
	m := loadMeta(t)
	for _, batch := range []int{0, 5, 2, 1} {
		t.Run(fmt.Sprintf("prompt_batch=%d", batch), func(t *testing.T) {
			text := fixtureText(t, m)
			feat := read(t, "features")
			o := DefaultOptions()
			o.PromptBatch = batch
			c := New(o)
			defer c.Drop()
			ctx := &train.Context{Text: text, ClassNames: m.Classes, FeatureDim: feat.shape[1], Device: gotch.CPU, Seed: 1}
			if err := c.Init(ctx, nil); err != nil {
				t.Fatal(err)
			}
			// The context comes from the words; the meta-network from the fixture.
			assertClose(t, "init ctx", c.ctx, read(t, "init/ctx"), 0, 0)
			init := map[string]*ts.Tensor{}
			for _, n := range paramNames {
				init[n] = read(t, "init/"+n).tensor()
				defer init[n].MustDrop()
			}
			if err := train.CopyParameters(c.Parameters(), init, ""); err != nil {
				t.Fatal(err)
			}
			x := feat.tensor()
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
			assertClose(t, "logits", logits, read(t, "logits"), 1e-5, 1e-6)
			loss := logits.CrossEntropyForLogits(labels)
			defer loss.MustDrop()
			assertClose(t, "loss", loss, read(t, "loss"), 1e-5, 1e-6)
			loss.MustBackward()
			for _, p := range c.Parameters() {
				g := p.Tensor.MustGrad(false)
				assertClose(t, "grad "+p.Name, g, read(t, "grad/"+p.Name), 1e-4, 1e-5)
				g.MustDrop()
			}
			opt := train.NewSGD(c.Parameters(), m.SGD.Momentum, m.SGD.WeightDecay)
			if err := opt.Step(m.SGD.LR); err != nil {
				t.Fatal(err)
			}
			for _, p := range c.Parameters() {
				assertClose(t, "step "+p.Name, p.Tensor, read(t, "step/"+p.Name), 1e-5, 1e-6)
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
	lockGrad(t)
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
	lockGrad(t)
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
