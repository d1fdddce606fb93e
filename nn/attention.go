package nn

import (
	"fmt"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

// splitHeads reshapes x [N, L, H·d] to [N, H, L, d].
func splitHeads(x *ts.Tensor, heads int64) (*ts.Tensor, error) {
	s, err := size(x)
	if err != nil {
		return nil, err
	}
	if len(s) != 3 || s[2]%heads != 0 {
		return nil, fmt.Errorf("attention: input shape %v cannot be split into %d heads", s, heads)
	}
	v, err := x.View([]int64{s[0], s[1], heads, s[2] / heads}, false)
	if err != nil {
		return nil, wrap("attention: split heads", err)
	}
	y, err := v.Permute([]int64{0, 2, 1, 3}, true)
	return y, wrap("attention: split heads", err)
}

// Attend computes softmax(q kᵀ/√d + mask) v per head. q is [N, H, Lq, d],
// k and v are [N, H, Lk, d], mask is nil or an additive [Lq, Lk] mask. The
// result is [N, Lq, H·d].
//
// Where libtorch has scaled_dot_product_attention (2.0 and later) it is one
// call, which libtorch runs as a fused kernel where it has one (flash or
// memory-efficient attention on CUDA, a fused CPU kernel), as PyTorch's
// nn.MultiheadAttention does in inference; against libtorch 1.13, where
// setup replaced gotch's wrapper by a stub, the product, mask, softmax and
// product are written out. Both compute the same function; they differ by
// rounding.
func Attend(q, k, v, mask *ts.Tensor) (*ts.Tensor, error) {
	if torch.Stubbed("atg_scaled_dot_product_attention") {
		return attendExplicit(q, k, v, mask)
	}
	return attendFused(q, k, v, mask)
}

// queryShape returns q's shape, which must be [N, H, L, d].
func queryShape(q *ts.Tensor) ([]int64, error) {
	qs, err := size(q)
	if err != nil {
		return nil, err
	}
	if len(qs) != 4 {
		return nil, fmt.Errorf("attention: query shape %v, want [N, heads, L, d]", qs)
	}
	return qs, nil
}

// mergeHeads turns the heads' outputs o [N, H, L, d] into [N, L, H·d].
func mergeHeads(o *ts.Tensor) (*ts.Tensor, error) {
	shape, err := size(o)
	if err != nil {
		return nil, err
	}
	ot, err := o.Permute([]int64{0, 2, 1, 3}, false)
	if err != nil {
		return nil, wrap("attention: merge heads", err)
	}
	defer ot.Drop()
	y, err := ot.Reshape([]int64{shape[0], shape[2], shape[1] * shape[3]}, false)
	return y, wrap("attention: merge heads", err)
}

// attendFused is Attend through libtorch's scaled_dot_product_attention.
func attendFused(q, k, v, mask *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	_, err := queryShape(q)
	if err != nil {
		return nil, err
	}
	m := &ts.Tensor{} // no mask: gotch passes an undefined tensor
	if mask != nil {
		// The additive mask must have the query's dtype.
		if m, err = CastTo(mask, q.DType()); err != nil {
			return nil, err
		}
		s.Keep(m)
	}
	o, err := ts.ScaledDotProductAttention(q, k, v, m, 0, false, nil)
	if err != nil {
		return nil, wrap("attention: scaled dot product", err)
	}
	s.Keep(o)
	return mergeHeads(o)
}

// attendExplicit is Attend written out: scale, q kᵀ, mask, softmax, times v.
func attendExplicit(q, k, v, mask *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	qs, err := queryShape(q)
	if err != nil {
		return nil, err
	}
	scale := ts.FloatScalar(invSqrt(qs[3]))
	defer scale.Drop()
	qq, err := q.MulScalar(scale, false)
	if err != nil {
		return nil, wrap("attention: scale", err)
	}
	s.Keep(qq)
	kt, err := k.Transpose(-2, -1, false)
	if err != nil {
		return nil, wrap("attention: transpose keys", err)
	}
	s.Keep(kt)
	scores, err := qq.Matmul(kt, false)
	if err != nil {
		return nil, wrap("attention: scores", err)
	}
	s.Keep(scores)
	if mask != nil {
		m, err := CastTo(mask, scores.DType())
		if err != nil {
			return nil, err
		}
		s.Keep(m)
		if scores, err = scores.Add(m, false); err != nil {
			return nil, wrap("attention: mask", err)
		}
		s.Keep(scores)
	}
	p, err := scores.Softmax(-1, scores.DType(), false)
	if err != nil {
		return nil, wrap("attention: softmax", err)
	}
	s.Keep(p)
	o, err := p.Matmul(v, false)
	if err != nil {
		return nil, wrap("attention: weighted values", err)
	}
	s.Keep(o)
	return mergeHeads(o)
}

// MultiheadAttention is self-attention with PyTorch's nn.MultiheadAttention
// parameters: a packed input projection in_proj_weight [3E, E] (rows: query,
// key, value) and in_proj_bias [3E], and out_proj (Linear E→E).
type MultiheadAttention struct {
	InProjWeight, InProjBias *ts.Tensor
	OutProj                  *Linear
	Width, Heads             int64
}

// NewMultiheadAttention adds <prefix>.in_proj_weight, .in_proj_bias and
// .out_proj.{weight,bias}, all of the builder's weight dtype.
func NewMultiheadAttention(b Builder, width, heads int64) *MultiheadAttention {
	return &MultiheadAttention{
		InProjWeight: b.Weight("in_proj_weight", 3*width, width),
		InProjBias:   b.Weight("in_proj_bias", 3*width),
		OutProj:      NewLinear(b.Sub("out_proj"), width, width, true),
		Width:        width,
		Heads:        heads,
	}
}

// Forward attends x [N, L, E] to itself; mask is nil or an additive [L, L]
// mask (−∞ where attention is not allowed).
func (a *MultiheadAttention) Forward(x, mask *ts.Tensor) (*ts.Tensor, error) {
	y, k, v, err := a.ForwardAfter(x, nil, nil, mask)
	if err != nil {
		return nil, err
	}
	k.Drop()
	v.Drop()
	return y, nil
}

// ForwardFirst attends the first position of each sequence of x [N, L, E]
// to all of x's positions, without a mask: Forward(x, nil)[:, 0], [N, E].
// Only that position's query is projected and attended; every position's
// keys and values are.
func (a *MultiheadAttention) ForwardFirst(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	xs, err := size(x)
	if err != nil {
		return nil, err
	}
	if len(xs) != 3 || xs[2] != a.Width {
		return nil, fmt.Errorf("attention: input shape %v, want [N, L, %d]", xs, a.Width)
	}
	// The rows of in_proj are q's, then k's, then v's.
	part := func(t *ts.Tensor, from, n int64) (*ts.Tensor, error) {
		return s.Op("attention: split input projection")(t.Narrow(0, from*a.Width, n*a.Width, false))
	}
	var w [2]*ts.Tensor
	var b [2]*ts.Tensor
	for i, p := range [][2]int64{{0, 1}, {1, 2}} {
		if w[i], err = part(a.InProjWeight, p[0], p[1]); err != nil {
			return nil, err
		}
		if b[i], err = part(a.InProjBias, p[0], p[1]); err != nil {
			return nil, err
		}
	}
	first, err := s.Op("attention: first positions")(x.Narrow(1, 0, 1, false))
	if err != nil {
		return nil, err
	}
	q, err := s.Op("attention: query projection")(ts.Linear(first, w[0], b[0])) // N, 1, E
	if err != nil {
		return nil, err
	}
	kv, err := s.Op("attention: key/value projection")(ts.Linear(x, w[1], b[1])) // N, L, 2E
	if err != nil {
		return nil, err
	}
	var heads [3]*ts.Tensor
	for i, t := range []*ts.Tensor{q, kv, kv} {
		if i > 0 {
			if t, err = s.Op("attention: split keys/values")(kv.Narrow(-1, int64(i-1)*a.Width, a.Width, false)); err != nil {
				return nil, err
			}
		}
		if heads[i], err = splitHeads(t, a.Heads); err != nil {
			return nil, err
		}
		s.Keep(heads[i])
	}
	o, err := s.Op("attention")(Attend(heads[0], heads[1], heads[2], nil)) // N, 1, E
	if err != nil {
		return nil, err
	}
	rows, err := s.Op("attention: output rows")(o.View([]int64{xs[0], a.Width}, false))
	if err != nil {
		return nil, err
	}
	return a.OutProj.Forward(rows)
}

// AttentionPool2d is the ModifiedResNet head: the feature map's tokens plus
// their mean, with a learned positional embedding, attended by the mean
// token alone, with separate q/k/v projections and an output projection
// c_proj.
type AttentionPool2d struct {
	PositionalEmbedding        *ts.Tensor // [HW+1, C], fp32
	QProj, KProj, VProj, CProj *Linear
	Heads                      int64
}

// NewAttentionPool2d adds <prefix>.positional_embedding [grid²+1, dim]
// (fp32) and the q_proj, k_proj, v_proj (dim→dim) and c_proj (dim→outDim)
// layers with biases.
func NewAttentionPool2d(b Builder, grid, dim, heads, outDim int64) *AttentionPool2d {
	return &AttentionPool2d{
		PositionalEmbedding: b.Float("positional_embedding", grid*grid+1, dim),
		QProj:               NewLinear(b.Sub("q_proj"), dim, dim, true),
		KProj:               NewLinear(b.Sub("k_proj"), dim, dim, true),
		VProj:               NewLinear(b.Sub("v_proj"), dim, dim, true),
		CProj:               NewLinear(b.Sub("c_proj"), dim, outDim, true),
		Heads:               heads,
	}
}

// Forward pools x [N, C, H, W] to [N, outDim]: c_proj applied to
// PreProjection.
func (p *AttentionPool2d) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	o, err := p.PreProjection(x)
	if err != nil {
		return nil, err
	}
	defer o.Drop()
	out, err := p.CProj.Forward(o)
	return out, wrap("attention pool: output projection", err)
}

// PreProjection pools x [N, C, H, W] to [N, C]: the mean token's attention
// output (heads merged) before the output projection c_proj.
func (p *AttentionPool2d) PreProjection(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	xs, err := size(x)
	if err != nil {
		return nil, err
	}
	ps, err := size(p.PositionalEmbedding)
	if err != nil {
		return nil, err
	}
	if len(xs) != 4 || xs[2]*xs[3]+1 != ps[0] || xs[1] != ps[1] {
		return nil, fmt.Errorf("attention pool: feature map %v does not fit the positional embedding %v (wrong image resolution?)", xs, ps)
	}
	flat, err := x.Flatten(2, 3, false)
	if err != nil {
		return nil, wrap("attention pool: flatten", err)
	}
	s.Keep(flat)
	tokens, err := flat.Permute([]int64{0, 2, 1}, false) // N, HW, C
	if err != nil {
		return nil, wrap("attention pool: permute", err)
	}
	s.Keep(tokens)
	mean, err := tokens.MeanDim([]int64{1}, true, tokens.DType(), false)
	if err != nil {
		return nil, wrap("attention pool: mean", err)
	}
	s.Keep(mean)
	seq, err := ts.Cat([]*ts.Tensor{mean, tokens}, 1)
	if err != nil {
		return nil, wrap("attention pool: concat", err)
	}
	s.Keep(seq)
	pos, err := CastTo(p.PositionalEmbedding, seq.DType())
	if err != nil {
		return nil, err
	}
	s.Keep(pos)
	seq, err = seq.Add(pos, false)
	if err != nil {
		return nil, wrap("attention pool: positional embedding", err)
	}
	s.Keep(seq)
	first, err := seq.Narrow(1, 0, 1, false)
	if err != nil {
		return nil, wrap("attention pool: query token", err)
	}
	s.Keep(first)
	project := func(l *Linear, in *ts.Tensor) (*ts.Tensor, error) {
		y, err := l.Forward(in)
		if err != nil {
			return nil, err
		}
		s.Keep(y)
		h, err := splitHeads(y, p.Heads)
		if err != nil {
			return nil, err
		}
		return s.Keep(h), nil
	}
	q, err := project(p.QProj, first)
	if err != nil {
		return nil, err
	}
	k, err := project(p.KProj, seq)
	if err != nil {
		return nil, err
	}
	v, err := project(p.VProj, seq)
	if err != nil {
		return nil, err
	}
	o, err := Attend(q, k, v, nil) // N, 1, C
	if err != nil {
		return nil, err
	}
	s.Keep(o)
	y, err := o.Reshape([]int64{xs[0], -1}, false)
	return y, wrap("attention pool: output", err)
}

// Segment is one run of sequences in a packed batch of rows: N sequences
// of L positions each, stored as N·L consecutive rows (sequence-major) of
// the packed [T, E] input. Every position-wise part of a block (layer
// norms, projections, MLP) runs once over all the rows of all segments, so
// its weights are read once per layer however many segments there are;
// only attention runs segment by segment.
type Segment struct {
	N, L int64
	// After is the index of an earlier segment whose sequences precede
	// this segment's: with A sequences there, N must be a multiple of A,
	// and each run of N/A consecutive sequences here follows one of them,
	// in order (a prefix shared by a run of prompts). They attend to its
	// keys and values, then to their own. -1: none (the caller may still
	// pass keys and values of earlier positions).
	After int
	// Mask is nil or an additive mask [L, P+L], P the number of earlier
	// positions.
	Mask *ts.Tensor
}

// Rows returns the number of rows the segment takes in the packed batch.
func (g Segment) Rows() int64 { return g.N * g.L }

// checkSegments validates segs against a packed batch of rows rows and
// against past (nil, or one entry per segment).
func checkSegments(segs []Segment, past []*KV, rows int64) error {
	if len(segs) == 0 {
		return fmt.Errorf("attention: no segments")
	}
	if past != nil && len(past) != len(segs) {
		return fmt.Errorf("attention: earlier keys and values for %d segments, want %d", len(past), len(segs))
	}
	total := int64(0)
	for i, g := range segs {
		if g.N <= 0 || g.L <= 0 {
			return fmt.Errorf("attention: segment %d has %d sequences of %d positions", i, g.N, g.L)
		}
		if g.After >= 0 {
			if g.After >= i || g.N%segs[g.After].N != 0 {
				return fmt.Errorf("attention: segment %d follows segment %d, which must come earlier and hold a divisor of its %d sequences", i, g.After, g.N)
			}
			if past != nil && past[i] != nil {
				return fmt.Errorf("attention: segment %d has both an earlier segment and earlier keys and values", i)
			}
		}
		total += g.Rows()
	}
	if total != rows {
		return fmt.Errorf("attention: segments cover %d rows of %d", total, rows)
	}
	return nil
}

// ForwardPacked attends the rows x [T, E] segment by segment (segs cover
// the T rows in order). Segment i's sequences attend to the keys and
// values of the segment they follow (Segment.After) or past[i] ([A, H, P,
// d], A dividing the segment's N; past may be nil), then to their own,
// under the segment's mask. It
// returns the output [T, E] and each segment's own keys and values [N, H,
// L, d], which the caller drops.
func (a *MultiheadAttention) ForwardPacked(x *ts.Tensor, segs []Segment, past []*KV) (*ts.Tensor, []KV, error) {
	var s torch.Scope
	defer s.Drop()
	if a.Width%a.Heads != 0 {
		return nil, nil, fmt.Errorf("attention: width %d is not divisible by %d heads", a.Width, a.Heads)
	}
	xs, err := size(x)
	if err != nil {
		return nil, nil, err
	}
	if len(xs) != 2 || xs[1] != a.Width {
		return nil, nil, fmt.Errorf("attention: packed input shape %v, want [rows, %d]", xs, a.Width)
	}
	if err := checkSegments(segs, past, xs[0]); err != nil {
		return nil, nil, err
	}
	qkv, err := s.Op("attention: input projection")(ts.Linear(x, a.InProjWeight, a.InProjBias))
	if err != nil {
		return nil, nil, err
	}
	kvs := make([]KV, len(segs))
	fail := func(err error) (*ts.Tensor, []KV, error) {
		for _, kv := range kvs {
			kv.Drop()
		}
		return nil, nil, err
	}
	outs := make([]*ts.Tensor, len(segs))
	off := int64(0)
	for i, g := range segs {
		var pk, pv *ts.Tensor
		switch {
		case g.After >= 0:
			pk, pv = kvs[g.After].K, kvs[g.After].V
		case past != nil && past[i] != nil:
			pk, pv = past[i].K, past[i].V
		}
		o, k, v, err := a.attendSegment(qkv, off, g, pk, pv)
		if err != nil {
			return fail(fmt.Errorf("segment %d: %w", i, err))
		}
		kvs[i] = KV{K: k, V: v}
		outs[i] = s.Keep(o)
		off += g.Rows()
	}
	o := outs[0]
	if len(outs) > 1 {
		if o, err = s.Op("attention: join segments")(ts.Cat(outs, 0)); err != nil {
			return fail(err)
		}
	}
	y, err := a.OutProj.Forward(o)
	if err != nil {
		return fail(err)
	}
	return y, kvs, nil
}

// attendSegment runs attention for segment g, whose projected rows are
// qkv[off : off+N·L] ([rows, 3E]), after the earlier keys and values pk, pv
// ([A, H, P, d], each of the A shared by a run of N/A consecutive
// sequences) when they are not nil. It returns the output [N·L, E] and the
// segment's keys and values [N, H, L, d].
func (a *MultiheadAttention) attendSegment(qkv *ts.Tensor, off int64, g Segment, pk, pv *ts.Tensor) (o, k, v *ts.Tensor, err error) {
	var s torch.Scope
	defer s.Drop()
	rows, err := s.Op("attention: segment rows")(qkv.Narrow(0, off, g.Rows(), false))
	if err != nil {
		return nil, nil, nil, err
	}
	seq, err := s.Op("attention: segment rows")(rows.View([]int64{g.N, g.L, 3 * a.Width}, false))
	if err != nil {
		return nil, nil, nil, err
	}
	var heads [3]*ts.Tensor
	for i := range heads {
		part, err := s.Op("attention: split q/k/v")(seq.Narrow(-1, int64(i)*a.Width, a.Width, false))
		if err != nil {
			return nil, nil, nil, err
		}
		if heads[i], err = splitHeads(part, a.Heads); err != nil {
			return nil, nil, nil, err
		}
		s.Keep(heads[i])
	}
	q, k, v := heads[0], heads[1], heads[2]
	keys, values := k, v
	if pk != nil {
		ps, err := size(pk)
		if err != nil {
			return nil, nil, nil, err
		}
		d := a.Width / a.Heads
		if len(ps) != 4 || ps[0] < 1 || g.N%ps[0] != 0 || ps[1] != a.Heads || ps[3] != d {
			return nil, nil, nil, fmt.Errorf("attention: earlier keys have shape %v, want [A, %d, P, %d] with A dividing %d", ps, a.Heads, d, g.N)
		}
		join := func(past, own *ts.Tensor) (*ts.Tensor, error) {
			e := past
			if ps[0] == 1 {
				if e, err = s.Op("attention: expand earlier keys/values")(past.Expand([]int64{g.N, ps[1], ps[2], ps[3]}, false, false)); err != nil {
					return nil, err
				}
			} else if ps[0] != g.N {
				// Sequence j follows earlier sequence j / (N/A).
				u, err := s.Op("attention: expand earlier keys/values")(past.Unsqueeze(1, false))
				if err != nil {
					return nil, err
				}
				if u, err = s.Op("attention: expand earlier keys/values")(u.Expand([]int64{ps[0], g.N / ps[0], ps[1], ps[2], ps[3]}, false, false)); err != nil {
					return nil, err
				}
				if e, err = s.Op("attention: expand earlier keys/values")(u.Reshape([]int64{g.N, ps[1], ps[2], ps[3]}, false)); err != nil {
					return nil, err
				}
			}
			return s.Op("attention: join earlier keys/values")(ts.Cat([]*ts.Tensor{e, own}, 2))
		}
		if keys, err = join(pk, k); err != nil {
			return nil, nil, nil, err
		}
		if values, err = join(pv, v); err != nil {
			return nil, nil, nil, err
		}
	}
	out, err := Attend(q, keys, values, g.Mask) // [N, L, E]
	if err != nil {
		return nil, nil, nil, err
	}
	s.Keep(out)
	if o, err = out.View([]int64{g.Rows(), a.Width}, false); err != nil {
		return nil, nil, nil, wrap("attention: segment output", err)
	}
	return o, s.Release(k), s.Release(v), nil
}

// ForwardAfter attends x [N, L, E] to the keys and values pastK, pastV
// [1, H, P, d] of P earlier positions shared by every row, followed by
// x's own. mask is nil or an additive [L, P+L] mask. It returns the output
// [N, L, E] and x's keys and values [N, H, L, d] (which positions after x
// may attend to). With pastK nil it is Forward, returning the keys and
// values too. It is ForwardPacked with one segment.
func (a *MultiheadAttention) ForwardAfter(x, pastK, pastV, mask *ts.Tensor) (y, k, v *ts.Tensor, err error) {
	var s torch.Scope
	defer s.Drop()
	xs, err := size(x)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(xs) != 3 {
		return nil, nil, nil, fmt.Errorf("attention: input shape %v, want [N, L, %d]", xs, a.Width)
	}
	flat, err := s.Op("attention: flatten")(x.Reshape([]int64{xs[0] * xs[1], xs[2]}, false))
	if err != nil {
		return nil, nil, nil, err
	}
	var past []*KV
	if pastK != nil {
		past = []*KV{{K: pastK, V: pastV}}
	}
	out, kvs, err := a.ForwardPacked(flat, []Segment{{N: xs[0], L: xs[1], After: -1, Mask: mask}}, past)
	if err != nil {
		return nil, nil, nil, err
	}
	s.Keep(out)
	if y, err = out.View(xs, false); err != nil {
		kvs[0].Drop()
		return nil, nil, nil, wrap("attention: output", err)
	}
	return y, kvs[0].K, kvs[0].V, nil
}
