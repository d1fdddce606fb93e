// Package prolip is ProLIP (Fahes et al., "CLIP's Visual Embedding
// Projector is a Few-shot Cornucopia", arXiv 2410.05270) as a
// train.Method: only the image tower's last projection W (the ResNet
// attention pool's c_proj, the ViT's proj) is fine-tuned, on cached
// pre-projection features, with the zero-shot text classifier frozen.
//
// For pre-projection features x the logits are
//
//	s · normalize(x·Wᵀ + b) · W_cᵀ
//
// with b the frozen bias (ResNets; none for ViTs), W_c the normalized text
// classifier and s = 100 (ProLIP's hard-coded scale). The loss is the
// cross-entropy plus λ·‖W − W₀‖² (the squared distance to the pre-trained
// projection, summed over its entries), with λ = 1/N for N shots by
// default: the validation-free setting of the paper. The reference trains
// full-batch, one step per epoch on one augmented view of the train set,
// with Adam (eps 1e-4) and cosine annealing over 300 epochs.
package prolip

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// Lambda rules.
const (
	// LambdaInverseShots is λ = 1/N (the paper's validation-free choice).
	LambdaInverseShots = "1/N"
	// LambdaInverseShotsSquared is λ = 1/N².
	LambdaInverseShotsSquared = "1/N2"
	// LambdaFixed uses Options.Lambda.
	LambdaFixed = "fixed"
)

// ParamName is the projection's name in Parameters and checkpoints.
const ParamName = "proj.weight"

// Options configures ProLIP. Start from DefaultOptions.
type Options struct {
	// AugmentViews is the number of augmented views of the train set
	// (random resized crop, scale (0.5, 1), and flip) whose pre-projection
	// features are encoded once; epoch e trains on view e mod
	// AugmentViews (ProLIP's aug_views, 300). Each view of P-wide features
	// (RN50: 2048) stays in memory.
	AugmentViews int `toml:"augment_views"`
	// LambdaRule chooses the regularization weight λ: "1/N" (default),
	// "1/N2" (N the shots per class of the train set) or "fixed" (Lambda).
	LambdaRule string `toml:"lambda_rule"`
	// Lambda is λ with LambdaRule "fixed".
	Lambda float64 `toml:"lambda"`
	// UseLogitScale multiplies the cosines by the checkpoint's
	// exp(logit_scale) instead of ProLIP's hard-coded 100.
	UseLogitScale bool `toml:"use_logit_scale"`
	// Templates is how many of the context's templates build the text
	// classifier (0: all, ensembled).
	Templates int `toml:"templates"`
}

// DefaultOptions returns the paper's validation-free settings
// (astra-vision/ProLIP configs/experiments/few_shot_no_val_*_lambda_1_N):
// 300 views, λ = 1/N.
func DefaultOptions() Options {
	return Options{AugmentViews: 300, LambdaRule: LambdaInverseShots}
}

func (o Options) validate() error {
	if o.AugmentViews < 0 {
		return fmt.Errorf("augment_views = %d, want >= 0", o.AugmentViews)
	}
	switch o.LambdaRule {
	case LambdaInverseShots, LambdaInverseShotsSquared:
	case LambdaFixed:
		if !(o.Lambda >= 0) || math.IsInf(o.Lambda, 0) {
			return fmt.Errorf("lambda = %g, want a finite value >= 0", o.Lambda)
		}
	default:
		return fmt.Errorf("lambda_rule %q, want %q, %q or %q", o.LambdaRule, LambdaInverseShots, LambdaInverseShotsSquared, LambdaFixed)
	}
	if o.Templates < 0 {
		return fmt.Errorf("templates = %d, want >= 0 (0: all)", o.Templates)
	}
	return nil
}

// ProLIP is the method. Create it with New; Init builds it.
type ProLIP struct {
	opts       Options
	p          int64 // pre-projection width
	scale      float64
	lambda     float64
	classifier *ts.Tensor // [C, D] unit rows
	weight     *ts.Tensor // [D, P] learned
	initial    *ts.Tensor // [D, P] W₀
	bias       *ts.Tensor // [D] frozen, or nil
}

var (
	_ train.Method      = (*ProLIP)(nil)
	_ train.Regularizer = (*ProLIP)(nil)
)

// New returns an uninitialized ProLIP.
func New(o Options) *ProLIP { return &ProLIP{opts: o} }

// Build is ProLIP's constructor for the method registry: it trains on
// AugmentViews views of pre-projection features (its configs select
// Adam: train.optimizer = "adamw" without weight decay).
func Build(o Options) (train.Method, train.Needs, error) {
	if err := o.validate(); err != nil {
		return nil, train.Needs{}, err
	}
	return New(o), train.Needs{TrainFeatures: true, Augment: true, Views: o.AugmentViews, MinScale: 0.5,
		PreProjection: true}, nil
}

// Lambda returns λ in effect (set by Init).
func (m *ProLIP) Lambda() float64 { return m.lambda }

// Init implements train.Method: it builds the text classifier, copies the
// projection from ctx.Projection into the learned weight and W₀, and sets
// λ from the shots per class of the first view.
func (m *ProLIP) Init(ctx *train.Context, views []*train.Features) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := m.init(ctx, views, false); err != nil {
		m.Drop()
		return fmt.Errorf("prolip: %w", err)
	}
	return nil
}

func (m *ProLIP) init(ctx *train.Context, views []*train.Features, restoring bool) error {
	if err := m.opts.validate(); err != nil {
		return err
	}
	if ctx == nil || ctx.Text == nil {
		return errors.New("the context has no text encoder")
	}
	if ctx.Projection == nil || ctx.Projection.Weight == nil {
		return errors.New("the context has no image projection (the method needs pre-projection features)")
	}
	if m.weight != nil {
		return errors.New("already initialized")
	}
	ws, err := ctx.Projection.Weight.Size()
	if err != nil || len(ws) != 2 || ws[0] != ctx.FeatureDim {
		return fmt.Errorf("image projection of shape %v, want [%d, P]", ws, ctx.FeatureDim)
	}
	m.p = ws[1]
	c := int64(len(ctx.ClassNames))
	if len(views) > 0 {
		first := views[0]
		for i, v := range views {
			if v == nil || v.Len() == 0 || !slices.Equal(v.Y, first.Y) {
				return fmt.Errorf("training view %d is empty or does not list the labels of view 0 in order", i)
			}
			if s, err := v.X.Size(); err != nil || len(s) != 2 || s[1] != m.p {
				return fmt.Errorf("training view %d: features of shape %v, want [N, %d] pre-projection features", i, s, m.p)
			}
		}
	}
	m.lambda = m.opts.Lambda
	if m.opts.LambdaRule != LambdaFixed && !restoring {
		if len(views) == 0 {
			return errors.New("no training features to count the shots for lambda")
		}
		n, err := shots(views[0].Y, c, ctx.ClassNames)
		if err != nil {
			return err
		}
		m.lambda = 1 / float64(n)
		if m.opts.LambdaRule == LambdaInverseShotsSquared {
			m.lambda /= float64(n)
		}
	}
	err = torch.NoGrad(func() error {
		tmpl, err := zeroshot.FirstTemplates(ctx.Templates, m.opts.Templates)
		if err != nil {
			return err
		}
		w, err := zeroshot.Classifier(ctx.Text, ctx.ClassNames, tmpl)
		if err != nil {
			return err
		}
		if m.classifier, err = w.To(ctx.Device, true); err != nil {
			return torch.Err("move text classifier", err)
		}
		if m.initial, err = copyTo(ctx.Projection.Weight, ctx.Device); err != nil {
			return err
		}
		if m.weight, err = copyTo(ctx.Projection.Weight, ctx.Device); err != nil {
			return err
		}
		if ctx.Projection.Bias != nil {
			if m.bias, err = copyTo(ctx.Projection.Bias, ctx.Device); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	p, err := m.weight.SetRequiresGrad(true, false)
	if err != nil {
		return torch.Err("projection requires grad", err)
	}
	m.weight.Drop()
	m.weight = p
	m.scale = 100
	if m.opts.UseLogitScale {
		s, err := train.LogitScaleOf(ctx.Text)
		if err != nil {
			return fmt.Errorf("prolip: %w", err)
		}
		m.scale = s
	}
	if ctx.Log != nil {
		ctx.Log.Info("prolip initialized", "projection", fmt.Sprint(ws), "lambda", m.lambda, "views", len(views), "scale", m.scale)
	}
	return nil
}

var _ train.Restorer = (*ProLIP)(nil)

// Frozen implements train.Restorer: nothing beyond the parameter (the
// learned projection) is needed at inference; the classifier comes from
// the class names and the bias from the checkpoint's projection.
func (m *ProLIP) Frozen() []train.Param { return nil }

// Restore implements train.Restorer: Init without training features (λ,
// which only weighs the training penalty, is not set from the shots); the
// learned projection is copied in afterwards.
func (m *ProLIP) Restore(ctx *train.Context, _ map[string]*ts.Tensor) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := m.init(ctx, nil, true); err != nil {
		m.Drop()
		return fmt.Errorf("prolip: %w", err)
	}
	return nil
}

// shots returns N, the number of training examples per class (the
// smallest count when classes differ); every class needs one.
func shots(y []int64, classes int64, names []string) (int, error) {
	counts := make([]int, classes)
	for i, c := range y {
		if c < 0 || c >= classes {
			return 0, fmt.Errorf("training label %d (example %d) is outside the %d classes", c, i, classes)
		}
		counts[c]++
	}
	n := math.MaxInt
	for c, k := range counts {
		if k == 0 {
			return 0, fmt.Errorf("class %d (%q) has no training example", c, names[c])
		}
		n = min(n, k)
	}
	return n, nil
}

// copyTo returns a float32 copy of x on dev with its own storage.
func copyTo(x *ts.Tensor, dev gotch.Device) (*ts.Tensor, error) {
	f, err := x.Totype(gotch.Float, false)
	if err != nil {
		return nil, torch.Err("cast projection", err)
	}
	defer f.Drop()
	z, err := torch.Copy("copy projection", f)
	if err != nil {
		return nil, err
	}
	d, err := z.To(dev, true)
	return d, torch.Err("move projection", err)
}

// Parameters implements train.Method: the projection, ParamName.
func (m *ProLIP) Parameters() []train.Param {
	if m.weight == nil {
		return nil
	}
	return []train.Param{{Name: ParamName, Tensor: m.weight}}
}

// SetParameters copies values[ParamName] into the projection.
func (m *ProLIP) SetParameters(values map[string]*ts.Tensor) error {
	if m.weight == nil {
		return errors.New("prolip: set parameters before Init")
	}
	for name := range values {
		if name != ParamName {
			return fmt.Errorf("prolip: set parameters: unknown %q", name)
		}
	}
	v, ok := values[ParamName]
	if !ok || v == nil {
		return fmt.Errorf("prolip: set parameters: missing %q", ParamName)
	}
	got, err := v.Size()
	if err != nil {
		return torch.Err("prolip: shape of "+ParamName, err)
	}
	want, _ := m.weight.Size()
	if !slices.Equal(got, want) {
		return fmt.Errorf("prolip: set parameters: %s has shape %v, want %v", ParamName, got, want)
	}
	return torch.NoGrad(func() error { return torch.CopyInto("prolip: set "+ParamName, m.weight, v) })
}

// Logits implements train.Method for pre-projection features [B, P].
func (m *ProLIP) Logits(features *ts.Tensor, training bool) (*ts.Tensor, error) {
	if m.weight == nil {
		return nil, errors.New("prolip: logits before Init")
	}
	s, err := features.Size()
	if err != nil || len(s) != 2 || s[1] != m.p {
		return nil, fmt.Errorf("prolip: features of shape %v, want [N, %d] pre-projection features", s, m.p)
	}
	var sc torch.Scope
	defer sc.Drop()
	x, err := sc.Op("prolip: cast features")(features.Totype(gotch.Float, false))
	if err != nil {
		return nil, err
	}
	bias := m.bias
	if bias == nil {
		bias = ts.None
	}
	f, err := sc.Op("prolip: project")(ts.Linear(x, m.weight, bias))
	if err != nil {
		return nil, err
	}
	out, err := zeroshot.ScaledCosine(f, m.classifier, m.scale)
	if err != nil {
		return nil, fmt.Errorf("prolip: logits: %w", err)
	}
	return out, nil
}

// Penalty implements train.Regularizer: λ·Σ(W − W₀)².
func (m *ProLIP) Penalty() (*ts.Tensor, error) {
	if m.weight == nil {
		return nil, errors.New("prolip: penalty before Init")
	}
	var sc torch.Scope
	defer sc.Drop()
	d, err := sc.Op("prolip: distance to W0")(m.weight.Sub(m.initial, false))
	if err != nil {
		return nil, err
	}
	sq, err := sc.Op("prolip: squared distance")(d.Mul(d, false))
	if err != nil {
		return nil, err
	}
	sum, err := sc.Op("prolip: sum")(sq.Sum(gotch.Float, false))
	if err != nil {
		return nil, err
	}
	out, err := sum.MulScalar(ts.FloatScalar(m.lambda), false)
	return out, torch.Err("prolip: weight penalty", err)
}

// Drop implements train.Method.
func (m *ProLIP) Drop() {
	for _, t := range []**ts.Tensor{&m.classifier, &m.weight, &m.initial, &m.bias} {
		if *t != nil {
			(*t).Drop()
			*t = nil
		}
	}
}
