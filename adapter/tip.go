package adapter

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/train"
)

// TipOptions configures Tip-Adapter and Tip-Adapter-F. Start from
// DefaultTipOptions: zero α and β are meaningful values.
type TipOptions struct {
	// InitAlpha is the residual ratio α (weight of the cache logits) used
	// before tuning and while training Tip-Adapter-F (config init_alpha).
	InitAlpha float64 `toml:"init_alpha"`
	// InitBeta is the sharpness β (config init_beta).
	InitBeta float64 `toml:"init_beta"`
	// SearchScale is [β_max, α_max] of the grid search (config
	// search_scale); both must be positive unless NoSearch is set.
	SearchScale [2]float64 `toml:"search_scale"`
	// SearchSteps is [β steps, α steps] (config search_step); zero entries
	// mean 200 and 20.
	SearchSteps [2]int `toml:"search_steps"`
	// NoSearch makes Tune keep the initial α and β (config search_hp off).
	NoSearch bool `toml:"no_search"`
	// UseLogitScale multiplies the CLIP term by the checkpoint's
	// exp(logit_scale) instead of Tip-Adapter's hard-coded 100.
	UseLogitScale bool `toml:"use_logit_scale"`
	// Templates is how many of Context.Templates build the text classifier
	// (0: all, ensembled; Tip-Adapter uses the single template except on
	// ImageNet, where it ensembles 7).
	Templates int `toml:"templates"`
	// AugmentViews is the number of augmented views of the train set whose
	// features are averaged into the cache keys (Tip-Adapter's
	// augment_epoch, 10); Tip-Adapter-F trains on the same views.
	AugmentViews int `toml:"augment_views"`
}

// DefaultTipOptions returns Tip-Adapter's common settings with the
// search scale and initial α of its ImageNet (and Oxford Pets) config:
// α = 1.17, β = 1, search scale [7, 3], steps [200, 20]. The per-dataset
// values are the configuration's business.
func DefaultTipOptions() TipOptions {
	return TipOptions{InitAlpha: 1.17, InitBeta: 1, SearchScale: [2]float64{7, 3}, SearchSteps: [2]int{200, 20}, AugmentViews: 10}
}

// TipAdapter is Tip-Adapter, or Tip-Adapter-F when built by NewTipAdapterF.
//
// Its cache holds keys F, the mean over the augmented views of the raw
// training features, L2-normalized ([NK, D]), and values Lv, the one-hot
// labels ([NK, C]). For normalized features f̂ the logits are
//
//	s·f̂·W_cᵀ + α·exp(−β·(1 − f̂·Fᵀ))·Lv
//
// with W_c the normalized text classifier and s = 100 (or the checkpoint's
// logit scale with UseLogitScale).
//
// Tip-Adapter has no parameters. Tip-Adapter-F learns the keys as the
// parameter "adapter.weight" [NK, D] (the weight of the reference's
// bias-free Linear D → NK), initialized from the normalized keys and not
// re-normalized during training; it trains with the initial α and β.
//
// Both implement train.Tuner (the α/β grid search on validation features)
// and train.Saver (the chosen α and β).
type TipAdapter struct {
	opts       TipOptions
	fine       bool
	d          int64
	scale      float64
	alpha      float64
	beta       float64
	classifier *ts.Tensor // [C, D] unit rows
	keys       *ts.Tensor // [NK, D]; a parameter for -F
	values     *ts.Tensor // [NK, C] one-hot
}

var (
	_ train.Method = (*TipAdapter)(nil)
	_ train.Tuner  = (*TipAdapter)(nil)
	_ train.Saver  = (*TipAdapter)(nil)
)

// NewTipAdapter returns the training-free Tip-Adapter.
func NewTipAdapter(o TipOptions) *TipAdapter { return newTip(o, false) }

// NewTipAdapterF returns Tip-Adapter-F, whose cache keys are trained.
func NewTipAdapterF(o TipOptions) *TipAdapter { return newTip(o, true) }

func newTip(o TipOptions, fine bool) *TipAdapter {
	if o.SearchSteps[0] == 0 {
		o.SearchSteps[0] = 200
	}
	if o.SearchSteps[1] == 0 {
		o.SearchSteps[1] = 20
	}
	return &TipAdapter{opts: o, fine: fine, alpha: o.InitAlpha, beta: o.InitBeta}
}

func (m *TipAdapter) name() string {
	if m.fine {
		return "tip-adapter-f"
	}
	return "tip-adapter"
}

// Options returns the options in effect (with defaults filled in).
func (m *TipAdapter) Options() TipOptions { return m.opts }

// Alpha returns the residual ratio in effect.
func (m *TipAdapter) Alpha() float64 { return m.alpha }

// Beta returns the sharpness in effect.
func (m *TipAdapter) Beta() float64 { return m.beta }

func (o TipOptions) validate() error {
	for _, v := range []float64{o.InitAlpha, o.InitBeta} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("initial alpha %g / beta %g must be finite", o.InitAlpha, o.InitBeta)
		}
	}
	if o.SearchSteps[0] < 1 || o.SearchSteps[1] < 1 {
		return fmt.Errorf("search steps %v, want positive counts", o.SearchSteps)
	}
	if !o.NoSearch {
		s := o.SearchScale
		if !(s[0] > 0 && s[1] > 0) || math.IsInf(s[0], 0) || math.IsInf(s[1], 0) {
			return fmt.Errorf("search scale %v, want positive finite [beta_max, alpha_max]", s)
		}
	}
	if o.Templates < 0 {
		return fmt.Errorf("templates %d, want 0 (all) or more", o.Templates)
	}
	return nil
}

// Init implements train.Method: it builds the text classifier and the cache
// from the training views (every view must list the same examples in the
// same order).
func (m *TipAdapter) Init(ctx *train.Context, views []*train.Features) error {
	if ctx == nil {
		return fmt.Errorf("%s: nil context", m.name())
	}
	if err := m.opts.validate(); err != nil {
		return fmt.Errorf("%s: %w", m.name(), err)
	}
	if m.classifier != nil {
		return fmt.Errorf("%s: already initialized", m.name())
	}
	if len(views) == 0 {
		return fmt.Errorf("%s: no training features for the cache", m.name())
	}
	c := int64(len(ctx.ClassNames))
	first := views[0]
	if first == nil || first.Len() == 0 {
		return fmt.Errorf("%s: training view 0 is empty", m.name())
	}
	for i, v := range views {
		if v == nil || !slices.Equal(v.Y, first.Y) {
			return fmt.Errorf("%s: training view %d does not list the labels of view 0 in the same order", m.name(), i)
		}
		n, err := checkFeatures(v.X, ctx.FeatureDim, fmt.Sprintf("%s: training view %d", m.name(), i))
		if err != nil {
			return err
		}
		if n != int64(len(v.Y)) {
			return fmt.Errorf("%s: training view %d has %d feature rows for %d labels", m.name(), i, n, len(v.Y))
		}
	}
	nk := int64(first.Len())
	onehot := make([]float32, nk*c)
	for i, y := range first.Y {
		if y < 0 || y >= c {
			return fmt.Errorf("%s: training label %d of example %d is outside the %d classes", m.name(), y, i, c)
		}
		onehot[int64(i)*c+y] = 1
	}

	w, err := textClassifier(ctx, m.opts.Templates)
	if err != nil {
		return fmt.Errorf("%s: %w", m.name(), err)
	}
	m.classifier, m.d = w, ctx.FeatureDim
	fail := func(err error) error {
		m.Drop()
		return fmt.Errorf("%s: %w", m.name(), err)
	}
	if m.values, err = torch.FromFloats(onehot, []int64{nk, c}, ctx.Device); err != nil {
		return fail(err)
	}
	if err := torch.NoGrad(func() error {
		var err error
		m.keys, err = cacheKeys(views, ctx.Device)
		return err
	}); err != nil {
		return fail(err)
	}
	if m.fine {
		p, err := m.keys.SetRequiresGrad(true, false)
		if err != nil {
			return fail(torch.Err("require gradients of the keys", err))
		}
		m.keys.Drop()
		m.keys = p
	}
	m.scale = 100
	if m.opts.UseLogitScale {
		if m.scale, err = train.LogitScaleOf(ctx.Text); err != nil {
			return fmt.Errorf("%s: %w", m.name(), err)
		}
	}
	m.alpha, m.beta = m.opts.InitAlpha, m.opts.InitBeta
	if ctx.Log != nil {
		ctx.Log.Info(m.name()+" initialized", "cache", nk, "classes", c, "views", len(views),
			"alpha", m.alpha, "beta", m.beta, "scale", m.scale)
	}
	return nil
}

// cacheKeys returns the L2-normalized mean over the views of the raw
// features, [NK, D] float32 on dev.
func cacheKeys(views []*train.Features, dev gotch.Device) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	xs := make([]*ts.Tensor, len(views))
	for i, v := range views {
		x, err := s.Op("move training features")(v.X.To(dev, false))
		if err != nil {
			return nil, err
		}
		if xs[i], err = s.Op("cast training features")(x.Totype(gotch.Float, false)); err != nil {
			return nil, err
		}
	}
	st, err := s.Op("stack training views")(ts.Stack(xs, 0))
	if err != nil {
		return nil, err
	}
	mean, err := s.Op("average training views")(st.MeanDim([]int64{0}, false, gotch.Float, false))
	if err != nil {
		return nil, err
	}
	return nn.Normalize(mean)
}

// Parameters implements train.Method: none for Tip-Adapter, the keys
// ("adapter.weight") for Tip-Adapter-F.
func (m *TipAdapter) Parameters() []train.Param {
	if !m.fine || m.keys == nil {
		return nil
	}
	return []train.Param{{Name: "adapter.weight", Tensor: m.keys}}
}

// SetParameters copies values (for example from a checkpoint) into the
// parameters by name: exactly "adapter.weight" [NK, D] for Tip-Adapter-F,
// nothing for Tip-Adapter. It must be called after Init.
func (m *TipAdapter) SetParameters(values map[string]*ts.Tensor) error {
	if m.classifier == nil {
		return fmt.Errorf("%s: set parameters before Init", m.name())
	}
	if err := setParams(m.Parameters(), values); err != nil {
		return fmt.Errorf("%s: %w", m.name(), err)
	}
	return nil
}

// Logits implements train.Method with the α and β in effect (the initial
// ones until Tune or SetExtra).
func (m *TipAdapter) Logits(features *ts.Tensor, training bool) (*ts.Tensor, error) {
	if m.classifier == nil {
		return nil, fmt.Errorf("%s: Logits before Init", m.name())
	}
	if _, err := checkFeatures(features, m.d, m.name()+": image features"); err != nil {
		return nil, err
	}
	var s torch.Scope
	defer s.Drop()
	fn, err := nn.Normalize(features)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.name(), err)
	}
	s.Keep(fn)
	clip, err := m.clipLogits(fn)
	if err != nil {
		return nil, err
	}
	s.Keep(clip)
	aff, err := m.affinity(fn)
	if err != nil {
		return nil, err
	}
	s.Keep(aff)
	cache, err := m.cacheLogits(aff, m.beta)
	if err != nil {
		return nil, err
	}
	s.Keep(cache)
	if err := cache.MulScalar_(ts.FloatScalar(m.alpha)); err != nil {
		return nil, torch.Err(m.name()+": weight cache logits", err)
	}
	out, err := clip.Add(cache, false)
	if err != nil {
		return nil, torch.Err(m.name()+": add cache logits", err)
	}
	return out, nil
}

// clipLogits returns (s·f̂)·W_cᵀ, in the reference's order of operations.
func (m *TipAdapter) clipLogits(fn *ts.Tensor) (*ts.Tensor, error) {
	sf, err := fn.MulScalar(ts.FloatScalar(m.scale), false)
	if err != nil {
		return nil, torch.Err(m.name()+": scale features", err)
	}
	out, err := linear(sf, m.classifier)
	sf.Drop()
	if err != nil {
		return nil, fmt.Errorf("%s: clip logits: %w", m.name(), err)
	}
	return out, nil
}

// affinity returns f̂·Fᵀ, [B, NK].
func (m *TipAdapter) affinity(fn *ts.Tensor) (*ts.Tensor, error) {
	a, err := linear(fn, m.keys)
	if err != nil {
		return nil, fmt.Errorf("%s: affinity: %w", m.name(), err)
	}
	return a, nil
}

// cacheLogits returns exp(−(β − β·A))·Lv, [B, C], in the reference's order
// of operations.
func (m *TipAdapter) cacheLogits(aff *ts.Tensor, beta float64) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	sharpen := s.Op(m.name() + ": sharpen affinity")
	t, err := sharpen(aff.MulScalar(ts.FloatScalar(beta), false))
	if err != nil {
		return nil, err
	}
	if t, err = sharpen(t.RsubScalar(ts.FloatScalar(beta), false)); err != nil {
		return nil, err
	}
	if err := t.Neg_(); err != nil {
		return nil, torch.Err(m.name()+": sharpen affinity", err)
	}
	if err := t.Exp_(); err != nil {
		return nil, torch.Err(m.name()+": sharpen affinity", err)
	}
	out, err := t.Mm(m.values, false)
	return out, torch.Err(m.name()+": cache logits", err)
}

// SearchGrid returns the β and α values Tune tries, in order: β_i =
// i·(β_max − 0.1)/steps_β + 0.1 for i < steps_β, and likewise for α. The
// grids never reach the maxima.
func (o TipOptions) SearchGrid() (betas, alphas []float64) {
	grid := func(max float64, steps int) []float64 {
		g := make([]float64, steps)
		for i := range g {
			g[i] = float64(i)*(max-0.1)/float64(steps) + 0.1
		}
		return g
	}
	return grid(o.SearchScale[0], o.SearchSteps[0]), grid(o.SearchScale[1], o.SearchSteps[1])
}

// Tune implements train.Tuner: Tip-Adapter's grid search for α and β on
// the given validation features, with the current keys. β is the outer
// loop and α the inner one (see SearchGrid); a pair replaces the best one
// only with strictly more correct predictions, starting from zero correct
// with α = β = 0 as the reference does. It returns "alpha", "beta" and
// "val_accuracy" (the fraction correct with the chosen pair).
//
// Pass validation features, never test features: Tip-Adapter's own code
// searches on the test set for ImageNet, which this toolkit does not
// reproduce.
//
// The CLIP logits and the affinities are computed once; each β costs one
// exponential of the [N, NK] affinities and one [N, NK]×[NK, C] product,
// and all α of a β are evaluated together on reused [Nα, N, C] buffers
// (BenchmarkTipSearch: 1.7 s for the 4000 pairs at N = 1000, C = 100,
// NK = 1600 on two CPU cores). Large validation sets are processed in row
// chunks.
func (m *TipAdapter) Tune(ctx context.Context, val *train.Features) (map[string]float64, error) {
	if m.classifier == nil {
		return nil, fmt.Errorf("%s: Tune before Init", m.name())
	}
	if m.opts.NoSearch {
		return map[string]float64{"alpha": m.alpha, "beta": m.beta}, nil
	}
	if val == nil || val.Len() == 0 {
		return nil, fmt.Errorf("%s: no validation features to tune alpha and beta", m.name())
	}
	n, err := checkFeatures(val.X, m.d, m.name()+": validation features")
	if err != nil {
		return nil, err
	}
	if n != int64(val.Len()) {
		return nil, fmt.Errorf("%s: validation set has %d feature rows for %d labels", m.name(), n, val.Len())
	}
	var best searchResult
	err = torch.NoGrad(func() error {
		var err error
		best, err = m.search(ctx, val)
		return err
	})
	if err != nil {
		return nil, err
	}
	m.alpha, m.beta = best.alpha, best.beta
	return map[string]float64{"alpha": best.alpha, "beta": best.beta,
		"val_accuracy": float64(best.correct) / float64(val.Len())}, nil
}

type searchResult struct {
	alpha, beta float64
	correct     int64
}

// searchBudget bounds the elements of the largest temporary tensors of the
// search ([rows, NK] affinities and [Nα, rows, C] logits), by splitting the
// validation set into row chunks whose correct counts add up.
const searchBudget = 1 << 24

func (m *TipAdapter) search(ctx context.Context, val *train.Features) (searchResult, error) {
	var best searchResult
	counts, err := m.searchCounts(ctx, val, searchBudget)
	if err != nil {
		return best, err
	}
	betas, alphas := m.opts.SearchGrid()
	for i, beta := range betas {
		for j, alpha := range alphas {
			if counts[i][j] > best.correct {
				best = searchResult{alpha: alpha, beta: beta, correct: counts[i][j]}
			}
		}
	}
	return best, nil
}

// searchCounts returns the number of correct validation predictions for
// every (β, α) of the grid, [β][α], working on row chunks of at most
// budget elements in the largest temporary tensor.
func (m *TipAdapter) searchCounts(ctx context.Context, val *train.Features, budget int64) ([][]int64, error) {
	dev, err := m.classifier.Device()
	if err != nil {
		return nil, torch.Err(m.name()+": classifier device", err)
	}
	betas, alphas := m.opts.SearchGrid()
	a32 := make([]float32, len(alphas))
	for i, a := range alphas {
		a32[i] = float32(a)
	}
	na := int64(len(alphas))
	at, err := torch.FromFloats(a32, []int64{na, 1, 1}, dev)
	if err != nil {
		return nil, err
	}
	defer at.Drop()

	n := int64(val.Len())
	shape, err := shapeOf(m.values, m.name()+": cache values")
	if err != nil {
		return nil, err
	}
	nk, c := shape[0], shape[1]
	rows := budget / max(nk, na*c)
	rows = max(1, min(rows, n))
	counts := make([][]int64, len(betas))
	for i := range counts {
		counts[i] = make([]int64, len(alphas))
	}
	for start := int64(0); start < n; start += rows {
		size := min(rows, n-start)
		if err := m.countChunk(ctx, val, start, size, dev, at, betas, counts); err != nil {
			return nil, err
		}
	}
	return counts, nil
}

// countChunk adds, for every (β, α), the correct predictions on the rows
// [start, start+size) of val to counts.
func (m *TipAdapter) countChunk(ctx context.Context, val *train.Features, start, size int64, dev gotch.Device, at *ts.Tensor, betas []float64, counts [][]int64) error {
	var s torch.Scope
	defer s.Drop()
	xs, err := s.Op(m.name() + ": slice validation features")(val.X.Narrow(0, start, size, false))
	if err != nil {
		return err
	}
	x, err := s.Op(m.name() + ": move validation features")(xs.To(dev, false))
	if err != nil {
		return err
	}
	xf, err := s.Op(m.name() + ": cast validation features")(x.Totype(gotch.Float, false))
	if err != nil {
		return err
	}
	fn, err := nn.Normalize(xf)
	if err != nil {
		return fmt.Errorf("%s: %w", m.name(), err)
	}
	s.Keep(fn)
	clip, err := m.clipLogits(fn)
	if err != nil {
		return err
	}
	s.Keep(clip)
	aff, err := m.affinity(fn)
	if err != nil {
		return err
	}
	s.Keep(aff)
	labels, err := fromLabels(val.Y[start:start+size], dev)
	if err != nil {
		return err
	}
	s.Keep(labels)

	// Buffers reused for every β, so that the loop allocates no large
	// tensors.
	vs, err := shapeOf(m.values, m.name()+": cache values")
	if err != nil {
		return err
	}
	as, err := shapeOf(at, m.name()+": alpha grid")
	if err != nil {
		return err
	}
	nk, c, na := vs[0], vs[1], as[0]
	alloc := func(shape []int64, dt gotch.DType) (*ts.Tensor, error) {
		return s.Op(m.name() + ": allocate search buffer")(ts.Empty(shape, dt, dev))
	}
	e, err := alloc([]int64{size, nk}, gotch.Float)
	if err != nil {
		return err
	}
	cache, err := alloc([]int64{size, c}, gotch.Float)
	if err != nil {
		return err
	}
	logits, err := alloc([]int64{na, size, c}, gotch.Float)
	if err != nil {
		return err
	}
	pred, err := alloc([]int64{na, size}, gotch.Int64)
	if err != nil {
		return err
	}
	// out runs an op that writes into a buffer and drops the extra handle
	// it returns.
	out := func(what string, op func() (*ts.Tensor, error)) error {
		r, err := op()
		if err != nil {
			return torch.Err(m.name()+": "+what, err)
		}
		r.Drop()
		return nil
	}
	for i, beta := range betas {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: search: %w", m.name(), train.ErrInterrupted)
		}
		// exp(−(β − β·A)) computed as exp(β·A − β), the same float32
		// value, then ·Lv; then clip + α·cache for all α at once.
		if err := out("sharpen affinity", func() (*ts.Tensor, error) { return aff.MulScalarOut(e, ts.FloatScalar(beta), false) }); err != nil {
			return err
		}
		if err := e.SubScalar_(ts.FloatScalar(beta)); err != nil {
			return torch.Err(m.name()+": sharpen affinity", err)
		}
		if err := e.Exp_(); err != nil {
			return torch.Err(m.name()+": sharpen affinity", err)
		}
		if err := out("cache logits", func() (*ts.Tensor, error) { return e.MmOut(cache, m.values, false) }); err != nil {
			return err
		}
		if err := out("weight cache logits", func() (*ts.Tensor, error) { return at.MulOut(logits, cache, false) }); err != nil {
			return err
		}
		if err := logits.Add_(clip); err != nil {
			return torch.Err(m.name()+": add clip logits", err)
		}
		if err := out("predictions", func() (*ts.Tensor, error) { return logits.ArgmaxOut(pred, []int64{2}, false, false) }); err != nil {
			return err
		}
		hit, err := pred.EqTensor(labels, false)
		if err != nil {
			return torch.Err(m.name()+": compare with labels", err)
		}
		n, err := hit.SumDimIntlist([]int64{1}, false, gotch.Int64, true)
		if err != nil {
			return torch.Err(m.name()+": count correct", err)
		}
		cs, err := torch.Values[int64](n)
		n.Drop()
		if err != nil {
			return fmt.Errorf("%s: count correct: %w", m.name(), err)
		}
		for j, c := range cs {
			counts[i][j] += c
		}
	}
	return nil
}

// fromLabels makes an int64 tensor of labels on dev.
func fromLabels(y []int64, dev gotch.Device) (*ts.Tensor, error) {
	l, err := ts.OfSlice(y)
	if err != nil {
		return nil, torch.Err("create labels", err)
	}
	ld, err := l.To(dev, true)
	if err != nil {
		return nil, torch.Err("move labels", err)
	}
	return ld, nil
}

// Extra implements train.Saver: the α and β in effect.
func (m *TipAdapter) Extra() map[string]float64 {
	return map[string]float64{"alpha": m.alpha, "beta": m.beta}
}

// SetExtra implements train.Saver: it restores α and β.
func (m *TipAdapter) SetExtra(e map[string]float64) error {
	a, okA := e["alpha"]
	b, okB := e["beta"]
	if !okA || !okB {
		return fmt.Errorf("%s: saved state lacks alpha or beta (have %v)", m.name(), e)
	}
	if math.IsNaN(a) || math.IsInf(a, 0) || math.IsNaN(b) || math.IsInf(b, 0) {
		return fmt.Errorf("%s: saved alpha %g / beta %g are not finite", m.name(), a, b)
	}
	m.alpha, m.beta = a, b
	return nil
}

// Drop implements train.Method.
func (m *TipAdapter) Drop() {
	for _, t := range []*ts.Tensor{m.classifier, m.keys, m.values} {
		if t != nil {
			t.Drop()
		}
	}
	m.classifier, m.keys, m.values = nil, nil, nil
}

// tipNeeds are Tip-Adapter's cache views: AugmentViews views with
// RandomResizedCrop scale (0.5, 1), averaged into the keys.
func tipNeeds(o TipOptions) train.Needs {
	return train.Needs{TrainFeatures: true, Augment: true, Views: o.AugmentViews, MinScale: 0.5}
}

// BuildTipAdapter is Tip-Adapter's constructor for the method registry.
func BuildTipAdapter(o TipOptions) (train.Method, train.Needs, error) {
	return NewTipAdapter(o), tipNeeds(o), nil
}

// BuildTipAdapterF is Tip-Adapter-F's constructor for the method
// registry: it trains the cache keys on the same views.
func BuildTipAdapterF(o TipOptions) (train.Method, train.Needs, error) {
	return NewTipAdapterF(o), tipNeeds(o), nil
}

var _ train.Restorer = (*TipAdapter)(nil)

// Frozen implements train.Restorer: the cache values ("cache.values",
// [NK, C] one-hot) and, for Tip-Adapter, the cache keys ("cache.keys",
// [NK, D]); Tip-Adapter-F's keys are its parameter.
func (m *TipAdapter) Frozen() []train.Param {
	ps := []train.Param{{Name: "cache.values", Tensor: m.values}}
	if !m.fine {
		ps = append(ps, train.Param{Name: "cache.keys", Tensor: m.keys})
	}
	return ps
}

// Restore implements train.Restorer: it builds the text classifier from
// ctx as Init does and takes the cache from frozen instead of training
// features (for Tip-Adapter-F the keys are zeros until its parameter is
// copied in). α and β are the initial ones until SetExtra.
func (m *TipAdapter) Restore(ctx *train.Context, frozen map[string]*ts.Tensor) error {
	if ctx == nil {
		return fmt.Errorf("%s: nil context", m.name())
	}
	if m.classifier != nil {
		return fmt.Errorf("%s: already initialized", m.name())
	}
	values := frozen["cache.values"]
	if values == nil {
		return fmt.Errorf("%s: the saved state has no cache.values", m.name())
	}
	vs, err := shapeOf(values, m.name()+": cache.values")
	if err != nil {
		return err
	}
	c := int64(len(ctx.ClassNames))
	if len(vs) != 2 || vs[1] != c {
		return fmt.Errorf("%s: cache.values has shape %v, want [NK, %d] for the %d classes", m.name(), vs, c, c)
	}
	var keys *ts.Tensor
	if !m.fine {
		if keys = frozen["cache.keys"]; keys == nil {
			return fmt.Errorf("%s: the saved state has no cache.keys", m.name())
		}
		n, err := checkFeatures(keys, ctx.FeatureDim, m.name()+": cache.keys")
		if err != nil {
			return err
		}
		if n != vs[0] {
			return fmt.Errorf("%s: cache.keys has %d rows, cache.values %d", m.name(), n, vs[0])
		}
	}
	w, err := textClassifier(ctx, m.opts.Templates)
	if err != nil {
		return fmt.Errorf("%s: %w", m.name(), err)
	}
	m.classifier, m.d = w, ctx.FeatureDim
	fail := func(err error) error {
		m.Drop()
		return fmt.Errorf("%s: %w", m.name(), err)
	}
	copyTo := func(x *ts.Tensor) (*ts.Tensor, error) {
		y, err := x.To(ctx.Device, false)
		if err != nil {
			return nil, torch.Err("move cache", err)
		}
		z, err := y.Totype(gotch.Float, false)
		y.Drop()
		if err != nil {
			return nil, torch.Err("cast cache", err)
		}
		out, err := z.Contiguous(false)
		z.Drop()
		return out, torch.Err("copy cache", err)
	}
	if m.values, err = copyTo(values); err != nil {
		return fail(err)
	}
	if m.fine {
		m.keys, err = ts.Zeros([]int64{vs[0], ctx.FeatureDim}, gotch.Float, ctx.Device)
		err = torch.Err("allocate cache keys", err)
	} else {
		m.keys, err = copyTo(keys)
	}
	if err != nil {
		return fail(err)
	}
	m.scale = 100
	if m.opts.UseLogitScale {
		if m.scale, err = train.LogitScaleOf(ctx.Text); err != nil {
			return fail(fmt.Errorf("%s: %w", m.name(), err))
		}
	}
	m.alpha, m.beta = m.opts.InitAlpha, m.opts.InitBeta
	return nil
}
