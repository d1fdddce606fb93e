package clip

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
)

var negInf = math.Inf(-1)

func expf(x float64) float64 { return math.Exp(x) }

// toModel returns x on the model's device in dtype.
func (m *Model) toModel(s *torch.Scope, x *ts.Tensor, dtype gotch.DType) (*ts.Tensor, error) {
	y, err := s.Op("move to device")(x.To(m.device, false))
	if err != nil {
		return nil, err
	}
	return s.Op("convert dtype")(y.Totype(dtype, false))
}

// encodeImage runs the image tower; with pre it stops before the last
// projection (the ViT's proj, the ResNet attention pool's c_proj).
func (m *Model) encodeImage(images *ts.Tensor, pre bool) (*ts.Tensor, error) {
	shape, err := images.Size()
	if err != nil {
		return nil, torch.Err("images", err)
	}
	r := int64(m.cfg.ImageResolution)
	if len(shape) != 4 || shape[1] != 3 || shape[2] != r || shape[3] != r || shape[0] == 0 {
		return nil, fmt.Errorf("clip: images have shape %v, want [N, 3, %d, %d]", shape, r, r)
	}
	var s torch.Scope
	defer s.Drop()
	x, err := m.toModel(&s, images, m.dtype)
	if err != nil {
		return nil, err
	}
	var f *ts.Tensor
	if m.vit != nil {
		f, err = m.vit.forward(x, pre)
	} else {
		f, err = m.rn.forward(x, pre)
	}
	if err != nil {
		return nil, fmt.Errorf("clip: image tower: %w", err)
	}
	out, err := f.Totype(gotch.Float, true)
	return out, torch.Err("image features", err)
}

func (v *visionTransformer) forward(x *ts.Tensor, pre bool) (*ts.Tensor, error) {
	h, err := v.stem(x)
	if err != nil {
		return nil, err
	}
	defer h.Drop()
	return v.from(h, 0, pre)
}

// numLayers is the number of residual blocks.
func (v *visionTransformer) numLayers() int { return len(v.transformer.Blocks) }

// upTo runs the stem and blocks 1..k: tokens [N, L, W].
func (v *visionTransformer) upTo(x *ts.Tensor, k int) (*ts.Tensor, error) {
	h, err := v.stem(x)
	if err != nil {
		return nil, err
	}
	defer h.Drop()
	return (&nn.Transformer{Blocks: v.transformer.Blocks[:k]}).Forward(h, nil)
}

// from runs blocks k+1.. on tokens h, then ln_post on the class token and
// (unless pre) the projection.
func (v *visionTransformer) from(h *ts.Tensor, k int, pre bool) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	blocks := v.transformer.Blocks
	var first *ts.Tensor
	var err error
	if k < len(blocks) {
		// (Not with no blocks left: an empty Transformer returns a
		// detached copy, which would cut the gradient to h.)
		if k < len(blocks)-1 {
			if h, err = (&nn.Transformer{Blocks: blocks[k : len(blocks)-1]}).Forward(h, nil); err != nil {
				return nil, err
			}
			s.Keep(h)
		}
		// Only the class token is read: the last block computes it alone.
		if first, err = blocks[len(blocks)-1].ForwardFirst(h); err != nil {
			return nil, fmt.Errorf("block %d: %w", len(blocks)-1, err)
		}
		s.Keep(first)
	} else if first, err = s.Op("class token")(h.Select(1, 0, false)); err != nil {
		return nil, err
	}
	o, err := v.lnPost.Forward(first)
	if err != nil {
		return nil, err
	}
	if pre {
		return o, nil
	}
	s.Keep(o)
	y, err := o.Matmul(v.proj, false)
	return y, torch.Err("visual projection", err)
}

// stem embeds the patches, prepends the class token, adds the positional
// embedding and applies ln_pre: [N, L, W].
func (v *visionTransformer) stem(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	c, err := v.conv1.Forward(x)
	if err != nil {
		return nil, err
	}
	s.Keep(c)
	cs, err := c.Size()
	if err != nil {
		return nil, torch.Err("patch embedding shape", err)
	}
	n := cs[0]
	flat, err := s.Op("patches")(c.Flatten(2, 3, false)) // N, w, g²
	if err != nil {
		return nil, err
	}
	patches, err := s.Op("patches")(flat.Permute([]int64{0, 2, 1}, false)) // N, g², w
	if err != nil {
		return nil, err
	}
	cls, err := s.Op("class embedding")(v.classEmbedding.Totype(x.DType(), false))
	if err != nil {
		return nil, err
	}
	if cls, err = s.Op("class embedding")(cls.View([]int64{1, 1, v.width}, false)); err != nil {
		return nil, err
	}
	if cls, err = s.Op("class embedding")(cls.Expand([]int64{n, 1, v.width}, false, false)); err != nil {
		return nil, err
	}
	seq, err := s.Op("tokens")(ts.Cat([]*ts.Tensor{cls, patches}, 1))
	if err != nil {
		return nil, err
	}
	pos, err := s.Op("positional embedding")(v.positionalEmbedding.Totype(x.DType(), false))
	if err != nil {
		return nil, err
	}
	if seq, err = s.Op("positional embedding")(seq.Add(pos, false)); err != nil {
		return nil, err
	}
	return v.lnPre.Forward(seq)
}

func (r *modifiedResNet) forward(x *ts.Tensor, pre bool) (*ts.Tensor, error) {
	h, err := r.upTo(x, 0)
	if err != nil {
		return nil, err
	}
	defer h.Drop()
	return r.from(h, 0, pre)
}

// numLayers is the number of stages (layer1..layer4).
func (r *modifiedResNet) numLayers() int { return len(r.layers) }

// upTo runs the stem and stages 1..k: feature maps [N, C, H, W].
func (r *modifiedResNet) upTo(x *ts.Tensor, k int) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	h := x
	for i, cb := range r.stemLayers() {
		var folded *nn.FoldedConv
		if r.stem != nil {
			folded = r.stem[i]
		}
		y, err := nn.ConvBNReLU(h, cb.c, cb.b, folded)
		if err != nil {
			return nil, fmt.Errorf("stem %d: %w", i+1, err)
		}
		h = s.Keep(y)
	}
	y, err := nn.AvgPool2d(h, 2)
	if err != nil {
		return nil, err
	}
	h = s.Keep(y)
	if h, err = r.stages(&s, h, 0, k); err != nil {
		return nil, err
	}
	return s.Release(h), nil
}

// from runs stages k+1..4 on h, then the attention pool (without its
// output projection when pre).
func (r *modifiedResNet) from(h *ts.Tensor, k int, pre bool) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	h, err := r.stages(&s, h, k, len(r.layers))
	if err != nil {
		return nil, err
	}
	if pre {
		return r.attnpool.PreProjection(h)
	}
	return r.attnpool.Forward(h)
}

// stages runs stages from+1..to on h; the activations it makes are held in
// s, only the current one alive.
func (r *modifiedResNet) stages(s *torch.Scope, h *ts.Tensor, from, to int) (*ts.Tensor, error) {
	for si := from; si < to; si++ {
		for j, blk := range r.layers[si] {
			y, err := blk.Forward(h)
			if err != nil {
				return nil, fmt.Errorf("layer%d.%d: %w", si+1, j, err)
			}
			// Drop as we go: only the current activation is alive.
			s.Drop()
			h = s.Keep(y)
		}
	}
	return h, nil
}

// tokenIDs validates token ids [N, L] and returns them row-major.
func (m *Model) tokenIDs(tokens *ts.Tensor) ([]int64, int, int, error) {
	shape, err := tokens.Size()
	if err != nil {
		return nil, 0, 0, torch.Err("tokens", err)
	}
	if len(shape) != 2 || shape[0] == 0 || shape[1] == 0 || shape[1] > int64(m.cfg.ContextLength) {
		return nil, 0, 0, fmt.Errorf("clip: tokens have shape %v, want [N, L] with 1 ≤ L ≤ %d", shape, m.cfg.ContextLength)
	}
	switch tokens.DType() {
	case gotch.Int64, gotch.Int, gotch.Int16, gotch.Int8, gotch.Uint8:
	default:
		return nil, 0, 0, fmt.Errorf("clip: tokens are %v, want an integer dtype", tokens.DType())
	}
	n, l := int(shape[0]), int(shape[1])
	ids, err := torch.Values[int64](tokens)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("tokens: %w", err)
	}
	for i, id := range ids {
		if id < 0 || id >= int64(m.cfg.VocabSize) {
			return nil, 0, 0, fmt.Errorf("clip: token id %d at row %d, position %d is outside the vocabulary [0, %d)", id, i/l, i%l, m.cfg.VocabSize)
		}
	}
	return ids, n, l, nil
}

// EndOfTextPositions returns the end-of-text position of every row of
// token ids stored row-major in rows of the given length: the index of the
// row's largest id (the first one on ties), which is where CLIP's text
// tower reads its output, since the end-of-text token has the largest id
// of the vocabulary. A trailing partial row is ignored; a length below 1
// gives no rows.
func EndOfTextPositions(ids []int64, length int64) []int64 {
	if length < 1 {
		return nil
	}
	out := make([]int64, int64(len(ids))/length)
	for r := range out {
		out[r] = int64(tokenizer.EOTIndex(ids[int64(r)*length : int64(r+1)*length]))
	}
	return out
}

// tokenEmbeddingOf looks up validated token ids and converts the result to
// the compute dtype.
func (m *Model) tokenEmbeddingOf(tokens *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	idx, err := m.toModel(&s, tokens, gotch.Int64)
	if err != nil {
		return nil, err
	}
	e, err := s.Op("token embedding")(ts.Embedding(m.tokenEmbedding, idx, -1, false, false))
	if err != nil {
		return nil, err
	}
	y, err := e.Totype(m.dtype, false)
	return y, torch.Err("token embedding", err)
}

func (m *Model) encodeTextEmbeddings(x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	f, _, err := m.encodeTextPacked(nil, nil, []*ts.Tensor{x}, [][]int64{eot}, false)
	return f, err
}

// checkTextEmbeddings validates x [N, L, W] for positions from..from+L-1
// and returns N and L.
func (m *Model) checkTextEmbeddings(x *ts.Tensor, from int64, what string) (int64, int64, error) {
	shape, err := x.Size()
	if err != nil {
		return 0, 0, torch.Err(what, err)
	}
	W, ctx := int64(m.cfg.TransformerWidth), int64(m.cfg.ContextLength)
	if len(shape) != 3 || shape[0] == 0 || shape[1] == 0 || from+shape[1] > ctx || shape[2] != W {
		return 0, 0, fmt.Errorf("clip: %s have shape %v, want [N, L, %d] with 1 ≤ L ≤ %d", what, shape, W, ctx-from)
	}
	return shape[0], shape[1], nil
}

// positioned returns x on the model's device in its dtype with the
// positional embeddings of positions from..from+l-1 added.
func (m *Model) positioned(s *torch.Scope, x *ts.Tensor, from, l int64) (*ts.Tensor, error) {
	h, err := m.toModel(s, x, m.dtype)
	if err != nil {
		return nil, err
	}
	pos, err := s.Op("positional embedding")(m.positionalEmbedding.Narrow(0, from, l, false))
	if err != nil {
		return nil, err
	}
	if pos, err = s.Op("positional embedding")(pos.Totype(m.dtype, false)); err != nil {
		return nil, err
	}
	return s.Op("positional embedding")(h.Add(pos, false))
}

// causalRows returns the rows from..from+l-1 of the causal mask, over the
// columns 0..from+l-1: the mask of l positions that follow from earlier
// ones.
func (m *Model) causalRows(s *torch.Scope, from, l int64) (*ts.Tensor, error) {
	mask, err := s.Op("causal mask")(m.mask.Narrow(0, from, l, false))
	if err != nil {
		return nil, err
	}
	return s.Op("causal mask")(mask.Narrow(1, 0, from+l, false))
}

// encodeTextPrefix runs the text transformer over a prefix x [1, P, W]
// (positions 0..P-1) and returns every block's keys and values of it.
func (m *Model) encodeTextPrefix(x *ts.Tensor) (*TextPrefix, error) {
	_, p, err := m.encodeTextPacked(x, nil, nil, nil, true)
	return p, err
}

// encodeTextAfter runs the text transformer over x [N, L, W], which
// follows the prefix (positions P..P+L-1; P = 0 without a prefix), and
// projects the rows at the end-of-text positions eot (counted from the
// start of the whole sequence, so P ≤ eot[i] < P+L).
func (m *Model) encodeTextAfter(prefix *TextPrefix, x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	f, _, err := m.encodeTextPacked(nil, prefix, []*ts.Tensor{x}, [][]int64{eot}, false)
	return f, err
}

// encodeTextPacked is the text transformer's one code path. It runs, in
// one pass of packed rows (nn.Segment), the prefix embeddings pre [A, P,
// W] (positions 0..P-1 of A prefixes; nil for none) and the groups xs[g]
// [N_g, L_g, W] of sequences that continue after the prefix: after pre
// (N_g a multiple of A, each run of N_g/A consecutive sequences after one
// prefix, in order), or after the earlier state past (at most one of the
// two), or from position 0. eots[g]
// holds group g's end-of-text positions, counted from the start of the
// whole sequence. Each group is cut after its own last end-of-text token
// (unless the model keeps the full context): the mask is causal and the
// features are read there, so later positions cannot change any result.
//
// It returns the text features [ΣN_g, EmbedDim] (fp32, groups in order;
// nil without groups) and, with keepPrefix, pre's keys and values.
// Running the prefix and the groups together means each layer's weights
// are read once per pass, not once per group: on a CPU, with few rows per
// group, reading the weights costs as much as the arithmetic.
func (m *Model) encodeTextPacked(pre *ts.Tensor, past *TextPrefix, xs []*ts.Tensor, eots [][]int64, keepPrefix bool) (*ts.Tensor, *TextPrefix, error) {
	if pre != nil && past != nil {
		return nil, nil, fmt.Errorf("clip: both prefix embeddings and a prefix state")
	}
	if len(eots) != len(xs) {
		return nil, nil, fmt.Errorf("clip: end-of-text positions for %d groups of %d", len(eots), len(xs))
	}
	if pre == nil && len(xs) == 0 {
		return nil, nil, fmt.Errorf("clip: no text embeddings")
	}
	if keepPrefix && pre == nil {
		return nil, nil, fmt.Errorf("clip: keys and values of a prefix asked for without prefix embeddings")
	}
	var s torch.Scope
	defer s.Drop()
	W := int64(m.cfg.TransformerWidth)
	var (
		segs []nn.Segment
		rows []*ts.Tensor
		from int64
		// offset: the packed rows so far.
		offset int64
	)
	after := -1
	if pre != nil {
		n, l, err := m.checkTextEmbeddings(pre, 0, "prefix embeddings")
		if err != nil {
			return nil, nil, err
		}
		if keepPrefix && n != 1 {
			return nil, nil, fmt.Errorf("clip: prefix embeddings hold %d sequences, want 1", n)
		}
		for g, x := range xs {
			if gs, err := x.Size(); err == nil && len(gs) == 3 && gs[0]%n != 0 {
				return nil, nil, fmt.Errorf("clip: group %d holds %d sequences, not a multiple of the %d prefixes", g, gs[0], n)
			}
		}
		if l >= int64(m.cfg.ContextLength) {
			return nil, nil, fmt.Errorf("clip: a prefix of %d positions leaves none of the %d", l, m.cfg.ContextLength)
		}
		h, err := m.positioned(&s, pre, 0, l)
		if err != nil {
			return nil, nil, err
		}
		if h, err = s.Op("prefix rows")(h.View([]int64{n * l, W}, false)); err != nil {
			return nil, nil, err
		}
		mask, err := m.causalRows(&s, 0, l)
		if err != nil {
			return nil, nil, err
		}
		segs = append(segs, nn.Segment{N: n, L: l, After: -1, Mask: mask})
		offset = n * l
		rows = append(rows, h)
		from, after = l, 0
	}
	what := "text embeddings"
	if past != nil {
		from, what = past.Len, "embeddings after the prefix"
	} else if pre != nil {
		what = "embeddings after the prefix"
	}
	// sel: the packed row of every group's end-of-text positions.
	var sel []int64
	for g, x := range xs {
		n, l, err := m.checkTextEmbeddings(x, from, what)
		if err != nil {
			return nil, nil, err
		}
		eot := eots[g]
		if int64(len(eot)) != n {
			return nil, nil, fmt.Errorf("clip: %d end-of-text positions for %d sequences", len(eot), n)
		}
		last := int64(0)
		for i, p := range eot {
			if p < from || p >= from+l {
				return nil, nil, fmt.Errorf("clip: end-of-text position %d of row %d is outside [%d, %d)", p, i, from, from+l)
			}
			last = max(last, p-from)
		}
		if !m.fullTextContext && last+1 < l {
			l = last + 1
			if x, err = s.Op("cut after the last end-of-text token")(x.Narrow(1, 0, l, false)); err != nil {
				return nil, nil, err
			}
		}
		for i, p := range eot {
			sel = append(sel, offset+int64(i)*l+p-from)
		}
		h, err := m.positioned(&s, x, from, l)
		if err != nil {
			return nil, nil, err
		}
		if h, err = s.Op("text rows")(h.Reshape([]int64{n * l, W}, false)); err != nil {
			return nil, nil, err
		}
		mask, err := m.causalRows(&s, from, l)
		if err != nil {
			return nil, nil, err
		}
		segs = append(segs, nn.Segment{N: n, L: l, After: after, Mask: mask})
		rows = append(rows, h)
		offset += n * l
	}
	var blockPast [][]*nn.KV
	if past != nil {
		if len(past.KV) != len(m.transformer.Blocks) {
			return nil, nil, fmt.Errorf("clip: a text prefix state of %d blocks, want %d", len(past.KV), len(m.transformer.Blocks))
		}
		for i := range past.KV {
			bp := make([]*nn.KV, len(segs))
			for j := range bp {
				bp[j] = &past.KV[i]
			}
			blockPast = append(blockPast, bp)
		}
	}
	h := rows[0]
	if len(rows) > 1 {
		var err error
		if h, err = s.Op("pack text rows")(ts.Cat(rows, 0)); err != nil {
			return nil, nil, err
		}
	}
	// Only the end-of-text rows are read: the last block computes its MLP
	// for them alone (with no groups, nothing is read).
	at := sel
	if len(xs) == 0 {
		at = nil
	}
	y, kept, err := m.transformer.ForwardPackedAt(h, segs, blockPast, keepPrefix, at)
	if err != nil {
		return nil, nil, fmt.Errorf("clip: text transformer: %w", err)
	}
	s.Keep(y)
	var prefix *TextPrefix
	if keepPrefix {
		prefix = &TextPrefix{Len: from}
		for _, kvs := range kept {
			prefix.KV = append(prefix.KV, kvs[0])
			for _, kv := range kvs[1:] {
				kv.Drop()
			}
		}
	}
	if len(xs) == 0 {
		return nil, prefix, nil
	}
	feats, err := m.textFeatures(&s, y)
	if err != nil {
		if prefix != nil {
			prefix.Drop()
		}
		return nil, nil, err
	}
	return feats, prefix, nil
}

// textFeatures applies ln_final and the text projection to the
// transformer's output rows y [S, W] (the end-of-text positions): the
// features [S, EmbedDim] as fp32.
func (m *Model) textFeatures(s *torch.Scope, y *ts.Tensor) (*ts.Tensor, error) {
	ln, err := m.lnFinal.Forward(y)
	if err != nil {
		return nil, err
	}
	s.Keep(ln)
	p, err := s.Op("text projection")(ln.Matmul(m.textProjection, false))
	if err != nil {
		return nil, err
	}
	out, err := p.Totype(gotch.Float, false)
	return out, torch.Err("text features", err)
}

// scalarValue reads a one-element tensor.
func scalarValue(t *ts.Tensor) (float64, error) {
	v, err := torch.Values[float64](t)
	if err != nil {
		return 0, fmt.Errorf("read scalar: %w", err)
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("read scalar: tensor has %d elements", len(v))
	}
	return v[0], nil
}
