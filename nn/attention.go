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

// Project returns the queries, keys and values of x [N, L, E], each split
// into heads: [N, H, L, d].
func (a *MultiheadAttention) Project(x *ts.Tensor) (q, k, v *ts.Tensor, err error) {
	var s torch.Scope
	defer s.Drop()
	if a.Width%a.Heads != 0 {
		return nil, nil, nil, fmt.Errorf("attention: width %d is not divisible by %d heads", a.Width, a.Heads)
	}
	qkv, err := ts.Linear(x, a.InProjWeight, a.InProjBias)
	if err != nil {
		return nil, nil, nil, wrap("attention: input projection", err)
	}
	s.Keep(qkv)
	var heads [3]*ts.Tensor
	for i := range heads {
		part, err := qkv.Narrow(-1, int64(i)*a.Width, a.Width, false)
		if err != nil {
			return nil, nil, nil, wrap("attention: split q/k/v", err)
		}
		s.Keep(part)
		if heads[i], err = splitHeads(part, a.Heads); err != nil {
			return nil, nil, nil, err
		}
		s.Keep(heads[i])
	}
	for _, h := range heads {
		s.Release(h)
	}
	return heads[0], heads[1], heads[2], nil
}

// ForwardAfter attends x [N, L, E] to the keys and values pastK, pastV
// [1, H, P, d] of P earlier positions shared by every row, followed by
// x's own. mask is nil or an additive [L, P+L] mask. It returns the output
// [N, L, E] and x's keys and values [N, H, L, d] (which positions after x
// may attend to). With pastK nil it is Forward, returning the keys and
// values too.
func (a *MultiheadAttention) ForwardAfter(x, pastK, pastV, mask *ts.Tensor) (y, k, v *ts.Tensor, err error) {
	var s torch.Scope
	defer s.Drop()
	q, k, v, err := a.Project(x)
	if err != nil {
		return nil, nil, nil, err
	}
	s.Keep(q)
	s.Keep(k)
	s.Keep(v)
	keys, values := k, v
	if pastK != nil {
		ks, err := size(k)
		if err != nil {
			return nil, nil, nil, err
		}
		ps, err := size(pastK)
		if err != nil {
			return nil, nil, nil, err
		}
		if len(ps) != 4 || ps[0] != 1 || ps[1] != ks[1] || ps[3] != ks[3] {
			return nil, nil, nil, fmt.Errorf("attention: earlier keys have shape %v, want [1, %d, P, %d]", ps, ks[1], ks[3])
		}
		join := func(past, own *ts.Tensor) (*ts.Tensor, error) {
			e, err := past.Expand([]int64{ks[0], ps[1], ps[2], ps[3]}, false, false)
			if err != nil {
				return nil, wrap("attention: expand earlier keys/values", err)
			}
			s.Keep(e)
			j, err := ts.Cat([]*ts.Tensor{e, own}, 2)
			if err != nil {
				return nil, wrap("attention: join earlier keys/values", err)
			}
			return s.Keep(j), nil
		}
		if keys, err = join(pastK, k); err != nil {
			return nil, nil, nil, err
		}
		if values, err = join(pastV, v); err != nil {
			return nil, nil, nil, err
		}
	}
	o, err := Attend(q, keys, values, mask)
	if err != nil {
		return nil, nil, nil, err
	}
	s.Keep(o)
	if y, err = a.OutProj.Forward(o); err != nil {
		return nil, nil, nil, err
	}
	s.Release(k)
	s.Release(v)
	return y, k, v, nil
}
