package adapter

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// CLIP-Adapter variants: which side carries an adapter.
const (
	// VariantVisual adapts the image features only (the released code and
	// the paper's main results).
	VariantVisual = "visual"
	// VariantText adapts the text classifier only.
	VariantText = "text"
	// VariantBoth adapts both sides.
	VariantBoth = "both"
)

// CLIPAdapterOptions configures a CLIP-Adapter. Start from
// DefaultCLIPAdapterOptions: the zero values of Alpha, Beta and
// ReLUAfterSecond are meaningful settings (α = 0 is zero-shot CLIP), not the
// defaults.
type CLIPAdapterOptions struct {
	// Variant is VariantVisual (also when empty), VariantText or
	// VariantBoth.
	Variant string `toml:"variant"`
	// Reduction sets the bottleneck width to D/Reduction (rounded down, as
	// the reference's integer division). 0 means 4.
	Reduction int64 `toml:"reduction"`
	// Alpha is the visual residual ratio in [0, 1]:
	// f' = α·A_v(f) + (1−α)·f. The released code hard-codes 0.2.
	Alpha float64 `toml:"alpha"`
	// Beta is the text residual ratio in [0, 1]:
	// W' = β·A_t(W) + (1−β)·W.
	Beta float64 `toml:"beta"`
	// LearnRatios says how the ratios are set: false uses Alpha and Beta;
	// true learns each adapted side's ratio as sigmoid(logit) of a scalar
	// logit ("alpha_logit", "beta_logit", shape [1]) initialized to
	// logit(Alpha), logit(Beta); "hypernet" predicts both per image with a
	// small network from the normalized image feature and the mean of the
	// class text features, started so that it predicts Alpha and Beta.
	// When learned, Alpha and Beta must lie in (0, 1).
	LearnRatios RatioMode `toml:"learn_ratios"`
	// ReLUAfterSecond applies a ReLU after the adapter's second layer, as
	// the released code does; false follows the paper's formula
	// A(x) = ReLU(x W1) W2.
	ReLUAfterSecond bool `toml:"relu_after_second"`
	// Templates is how many of Context.Templates build the text classifier,
	// from the first (the dataset's single template); 0 uses all of them
	// (prompt ensembling). The released code uses 1.
	Templates int `toml:"templates"`
	// Layer places the visual adapter after block (ViT) or stage (ResNet)
	// Layer of the image encoder instead of on its output: the adapter
	// acts on every token (ViT) or every position of the feature map
	// (ResNet, as a 1×1 convolution) with the same residual ratio Alpha,
	// and the remaining layers run on the result. 0 or the encoder's
	// number of layers (12 for ViT-B) is the adapter on the output
	// features. Needs the visual adapter and fixed or scalar ratios.
	Layer int `toml:"layer"`
}

// DefaultCLIPAdapterOptions returns the released code's settings: visual
// adapter, reduction 4, ratios 0.2, ReLU after both layers, all the
// context's templates.
func DefaultCLIPAdapterOptions() CLIPAdapterOptions {
	return CLIPAdapterOptions{Variant: VariantVisual, Reduction: 4, Alpha: 0.2, Beta: 0.2, ReLUAfterSecond: true}
}

// CLIPAdapter is CLIP-Adapter: a two-layer bottleneck MLP without biases
// on the raw image features and/or on the normalized text classifier,
// mixed with its input through a residual ratio; logits are the checkpoint's
// logit scale times the cosine similarities of the adapted features.
//
// Parameters, named as in a PyTorch module with submodules visual and text
// holding Linear layers fc1 (D → D/r) and fc2 (D/r → D):
// "visual.fc1.weight" [D/r, D], "visual.fc2.weight" [D, D/r],
// "text.fc1.weight", "text.fc2.weight", and with LearnRatios = true
// "alpha_logit" / "beta_logit" [1], for the sides the variant adapts.
//
// With LearnRatios = "hypernet" (the toolkit's reading of learning the
// ratios "from the features"; the paper does not specify a network) the
// ratios come per image from a hyper-network
// [α, β] = sigmoid(fc2(ReLU(fc1([f̂; t̄])))), where f̂ is the normalized
// image feature (CLIP's pooled output), t̄ the mean of the normalized class
// text features, fc1 2D → D/Reduction and fc2 → 2 with biases
// ("hypernet.fc1.weight", "hypernet.fc1.bias", "hypernet.fc2.weight",
// "hypernet.fc2.bias"). fc2 starts at zero weights and bias
// [logit(Alpha), logit(Beta)], so training starts from the fixed ratios.
// A per-image β gives each image its own adapted classifier
// normalize(β·A_t(Ŵ) + (1−β)·Ŵ), computed in closed form.
type CLIPAdapter struct {
	opts  CLIPAdapterOptions
	d     int64
	scale float64
	// classifier holds the frozen text classifier, [C, D] unit rows.
	classifier *ts.Tensor
	visual     *bottleneck
	text       *bottleneck
	alphaLogit *ts.Tensor
	betaLogit  *ts.Tensor
	// hyper predicts per-image ratios (LearnRatios = "hypernet").
	hyper *hypernet
	// evalClassifier caches the adapted text classifier between evaluation
	// calls, computed from the text-side parameters copied in evalParams;
	// it is reused only while the parameters still equal those copies.
	evalClassifier *ts.Tensor
	evalParams     []*ts.Tensor
	// layer is the intermediate layer the visual adapter acts after (0:
	// the output features), and tail the image encoder's layers after
	// it; width is the activation's width there.
	layer int
	tail  train.ImageTail
	width int64
}

var (
	_ train.Method = (*CLIPAdapter)(nil)
)

// NewCLIPAdapter returns an uninitialized CLIP-Adapter; Init validates the
// options and builds it.
func NewCLIPAdapter(o CLIPAdapterOptions) *CLIPAdapter {
	if o.Variant == "" {
		o.Variant = VariantVisual
	}
	if o.Reduction == 0 {
		o.Reduction = 4
	}
	return &CLIPAdapter{opts: o}
}

// Options returns the options in effect (with defaults filled in).
func (m *CLIPAdapter) Options() CLIPAdapterOptions { return m.opts }

func (m *CLIPAdapter) adaptsVisual() bool {
	return m.opts.Variant == VariantVisual || m.opts.Variant == VariantBoth
}

func (m *CLIPAdapter) adaptsText() bool {
	return m.opts.Variant == VariantText || m.opts.Variant == VariantBoth
}

func (o CLIPAdapterOptions) validate() error {
	switch o.Variant {
	case VariantVisual, VariantText, VariantBoth:
	default:
		return fmt.Errorf("clip-adapter: unknown variant %q (want %s, %s or %s)", o.Variant, VariantVisual, VariantText, VariantBoth)
	}
	if o.Reduction < 1 {
		return fmt.Errorf("clip-adapter: reduction %d, want at least 1", o.Reduction)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"alpha", o.Alpha}, {"beta", o.Beta}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("clip-adapter: %s = %g, want a ratio in [0, 1]", r.name, r.v)
		}
		if o.LearnRatios.Learned() && (r.v == 0 || r.v == 1) {
			return fmt.Errorf("clip-adapter: %s = %g cannot be learned through a sigmoid; want (0, 1)", r.name, r.v)
		}
	}
	if o.Layer < 0 {
		return fmt.Errorf("clip-adapter: layer %d (method.layer), want 0 (the output features) or an image encoder layer", o.Layer)
	}
	if o.Layer > 0 && o.Variant == VariantText {
		return fmt.Errorf("clip-adapter: layer %d places the visual adapter, but variant %q has none", o.Layer, o.Variant)
	}
	if o.Layer > 0 && o.LearnRatios == RatiosHypernet {
		return fmt.Errorf("clip-adapter: layer %d: learn_ratios = \"hypernet\" predicts ratios from the output features only (layer 0)", o.Layer)
	}
	if o.Templates < 0 {
		return fmt.Errorf("clip-adapter: templates %d, want 0 (all) or more", o.Templates)
	}
	switch o.LearnRatios {
	case "", RatiosFixed, RatiosScalar, RatiosHypernet:
	default:
		return fmt.Errorf("clip-adapter: learn_ratios = %q, want false, true or \"hypernet\"", string(o.LearnRatios))
	}
	return nil
}

// Init implements train.Method: it builds the text classifier and draws the
// adapters' weights from the context's seed. The training views are not
// used.
func (m *CLIPAdapter) Init(ctx *train.Context, views []*train.Features) error {
	if ctx == nil {
		return fmt.Errorf("clip-adapter: nil context")
	}
	if err := m.opts.validate(); err != nil {
		return err
	}
	if m.classifier != nil {
		return fmt.Errorf("clip-adapter: already initialized")
	}
	d := ctx.FeatureDim
	hidden := d / m.opts.Reduction
	if d < 1 || hidden < 1 {
		return fmt.Errorf("clip-adapter: feature dimension %d with reduction %d leaves no bottleneck", d, m.opts.Reduction)
	}
	w, err := textClassifier(ctx, m.opts.Templates)
	if err != nil {
		return fmt.Errorf("clip-adapter: %w", err)
	}
	scale, err := train.LogitScaleOf(ctx.Text)
	if err != nil {
		w.Drop()
		return fmt.Errorf("clip-adapter: %w", err)
	}
	m.d, m.scale, m.classifier = d, scale, w

	fail := func(err error) error {
		m.Drop()
		return fmt.Errorf("clip-adapter: %w", err)
	}
	// The visual adapter's width: D, or the activation's at the layer.
	vd := d
	if m.opts.Layer > 0 {
		if err := m.initLayer(ctx); err != nil {
			return fail(err)
		}
		if m.layer > 0 {
			vd = m.width
		}
	}
	if vd/m.opts.Reduction < 1 {
		return fail(fmt.Errorf("layer %d width %d with reduction %d leaves no bottleneck", m.layer, vd, m.opts.Reduction))
	}

	rng := newRNG(ctx.Seed)
	build := func(d int64) (*bottleneck, error) {
		hidden := d / m.opts.Reduction
		b := &bottleneck{reluOut: m.opts.ReLUAfterSecond}
		var err error
		if b.fc1, err = torch.NewParam(uniformLinear(rng, hidden, d), []int64{hidden, d}, ctx.Device); err != nil {
			return nil, err
		}
		if b.fc2, err = torch.NewParam(uniformLinear(rng, d, hidden), []int64{d, hidden}, ctx.Device); err != nil {
			b.fc1.Drop()
			return nil, err
		}
		return b, nil
	}
	if m.adaptsVisual() {
		if m.visual, err = build(vd); err != nil {
			return fail(err)
		}
	}
	if m.adaptsText() {
		if m.text, err = build(d); err != nil {
			return fail(err)
		}
	}
	if m.opts.LearnRatios == RatiosHypernet {
		if m.hyper, err = newHypernet(rng, w, d, hidden, m.opts.Alpha, m.opts.Beta, ctx.Device); err != nil {
			return fail(err)
		}
	}
	if m.opts.LearnRatios == RatiosScalar {
		if m.adaptsVisual() {
			if m.alphaLogit, err = torch.NewParam([]float32{float32(logit(m.opts.Alpha))}, []int64{1}, ctx.Device); err != nil {
				return fail(err)
			}
		}
		if m.adaptsText() {
			if m.betaLogit, err = torch.NewParam([]float32{float32(logit(m.opts.Beta))}, []int64{1}, ctx.Device); err != nil {
				return fail(err)
			}
		}
	}
	if ctx.Log != nil {
		ctx.Log.Info("clip-adapter initialized", "variant", m.opts.Variant, "dim", d, "bottleneck", vd/m.opts.Reduction,
			"classes", len(ctx.ClassNames), "learn_ratios", string(m.opts.LearnRatios), "layer", m.layer, "parameters", m.numParams())
	}
	return nil
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, v := range shape {
		n *= v
	}
	return n
}

func logit(p float64) float64 { return math.Log(p / (1 - p)) }

func (m *CLIPAdapter) numParams() int64 {
	var n int64
	for _, p := range m.Parameters() {
		// Reported in the log only: a shape that cannot be read counts 0
		// (gotch's Numel would end the process).
		if s, err := p.Tensor.Size(); err == nil {
			n += numel(s)
		}
	}
	return n
}

// Parameters implements train.Method, in the order of PyTorch's
// named_parameters for the reference module: the ratio logits when learned,
// then the visual adapter's fc1 and fc2 weights, then the text adapter's;
// the hyper-network's, when present, come first.
func (m *CLIPAdapter) Parameters() []train.Param {
	var ps []train.Param
	if m.hyper != nil {
		ps = append(ps, m.hyper.params()...)
	}
	if m.alphaLogit != nil {
		ps = append(ps, train.Param{Name: "alpha_logit", Tensor: m.alphaLogit})
	}
	if m.betaLogit != nil {
		ps = append(ps, train.Param{Name: "beta_logit", Tensor: m.betaLogit})
	}
	if m.visual != nil {
		ps = append(ps, train.Param{Name: "visual.fc1.weight", Tensor: m.visual.fc1}, train.Param{Name: "visual.fc2.weight", Tensor: m.visual.fc2})
	}
	if m.text != nil {
		ps = append(ps, train.Param{Name: "text.fc1.weight", Tensor: m.text.fc1}, train.Param{Name: "text.fc2.weight", Tensor: m.text.fc2})
	}
	return ps
}

// SetParameters copies values (for example from a checkpoint) into the
// parameters, by name. Every parameter must be given with its shape and no
// other name; it must be called after Init, on a thread locked to its
// goroutine.
func (m *CLIPAdapter) SetParameters(values map[string]*ts.Tensor) error {
	if m.classifier == nil {
		return fmt.Errorf("clip-adapter: set parameters before Init")
	}
	m.dropEvalCache()
	if err := setParams(m.Parameters(), values); err != nil {
		return fmt.Errorf("clip-adapter: %w", err)
	}
	return nil
}

// Ratios returns the residual ratios in effect (the sigmoid of the learned
// logits when LearnRatios is true; with the hyper-network, the configured
// starting values: see PredictRatios).
func (m *CLIPAdapter) Ratios() (alpha, beta float64, err error) {
	alpha, beta = m.opts.Alpha, m.opts.Beta
	read := func(l *ts.Tensor) (float64, error) {
		v, err := l.Float64Value([]int64{0})
		if err != nil {
			return 0, torch.Err("read ratio logit", err)
		}
		return 1 / (1 + math.Exp(-v)), nil
	}
	if m.alphaLogit != nil {
		if alpha, err = read(m.alphaLogit); err != nil {
			return 0, 0, err
		}
	}
	if m.betaLogit != nil {
		if beta, err = read(m.betaLogit); err != nil {
			return 0, 0, err
		}
	}
	return alpha, beta, nil
}

// Logits implements train.Method: LogitScale · f̂'·Ŵ'ᵀ with
// f' = α·A_v(f) + (1−α)·f on the raw features and
// W' = β·A_t(Ŵ) + (1−β)·Ŵ on the normalized text classifier (each only for
// an adapted side). With training false the adapted text classifier is
// computed once and reused while the text-side parameters are unchanged.
func (m *CLIPAdapter) Logits(features *ts.Tensor, training bool) (*ts.Tensor, error) {
	if m.classifier == nil {
		return nil, fmt.Errorf("clip-adapter: Logits before Init")
	}
	var s torch.Scope
	defer s.Drop()
	f := features
	if m.layer > 0 {
		var err error
		if f, err = m.encodeAdapted(features); err != nil {
			return nil, err
		}
		s.Keep(f)
	} else if _, err := checkFeatures(features, m.d, "clip-adapter: image features"); err != nil {
		return nil, err
	}
	if m.hyper != nil {
		return m.hyperLogits(features)
	}
	if m.visual != nil && m.layer == 0 {
		a, err := m.visual.forward(features)
		if err != nil {
			return nil, fmt.Errorf("clip-adapter: visual adapter: %w", err)
		}
		s.Keep(a)
		if f, err = mix(a, features, m.opts.Alpha, m.alphaLogit); err != nil {
			return nil, fmt.Errorf("clip-adapter: visual residual: %w", err)
		}
		s.Keep(f)
	}
	w := m.classifier
	if m.text != nil {
		var err error
		if training {
			m.dropEvalCache()
			if w, err = m.adaptedClassifier(); err != nil {
				return nil, err
			}
			s.Keep(w)
		} else {
			if w, err = m.cachedClassifier(); err != nil {
				return nil, err
			}
		}
	}
	out, err := zeroshot.ScaledCosine(f, w, m.scale)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: %w", err)
	}
	return out, nil
}

// adaptedClassifier returns normalize(β·A_t(Ŵ) + (1−β)·Ŵ).
func (m *CLIPAdapter) adaptedClassifier() (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	a, err := m.text.forward(m.classifier)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: text adapter: %w", err)
	}
	s.Keep(a)
	w, err := mix(a, m.classifier, m.opts.Beta, m.betaLogit)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: text residual: %w", err)
	}
	s.Keep(w)
	wn, err := nn.Normalize(w)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: %w", err)
	}
	return wn, nil
}

// textParams returns the parameters the adapted text classifier depends
// on.
func (m *CLIPAdapter) textParams() []*ts.Tensor {
	ps := []*ts.Tensor{m.text.fc1, m.text.fc2}
	if m.betaLogit != nil {
		ps = append(ps, m.betaLogit)
	}
	return ps
}

// cachedClassifier returns the adapted text classifier for evaluation,
// recomputing it (without gradients) unless the text-side parameters still
// equal the ones it was computed from. Comparing values, rather than
// trusting that only training changes them, keeps it right when a
// checkpoint is copied into the parameters in place.
func (m *CLIPAdapter) cachedClassifier() (*ts.Tensor, error) {
	params := m.textParams()
	if m.evalClassifier != nil && len(m.evalParams) == len(params) {
		same := true
		for i, p := range params {
			eq, err := p.Equal(m.evalParams[i], false)
			if err != nil {
				return nil, torch.Err("clip-adapter: compare parameters", err)
			}
			if !eq {
				same = false
				break
			}
		}
		if same {
			return m.evalClassifier, nil
		}
	}
	m.dropEvalCache()
	err := torch.NoGrad(func() error {
		ac, err := m.adaptedClassifier()
		if err != nil {
			return err
		}
		m.evalClassifier = ac
		for _, p := range params {
			c, err := torch.Copy("clip-adapter: copy parameters", p)
			if err != nil {
				return err
			}
			m.evalParams = append(m.evalParams, c)
		}
		return nil
	})
	if err != nil {
		m.dropEvalCache()
		return nil, err
	}
	return m.evalClassifier, nil
}

func (m *CLIPAdapter) dropEvalCache() {
	if m.evalClassifier != nil {
		m.evalClassifier.Drop()
		m.evalClassifier = nil
	}
	for _, p := range m.evalParams {
		p.Drop()
	}
	m.evalParams = nil
}

// Drop implements train.Method.
func (m *CLIPAdapter) Drop() {
	m.dropEvalCache()
	for _, t := range []*ts.Tensor{m.classifier, m.alphaLogit, m.betaLogit} {
		if t != nil {
			t.Drop()
		}
	}
	for _, b := range []*bottleneck{m.visual, m.text} {
		if b != nil {
			b.drop()
		}
	}
	if m.hyper != nil {
		m.hyper.drop()
	}
	m.classifier, m.alphaLogit, m.betaLogit, m.visual, m.text, m.hyper = nil, nil, nil, nil, nil, nil
	m.layer, m.tail, m.width = 0, nil, 0
}

// bottleneck is Linear(D → h, no bias) → ReLU → Linear(h → D, no bias) →
// optional ReLU, with PyTorch's [out, in] weight layout.
type bottleneck struct {
	fc1, fc2 *ts.Tensor
	reluOut  bool
}

func (b *bottleneck) forward(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	h, err := linear(x, b.fc1)
	if err != nil {
		return nil, fmt.Errorf("fc1: %w", err)
	}
	s.Keep(h)
	if err := h.Relu_(); err != nil {
		return nil, torch.Err("relu", err)
	}
	y, err := linear(h, b.fc2)
	if err != nil {
		return nil, fmt.Errorf("fc2: %w", err)
	}
	if b.reluOut {
		if err := y.Relu_(); err != nil {
			y.Drop()
			return nil, torch.Err("relu", err)
		}
	}
	return y, nil
}

func (b *bottleneck) drop() {
	b.fc1.Drop()
	b.fc2.Drop()
}

// linear returns x·wᵀ for a weight w of shape [out, in].
func linear(x, w *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	wt, err := s.Op("transpose weight")(w.T(false))
	if err != nil {
		return nil, err
	}
	y, err := x.Mm(wt, false)
	return y, torch.Err("matmul", err)
}

// mix returns r·a + (1−r)·x, with r = ratio, or r = sigmoid(logit) when
// logit is not nil.
func mix(a, x *ts.Tensor, ratio float64, logit *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	var ra, rx *ts.Tensor
	var err error
	if logit == nil {
		if ra, err = s.Op("scale adapter output")(a.MulScalar(ts.FloatScalar(ratio), false)); err != nil {
			return nil, err
		}
		if rx, err = s.Op("scale residual")(x.MulScalar(ts.FloatScalar(1-ratio), false)); err != nil {
			return nil, err
		}
	} else {
		r, err := s.Op("sigmoid of ratio logit")(logit.Sigmoid(false))
		if err != nil {
			return nil, err
		}
		q, err := s.Op("1 - ratio")(r.RsubScalar(ts.FloatScalar(1), false))
		if err != nil {
			return nil, err
		}
		if ra, err = s.Op("scale adapter output")(a.Mul(r, false)); err != nil {
			return nil, err
		}
		if rx, err = s.Op("scale residual")(x.Mul(q, false)); err != nil {
			return nil, err
		}
	}
	out, err := ra.Add(rx, false)
	return out, torch.Err("add residual", err)
}

// BuildCLIPAdapter is CLIP-Adapter's constructor for the method registry:
// it checks the options (as Init would) and trains on augmented features
// of the train set, taken after the image encoder's layer Layer when that
// is set.
func BuildCLIPAdapter(o CLIPAdapterOptions) (train.Method, train.Needs, error) {
	m := NewCLIPAdapter(o)
	if err := m.opts.validate(); err != nil {
		return nil, train.Needs{}, err
	}
	return m, train.Needs{TrainFeatures: true, Augment: true, Layer: o.Layer}, nil
}

// TextBased implements train.TextBased: the classifier is the text
// classifier of the class names (through the text adapter when there is
// one), so the method classifies among any class names.
func (m *CLIPAdapter) TextBased() bool { return true }
