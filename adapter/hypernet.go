package adapter

import (
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// hypernet maps [f̂; t̄] (2D) through Linear(2D → h) → ReLU → Linear(h → 2)
// → sigmoid to per-image residual ratios [α, β].
type hypernet struct {
	fc1w, fc1b, fc2w, fc2b *ts.Tensor
	// text is t̄, the mean of the classifier's unit rows, [1, D], frozen.
	text *ts.Tensor
}

// newHypernet draws fc1 like a PyTorch Linear (weights and bias uniform in
// ±1/√(2D)), and starts fc2 at zero weights and bias [logit(α), logit(β)].
func newHypernet(rng *rand.Rand, classifier *ts.Tensor, d, hidden int64, alpha, beta float64, dev gotch.Device) (*hypernet, error) {
	h := &hypernet{}
	fail := func(err error) (*hypernet, error) { h.drop(); return nil, fmt.Errorf("hypernet: %w", err) }
	var err error
	if h.fc1w, err = torch.NewParam(uniformLinear(rng, hidden, 2*d), []int64{hidden, 2 * d}, dev); err != nil {
		return fail(err)
	}
	if h.fc1b, err = torch.NewParam(uniformLinear(rng, hidden, 2*d)[:hidden], []int64{hidden}, dev); err != nil {
		return fail(err)
	}
	if h.fc2w, err = torch.NewParam(make([]float32, 2*hidden), []int64{2, hidden}, dev); err != nil {
		return fail(err)
	}
	if h.fc2b, err = torch.NewParam([]float32{float32(logit(alpha)), float32(logit(beta))}, []int64{2}, dev); err != nil {
		return fail(err)
	}
	err = torch.NoGrad(func() error {
		var s torch.Scope
		defer s.Drop()
		mean, err := s.Op("mean class text feature")(classifier.MeanDim([]int64{0}, true, gotch.Float, false))
		if err != nil {
			return err
		}
		h.text, err = nn.Normalize(mean)
		return err
	})
	if err != nil {
		return fail(err)
	}
	return h, nil
}

func (h *hypernet) params() []train.Param {
	return []train.Param{
		{Name: "hypernet.fc1.weight", Tensor: h.fc1w}, {Name: "hypernet.fc1.bias", Tensor: h.fc1b},
		{Name: "hypernet.fc2.weight", Tensor: h.fc2w}, {Name: "hypernet.fc2.bias", Tensor: h.fc2b},
	}
}

func (h *hypernet) drop() {
	for _, t := range []*ts.Tensor{h.fc1w, h.fc1b, h.fc2w, h.fc2b, h.text} {
		if t != nil {
			t.Drop()
		}
	}
	*h = hypernet{}
}

// forward returns the ratios [B, 2] (α, β per row) for raw features [B, D].
func (h *hypernet) forward(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	n, err := x.Size()
	if err != nil {
		return nil, torch.Err("hypernet: features shape", err)
	}
	xn, err := nn.Normalize(x)
	if err != nil {
		return nil, fmt.Errorf("hypernet: %w", err)
	}
	s.Keep(xn)
	t, err := s.Op("hypernet: expand text summary")(h.text.Expand([]int64{n[0], -1}, false, false))
	if err != nil {
		return nil, err
	}
	z, err := s.Op("hypernet: concatenate inputs")(ts.Cat([]*ts.Tensor{xn, t}, 1))
	if err != nil {
		return nil, err
	}
	a, err := linear(z, h.fc1w)
	if err != nil {
		return nil, fmt.Errorf("hypernet fc1: %w", err)
	}
	s.Keep(a)
	a1, err := s.Op("hypernet: fc1 bias")(a.Add(h.fc1b, false))
	if err != nil {
		return nil, err
	}
	if err := a1.Relu_(); err != nil {
		return nil, torch.Err("hypernet: relu", err)
	}
	o, err := linear(a1, h.fc2w)
	if err != nil {
		return nil, fmt.Errorf("hypernet fc2: %w", err)
	}
	s.Keep(o)
	o1, err := s.Op("hypernet: fc2 bias")(o.Add(h.fc2b, false))
	if err != nil {
		return nil, err
	}
	r, err := o1.Sigmoid(false)
	return r, torch.Err("hypernet: sigmoid", err)
}

// PredictRatios returns the hyper-network's α and β for each row of raw
// image features [B, D] (without gradients), or an error when the adapter
// has no hyper-network.
func (m *CLIPAdapter) PredictRatios(features *ts.Tensor) (alpha, beta []float64, err error) {
	if m.hyper == nil {
		return nil, nil, fmt.Errorf("clip-adapter: no hyper-network (learn_ratios = %q)", string(m.opts.LearnRatios))
	}
	err = torch.NoGrad(func() error {
		r, err := m.hyper.forward(features)
		if err != nil {
			return err
		}
		defer r.Drop()
		v, err := torch.Values[float64](r)
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(v); i += 2 {
			alpha, beta = append(alpha, v[i]), append(beta, v[i+1])
		}
		return nil
	})
	return alpha, beta, err
}

// hyperLogits is Logits with per-image ratios [α_i, β_i] from the
// hyper-network: f'_i = α_i·A_v(f_i) + (1−α_i)·f_i, and for the text side
// the cosine of f'_i with normalize(β_i·a_c + (1−β_i)·ŵ_c), a = A_t(Ŵ):
//
//	(β_i f̂'·a_c + (1−β_i) f̂'·ŵ_c) / √(β_i²|a_c|² + 2β_i(1−β_i) a_c·ŵ_c + (1−β_i)²|ŵ_c|²).
func (m *CLIPAdapter) hyperLogits(features *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	fail := func(err error) (*ts.Tensor, error) { return nil, fmt.Errorf("clip-adapter: %w", err) }
	r, err := m.hyper.forward(features)
	if err != nil {
		return fail(err)
	}
	s.Keep(r)
	f := features
	if m.visual != nil {
		alpha, err := s.Op("alpha column")(r.Narrow(1, 0, 1, false))
		if err != nil {
			return fail(err)
		}
		a, err := m.visual.forward(features)
		if err != nil {
			return fail(fmt.Errorf("visual adapter: %w", err))
		}
		s.Keep(a)
		if f, err = mixRows(a, features, alpha); err != nil {
			return fail(fmt.Errorf("visual residual: %w", err))
		}
		s.Keep(f)
	}
	if m.text == nil {
		out, err := zeroshot.ScaledCosine(f, m.classifier, m.scale)
		if err != nil {
			return fail(err)
		}
		return out, nil
	}
	beta, err := s.Op("beta column")(r.Narrow(1, 1, 1, false))
	if err != nil {
		return fail(err)
	}
	fn, err := nn.Normalize(f)
	if err != nil {
		return fail(err)
	}
	s.Keep(fn)
	at, err := m.text.forward(m.classifier)
	if err != nil {
		return fail(fmt.Errorf("text adapter: %w", err))
	}
	s.Keep(at)
	w := m.classifier
	c := chain{s: &s}
	dot := func(a, b *ts.Tensor) *ts.Tensor { // row-wise a_c·b_c, [C]
		prod := c.do("multiply", func() (*ts.Tensor, error) { return a.Mul(b, false) })
		return c.do("sum", func() (*ts.Tensor, error) { return prod.SumDimIntlist([]int64{1}, false, gotch.Float, false) })
	}
	mm := func(a, b *ts.Tensor) *ts.Tensor { // a·bᵀ
		return c.do("matmul", func() (*ts.Tensor, error) { return linear(a, b) })
	}
	mul := func(what string, a, b *ts.Tensor) *ts.Tensor {
		return c.do(what, func() (*ts.Tensor, error) { return a.Mul(b, false) })
	}
	add := func(a, b *ts.Tensor) *ts.Tensor {
		return c.do("add", func() (*ts.Tensor, error) { return a.Add(b, false) })
	}
	p, q := mm(fn, at), mm(fn, w) // [B, C]
	aa, aw, ww := dot(at, at), dot(at, w), dot(w, w)
	nb := c.do("1 - beta", func() (*ts.Tensor, error) { return beta.RsubScalar(ts.FloatScalar(1), false) }) // [B, 1]
	num := add(mul("beta·P", p, beta), mul("(1-beta)·Q", q, nb))
	bnb := mul("beta(1-beta)", beta, nb)
	bnb2 := c.do("2beta(1-beta)", func() (*ts.Tensor, error) { return bnb.MulScalar(ts.FloatScalar(2), false) })
	den := add(add(mul("beta²|a|²", mul("beta²", beta, beta), aa), mul("2beta(1-beta)a·w", bnb2, aw)),
		mul("(1-beta)²|w|²", mul("(1-beta)²", nb, nb), ww))
	norm := c.do("sqrt", func() (*ts.Tensor, error) { return den.Sqrt(false) })
	cos := c.do("divide", func() (*ts.Tensor, error) { return num.Div(norm, false) })
	if c.err != nil {
		return fail(c.err)
	}
	out, err := cos.MulScalar(ts.FloatScalar(m.scale), false)
	if err != nil {
		return fail(torch.Err("scale logits", err))
	}
	return out, nil
}

// chain runs tensor operations until the first error, keeping every result
// in the scope; after an error the remaining operations are skipped and
// return nil.
type chain struct {
	s   *torch.Scope
	err error
}

func (c *chain) do(what string, f func() (*ts.Tensor, error)) *ts.Tensor {
	if c.err != nil {
		return nil
	}
	t, err := f()
	if err != nil {
		c.err = torch.Err(what, err)
		return nil
	}
	return c.s.Keep(t)
}

// mixRows returns r·a + (1−r)·x with r [B, 1] broadcast over the columns.
func mixRows(a, x, r *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	q, err := s.Op("1 - ratio")(r.RsubScalar(ts.FloatScalar(1), false))
	if err != nil {
		return nil, err
	}
	ra, err := s.Op("scale adapter output")(a.Mul(r, false))
	if err != nil {
		return nil, err
	}
	rx, err := s.Op("scale residual")(x.Mul(q, false))
	if err != nil {
		return nil, err
	}
	out, err := ra.Add(rx, false)
	return out, torch.Err("add residual", err)
}

// AdaptFeatures implements train.FeatureAdapter: the adapted image
// features f' = α·A_v(f) + (1−α)·f the classifier compares (α per image with
// the hyper-network), or a copy of f without a visual adapter; with the
// adapter at an intermediate layer, the image features the encoder's
// remaining layers make of the adapted activations.
func (m *CLIPAdapter) AdaptFeatures(features *ts.Tensor) (*ts.Tensor, error) {
	if m.classifier == nil {
		return nil, fmt.Errorf("clip-adapter: AdaptFeatures before Init")
	}
	if m.layer > 0 {
		return m.encodeAdapted(features)
	}
	if _, err := checkFeatures(features, m.d, "clip-adapter: image features"); err != nil {
		return nil, err
	}
	if m.visual == nil {
		y, err := features.Detach(false)
		return y, torch.Err("clip-adapter: copy features", err)
	}
	var s torch.Scope
	defer s.Drop()
	a, err := m.visual.forward(features)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: visual adapter: %w", err)
	}
	s.Keep(a)
	if m.hyper == nil {
		return mix(a, features, m.opts.Alpha, m.alphaLogit)
	}
	r, err := m.hyper.forward(features)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: %w", err)
	}
	s.Keep(r)
	alpha, err := s.Op("alpha column")(r.Narrow(1, 0, 1, false))
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: %w", err)
	}
	return mixRows(a, features, alpha)
}
