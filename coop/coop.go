// Package coop is CoOp (Zhou et al., "Learning to Prompt for
// Vision-Language Models", IJCV 2022) as a train.Method: the words of the
// prompt in front of (or around) each class name are replaced by M learned
// context vectors in CLIP's token-embedding space, trained with
// cross-entropy through the frozen text encoder.
//
// For class c the prompt skeleton is the text P + " " + name_c + "." where
// P is the initialization string or M copies of "X". It is tokenized and
// embedded once with the frozen token embedding; the start-of-text row (the
// prefix) and the rows after the M placeholders (the suffix: the class
// name, ".", end-of-text and padding) stay fixed. At every call of Logits
// the context vectors are placed among them according to the class-token
// position:
//
//	end     prefix, ctx[0:M], suffix
//	middle  prefix, ctx[0:M/2], suffix[0:n_c], ctx[M/2:M], suffix[n_c:]
//	front   prefix, suffix[0:n_c], ctx[0:M], suffix[n_c:]
//
// where n_c is the number of tokens of the class name alone. All class
// prompts go through the text transformer (the end-of-text position of the
// skeleton gives the output row), the features are L2-normalized and the
// logits are the checkpoint's logit scale times their cosine similarities
// with the normalized image features. Only the context is learned: one
// [M, W] matrix shared by all classes, or with ClassSpecific one [C, M, W]
// tensor.
//
// The context is float32; when the text encoder computes in another dtype
// (fp16), the context is cast on the way in, so the update is applied to a
// float32 copy (unlike the reference's pure-fp16 SGD).
//
// Randomness (the random initialization) comes from math/rand/v2 seeded
// with Context.Seed; libtorch's generator is never used.
//
// Gradient mode is per OS thread in libtorch. Init, Logits and
// SetParameters lock their goroutine to its thread while they run; a
// training call of Logits records gradients only when the caller's thread
// has gradient mode on (the default), so callers that also run backward
// lock their goroutine (runtime.LockOSThread) around the whole step.
package coop

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// Class-token positions.
const (
	// PositionEnd puts the class name after the context (the default).
	PositionEnd = "end"
	// PositionMiddle puts it between the two halves of the context.
	PositionMiddle = "middle"
	// PositionFront puts it before the context.
	PositionFront = "front"
)

// ParamName is the name of the learned context in Parameters and
// checkpoints.
const ParamName = "ctx"

// pcgStream is the PCG stream ("coop" in ASCII) paired with Context.Seed,
// so that this package's draws differ from those of other packages seeded
// with the same value.
const pcgStream = 0x636f6f70

// Options configures CoOp. The zero value means the defaults of
// DefaultOptions.
type Options struct {
	// NCtx is M, the number of context vectors for random initialization;
	// 0 means 16. It is ignored with CtxInit, where M is the number of
	// words.
	NCtx int `toml:"n_ctx"`
	// CtxInit, when not empty, initializes the context from words ("_"
	// stands for a space), e.g. "a photo of a": M is the number of words
	// and the context is the frozen token embedding of the words, one
	// token each. The context is then always shared by all classes.
	CtxInit string `toml:"ctx_init"`
	// ClassSpecific learns one context per class (CSC) instead of one
	// shared by all. Ignored with CtxInit.
	ClassSpecific bool `toml:"class_specific"`
	// ClassTokenPosition is PositionEnd (also when empty), PositionMiddle
	// or PositionFront.
	ClassTokenPosition string `toml:"class_token_position"`
	// InitStd is the standard deviation of the random initialization;
	// 0 means 0.02.
	InitStd float64 `toml:"init_std"`
	// NoPrefixSharing encodes every class prompt whole, all classes in
	// one batch. By default the start the prompts have in common (the
	// start token, followed with a shared context by the context vectors
	// before the class name: all M at the end position, the first M/2 in
	// the middle) goes through the text transformer once, each prompt's
	// remaining positions attend to its keys and values, and prompts are
	// encoded in groups of similar length, each cut after its own last
	// end-of-text token; unless MaxTextBatch splits the classes, the
	// prefix and every group run in one pass, each layer's projections
	// and MLP applied to all their positions at once. The transformer is
	// causal, so the features and gradients are the same to fp32
	// rounding. This switch is there to compare the two.
	NoPrefixSharing bool `toml:"no_prefix_sharing"`
	// MaxTextBatch bounds how many class prompts go through the text
	// transformer at once (0: all of them). With more classes than that,
	// the prompts are encoded in chunks of similar length, and a training
	// step keeps no chunk's activations: after the loss's backward pass
	// each chunk is encoded again with gradients and back-propagated
	// (activation recomputation, or gradient checkpointing). Memory then
	// holds one chunk's activations; the gradient is the same to fp32
	// rounding and the text side's forward pass runs twice.
	MaxTextBatch int `toml:"max_text_batch"`
}

// DefaultOptions returns CoOp's defaults: 16 random context vectors
// (std 0.02) shared by all classes, class name at the end.
func DefaultOptions() Options {
	return Options{NCtx: 16, ClassTokenPosition: PositionEnd, InitStd: 0.02}
}

func (o Options) withDefaults() Options {
	if o.NCtx == 0 {
		o.NCtx = 16
	}
	if o.ClassTokenPosition == "" {
		o.ClassTokenPosition = PositionEnd
	}
	if o.InitStd == 0 {
		o.InitStd = 0.02
	}
	return o
}

func (o Options) validate() error {
	switch o.ClassTokenPosition {
	case PositionEnd, PositionMiddle, PositionFront:
	default:
		return fmt.Errorf("unknown class token position %q (want %s, %s or %s)",
			o.ClassTokenPosition, PositionEnd, PositionMiddle, PositionFront)
	}
	if o.CtxInit == "" && o.NCtx < 1 {
		return fmt.Errorf("NCtx = %d, want at least 1", o.NCtx)
	}
	if o.InitStd < 0 {
		return fmt.Errorf("InitStd = %g, want a positive value", o.InitStd)
	}
	if o.MaxTextBatch < 0 {
		return fmt.Errorf("MaxTextBatch = %d, want 0 (no bound) or more", o.MaxTextBatch)
	}
	return nil
}

// CoOp is the CoOp prompt learner. Create it with New; Init builds it.
type CoOp struct {
	opts Options
	text train.TextEncoder
	// m is the number of context vectors, width the token-embedding size,
	// length the token sequence length (77), classes the class count.
	m, width, length int64
	classes          int64
	classSpecific    bool
	scale            float64
	device           gotch.Device
	// ctx is the learned context, float32 [M, W] or [C, M, W].
	ctx *ts.Tensor
	// frozen holds the embedded skeletons, [C·L, W] in the embedding's
	// dtype, in the order of the chunks (class order with one chunk).
	frozen *ts.Tensor
	// chunks are the groups of classes encoded together.
	chunks []*chunk
	// order lists the classes in chunk order; unorder (nil with one
	// chunk) maps the chunks' concatenated rows back to class order.
	order   []int64
	unorder *ts.Tensor
	// prefix is P, the number of leading positions shared by every prompt
	// and encoded once (0: prompts are encoded whole).
	prefix int64
	// prefixText is the text encoder's prefix interface (nil when prefix
	// is 0).
	prefixText train.PrefixEncoder
	// pending is the class-feature leaf of a training call in
	// recomputation mode, whose gradient FinishBackward propagates.
	pending *ts.Tensor
	// nameLens is n_c per class; eot the end-of-text position per class.
	nameLens []int64
	eot      []int64
	// evalFeatures caches the normalized class features between
	// evaluation calls, computed from the context value evalCtx.
	evalFeatures *ts.Tensor
	evalCtx      *ts.Tensor
}

var (
	_ train.Method     = (*CoOp)(nil)
	_ train.Recomputer = (*CoOp)(nil)
)

// chunk is a group of classes whose prompts are encoded together. Their
// skeletons are rows lo·L .. (lo+n)·L of CoOp.frozen; full picks the rows
// of the whole prompts and rest those after the shared prefix, from the
// concatenation of those skeleton rows and the context rows.
type chunk struct {
	classes    []int64
	lo         int64
	full, rest *ts.Tensor
	// classIdx holds classes on the device; eot their end-of-text
	// positions.
	classIdx *ts.Tensor
	eot      []int64
}

func (k *chunk) drop() {
	for _, t := range []*ts.Tensor{k.full, k.rest, k.classIdx} {
		if t != nil {
			t.Drop()
		}
	}
}

// New returns an uninitialized CoOp; Init validates the options and builds
// it.
func New(o Options) *CoOp { return &CoOp{opts: o.withDefaults()} }

// Options returns the options in effect (with defaults filled in).
func (c *CoOp) Options() Options { return c.opts }

// NumContext returns M, the number of context vectors (0 before Init).
func (c *CoOp) NumContext() int { return int(c.m) }

// Init tokenizes and embeds the prompt skeletons of ctx.ClassNames and
// creates the context: from the words of Options.CtxInit, or drawn from
// N(0, InitStd²) with a generator seeded by ctx.Seed, in row-major order.
// The training views are not used.
func (c *CoOp) Init(ctx *train.Context, views []*train.Features) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.init(ctx); err != nil {
		c.Drop()
		return fmt.Errorf("coop: %w", err)
	}
	return nil
}

func (c *CoOp) init(ctx *train.Context) error {
	if err := c.opts.validate(); err != nil {
		return err
	}
	if ctx == nil {
		return errors.New("nil context")
	}
	if ctx.Text == nil {
		return errors.New("the context has no text encoder")
	}
	if len(ctx.ClassNames) == 0 {
		return errors.New("no class names")
	}
	c.Drop()
	c.text = ctx.Text
	c.device = ctx.Device
	c.classes = int64(len(ctx.ClassNames))
	c.classSpecific = c.opts.ClassSpecific && c.opts.CtxInit == ""
	if c.opts.ClassSpecific && c.opts.CtxInit != "" && ctx.Log != nil {
		ctx.Log.Warn("coop: ClassSpecific is ignored with CtxInit; the context is shared by all classes", "ctx_init", c.opts.CtxInit)
	}

	// The context's words (those of CtxInit, or placeholders) and M.
	m, prefixText, err := ContextWords(c.opts.CtxInit, c.opts.NCtx)
	if err != nil {
		return err
	}
	c.m = m

	err = torch.NoGrad(func() error {
		var s torch.Scope
		defer s.Drop()
		nameLens, length, err := c.nameLengths(ctx.ClassNames)
		if err != nil {
			return err
		}
		c.nameLens, c.length = nameLens, length
		for i, n := range nameLens {
			if need := 1 + c.m + n + 2; need > length {
				return fmt.Errorf("class %q: the prompt needs %d tokens (start, %d context, %d for the name, \".\", end), more than %d",
					ctx.ClassNames[i], need, c.m, n, length)
			}
		}
		texts := make([]string, len(ctx.ClassNames))
		for i, name := range ctx.ClassNames {
			texts[i] = prefixText + " " + name + "."
		}
		ids, err := c.tokenize(texts)
		if err != nil {
			return fmt.Errorf("tokenize the prompts: %w", err)
		}
		s.Keep(ids)
		idv, err := torch.Values[int64](ids)
		if err != nil {
			return fmt.Errorf("prompt tokens: %w", err)
		}
		c.eot = clip.EndOfTextPositions(idv, length)
		for i, e := range c.eot {
			if e < 1+c.m+c.nameLens[i] {
				return fmt.Errorf("class %q: the prompt %q has its end-of-text token at %d, before the end of the name (%d)",
					ctx.ClassNames[i], texts[i], e, 1+c.m+c.nameLens[i])
			}
		}
		c.order = chunkOrder(c.eot, c.grouped())
		if !isIdentity(c.order) {
			o, err := s.Op("chunk order")(ts.OfSlice(c.order))
			if err != nil {
				return err
			}
			if ids, err = s.Op("chunk order")(ids.IndexSelect(0, o, false)); err != nil {
				return err
			}
		}
		emb, err := c.embed(ids)
		if err != nil {
			return err
		}
		c.frozen = emb
		return nil
	})
	if err != nil {
		return err
	}
	var initRows []float32
	if c.opts.CtxInit != "" {
		if initRows, err = ContextRows(c.text, prefixText, c.m, c.width); err != nil {
			return err
		}
	}
	if err := c.initContext(ctx.Seed, initRows); err != nil {
		return err
	}
	if pe, ok := ctx.Text.(train.PrefixEncoder); ok && !c.opts.NoPrefixSharing {
		c.prefixText = pe
		c.prefix = sharedPrefix(c.opts.ClassTokenPosition, c.m, c.classSpecific)
	}
	if err := c.buildChunks(); err != nil {
		return err
	}
	c.scale, err = train.LogitScaleOf(ctx.Text)
	return err
}

// tokenize wraps Context.Text.Tokenize and checks the result's shape.
func (c *CoOp) tokenize(texts []string) (*ts.Tensor, error) {
	ids, err := c.text.Tokenize(texts)
	if err != nil {
		return nil, err
	}
	s, err := ids.Size()
	if err != nil || len(s) != 2 || s[0] != int64(len(texts)) || s[1] < 3 {
		ids.Drop()
		return nil, fmt.Errorf("tokenizer returned shape %v for %d texts", s, len(texts))
	}
	return ids, nil
}

// nameLengths returns the number of tokens of each class name alone
// (between the start and end of text) and the token sequence length. When
// the tokenizer fails on the batch, the names are retried one by one to
// report which one fails.
func (c *CoOp) nameLengths(names []string) ([]int64, int64, error) {
	ids, err := c.tokenize(names)
	if err != nil {
		for _, name := range names {
			one, err1 := c.tokenize([]string{name})
			if err1 != nil {
				return nil, 0, fmt.Errorf("class %q: tokenize: %w", name, err1)
			}
			one.Drop()
		}
		return nil, 0, fmt.Errorf("tokenize the class names: %w", err)
	}
	defer ids.Drop()
	shape, err := ids.Size()
	if err != nil {
		return nil, 0, torch.Err("shape of the class name tokens", err)
	}
	length := shape[1]
	v, err := torch.Values[int64](ids)
	if err != nil {
		return nil, 0, fmt.Errorf("class name tokens: %w", err)
	}
	eot := clip.EndOfTextPositions(v, length)
	n := make([]int64, len(eot))
	for i, e := range eot {
		n[i] = e - 1
	}
	return n, length, nil
}

// embed maps token ids [C, L] to the frozen embeddings [C·L, W] on the
// method's device.
func (c *CoOp) embed(ids *ts.Tensor) (*ts.Tensor, error) {
	n, err := ids.Size()
	if err != nil {
		return nil, torch.Err("shape of the prompt tokens", err)
	}
	var sc torch.Scope
	defer sc.Drop()
	e, err := c.text.TokenEmbedding(ids)
	if err != nil {
		return nil, fmt.Errorf("token embedding: %w", err)
	}
	sc.Keep(e)
	s, err := e.Size()
	if err != nil || len(s) != 3 || s[0] != n[0] || s[1] != n[1] {
		return nil, fmt.Errorf("token embedding returned shape %v for tokens %v", s, n)
	}
	c.width = s[2]
	flat, err := sc.Op("flatten embeddings")(e.View([]int64{s[0] * s[1], s[2]}, false))
	if err != nil {
		return nil, err
	}
	d, err := sc.Op("detach embeddings")(flat.Detach(false))
	if err != nil {
		return nil, err
	}
	out, err := d.To(c.device, false)
	if err != nil {
		return nil, torch.Err("move embeddings to "+torch.DeviceName(c.device), err)
	}
	return out, nil
}

// initContext creates the learned context: initRows (ContextRows of
// CtxInit) when given, otherwise N(0, InitStd²) values from the seeded
// generator.
func (c *CoOp) initContext(seed uint64, initRows []float32) error {
	shape := []int64{c.m, c.width}
	values := initRows
	if values == nil {
		if c.classSpecific {
			shape = []int64{c.classes, c.m, c.width}
		}
		values = normalValues(seed, c.opts.InitStd, int(prod(shape)))
	}
	x, err := torch.FromFloats(values, shape, c.device)
	if err != nil {
		return fmt.Errorf("create context: %w", err)
	}
	p, err := x.SetRequiresGrad(true, true)
	if err != nil {
		return torch.Err("context requires grad", err)
	}
	c.ctx = p
	return nil
}

// normalValues draws n values from N(0, std²) with a PCG generator seeded
// by (seed, pcgStream).
func normalValues(seed uint64, std float64, n int) []float32 {
	rng := rand.New(rand.NewPCG(seed, pcgStream))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	return v
}

// sharedPrefix returns how many leading positions every prompt has in
// common: the start token, and with a context shared by all classes the
// context vectors before the class name.
func sharedPrefix(position string, m int64, classSpecific bool) int64 {
	if classSpecific {
		return 1
	}
	switch position {
	case PositionEnd:
		return 1 + m
	case PositionMiddle:
		return 1 + m/2
	}
	return 1
}

// groupOverhead is the fixed cost of encoding one more group of prompts
// in a pass of its own (recomputation chunks), in token positions: a group
// repeats about a thousand operations (forward and backward through every
// block) and reads every weight again, which on a CPU adds up to about what
// running 50 positions through RN50's text transformer costs.
const groupOverhead = 48

// grouped reports whether the prompts are encoded in groups of similar
// length (the default, or when MaxTextBatch splits them) rather than all
// at once in class order.
func (c *CoOp) grouped() bool {
	return !c.opts.NoPrefixSharing || c.recomputes()
}

// packed reports whether training and evaluation encode the shared
// prefix and every chunk in one pass (EncodeWithPrefix).
func (c *CoOp) packed() bool {
	return c.prefix > 0 && !c.recomputes()
}

// recomputes reports whether training steps recompute the text side's
// activations in the backward pass (more classes than MaxTextBatch).
func (c *CoOp) recomputes() bool {
	return c.opts.MaxTextBatch > 0 && c.classes > int64(c.opts.MaxTextBatch)
}

// chunkOrder returns the classes in the order they are encoded: class
// order, or with grouped sorted by end-of-text position (stable), so that
// the prompts of a group have similar lengths and little is computed
// after their end-of-text tokens.
func chunkOrder(eot []int64, grouped bool) []int64 {
	order := make([]int64, len(eot))
	for i := range order {
		order[i] = int64(i)
	}
	if grouped {
		slices.SortStableFunc(order, func(a, b int64) int { return int(eot[a] - eot[b]) })
	}
	return order
}

func isIdentity(order []int64) bool {
	for i, v := range order {
		if v != int64(i) {
			return false
		}
	}
	return true
}

// buildChunks splits c.order into chunks (groups of similar length, at
// most MaxTextBatch classes each when it is set) and builds their index
// tensors.
func (c *CoOp) buildChunks() error {
	var groups [][2]int
	if c.grouped() {
		lens := make([]int64, len(c.order))
		for i, cl := range c.order {
			lens[i] = c.eot[cl] + 1 - c.prefix
		}
		overhead := int64(groupOverhead)
		if c.packed() {
			overhead = train.PackedGroupOverhead
		}
		groups = train.LengthGroups(lens, c.opts.MaxTextBatch, overhead)
	} else {
		groups = [][2]int{{0, len(c.order)}}
	}
	toDevice := func(what string, v []int64) (*ts.Tensor, error) {
		t, err := ts.OfSlice(v)
		if err != nil {
			return nil, torch.Err(what, err)
		}
		out, err := t.To(c.device, true)
		return out, torch.Err("move "+what+" to "+torch.DeviceName(c.device), err)
	}
	for _, g := range groups {
		lo, hi := int64(g[0]), int64(g[1])
		k := &chunk{classes: c.order[lo:hi], lo: lo}
		c.chunks = append(c.chunks, k)
		full := promptIndex(c.opts.ClassTokenPosition, k.classes, c.length, c.m, c.nameLens, c.classSpecific)
		n := int64(len(k.classes))
		rest := make([]int64, 0, n*(c.length-c.prefix))
		for j := range n {
			rest = append(rest, full[j*c.length+c.prefix:(j+1)*c.length]...)
			k.eot = append(k.eot, c.eot[k.classes[j]])
		}
		var err error
		if k.full, err = toDevice("prompt index", full); err != nil {
			return err
		}
		if k.rest, err = toDevice("prompt index", rest); err != nil {
			return err
		}
		if k.classIdx, err = toDevice("chunk classes", k.classes); err != nil {
			return err
		}
	}
	if !isIdentity(c.order) {
		inv := make([]int64, len(c.order))
		for i, cl := range c.order {
			inv[cl] = int64(i)
		}
		var err error
		if c.unorder, err = toDevice("class order", inv); err != nil {
			return err
		}
	}
	return nil
}

// promptIndex returns, for every row r of the prompt of every class in
// classes (row-major [len(classes), L]), the row of src = concat(skeleton
// rows of those classes [len(classes)·L, W], context rows) it takes. The
// context rows start at n·L (n = len(classes)): row k of the shared
// context is n·L + k; row k of class c's own context is n·L + c·M + k
// (the context holds every class's rows, in class order).
//
// The skeleton of class c holds the start token at 0, M placeholders at
// 1..M and the suffix (name, ".", end, padding) from 1+M on, so suffix
// row s is skeleton row 1+M+s.
func promptIndex(position string, classes []int64, length, m int64, nameLens []int64, classSpecific bool) []int64 {
	n := int64(len(classes))
	idx := make([]int64, 0, n*length)
	for j, c := range classes {
		frozen := func(row int64) int64 { return int64(j)*length + row }
		suffix := func(s int64) int64 { return frozen(1 + m + s) }
		context := func(k int64) int64 {
			if classSpecific {
				return n*length + c*m + k
			}
			return n*length + k
		}
		nc := nameLens[c]
		idx = append(idx, frozen(0))
		switch position {
		case PositionEnd:
			for k := range m {
				idx = append(idx, context(k))
			}
			for s := int64(0); s < length-1-m; s++ {
				idx = append(idx, suffix(s))
			}
		case PositionMiddle:
			half := m / 2
			for k := range half {
				idx = append(idx, context(k))
			}
			for s := range nc {
				idx = append(idx, suffix(s))
			}
			for k := half; k < m; k++ {
				idx = append(idx, context(k))
			}
			for s := nc; s < length-1-m; s++ {
				idx = append(idx, suffix(s))
			}
		case PositionFront:
			for s := range nc {
				idx = append(idx, suffix(s))
			}
			for k := range m {
				idx = append(idx, context(k))
			}
			for s := nc; s < length-1-m; s++ {
				idx = append(idx, suffix(s))
			}
		}
	}
	return idx
}

// contextRows returns the context as rows [M or C·M, W] in the
// embedding's dtype; gradients flow into the context when enabled.
func (c *CoOp) contextRows() (*ts.Tensor, error) {
	if c.ctx == nil {
		return nil, errors.New("coop: not initialized")
	}
	rows, err := c.ctx.View([]int64{-1, c.width}, false)
	if err != nil {
		return nil, torch.Err("context rows", err)
	}
	if dt := c.frozen.DType(); rows.DType() != dt {
		if rows, err = rows.Totype(dt, true); err != nil {
			return nil, torch.Err("cast context", err)
		}
	}
	return rows, nil
}

// assemble returns the rows index picks of concat(chunk k's skeletons,
// context rows), shaped [n, rows per prompt, W].
func (c *CoOp) assemble(k *chunk, ctxRows, index *ts.Tensor) (*ts.Tensor, error) {
	n := int64(len(k.classes))
	var s torch.Scope
	defer s.Drop()
	sk, err := s.Op("chunk skeletons")(c.frozen.Narrow(0, k.lo*c.length, n*c.length, false))
	if err != nil {
		return nil, err
	}
	src, err := s.Op("concatenate skeletons and context")(ts.Cat([]*ts.Tensor{sk, ctxRows}, 0))
	if err != nil {
		return nil, err
	}
	p, err := s.Op("assemble prompts")(src.IndexSelect(0, index, false))
	if err != nil {
		return nil, err
	}
	out, err := p.View([]int64{n, -1, c.width}, false)
	return out, torch.Err("shape prompts", err)
}

// prompts assembles the whole class prompts [C, L, W] in class order, in
// the embedding's dtype; gradients flow into the context when enabled.
func (c *CoOp) prompts() (*ts.Tensor, error) {
	rows, err := c.contextRows()
	if err != nil {
		return nil, err
	}
	var s torch.Scope
	defer s.Drop()
	s.Keep(rows)
	parts := make([]*ts.Tensor, len(c.chunks))
	for i, k := range c.chunks {
		p, err := c.assemble(k, rows, k.full)
		if err != nil {
			return nil, err
		}
		parts[i] = s.Keep(p)
	}
	return c.inClassOrder(&s, parts)
}

// inClassOrder concatenates per-chunk results and puts the rows in class
// order. The result is owned by the caller.
func (c *CoOp) inClassOrder(s *torch.Scope, parts []*ts.Tensor) (*ts.Tensor, error) {
	all := parts[0]
	if len(parts) > 1 {
		var err error
		if all, err = s.Op("concatenate chunks")(ts.Cat(parts, 0)); err != nil {
			return nil, err
		}
	}
	if c.unorder == nil {
		// A new handle the caller owns.
		out, err := all.ShallowClone()
		return out, torch.Err("chunk results", err)
	}
	out, err := all.IndexSelect(0, c.unorder, false)
	return out, torch.Err("class order", err)
}

// prefixEmbeddings returns the shared prefix's embeddings [1, P, W]: the
// start token and the shared context rows.
func (c *CoOp) prefixEmbeddings(ctxRows *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	// Every skeleton starts with the start token: take the first one's.
	parts := []*ts.Tensor{}
	sot, err := s.Op("start token")(c.frozen.Narrow(0, 0, 1, false))
	if err != nil {
		return nil, err
	}
	parts = append(parts, sot)
	if c.prefix > 1 {
		r, err := s.Op("shared context")(ctxRows.Narrow(0, 0, c.prefix-1, false))
		if err != nil {
			return nil, err
		}
		parts = append(parts, r)
	}
	p, err := s.Op("prefix")(ts.Cat(parts, 0))
	if err != nil {
		return nil, err
	}
	out, err := p.View([]int64{1, c.prefix, c.width}, false)
	return out, torch.Err("prefix", err)
}

// prefixState encodes the shared prefix (start token and shared context
// rows) and returns its state, or nil when prompts are encoded whole.
func (c *CoOp) prefixState(ctxRows *ts.Tensor) ([]*ts.Tensor, error) {
	if c.prefix == 0 {
		return nil, nil
	}
	p, err := c.prefixEmbeddings(ctxRows)
	if err != nil {
		return nil, err
	}
	defer p.Drop()
	st, err := c.prefixText.EncodePrefix(p)
	if err != nil {
		return nil, fmt.Errorf("coop: encode the shared prefix: %w", err)
	}
	return st, nil
}

// encodeWithPrefix returns the raw text features [C, D] (float32, chunk
// order) of every chunk, encoded with the shared prefix in one pass.
func (c *CoOp) encodeWithPrefix(ctxRows *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	pre, err := s.Op("prefix")(c.prefixEmbeddings(ctxRows))
	if err != nil {
		return nil, err
	}
	groups := make([]*ts.Tensor, len(c.chunks))
	eots := make([][]int64, len(c.chunks))
	for i, k := range c.chunks {
		p, err := c.assemble(k, ctxRows, k.rest)
		if err != nil {
			return nil, err
		}
		groups[i], eots[i] = s.Keep(p), k.eot
	}
	g, err := c.prefixText.EncodeWithPrefix(pre, groups, eots)
	if err != nil {
		return nil, fmt.Errorf("coop: encode prompts: %w", err)
	}
	if shape, err := g.Size(); err != nil || len(shape) != 2 || shape[0] != c.classes {
		g.Drop()
		return nil, fmt.Errorf("coop: text encoder returned shape %v for %d prompts", shape, c.classes)
	}
	out, err := g.Totype(gotch.Float, true)
	return out, torch.Err("coop: cast text features", err)
}

// encodeChunk returns chunk k's raw text features [n, D] (float32), after
// the prefix state when there is one.
func (c *CoOp) encodeChunk(k *chunk, ctxRows *ts.Tensor, state []*ts.Tensor) (*ts.Tensor, error) {
	index := k.full
	if state != nil {
		index = k.rest
	}
	p, err := c.assemble(k, ctxRows, index)
	if err != nil {
		return nil, err
	}
	defer p.Drop()
	var g *ts.Tensor
	if state != nil {
		g, err = c.prefixText.EncodeAfterPrefix(state, p, k.eot)
	} else {
		g, err = c.text.EncodeEmbeddings(p, k.eot)
	}
	if err != nil {
		return nil, fmt.Errorf("coop: encode prompts: %w", err)
	}
	if shape, err := g.Size(); err != nil || len(shape) != 2 || shape[0] != int64(len(k.classes)) {
		g.Drop()
		return nil, fmt.Errorf("coop: text encoder returned shape %v for %d prompts", shape, len(k.classes))
	}
	out, err := g.Totype(gotch.Float, true)
	return out, torch.Err("coop: cast text features", err)
}

// classFeatures runs the prompts through the text encoder, with the
// shared prefix and every chunk in one pass (packed), or chunk by chunk
// after the shared prefix's state when there is one, and returns the
// L2-normalized float32 class features [C, D] in class order, in the
// caller's grad mode.
func (c *CoOp) classFeatures() (*ts.Tensor, error) {
	rows, err := c.contextRows()
	if err != nil {
		return nil, err
	}
	var s torch.Scope
	defer s.Drop()
	s.Keep(rows)
	var parts []*ts.Tensor
	if c.packed() {
		g, err := c.encodeWithPrefix(rows)
		if err != nil {
			return nil, err
		}
		parts = append(parts, s.Keep(g))
	} else {
		// Chunk by chunk (each call bounded by MaxTextBatch), after the
		// shared prefix's state when there is one.
		state, err := c.prefixState(rows)
		if err != nil {
			return nil, err
		}
		for _, t := range state {
			s.Keep(t)
		}
		for _, k := range c.chunks {
			g, err := c.encodeChunk(k, rows, state)
			if err != nil {
				return nil, err
			}
			parts = append(parts, s.Keep(g))
		}
	}
	g, err := c.inClassOrder(&s, parts)
	if err != nil {
		return nil, err
	}
	s.Keep(g)
	gn, err := nn.Normalize(g)
	if err != nil {
		return nil, fmt.Errorf("coop: %w", err)
	}
	return gn, nil
}

// FinishBackward implements train.Recomputer. After a training call of
// Logits in recomputation mode and the loss's backward pass, it encodes
// each chunk again with gradients and back-propagates the gradient the
// chunk's class features received, accumulating the context's gradient;
// with a shared prefix, the chunks' gradients with respect to the
// prefix's state are summed and propagated through the prefix once. In
// other modes it does nothing.
func (c *CoOp) FinishBackward() error {
	if c.pending == nil {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	leaf := c.pending
	c.pending = nil
	defer leaf.Drop()
	grad, err := leaf.Grad(false)
	if err != nil {
		return torch.Err("coop: gradient of the class features", err)
	}
	defer grad.Drop()
	if ok, err := grad.Defined(); err != nil {
		return torch.Err("coop: gradient of the class features", err)
	} else if !ok {
		return nil
	}
	if err := c.recompute(grad); err != nil {
		return fmt.Errorf("coop: recompute the text side: %w", err)
	}
	return nil
}

// backwardDot back-propagates Σ x·g (g constant), which gives every leaf
// under x the gradient it receives from x's gradient g.
func backwardDot(x, g *ts.Tensor) error {
	prod, err := x.Mul(g, false)
	if err != nil {
		return torch.Err("weight by the gradient", err)
	}
	defer prod.Drop()
	sum, err := prod.Sum(prod.DType(), false)
	if err != nil {
		return torch.Err("weight by the gradient", err)
	}
	defer sum.Drop()
	return torch.Err("backward", sum.Backward())
}

func (c *CoOp) recompute(grad *ts.Tensor) error {
	prev, err := torch.SetGradEnabled(true)
	if err != nil {
		return err
	}
	defer torch.SetGradEnabled(prev) //nolint:errcheck // restoring a mode that was set
	rows, err := c.contextRows()
	if err != nil {
		return err
	}
	var s torch.Scope
	defer s.Drop()
	s.Keep(rows)
	state, err := c.prefixState(rows)
	if err != nil {
		return err
	}
	for _, t := range state {
		s.Keep(t)
	}
	// The chunks see the state as leaves, which gather the chunks'
	// gradients for one backward pass through the prefix at the end.
	var leaves []*ts.Tensor
	for _, t := range state {
		d, err := s.Op("detach prefix state")(t.Detach(false))
		if err != nil {
			return err
		}
		l, err := s.Op("prefix state leaf")(d.SetRequiresGrad(true, false))
		if err != nil {
			return err
		}
		leaves = append(leaves, l)
	}
	for _, k := range c.chunks {
		err := func() error {
			var cs torch.Scope
			defer cs.Drop()
			var st []*ts.Tensor
			if state != nil {
				st = leaves
			}
			g, err := c.encodeChunk(k, rows, st)
			if err != nil {
				return err
			}
			cs.Keep(g)
			gn, err := nn.Normalize(g)
			if err != nil {
				return err
			}
			cs.Keep(gn)
			gk, err := cs.Op("chunk gradient")(grad.IndexSelect(0, k.classIdx, false))
			if err != nil {
				return err
			}
			return backwardDot(gn, gk)
		}()
		if err != nil {
			return err
		}
	}
	if state == nil {
		return nil
	}
	// Σ over the state's tensors of t · (its gathered gradient). A state
	// that does not depend on the context (the start token alone) has
	// nothing to propagate.
	var total *ts.Tensor
	for i, t := range state {
		if rg, err := t.RequiresGrad(); err != nil || !rg {
			continue
		}
		g, err := s.Op("gradient of the prefix state")(leaves[i].Grad(false))
		if err != nil {
			return err
		}
		if ok, err := g.Defined(); err != nil {
			return torch.Err("gradient of the prefix state", err)
		} else if !ok {
			continue
		}
		prod, err := s.Op("weight by the gradient")(t.Mul(g, false))
		if err != nil {
			return err
		}
		sum, err := s.Op("weight by the gradient")(prod.Sum(prod.DType(), false))
		if err != nil {
			return err
		}
		if total == nil {
			total = sum
		} else if total, err = s.Op("weight by the gradient")(total.Add(sum, false)); err != nil {
			return err
		}
	}
	if total == nil {
		return nil
	}
	return torch.Err("backward through the prefix", total.Backward())
}

// Parameters returns the context, named ParamName; nil before Init.
func (c *CoOp) Parameters() []train.Param {
	if c.ctx == nil {
		return nil
	}
	return []train.Param{{Name: ParamName, Tensor: c.ctx}}
}

// SetParameters copies values["ctx"] into the context (without recording
// gradients). The shape must match and no other name may appear.
func (c *CoOp) SetParameters(values map[string]*ts.Tensor) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if c.ctx == nil {
		return errors.New("coop: set parameters before Init")
	}
	for name := range values {
		if name != ParamName {
			return fmt.Errorf("coop: set parameters: unknown parameter %q", name)
		}
	}
	v, ok := values[ParamName]
	if !ok || v == nil {
		return fmt.Errorf("coop: set parameters: missing %q", ParamName)
	}
	got, err := v.Size()
	if err != nil {
		return torch.Err("coop: set parameters: shape of ctx", err)
	}
	want, err := c.ctx.Size()
	if err != nil {
		return torch.Err("coop: set parameters: shape of the context", err)
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("coop: set parameters: ctx has shape %v, want %v", got, want)
	}
	switch v.DType() {
	case gotch.Float, gotch.Double, gotch.Half, gotch.BFloat16:
	default:
		return fmt.Errorf("coop: set parameters: ctx has dtype %v, want floating point", v.DType())
	}
	c.dropEval()
	return torch.NoGrad(func() error {
		src, err := v.To(c.device, false)
		if err != nil {
			return torch.Err("coop: set parameters: move ctx", err)
		}
		defer src.Drop()
		return torch.CopyInto("coop: set parameters: copy ctx", c.ctx, src)
	})
}

// Logits returns LogitScale · f̂ · Ĝᵀ [B, C] (float32) for raw image
// features f [B, D], where G holds the text features of the class prompts.
// With training, the prompts are encoded anew with gradients flowing into
// the context. Without, the normalized class features are computed once
// (without gradients) and reused by later evaluation calls as long as the
// context keeps its value.
func (c *CoOp) Logits(features *ts.Tensor, training bool) (*ts.Tensor, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if c.ctx == nil {
		return nil, errors.New("coop: logits before Init")
	}
	if training {
		c.dropEval()
		c.dropPending()
		var g *ts.Tensor
		var err error
		if c.recomputes() && torch.GradEnabled() {
			g, err = c.pendingFeatures()
		} else {
			g, err = c.classFeatures()
		}
		if err != nil {
			return nil, err
		}
		defer g.Drop()
		out, err := zeroshot.ScaledCosine(features, g, c.scale)
		if err != nil {
			return nil, fmt.Errorf("coop: %w", err)
		}
		return out, nil
	}
	if err := c.ensureEval(); err != nil {
		return nil, err
	}
	var out *ts.Tensor
	err := torch.NoGrad(func() error {
		var err error
		out, err = zeroshot.ScaledCosine(features, c.evalFeatures, c.scale)
		if err != nil {
			return fmt.Errorf("coop: %w", err)
		}
		return nil
	})
	return out, err
}

// ensureEval computes the cached evaluation class features unless they
// were computed from the context's current value.
func (c *CoOp) ensureEval() error {
	if c.evalFeatures != nil {
		same, err := c.ctx.Equal(c.evalCtx, false)
		if err != nil {
			return torch.Err("coop: compare context", err)
		}
		if same {
			return nil
		}
		c.dropEval()
	}
	return torch.NoGrad(func() error {
		g, err := c.classFeatures()
		if err != nil {
			return err
		}
		snap, err := torch.Copy("copy context", c.ctx)
		if err != nil {
			g.Drop()
			return fmt.Errorf("coop: snapshot context: %w", err)
		}
		c.evalFeatures, c.evalCtx = g, snap
		return nil
	})
}

// pendingFeatures computes the class features without gradients and
// returns them as a leaf that records its gradient, kept in c.pending for
// FinishBackward. The caller drops its handle.
func (c *CoOp) pendingFeatures() (*ts.Tensor, error) {
	var g *ts.Tensor
	err := torch.NoGrad(func() error {
		var err error
		g, err = c.classFeatures()
		return err
	})
	if err != nil {
		return nil, err
	}
	leaf, err := g.SetRequiresGrad(true, true)
	if err != nil {
		return nil, torch.Err("coop: class features leaf", err)
	}
	c.pending = leaf
	out, err := leaf.ShallowClone()
	if err != nil {
		c.dropPending()
		return nil, torch.Err("coop: class features leaf", err)
	}
	return out, nil
}

func (c *CoOp) dropPending() {
	if c.pending != nil {
		c.pending.Drop()
		c.pending = nil
	}
}

func (c *CoOp) dropEval() {
	if c.evalFeatures != nil {
		c.evalFeatures.Drop()
		c.evalFeatures = nil
	}
	if c.evalCtx != nil {
		c.evalCtx.Drop()
		c.evalCtx = nil
	}
}

// Drop frees the method's tensors.
func (c *CoOp) Drop() {
	c.dropEval()
	c.dropPending()
	for _, t := range []**ts.Tensor{&c.ctx, &c.frozen, &c.unorder} {
		if *t != nil {
			(*t).Drop()
			*t = nil
		}
	}
	for _, k := range c.chunks {
		k.drop()
	}
	c.chunks = nil
	c.prefix, c.prefixText = 0, nil
}

func prod(s []int64) int64 {
	p := int64(1)
	for _, v := range s {
		p *= v
	}
	return p
}

// Build is CoOp's constructor for the method registry: it trains on
// augmented features of the train set.
func Build(o Options) (train.Method, train.Needs, error) {
	return New(o), train.Needs{TrainFeatures: true, Augment: true}, nil
}

// TextBased implements train.TextBased: with a context shared by all
// classes the prompts are built for any class names; a class-specific
// context is tied to the training classes.
func (c *CoOp) TextBased() bool { return !(c.opts.ClassSpecific && c.opts.CtxInit == "") }
