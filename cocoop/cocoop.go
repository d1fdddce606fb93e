// Package cocoop is CoCoOp (Zhou et al., "Conditional Prompt Learning for
// Vision-Language Models", CVPR 2022) as a train.Method: CoOp's learned
// context v_1..v_M, shifted per image by a small meta-network of the image
// feature, so that every image gets its own prompts for all classes.
//
// For an image with normalized feature f̂ the meta-network gives
//
//	π(f̂) = W₂·ReLU(W₁·f̂ + b₁) + b₂        (Linear(D, D/16), ReLU, Linear(D/16, W))
//
// and the prompt of class c is [SOT, v_1 + π, …, v_M + π, name_c, ".", EOT]
// (the class name at the end). All C prompts of the image go through the
// frozen text encoder; with ĝ_c their normalized features the logits are
// s·f̂·ĝ_cᵀ, s = exp(logit_scale) of the checkpoint. The context and the
// meta-network are learned with cross-entropy.
//
// The text encoder therefore runs B·C times per batch of B images. Prompts
// are encoded PromptBatch at a time: several images per call when C is
// small, class chunks of one image when C is large. In evaluation nothing
// is kept between chunks; in training the chunks' graphs are kept until
// the backward pass (CoCoOp's published batch of one image bounds them to
// one image's C prompts).
//
// Randomness (the meta-network's PyTorch-style default initialization)
// comes from math/rand/v2 seeded with Context.Seed.
package cocoop

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/coop"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/train"
)

// pcgStream is the PCG stream ("cocoop") paired with Context.Seed.
const pcgStream = 0x636f636f6f70

// Parameter names, as in the reference's state dict.
const (
	ParamCtx     = "ctx"
	ParamLinear1 = "meta_net.linear1.weight"
	ParamBias1   = "meta_net.linear1.bias"
	ParamLinear2 = "meta_net.linear2.weight"
	ParamBias2   = "meta_net.linear2.bias"
)

// Options configures CoCoOp. Start from DefaultOptions.
type Options struct {
	// CtxInit initializes the context from words ("_" stands for a space):
	// M is the number of words, each must be one token. Empty: NCtx
	// vectors drawn from N(0, InitStd²).
	CtxInit string `toml:"ctx_init"`
	// NCtx is M for a random initialization (ignored with CtxInit).
	NCtx int `toml:"n_ctx"`
	// InitStd is the standard deviation of a random initialization.
	InitStd float64 `toml:"init_std"`
	// MetaReduction is the meta-network's bottleneck: hidden size D /
	// MetaReduction (16 in the reference).
	MetaReduction int `toml:"meta_reduction"`
	// PromptBatch bounds the prompts encoded in one text-encoder call
	// (0: 1024); it trades memory for speed and does not change results.
	PromptBatch int `toml:"prompt_batch"`
	// NoPrefixSharing encodes every prompt whole. By default each image's
	// start token and context go through the text transformer once, and
	// the class-specific positions of that image's prompts attend to
	// their keys and values, in the same pass, in groups of classes of
	// similar prompt length, each cut after its own last end-of-text
	// token; the transformer is causal,
	// so the logits and gradients are the same to fp32 rounding. This
	// switch is there to compare the two.
	NoPrefixSharing bool `toml:"no_prefix_sharing"`
}

// DefaultOptions returns the published configuration
// (vit_b16_c4_ep10_batch1_ctxv1): context "a photo of a", meta-network
// bottleneck D/16.
func DefaultOptions() Options {
	return Options{CtxInit: "a photo of a", NCtx: 4, InitStd: 0.02, MetaReduction: 16, PromptBatch: 1024}
}

func (o Options) validate() error {
	if o.CtxInit == "" && o.NCtx < 1 {
		return fmt.Errorf("n_ctx = %d, want at least 1 without ctx_init", o.NCtx)
	}
	if o.InitStd < 0 || math.IsNaN(o.InitStd) {
		return fmt.Errorf("init_std = %g, want >= 0", o.InitStd)
	}
	if o.MetaReduction < 1 {
		return fmt.Errorf("meta_reduction = %d, want >= 1", o.MetaReduction)
	}
	if o.PromptBatch < 0 {
		return fmt.Errorf("prompt_batch = %d, want >= 0", o.PromptBatch)
	}
	return nil
}

// CoCoOp is the method. Create it with New; Init builds it.
type CoCoOp struct {
	opts               Options
	text               train.TextEncoder
	prefixText         train.PrefixEncoder // nil: prompts encoded whole
	m, width, length   int64
	classes, d, hidden int64
	scale              float64
	device             gotch.Device
	prefix, suffix     *ts.Tensor // [C, 1, W], [C, L−1−M, W] frozen, embedding dtype
	eot                []int64
	ctx                *ts.Tensor // [M, W] float32
	w1, b1, w2, b2     *ts.Tensor // meta-network
	promptBatch        int64
}

var _ train.Method = (*CoCoOp)(nil)

// New returns an uninitialized CoCoOp.
func New(o Options) *CoCoOp { return &CoCoOp{opts: o} }

// Build is CoCoOp's constructor for the method registry: it trains on
// augmented features of the train set (CoOp's augmentation).
func Build(o Options) (train.Method, train.Needs, error) {
	if err := o.validate(); err != nil {
		return nil, train.Needs{}, err
	}
	return New(o), train.Needs{TrainFeatures: true, Augment: true}, nil
}

// Init implements train.Method: it embeds the prompt skeletons, creates
// the context and draws the meta-network.
func (c *CoCoOp) Init(ctx *train.Context, views []*train.Features) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.init(ctx); err != nil {
		c.Drop()
		return fmt.Errorf("cocoop: %w", err)
	}
	return nil
}

func (c *CoCoOp) init(ctx *train.Context) error {
	if err := c.opts.validate(); err != nil {
		return err
	}
	if ctx == nil || ctx.Text == nil {
		return errors.New("the context has no text encoder")
	}
	if len(ctx.ClassNames) == 0 {
		return errors.New("no class names")
	}
	if c.ctx != nil {
		return errors.New("already initialized")
	}
	c.text, c.device, c.d = ctx.Text, ctx.Device, ctx.FeatureDim
	if pe, ok := ctx.Text.(train.PrefixEncoder); ok && !c.opts.NoPrefixSharing {
		c.prefixText = pe
	}
	c.classes = int64(len(ctx.ClassNames))
	c.promptBatch = int64(c.opts.PromptBatch)
	if c.promptBatch == 0 {
		c.promptBatch = 1024
	}
	c.hidden = c.d / int64(c.opts.MetaReduction)
	if c.hidden < 1 {
		return fmt.Errorf("feature size %d / meta_reduction %d leaves no hidden unit", c.d, c.opts.MetaReduction)
	}
	m, words, err := coop.ContextWords(c.opts.CtxInit, c.opts.NCtx)
	if err != nil {
		return err
	}
	c.m = m
	var initRows []float32
	err = torch.NoGrad(func() error {
		var s torch.Scope
		defer s.Drop()
		texts := make([]string, c.classes)
		for i, name := range ctx.ClassNames {
			texts[i] = words + " " + name + "."
		}
		ids, err := s.Op("tokenize prompts")(c.text.Tokenize(texts))
		if err != nil {
			return fmt.Errorf("tokenize the prompts: %w", err)
		}
		shape, err := ids.Size()
		if err != nil || len(shape) != 2 || shape[0] != c.classes {
			return fmt.Errorf("tokenizer returned shape %v for %d prompts", shape, c.classes)
		}
		c.length = shape[1]
		v, err := torch.Values[int64](ids)
		if err != nil {
			return fmt.Errorf("prompt tokens: %w", err)
		}
		c.eot = clip.EndOfTextPositions(v, c.length)
		for i, e := range c.eot {
			if e < 1+c.m+1 {
				return fmt.Errorf("class %q: the prompt %q ends at token %d, inside the context", ctx.ClassNames[i], texts[i], e)
			}
		}
		emb, err := s.Op("embed prompts")(c.text.TokenEmbedding(ids))
		if err != nil {
			return err
		}
		es, err := emb.Size()
		if err != nil || len(es) != 3 {
			return fmt.Errorf("token embedding of shape %v", es)
		}
		c.width = es[2]
		ed, err := s.Op("move embeddings")(emb.To(c.device, false))
		if err != nil {
			return err
		}
		if c.prefix, err = ownCopy(ed.Narrow(1, 0, 1, false)); err != nil {
			return err
		}
		if c.suffix, err = ownCopy(ed.Narrow(1, 1+c.m, c.length-1-c.m, false)); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.opts.CtxInit != "" {
		if initRows, err = coop.ContextRows(c.text, words, c.m, c.width); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(ctx.Seed, pcgStream))
	if initRows == nil {
		initRows = make([]float32, c.m*c.width)
		for i := range initRows {
			initRows[i] = float32(rng.NormFloat64() * c.opts.InitStd)
		}
	}
	uniform := func(n int64, fanIn int64) []float32 {
		bound := 1 / math.Sqrt(float64(fanIn))
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((2*rng.Float64() - 1) * bound)
		}
		return v
	}
	for _, p := range []struct {
		dst   **ts.Tensor
		data  []float32
		shape []int64
	}{
		{&c.ctx, initRows, []int64{c.m, c.width}},
		{&c.w1, uniform(c.hidden*c.d, c.d), []int64{c.hidden, c.d}},
		{&c.b1, uniform(c.hidden, c.d), []int64{c.hidden}},
		{&c.w2, uniform(c.width*c.hidden, c.hidden), []int64{c.width, c.hidden}},
		{&c.b2, uniform(c.width, c.hidden), []int64{c.width}},
	} {
		if *p.dst, err = torch.NewParam(p.data, p.shape, c.device); err != nil {
			return err
		}
	}
	if c.scale, err = train.LogitScaleOf(ctx.Text); err != nil {
		return err
	}
	if ctx.Log != nil {
		ctx.Log.Info("cocoop initialized", "context", c.m, "width", c.width, "meta_hidden", c.hidden, "classes", c.classes)
	}
	return nil
}

// ownCopy returns a copy of x (a view) with its own storage.
func ownCopy(x *ts.Tensor, err error) (*ts.Tensor, error) {
	if err != nil {
		return nil, torch.Err("slice embeddings", err)
	}
	defer x.Drop()
	return torch.Copy("copy embeddings", x)
}

// Parameters implements train.Method: the context and the meta-network.
func (c *CoCoOp) Parameters() []train.Param {
	if c.ctx == nil {
		return nil
	}
	return []train.Param{{Name: ParamCtx, Tensor: c.ctx}, {Name: ParamLinear1, Tensor: c.w1}, {Name: ParamBias1, Tensor: c.b1},
		{Name: ParamLinear2, Tensor: c.w2}, {Name: ParamBias2, Tensor: c.b2}}
}

// Logits implements train.Method: s·f̂_i·Ĝ_iᵀ with each image's own class
// features Ĝ_i. Gradients flow to the context and the meta-network when
// the calling thread records them (training).
func (c *CoCoOp) Logits(features *ts.Tensor, training bool) (*ts.Tensor, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if c.ctx == nil {
		return nil, errors.New("cocoop: logits before Init")
	}
	if training {
		return c.logits(features)
	}
	var out *ts.Tensor
	err := torch.NoGrad(func() error {
		var err error
		out, err = c.logits(features)
		return err
	})
	return out, err
}

func (c *CoCoOp) logits(features *ts.Tensor) (*ts.Tensor, error) {
	fs, err := features.Size()
	if err != nil || len(fs) != 2 || fs[1] != c.d {
		return nil, fmt.Errorf("cocoop: image features of shape %v, want [N, %d]", fs, c.d)
	}
	b := fs[0]
	var s torch.Scope
	defer s.Drop()
	op := func(what string) func(*ts.Tensor, error) (*ts.Tensor, error) { return s.Op("cocoop: " + what) }
	f, err := op("cast features")(features.Totype(gotch.Float, false))
	if err != nil {
		return nil, err
	}
	if f, err = op("move features")(f.To(c.device, false)); err != nil {
		return nil, err
	}
	fn, err := nn.Normalize(f)
	if err != nil {
		return nil, fmt.Errorf("cocoop: %w", err)
	}
	s.Keep(fn)
	// π = W₂·ReLU(W₁·f̂ + b₁) + b₂, [B, W]
	h, err := op("meta-net layer 1")(ts.Linear(fn, c.w1, c.b1))
	if err != nil {
		return nil, err
	}
	if h, err = op("meta-net relu")(h.Relu(false)); err != nil {
		return nil, err
	}
	pi, err := op("meta-net layer 2")(ts.Linear(h, c.w2, c.b2))
	if err != nil {
		return nil, err
	}
	// Per-image context [B, M, W] = ctx + π.
	pv, err := op("shift")(pi.Unsqueeze(1, false))
	if err != nil {
		return nil, err
	}
	shifted, err := op("shift context")(pv.Add(c.ctx, false))
	if err != nil {
		return nil, err
	}
	if dt := c.prefix.DType(); shifted.DType() != dt {
		if shifted, err = op("cast context")(shifted.Totype(dt, false)); err != nil {
			return nil, err
		}
	}
	// Groups of (image, class range) per text-encoder call.
	rows := make([]*ts.Tensor, b)
	perImage := max(int64(1), c.promptBatch/c.classes)
	chunk := min(c.classes, c.promptBatch)
	for i0 := int64(0); i0 < b; i0 += perImage {
		n := min(perImage, b-i0)
		var parts []*ts.Tensor // per class chunk: [n, chunk] logits
		for c0 := int64(0); c0 < c.classes; c0 += chunk {
			cn := min(chunk, c.classes-c0)
			l, err := c.chunkLogits(fn, shifted, i0, n, c0, cn)
			if err != nil {
				return nil, err
			}
			parts = append(parts, s.Keep(l))
		}
		var block *ts.Tensor
		if len(parts) == 1 {
			block = parts[0]
		} else if block, err = op("join class chunks")(ts.Cat(parts, 1)); err != nil {
			return nil, err
		}
		for j := range n {
			if rows[i0+j], err = op("image logits")(block.Narrow(0, j, 1, false)); err != nil {
				return nil, err
			}
		}
	}
	if len(rows) == 1 {
		return s.Release(rows[0]), nil
	}
	out, err := ts.Cat(rows, 0)
	return out, torch.Err("cocoop: join images", err)
}

// chunkLogits returns the logits [n, cn] of images i0..i0+n against classes
// c0..c0+cn, encoding their n·cn prompts in one call. Its intermediates
// (prompts, encoder outputs) are dropped on return, so nothing but the
// logits outlives a chunk; the caller owns the result. With grad mode on,
// what backward needs is held by autograd itself.
func (c *CoCoOp) chunkLogits(fn, shifted *ts.Tensor, i0, n, c0, cn int64) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	op := func(what string) func(*ts.Tensor, error) (*ts.Tensor, error) { return s.Op("cocoop: " + what) }
	ctxs, err := op("context of images")(shifted.Narrow(0, i0, n, false)) // [n, M, W]
	if err != nil {
		return nil, err
	}
	var g *ts.Tensor
	if c.prefixText != nil {
		g, err = c.encodeShared(&s, ctxs, n, c0, cn)
	} else {
		g, err = c.encodeWhole(&s, ctxs, n, c0, cn)
	}
	if err != nil {
		return nil, err
	}
	if g, err = op("cast text features")(g.Totype(gotch.Float, false)); err != nil {
		return nil, err
	}
	gn, err := nn.Normalize(g)
	if err != nil {
		return nil, fmt.Errorf("cocoop: %w", err)
	}
	s.Keep(gn)
	if gn, err = op("text features per image")(gn.View([]int64{n, cn, -1}, false)); err != nil {
		return nil, err
	}
	// logits[j, k] = s·f̂_j·ĝ_{j,k}
	fi, err := op("image rows")(fn.Narrow(0, i0, n, false))
	if err != nil {
		return nil, err
	}
	if fi, err = op("image rows")(fi.Unsqueeze(2, false)); err != nil { // [n, D, 1]
		return nil, err
	}
	l, err := op("cosines")(gn.Bmm(fi, false)) // [n, cn, 1]
	if err != nil {
		return nil, err
	}
	if l, err = op("cosines")(l.View([]int64{n, cn}, false)); err != nil {
		return nil, err
	}
	out, err := l.MulScalar(ts.FloatScalar(c.scale), false)
	return out, torch.Err("cocoop: scale logits", err)
}

// classRows returns rows of t ([C, R, W], one per class) for classes
// c0..c0+cn, repeated for n images: [n, cn, R, W].
func (c *CoCoOp) classRows(s *torch.Scope, t *ts.Tensor, n, c0, cn int64) (*ts.Tensor, error) {
	x, err := s.Op("cocoop: class rows")(t.Narrow(0, c0, cn, false))
	if err != nil {
		return nil, err
	}
	if x, err = s.Op("cocoop: class rows")(x.Unsqueeze(0, false)); err != nil {
		return nil, err
	}
	xs, err := x.Size()
	if err != nil {
		return nil, torch.Err("cocoop: class rows", err)
	}
	return s.Op("cocoop: class rows per image")(x.Expand([]int64{n, cn, xs[2], xs[3]}, false, false))
}

// encodeWhole encodes the n·cn prompts of images' contexts ctxs [n, M, W]
// and classes c0..c0+cn whole (start token, context, class name, end):
// their text features [n·cn, D], image-major.
func (c *CoCoOp) encodeWhole(s *torch.Scope, ctxs *ts.Tensor, n, c0, cn int64) (*ts.Tensor, error) {
	op := func(what string) func(*ts.Tensor, error) (*ts.Tensor, error) { return s.Op("cocoop: " + what) }
	eot := make([]int64, 0, n*cn)
	for range n {
		eot = append(eot, c.eot[c0:c0+cn]...)
	}
	ce, err := op("context per prompt")(ctxs.Unsqueeze(1, false)) // [n, 1, M, W]
	if err != nil {
		return nil, err
	}
	if ce, err = op("context per prompt")(ce.Expand([]int64{n, cn, c.m, c.width}, false, false)); err != nil {
		return nil, err
	}
	pre, err := c.classRows(s, c.prefix, n, c0, cn)
	if err != nil {
		return nil, err
	}
	suf, err := c.classRows(s, c.suffix, n, c0, cn)
	if err != nil {
		return nil, err
	}
	p, err := op("assemble prompts")(ts.Cat([]*ts.Tensor{pre, ce, suf}, 2)) // [n, cn, L, W]
	if err != nil {
		return nil, err
	}
	if p, err = op("flatten prompts")(p.Reshape([]int64{n * cn, c.length, c.width}, false)); err != nil {
		return nil, err
	}
	return op("encode prompts")(c.text.EncodeEmbeddings(p, eot))
}

// encodeShared is encodeWhole with each image's start token and context
// (the positions its prompts share) encoded once, in the same pass as the
// class-specific positions that follow them. The classes are sorted by
// prompt length and split into groups (train.LengthGroups), each cut
// after its own last end-of-text token; the features come back in class
// order.
func (c *CoCoOp) encodeShared(s *torch.Scope, ctxs *ts.Tensor, n, c0, cn int64) (*ts.Tensor, error) {
	op := func(what string) func(*ts.Tensor, error) (*ts.Tensor, error) { return s.Op("cocoop: " + what) }
	// Every prompt starts with the same start token: take the first class's.
	sot, err := op("start token")(c.prefix.Narrow(0, 0, 1, false)) // [1, 1, W]
	if err != nil {
		return nil, err
	}
	if sot, err = op("start token per image")(sot.Expand([]int64{n, 1, c.width}, false, false)); err != nil {
		return nil, err
	}
	pre, err := op("shared prefixes")(ts.Cat([]*ts.Tensor{sot, ctxs}, 1)) // [n, 1+M, W]
	if err != nil {
		return nil, err
	}
	shared := 1 + c.m
	order := make([]int64, cn)
	for i := range order {
		order[i] = c0 + int64(i)
	}
	slices.SortStableFunc(order, func(a, b int64) int { return int(c.eot[a] - c.eot[b]) })
	lens := make([]int64, cn)
	for i, cl := range order {
		lens[i] = c.eot[cl] + 1 - shared
	}
	groups := train.LengthGroups(lens, 0, train.PackedGroupOverhead)
	xs := make([]*ts.Tensor, len(groups))
	eots := make([][]int64, len(groups))
	for gi, g := range groups {
		cls := order[g[0]:g[1]]
		gs := int64(len(cls))
		idx, err := op("group classes")(ts.OfSlice(cls))
		if err != nil {
			return nil, err
		}
		if idx, err = op("group classes")(idx.To(c.device, false)); err != nil {
			return nil, err
		}
		rows, err := op("group rows")(c.suffix.IndexSelect(0, idx, false)) // [gs, L−1−M, W]
		if err != nil {
			return nil, err
		}
		if rows, err = op("group rows")(rows.Narrow(1, 0, lens[g[1]-1], false)); err != nil {
			return nil, err
		}
		if rows, err = op("group rows per image")(rows.Unsqueeze(0, false)); err != nil {
			return nil, err
		}
		if rows, err = op("group rows per image")(rows.Expand([]int64{n, gs, lens[g[1]-1], c.width}, false, false)); err != nil {
			return nil, err
		}
		if xs[gi], err = op("group rows per image")(rows.Reshape([]int64{n * gs, lens[g[1]-1], c.width}, false)); err != nil {
			return nil, err
		}
		for range n {
			for _, cl := range cls {
				eots[gi] = append(eots[gi], c.eot[cl])
			}
		}
	}
	f, err := op("encode prompts")(c.prefixText.EncodeWithPrefix(pre, xs, eots)) // groups, each [n·gs, D]
	if err != nil {
		return nil, err
	}
	// Back to [n, cn, D] in class order, then [n·cn, D].
	parts := make([]*ts.Tensor, len(groups))
	off := int64(0)
	for gi, g := range groups {
		gs := int64(g[1] - g[0])
		part, err := op("group features")(f.Narrow(0, off, n*gs, false))
		if err != nil {
			return nil, err
		}
		if parts[gi], err = op("group features")(part.View([]int64{n, gs, -1}, false)); err != nil {
			return nil, err
		}
		off += n * gs
	}
	all := parts[0]
	if len(parts) > 1 {
		if all, err = op("join groups")(ts.Cat(parts, 1)); err != nil {
			return nil, err
		}
	}
	inv := make([]int64, cn)
	for i, cl := range order {
		inv[cl-c0] = int64(i)
	}
	idx, err := op("class order")(ts.OfSlice(inv))
	if err != nil {
		return nil, err
	}
	if idx, err = op("class order")(idx.To(c.device, false)); err != nil {
		return nil, err
	}
	if all, err = op("class order")(all.IndexSelect(1, idx, false)); err != nil {
		return nil, err
	}
	return op("flatten features")(all.Reshape([]int64{n * cn, -1}, false))
}

// Drop implements train.Method.
func (c *CoCoOp) Drop() {
	for _, t := range []**ts.Tensor{&c.prefix, &c.suffix, &c.ctx, &c.w1, &c.b1, &c.w2, &c.b2} {
		if *t != nil {
			(*t).Drop()
			*t = nil
		}
	}
}
