package nn

import (
	"fmt"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/sugarme/gotch/ts"
)

// ResidualAttentionBlock is CLIP's pre-LayerNorm transformer block:
// x + attn(ln_1(x)), then + mlp(ln_2(x)).
type ResidualAttentionBlock struct {
	LN1  *LayerNorm
	Attn *MultiheadAttention
	LN2  *LayerNorm
	MLP  *MLP
}

// BlockOptions are the parts of a residual attention block that differ
// between CLIP models. The zero value is OpenAI's block.
type BlockOptions struct {
	// MLPWidth is the hidden width of the MLP; 0 means 4·width.
	MLPWidth int64
	// Activation is the MLP's nonlinearity (QuickGELU by default).
	Activation Activation
}

// NewResidualAttentionBlock adds <prefix>.ln_1, .attn, .ln_2 and .mlp.
func NewResidualAttentionBlock(b Builder, width, heads int64) *ResidualAttentionBlock {
	return NewResidualAttentionBlockWith(b, width, heads, BlockOptions{})
}

// NewResidualAttentionBlockWith is NewResidualAttentionBlock with the
// MLP's hidden width and activation given by o.
func NewResidualAttentionBlockWith(b Builder, width, heads int64, o BlockOptions) *ResidualAttentionBlock {
	hidden := o.MLPWidth
	if hidden == 0 {
		hidden = 4 * width
	}
	return &ResidualAttentionBlock{
		LN1:  NewLayerNorm(b.Sub("ln_1"), width),
		Attn: NewMultiheadAttention(b.Sub("attn"), width, heads),
		LN2:  NewLayerNorm(b.Sub("ln_2"), width),
		MLP:  NewMLPWith(b.Sub("mlp"), width, hidden, o.Activation),
	}
}

// Forward runs the block on x [N, L, W] with an optional additive [L, L]
// attention mask.
func (r *ResidualAttentionBlock) Forward(x, mask *ts.Tensor) (*ts.Tensor, error) {
	y, kv, err := r.ForwardAfter(x, nil, mask)
	if err != nil {
		return nil, err
	}
	kv.Drop()
	return y, nil
}

// ForwardFirst returns the block's output at the first position of each
// sequence of x [N, L, W], without a mask: Forward(x, nil)[:, 0], [N, W].
// Only those positions' queries, attention outputs and MLP are computed
// (every position's keys and values are), about a sixth of the block's
// work for a ViT's 50 tokens: the last block of an image tower, whose
// output is read at the class token alone.
func (r *ResidualAttentionBlock) ForwardFirst(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	h, err := r.LN1.Forward(x)
	if err != nil {
		return nil, err
	}
	s.Keep(h)
	a, err := r.Attn.ForwardFirst(h)
	if err != nil {
		return nil, err
	}
	s.Keep(a)
	first, err := s.Op("first positions")(x.Select(1, 0, false))
	if err != nil {
		return nil, err
	}
	return r.residualMLP(&s, first, a)
}

// residualMLP returns x1 + MLP(LN2(x1)) with x1 = x + a, the block's second
// half. a is the attention output, held by s; without gradients the sums
// are written into a and into the MLP's output.
func (r *ResidualAttentionBlock) residualMLP(s *torch.Scope, x, a *ts.Tensor) (*ts.Tensor, error) {
	inPlace := Untracked(x, a)
	x1 := a
	var err error
	if inPlace {
		err = a.Add_(x)
	} else {
		x1, err = s.Op("residual")(x.Add(a, false))
	}
	if err != nil {
		return nil, wrap("residual", err)
	}
	h2, err := r.LN2.Forward(x1)
	if err != nil {
		return nil, err
	}
	s.Keep(h2)
	m, err := r.MLP.Forward(h2)
	if err != nil {
		return nil, err
	}
	if !inPlace {
		s.Keep(m)
		y, err := x1.Add(m, false)
		return y, wrap("residual", err)
	}
	if err := m.Add_(x1); err != nil {
		m.Drop()
		return nil, wrap("residual", err)
	}
	return m, nil
}

// Transformer is a stack of residual attention blocks, <prefix>.resblocks.{i}.
type Transformer struct {
	Blocks []*ResidualAttentionBlock
}

// NewTransformer adds layers blocks of the given width and head count
// (OpenAI's blocks).
func NewTransformer(b Builder, width, layers, heads int64) *Transformer {
	return NewTransformerWith(b, width, layers, heads, BlockOptions{})
}

// NewTransformerWith adds layers blocks built with options o.
func NewTransformerWith(b Builder, width, layers, heads int64, o BlockOptions) *Transformer {
	t := &Transformer{}
	for i := int64(0); i < layers; i++ {
		t.Blocks = append(t.Blocks, NewResidualAttentionBlockWith(b.Sub(fmt.Sprintf("resblocks.%d", i)), width, heads, o))
	}
	return t
}

// Forward runs every block on x [N, L, W] with an optional additive mask.
func (t *Transformer) Forward(x, mask *ts.Tensor) (*ts.Tensor, error) {
	y, _, err := t.ForwardAfter(x, nil, mask, false)
	return y, err
}

// KV is one block's keys and values [N, H, L, d] of a run of positions, as
// later positions attend to them.
type KV struct{ K, V *ts.Tensor }

// Drop frees the keys and values.
func (kv KV) Drop() {
	for _, t := range []*ts.Tensor{kv.K, kv.V} {
		if t != nil {
			t.Drop()
		}
	}
}

// ForwardPacked runs the block on the packed rows x [T, W] of the segments
// segs (see Segment and MultiheadAttention.ForwardPacked; past is nil or
// each segment's keys and values of earlier positions). It returns the
// output [T, W] and each segment's own keys and values.
func (r *ResidualAttentionBlock) ForwardPacked(x *ts.Tensor, segs []Segment, past []*KV) (*ts.Tensor, []KV, error) {
	return r.ForwardPackedAt(x, segs, past, nil)
}

// ForwardPackedAt is ForwardPacked when only the output rows at (indices
// into x's rows) are needed: it returns them, [len(at), W] in at's order,
// and runs the MLP, two thirds of a block's work, for them alone (keys and
// values, and attention, are still computed for every row). A nil at means
// every row. (The last text block: features are read at the end-of-text
// positions only.)
func (r *ResidualAttentionBlock) ForwardPackedAt(x *ts.Tensor, segs []Segment, past []*KV, at []int64) (*ts.Tensor, []KV, error) {
	var s torch.Scope
	defer s.Drop()
	h, err := r.LN1.Forward(x)
	if err != nil {
		return nil, nil, err
	}
	s.Keep(h)
	a, kvs, err := r.Attn.ForwardPacked(h, segs, past)
	if err != nil {
		return nil, nil, err
	}
	s.Keep(a)
	fail := func(err error) (*ts.Tensor, []KV, error) {
		for _, kv := range kvs {
			kv.Drop()
		}
		return nil, nil, err
	}
	if at != nil {
		rows, err := selectRows(&s, at, x, a)
		if err != nil {
			return fail(err)
		}
		x, a = rows[0], rows[1]
	}
	y, err := r.residualMLP(&s, x, a)
	if err != nil {
		return fail(err)
	}
	return y, kvs, nil
}

// ForwardAfter runs the block on x [N, L, W], whose positions follow P
// earlier ones shared by every row, whose keys and values are past (nil
// when there are none; [1, H, P, d] each otherwise). mask is nil or an
// additive [L, P+L] mask. It returns the output and x's keys and values.
// It is ForwardPacked with one segment.
func (r *ResidualAttentionBlock) ForwardAfter(x *ts.Tensor, past *KV, mask *ts.Tensor) (*ts.Tensor, KV, error) {
	var s torch.Scope
	defer s.Drop()
	flat, shape, err := flatten(&s, x)
	if err != nil {
		return nil, KV{}, err
	}
	var pasts []*KV
	if past != nil {
		pasts = []*KV{past}
	}
	y, kvs, err := r.ForwardPacked(flat, []Segment{{N: shape[0], L: shape[1], After: -1, Mask: mask}}, pasts)
	if err != nil {
		return nil, KV{}, err
	}
	s.Keep(y)
	out, err := y.View(shape, false)
	if err != nil {
		kvs[0].Drop()
		return nil, KV{}, wrap("block output", err)
	}
	return out, kvs[0], nil
}

// flatten returns x [N, L, W] as rows [N·L, W] (held by s) and x's shape.
func flatten(s *torch.Scope, x *ts.Tensor) (*ts.Tensor, []int64, error) {
	shape, err := size(x)
	if err != nil {
		return nil, nil, err
	}
	if len(shape) != 3 {
		return nil, nil, fmt.Errorf("transformer: input shape %v, want [N, L, width]", shape)
	}
	flat, err := s.Op("flatten sequences")(x.Reshape([]int64{shape[0] * shape[1], shape[2]}, false))
	return flat, shape, err
}

// ForwardPacked runs every block on the packed rows x [T, W] of the
// segments segs (see Segment). past is nil or, per block, each segment's
// keys and values of earlier positions (nil entries where a segment has
// none). With keep it also returns, per block, each segment's keys and
// values; otherwise the second result is nil.
//
// Splitting a causal sequence into a prefix and the rest that attends to
// the prefix's keys and values gives the same outputs as running it whole:
// a position only attends to itself and earlier ones.
func (t *Transformer) ForwardPacked(x *ts.Tensor, segs []Segment, past [][]*KV, keep bool) (*ts.Tensor, [][]KV, error) {
	return t.ForwardPackedAt(x, segs, past, keep, nil)
}

// ForwardPackedAt is ForwardPacked when only the output rows at (indices
// into x's rows) are needed: it returns them, [len(at), W] in at's order,
// and the last block runs its MLP for them alone (see
// ResidualAttentionBlock.ForwardPackedAt). A nil at means every row.
func (t *Transformer) ForwardPackedAt(x *ts.Tensor, segs []Segment, past [][]*KV, keep bool, at []int64) (*ts.Tensor, [][]KV, error) {
	if past != nil && len(past) != len(t.Blocks) {
		return nil, nil, fmt.Errorf("transformer: keys and values of %d blocks for %d blocks", len(past), len(t.Blocks))
	}
	var kept [][]KV
	fail := func(err error) (*ts.Tensor, [][]KV, error) {
		for _, kvs := range kept {
			for _, kv := range kvs {
				kv.Drop()
			}
		}
		return nil, nil, err
	}
	cur := x
	for i, blk := range t.Blocks {
		var p []*KV
		if past != nil {
			p = past[i]
		}
		var rows []int64
		if i == len(t.Blocks)-1 {
			rows = at
		}
		next, kvs, err := blk.ForwardPackedAt(cur, segs, p, rows)
		if cur != x {
			cur.Drop()
		}
		if err != nil {
			return fail(fmt.Errorf("block %d: %w", i, err))
		}
		if keep {
			kept = append(kept, kvs)
		} else {
			for _, kv := range kvs {
				kv.Drop()
			}
		}
		cur = next
	}
	if cur == x {
		var s torch.Scope
		defer s.Drop()
		y := x
		var err error
		if at != nil {
			rows, err := selectRows(&s, at, x)
			if err != nil {
				return fail(err)
			}
			y = rows[0]
		}
		if cur, err = y.Detach(false); err != nil {
			return fail(wrap("transformer", err))
		}
	}
	return cur, kept, nil
}

// selectRows returns the rows at of each of xs (tensors on one device),
// [len(at), ...] in at's order; s holds them.
func selectRows(s *torch.Scope, at []int64, xs ...*ts.Tensor) ([]*ts.Tensor, error) {
	dev, err := xs[0].Device()
	if err != nil {
		return nil, wrap("selected rows", err)
	}
	idx, err := s.Op("selected rows")(ts.OfSlice(at))
	if err != nil {
		return nil, err
	}
	if idx, err = s.Op("selected rows")(idx.To(dev, false)); err != nil {
		return nil, err
	}
	rows := make([]*ts.Tensor, len(xs))
	for i, x := range xs {
		if rows[i], err = s.Op("selected rows")(x.IndexSelect(0, idx, false)); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// ForwardAfter runs every block on x [N, L, W] whose positions follow
// earlier ones shared by every row: past holds each block's keys and
// values of those positions ([1, H, P, d]; nil when there are none) and
// mask is nil or an additive [L, P+L] mask. With keep it also returns
// each block's keys and values of x's positions (for positions after
// them); otherwise the second result is nil. It is ForwardPacked with one
// segment.
func (t *Transformer) ForwardAfter(x *ts.Tensor, past []KV, mask *ts.Tensor, keep bool) (*ts.Tensor, []KV, error) {
	if past != nil && len(past) != len(t.Blocks) {
		return nil, nil, fmt.Errorf("transformer: keys and values of %d blocks for %d blocks", len(past), len(t.Blocks))
	}
	var s torch.Scope
	defer s.Drop()
	flat, shape, err := flatten(&s, x)
	if err != nil {
		return nil, nil, err
	}
	var pasts [][]*KV
	for i := range past {
		pasts = append(pasts, []*KV{&past[i]})
	}
	y, kept, err := t.ForwardPacked(flat, []Segment{{N: shape[0], L: shape[1], After: -1, Mask: mask}}, pasts, keep)
	if err != nil {
		return nil, nil, err
	}
	s.Keep(y)
	var kvs []KV
	for _, k := range kept {
		kvs = append(kvs, k[0])
	}
	out, err := y.View(shape, false)
	if err != nil {
		for _, kv := range kvs {
			kv.Drop()
		}
		return nil, nil, wrap("transformer output", err)
	}
	return out, kvs, nil
}
