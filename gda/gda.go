// Package gda is GDA (Wang et al., ICLR 2024, "A Hard-to-Beat Baseline
// for Training-free CLIP-based Adaptation") as a train.Method: Gaussian
// discriminant analysis on the few-shot image features, ensembled with
// zero-shot CLIP.
//
// Every augmented view of every training image is one sample x (its
// L2-normalized CLIP feature). With μ_k the mean of class k's samples and
// c = x − μ_y the samples centred on their class means, the shared
// covariance is estimated with the shrinkage of the reference code:
//
//	S  = Σ (c − c̄)(c − c̄)ᵀ            (the scatter; torch.cov·(n − 1))
//	Σ⁻¹ = D · (S + tr(S)/(n − 1) · I)⁻¹
//
// (n samples, D the feature size). With a uniform prior p_k = 1/C the
// linear discriminant is
//
//	w_k = Σ⁻¹ μ_k,   b_k = log p_k − ½ μ_kᵀ Σ⁻¹ μ_k
//
// and for a normalized test feature f̂ the logits are
//
//	s · f̂ · W_cᵀ + α · (f̂ · Wᵀ + b)
//
// with W_c the normalized zero-shot text classifier and s = 100 (GDA's
// hard-coded scale). α is chosen by Tune on the validation features from a
// grid ({10⁻⁴, …, 10²} in the reference); nothing is trained.
package gda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// Options configures GDA. Start from DefaultOptions.
type Options struct {
	// AugmentViews is the number of augmented views of the train set
	// (random resized crop, scale (0.5, 1), and flip); each view's features
	// are separate samples of the Gaussian model (GDA's augment_epoch, 10).
	AugmentViews int `toml:"augment_views"`
	// Alphas is the grid of ensemble weights α searched on the validation
	// features, in order; the first α with strictly more correct
	// predictions wins (GDA: 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100).
	Alphas []float64 `toml:"alphas"`
	// Alpha is the weight used without a search (NoSearch) and before
	// Tune (the reference's starting value, 0.1).
	Alpha float64 `toml:"alpha"`
	// NoSearch keeps Alpha instead of searching the grid.
	NoSearch bool `toml:"no_search"`
	// UseLogitScale multiplies the zero-shot term by the checkpoint's
	// exp(logit_scale) instead of GDA's hard-coded 100.
	UseLogitScale bool `toml:"use_logit_scale"`
	// Templates is how many of the context's templates build the text
	// classifier (0: all, ensembled).
	Templates int `toml:"templates"`
}

// DefaultOptions returns the reference's settings (mrflogs/ICLR24
// main_few_shots.py and configs/few_shots/*.yaml): 10 augmented views,
// α searched over {1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100}, starting at 0.1.
func DefaultOptions() Options {
	return Options{AugmentViews: 10, Alphas: []float64{1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100}, Alpha: 0.1}
}

func (o Options) validate() error {
	if o.AugmentViews < 0 {
		return fmt.Errorf("augment_views = %d, want >= 0", o.AugmentViews)
	}
	if !o.NoSearch && len(o.Alphas) == 0 {
		return errors.New("alphas is empty: give the grid to search, or set no_search")
	}
	for _, a := range append([]float64{o.Alpha}, o.Alphas...) {
		if math.IsNaN(a) || math.IsInf(a, 0) {
			return fmt.Errorf("alpha %g is not finite", a)
		}
	}
	if o.Templates < 0 {
		return fmt.Errorf("templates = %d, want >= 0 (0: all)", o.Templates)
	}
	return nil
}

// GDA is the method. Create it with New; Init fits it.
type GDA struct {
	opts       Options
	d          int64
	scale      float64
	alpha      float64
	classifier *ts.Tensor // [C, D] unit rows, float32
	weights    *ts.Tensor // [C, D] Σ⁻¹μ_k, float32
	bias       *ts.Tensor // [C] float32
}

var (
	_ train.Method = (*GDA)(nil)
	_ train.Tuner  = (*GDA)(nil)
	_ train.Saver  = (*GDA)(nil)
)

// New returns an unfitted GDA.
func New(o Options) *GDA { return &GDA{opts: o, alpha: o.Alpha} }

// Build is GDA's constructor for the method registry: training-free, on
// AugmentViews views with RandomResizedCrop scale (0.5, 1).
func Build(o Options) (train.Method, train.Needs, error) {
	if err := o.validate(); err != nil {
		return nil, train.Needs{}, err
	}
	return New(o), train.Needs{TrainFeatures: true, Augment: true, Views: o.AugmentViews, MinScale: 0.5}, nil
}

// Alpha returns the ensemble weight in effect.
func (g *GDA) Alpha() float64 { return g.alpha }

// Init implements train.Method: it builds the text classifier and fits the
// discriminant on every view's features.
func (g *GDA) Init(ctx *train.Context, views []*train.Features) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := g.init(ctx, views); err != nil {
		g.Drop()
		return fmt.Errorf("gda: %w", err)
	}
	return nil
}

func (g *GDA) init(ctx *train.Context, views []*train.Features) error {
	if err := g.setup(ctx); err != nil {
		return err
	}
	if len(views) == 0 {
		return errors.New("no training features")
	}
	c := int64(len(ctx.ClassNames))
	var xs []*ts.Tensor
	var ys []int64
	for i, v := range views {
		if v == nil || v.Len() == 0 {
			return fmt.Errorf("training view %d is empty", i)
		}
		s, err := v.X.Size()
		if err != nil || len(s) != 2 || s[1] != ctx.FeatureDim || s[0] != int64(v.Len()) {
			return fmt.Errorf("training view %d: features of shape %v for %d labels, want [%d, %d]", i, s, v.Len(), v.Len(), ctx.FeatureDim)
		}
		xs = append(xs, v.X)
		ys = append(ys, v.Y...)
	}
	for i, y := range ys {
		if y < 0 || y >= c {
			return fmt.Errorf("training label %d (sample %d) is outside the %d classes", y, i, c)
		}
	}
	err := torch.NoGrad(func() error {
		x, err := ts.Cat(xs, 0)
		if err != nil {
			return torch.Err("concatenate training views", err)
		}
		defer x.Drop()
		xd, err := x.To(ctx.Device, false)
		if err != nil {
			return torch.Err("move training features", err)
		}
		defer xd.Drop()
		xn, err := nn.Normalize(xd)
		if err != nil {
			return err
		}
		defer xn.Drop()
		g.weights, g.bias, err = Estimate(xn, ys, c, ctx.ClassNames)
		return err
	})
	if err != nil {
		return err
	}
	if ctx.Log != nil {
		ctx.Log.Info("gda fitted", "samples", len(ys), "views", len(views), "classes", c, "scale", g.scale)
	}
	return nil
}

// setup checks the options and the context and builds what does not
// depend on training features: the text classifier, the logit scale, α.
func (g *GDA) setup(ctx *train.Context) error {
	if err := g.opts.validate(); err != nil {
		return err
	}
	if ctx == nil || ctx.Text == nil {
		return errors.New("the context has no text encoder")
	}
	if g.classifier != nil {
		return errors.New("already initialized")
	}
	err := torch.NoGrad(func() error {
		tmpl, err := zeroshot.FirstTemplates(ctx.Templates, g.opts.Templates)
		if err != nil {
			return err
		}
		w, err := zeroshot.Classifier(ctx.Text, ctx.ClassNames, tmpl)
		if err != nil {
			return err
		}
		if g.classifier, err = w.To(ctx.Device, true); err != nil {
			return torch.Err("move text classifier", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	g.d = ctx.FeatureDim
	g.scale = 100
	if g.opts.UseLogitScale {
		s, err := train.LogitScaleOf(ctx.Text)
		if err != nil {
			return fmt.Errorf("gda: %w", err)
		}
		g.scale = s
	}
	g.alpha = g.opts.Alpha
	return nil
}

var _ train.Restorer = (*GDA)(nil)

// Frozen implements train.Restorer: the discriminant fitted on the
// training features, "weights" ([C, D] Σ⁻¹μ_k) and "bias" ([C]).
func (g *GDA) Frozen() []train.Param {
	return []train.Param{{Name: "weights", Tensor: g.weights}, {Name: "bias", Tensor: g.bias}}
}

// Restore implements train.Restorer: the text classifier is built from
// ctx as Init does, the discriminant is copied from frozen; α is the
// configured one until SetExtra.
func (g *GDA) Restore(ctx *train.Context, frozen map[string]*ts.Tensor) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := func() error {
		if err := g.setup(ctx); err != nil {
			return err
		}
		w, b := frozen["weights"], frozen["bias"]
		if w == nil || b == nil {
			return errors.New("the saved state lacks weights or bias")
		}
		c := int64(len(ctx.ClassNames))
		ws, err := w.Size()
		if err != nil || len(ws) != 2 || ws[0] != c || ws[1] != ctx.FeatureDim {
			return fmt.Errorf("saved weights have shape %v, want [%d, %d]", ws, c, ctx.FeatureDim)
		}
		if g.weights, err = w.To(ctx.Device, true); err != nil {
			return torch.Err("restore weights", err)
		}
		if g.bias, err = b.To(ctx.Device, true); err != nil {
			return torch.Err("restore bias", err)
		}
		return nil
	}()
	if err != nil {
		g.Drop()
		return fmt.Errorf("gda: %w", err)
	}
	return nil
}

// Estimate fits the discriminant to samples x [n, D] (already
// normalized; any float dtype) with labels y in [0, classes): it returns
// W [C, D] = (Σ⁻¹μ_k)_k and b [C] = log(1/C) − ½ μ_kᵀΣ⁻¹μ_k as float32,
// computed in float64 on x's device with the shrinkage estimator of the
// package comment. Every class needs a sample (names, when given, name
// the class that has none).
func Estimate(x *ts.Tensor, y []int64, classes int64, names []string) (w, b *ts.Tensor, err error) {
	shape, err := x.Size()
	if err != nil {
		return nil, nil, torch.Err("shape of the samples", err)
	}
	if len(shape) != 2 || shape[0] != int64(len(y)) {
		return nil, nil, fmt.Errorf("samples of shape %v for %d labels", shape, len(y))
	}
	n, d := shape[0], shape[1]
	if n < 2 {
		return nil, nil, fmt.Errorf("%d samples: the covariance needs at least 2", n)
	}
	counts := make([]float64, classes)
	for i, c := range y {
		if c < 0 || c >= classes {
			return nil, nil, fmt.Errorf("label %d of sample %d is outside the %d classes", c, i, classes)
		}
		counts[c]++
	}
	for c, k := range counts {
		if k == 0 {
			name := fmt.Sprint(c)
			if c < len(names) {
				name = fmt.Sprintf("%d (%q)", c, names[c])
			}
			return nil, nil, fmt.Errorf("class %s has no training sample", name)
		}
	}
	dev, err := x.Device()
	if err != nil {
		return nil, nil, torch.Err("device of the samples", err)
	}
	var s torch.Scope
	defer s.Drop()
	xd, err := s.Op("cast samples to float64")(x.Totype(gotch.Double, false))
	if err != nil {
		return nil, nil, err
	}
	yt, err := s.Op("create labels")(ts.OfSlice(y))
	if err != nil {
		return nil, nil, err
	}
	if yt, err = s.Op("move labels")(yt.To(dev, false)); err != nil {
		return nil, nil, err
	}
	inv := make([]float64, classes)
	for c, k := range counts {
		inv[c] = 1 / k
	}
	invCount, err := tensor(&s, inv, []int64{classes, 1}, dev)
	if err != nil {
		return nil, nil, err
	}
	// μ_k = (1/count_k) Σ_{i: y_i = k} x_i, [C, D]
	zero, err := s.Op("zero class sums")(ts.Zeros([]int64{classes, d}, gotch.Double, dev))
	if err != nil {
		return nil, nil, err
	}
	sums, err := s.Op("class sums")(zero.IndexAdd(0, yt, xd, false))
	if err != nil {
		return nil, nil, err
	}
	mus, err := s.Op("class means")(sums.Mul(invCount, false))
	if err != nil {
		return nil, nil, err
	}
	// c = x − μ_y, then centred again on its mean as torch.cov does.
	own, err := s.Op("class mean per sample")(mus.IndexSelect(0, yt, false))
	if err != nil {
		return nil, nil, err
	}
	cen, err := s.Op("centre on class means")(xd.Sub(own, false))
	if err != nil {
		return nil, nil, err
	}
	cm, err := s.Op("mean of centred samples")(cen.MeanDim([]int64{0}, true, gotch.Double, false))
	if err != nil {
		return nil, nil, err
	}
	if cen, err = s.Op("centre samples")(cen.Sub(cm, false)); err != nil {
		return nil, nil, err
	}
	cent, err := s.Op("transpose centred samples")(cen.T(false))
	if err != nil {
		return nil, nil, err
	}
	scatter, err := s.Op("scatter matrix")(cent.Mm(cen, false))
	if err != nil {
		return nil, nil, err
	}
	trace, err := s.Op("trace")(scatter.Trace(false))
	if err != nil {
		return nil, nil, err
	}
	tv, err := torch.Values[float64](trace)
	if err != nil {
		return nil, nil, fmt.Errorf("trace: %w", err)
	}
	shrink := tv[0] / float64(n-1)
	if !(shrink > 0) || math.IsInf(shrink, 0) {
		return nil, nil, fmt.Errorf("the samples do not vary around their class means (trace of the covariance %g)", shrink)
	}
	eye, err := s.Op("identity")(ts.Eye(d, gotch.Double, dev))
	if err != nil {
		return nil, nil, err
	}
	if err := eye.MulScalar_(ts.FloatScalar(shrink)); err != nil {
		return nil, nil, torch.Err("shrinkage", err)
	}
	a, err := s.Op("shrunk scatter")(scatter.Add(eye, false))
	if err != nil {
		return nil, nil, err
	}
	// Σ⁻¹μ_kᵀ = D·A⁻¹μ_kᵀ: solve A·Z = μᵀ.
	mt, err := s.Op("transpose means")(mus.T(false))
	if err != nil {
		return nil, nil, err
	}
	z, err := s.Op("solve for the discriminant")(ts.LinalgSolve(a, mt, true))
	if err != nil {
		return nil, nil, err
	}
	wt, err := s.Op("scale discriminant")(z.MulScalar(ts.FloatScalar(float64(d)), false))
	if err != nil {
		return nil, nil, err
	}
	w64, err := s.Op("discriminant rows")(wt.T(false)) // [C, D]
	if err != nil {
		return nil, nil, err
	}
	quad, err := s.Op("quadratic term")(w64.Mul(mus, false))
	if err != nil {
		return nil, nil, err
	}
	q, err := s.Op("quadratic term")(quad.SumDimIntlist([]int64{1}, false, gotch.Double, false))
	if err != nil {
		return nil, nil, err
	}
	if q, err = s.Op("bias")(q.MulScalar(ts.FloatScalar(-0.5), false)); err != nil {
		return nil, nil, err
	}
	b64, err := s.Op("bias")(q.AddScalar(ts.FloatScalar(-math.Log(float64(classes))), false))
	if err != nil {
		return nil, nil, err
	}
	if w, err = w64.Totype(gotch.Float, false); err != nil {
		return nil, nil, torch.Err("cast discriminant", err)
	}
	if b, err = b64.Totype(gotch.Float, false); err != nil {
		w.Drop()
		return nil, nil, torch.Err("cast bias", err)
	}
	return w, b, nil
}

// tensor makes a float64 tensor of the given shape on dev, kept in s.
func tensor(s *torch.Scope, v []float64, shape []int64, dev gotch.Device) (*ts.Tensor, error) {
	t, err := s.Op("create tensor")(ts.OfSlice(v))
	if err != nil {
		return nil, err
	}
	if t, err = s.Op("shape tensor")(t.View(shape, false)); err != nil {
		return nil, err
	}
	return s.Op("move tensor")(t.To(dev, false))
}

// Parameters implements train.Method: GDA trains nothing.
func (g *GDA) Parameters() []train.Param { return nil }

// parts returns the zero-shot term s·f̂·W_cᵀ and the discriminant
// f̂·Wᵀ + b for raw features [B, D].
func (g *GDA) parts(features *ts.Tensor) (clip, disc *ts.Tensor, err error) {
	if g.classifier == nil {
		return nil, nil, errors.New("gda: logits before Init")
	}
	s, err := features.Size()
	if err != nil || len(s) != 2 || s[1] != g.d {
		return nil, nil, fmt.Errorf("gda: image features of shape %v, want [N, %d]", s, g.d)
	}
	var sc torch.Scope
	defer sc.Drop()
	f, err := sc.Op("gda: cast features")(features.Totype(gotch.Float, false))
	if err != nil {
		return nil, nil, err
	}
	fn, err := nn.Normalize(f)
	if err != nil {
		return nil, nil, fmt.Errorf("gda: %w", err)
	}
	sc.Keep(fn)
	wt, err := sc.Op("gda: transpose discriminant")(g.weights.T(false))
	if err != nil {
		return nil, nil, err
	}
	clip, err = zeroshot.ScaledCosine(f, g.classifier, g.scale)
	if err != nil {
		return nil, nil, fmt.Errorf("gda: zero-shot logits: %w", err)
	}
	lin, err := sc.Op("gda: discriminant")(fn.Mm(wt, false))
	if err != nil {
		clip.Drop()
		return nil, nil, err
	}
	disc, err = lin.Add(g.bias, false)
	if err != nil {
		clip.Drop()
		return nil, nil, torch.Err("gda: discriminant bias", err)
	}
	return clip, disc, nil
}

// Logits implements train.Method with the α in effect.
func (g *GDA) Logits(features *ts.Tensor, training bool) (*ts.Tensor, error) {
	clip, disc, err := g.parts(features)
	if err != nil {
		return nil, err
	}
	defer clip.Drop()
	defer disc.Drop()
	if err := disc.MulScalar_(ts.FloatScalar(g.alpha)); err != nil {
		return nil, torch.Err("gda: weight discriminant", err)
	}
	out, err := clip.Add(disc, false)
	return out, torch.Err("gda: ensemble", err)
}

// Tune implements train.Tuner: the α of Options.Alphas with the most
// correct validation predictions (the first one on ties; an α must beat
// zero correct, as in the reference). It returns "alpha" and
// "val_accuracy". It stops with train.ErrInterrupted once ctx is
// cancelled.
func (g *GDA) Tune(ctx context.Context, val *train.Features) (map[string]float64, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("gda: alpha search: %w", train.ErrInterrupted)
	}
	if g.classifier == nil {
		return nil, errors.New("gda: Tune before Init")
	}
	if g.opts.NoSearch {
		return map[string]float64{"alpha": g.alpha}, nil
	}
	if val == nil || val.Len() == 0 {
		return nil, errors.New("gda: no validation features to choose alpha")
	}
	counts, err := g.AlphaCounts(val)
	if err != nil {
		return nil, err
	}
	best, bestN := g.alpha, int64(0)
	for i, a := range g.opts.Alphas {
		if counts[i] > bestN {
			best, bestN = a, counts[i]
		}
	}
	g.alpha = best
	return map[string]float64{"alpha": best, "val_accuracy": float64(bestN) / float64(val.Len())}, nil
}

// AlphaCounts returns, for every α of Options.Alphas, the number of
// correct predictions on f.
func (g *GDA) AlphaCounts(f *train.Features) ([]int64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	counts := make([]int64, len(g.opts.Alphas))
	const rows = 4096
	err := torch.NoGrad(func() error {
		for lo := 0; lo < f.Len(); lo += rows {
			hi := min(lo+rows, f.Len())
			x, err := f.X.Narrow(0, int64(lo), int64(hi-lo), false)
			if err != nil {
				return torch.Err("gda: slice features", err)
			}
			dev, err := g.classifier.Device()
			if err != nil {
				x.Drop()
				return torch.Err("gda: classifier device", err)
			}
			xd, err := x.To(dev, true)
			if err != nil {
				return torch.Err("gda: move features", err)
			}
			clip, disc, err := g.parts(xd)
			xd.Drop()
			if err != nil {
				return err
			}
			err = countAlphas(clip, disc, g.opts.Alphas, f.Y[lo:hi], counts)
			clip.Drop()
			disc.Drop()
			if err != nil {
				return err
			}
		}
		return nil
	})
	return counts, err
}

func countAlphas(clip, disc *ts.Tensor, alphas []float64, y []int64, counts []int64) error {
	for i, a := range alphas {
		t, err := disc.MulScalar(ts.FloatScalar(a), false)
		if err != nil {
			return torch.Err("gda: weight discriminant", err)
		}
		if err := t.Add_(clip); err != nil {
			t.Drop()
			return torch.Err("gda: ensemble", err)
		}
		p, err := t.Argmax([]int64{1}, false, true)
		if err != nil {
			return torch.Err("gda: predictions", err)
		}
		pred, err := torch.Values[int64](p)
		p.Drop()
		if err != nil {
			return fmt.Errorf("gda: predictions: %w", err)
		}
		for j, v := range pred {
			if v == y[j] {
				counts[i]++
			}
		}
	}
	return nil
}

// Extra implements train.Saver: the α in effect.
func (g *GDA) Extra() map[string]float64 { return map[string]float64{"alpha": g.alpha} }

// SetExtra implements train.Saver.
func (g *GDA) SetExtra(e map[string]float64) error {
	a, ok := e["alpha"]
	if !ok || math.IsNaN(a) || math.IsInf(a, 0) {
		return fmt.Errorf("gda: saved state has no finite alpha (have %v)", e)
	}
	g.alpha = a
	return nil
}

// Weights returns the discriminant W [C, D] and b [C] (shared, not
// copies), nil before Init.
func (g *GDA) Weights() (w, b *ts.Tensor) { return g.weights, g.bias }

// Drop implements train.Method.
func (g *GDA) Drop() {
	for _, t := range []**ts.Tensor{&g.classifier, &g.weights, &g.bias} {
		if *t != nil {
			(*t).Drop()
			*t = nil
		}
	}
}
