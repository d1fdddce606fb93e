// Package probe is CLIP's linear-probe baseline as CoOp runs it (lpclip):
// multinomial logistic regression on frozen image features, with the L2
// strength C chosen on the validation features.
//
// # Model and solver
//
// For features x_i (optionally L2-normalized) and labels y_i the probe
// minimizes scikit-learn's LogisticRegression(solver="lbfgs",
// penalty="l2") objective
//
//	½‖W‖² + C·Σ_i CE(softmax(W x_i + b), y_i)
//
// over all K class rows of W and the intercepts b, which are not
// penalized (K-row multinomial model also for K = 2, like scikit-learn's
// multi_class="multinomial"). Features may be float32 or float64; the fit
// runs in float64 like scikit-learn's lbfgs, with every matrix product in
// libtorch on the features' device (or the one Init was given).
//
// The solver is gonum's L-BFGS (gonum.org/v1/gonum/optimize): 10
// correction pairs (like scipy) and its Moré–Thuente line search for the
// strong Wolfe conditions (c1 = 1e-4, c2 = 0.9, at most 20 evaluations),
// which also accepts Hager and Zhang's approximate Wolfe conditions when f
// changes by less than 1e-12 of its value (rounding; this only matters for
// fits tighter than the defaults). The objective and its gradient are
// computed in libtorch; the parameters cross to the host at each
// evaluation. The first step of a fit (and after a restart) has unit
// length, as in L-BFGS-B. A failed line search forgets the curvature pairs
// and retries along the gradient.
//
// Stopping rules, as scikit-learn 1.2 runs scipy's L-BFGS-B: they apply to
// f = Σ CE + ‖W‖²/(2C), the objective above divided by C (what
// scikit-learn hands scipy). A fit stops when max_j |∂f/∂θ_j| ≤ Tol
// (scipy's pgtol = sklearn's tol, default 1e-4; the bounds are absent, so
// the projected gradient is the gradient), when the relative decrease
// (f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) ≤ 2.2e-9 (scipy's default
// factr·eps, which in practice ends most fits), after MaxIter iterations
// (default 1000) or after 15,000 evaluations. Tol is absolute on a sum
// over examples, hence relatively tighter on larger training sets, exactly
// as in scikit-learn 1.2.1 (the version the tests' references come from).
// As in
// scikit-learn, hitting a limit is not an error: the search log records
// why each fit stopped and a warning is logged.
//
// # C search
//
// CoOp's lpclip/linear_probe.py: fit every C of the coarse grid (default
// 1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6), take as peak the first C in grid
// order with the best validation accuracy, then run SearchSteps (default
// 8) rounds starting from cl = peak/10, cr = peak·10: fit both, keep cr
// if its validation accuracy is strictly higher, otherwise (ties
// included) cl, and continue on the half (in log10 C) of the interval
// next to the kept end. The final classifier is the one kept in the last
// round, even when an earlier round had a better validation accuracy —
// that is what CoOp reports.
//
// Three things differ from CoOp's script without changing what it selects
// (up to the solver tolerance): a C that was already fitted is reused
// instead of refitted (scikit-learn's refit is deterministic and gives the
// same classifier); each fit starts from the solution of the nearest C
// fitted so far (warm start) instead of from zero; and the coarse grid is
// fitted in increasing C, so that each warm start comes from the more
// regularized neighbour (the peak is still picked in grid order). On
// 1600 x 1024 normalized features with 100 classes warm starts cut the
// search's iterations by 29% and its objective evaluations, which take
// the time, by 25% (BenchmarkFit). With Options.ColdStart every fit starts from zero like
// scikit-learn. Fits that stop early (relative-reduction test, iteration
// limit: large C, separable features) depend on their starting point, in
// scikit-learn as here, and so can their validation accuracy.
//
// # Features
//
// CoOp's lpclip fits raw (not normalized) CLIP image features. The task
// this toolkit follows asks for L2-normalized features, so Normalize is
// true in DefaultOptions; set it to false to reproduce lpclip exactly.
// Logits always takes raw features and normalizes them itself when
// Normalize is set.
package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// Options configures a Probe. New replaces zero MaxIter, Tol, Cs and
// SearchSteps with their defaults; Normalize is used as given, so start
// from DefaultOptions.
type Options struct {
	// Normalize L2-normalizes every feature row before fitting and in
	// Logits. CoOp's lpclip uses raw features (false).
	Normalize bool `toml:"normalize"`
	// MaxIter is the L-BFGS iteration limit per fit (default 1000).
	MaxIter int `toml:"max_iter"`
	// Tol is the tolerance on max |gradient| of Σ CE + ‖W‖²/(2C)
	// (scikit-learn's tol, default 1e-4).
	Tol float64 `toml:"tol"`
	// Cs is the coarse grid, in the order whose first best accuracy wins
	// (default 1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6).
	Cs []float64 `toml:"cs"`
	// SearchSteps is the number of refinement rounds (default 8); a
	// negative value skips refinement and keeps the coarse peak.
	SearchSteps int `toml:"search_steps"`
	// C, when positive, is used as is and no search is run (validation
	// features are then optional).
	C float64 `toml:"c"`
	// ColdStart starts every fit from zero instead of from the nearest
	// solution found so far.
	ColdStart bool `toml:"-"`
}

// DefaultGrid is CoOp's coarse grid of C values, in its order.
var DefaultGrid = []float64{1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6}

// DefaultOptions returns the defaults: L2-normalized features and CoOp's
// search (grid, 8 refinement rounds, 1000 iterations, tol 1e-4).
func DefaultOptions() Options {
	return Options{
		Normalize:   true,
		MaxIter:     1000,
		Tol:         1e-4,
		Cs:          append([]float64(nil), DefaultGrid...),
		SearchSteps: 8,
	}
}

// Trial is one entry of the search log: a fit at one C and its validation
// accuracy.
type Trial struct {
	// Round is 0 for the coarse grid, 1..SearchSteps for refinement and
	// -1 for a fixed C.
	Round int
	// C is the inverse L2 strength.
	C float64
	// ValAcc is the validation accuracy in [0, 1] (NaN without validation
	// features).
	ValAcc float64
	// Chosen marks the coarse peak (round 0) and the C kept in each
	// refinement round.
	Chosen bool
	// Reused is true when this C had been fitted before and its
	// classifier was reused.
	Reused bool
	// WarmStart is the C whose solution started this fit (0: from zero).
	WarmStart float64
	// Iterations and Evaluations count the L-BFGS work of this fit.
	Iterations, Evaluations int
	// Converged reports whether a tolerance was met (rather than a limit).
	Converged bool
	// Stop says why L-BFGS stopped.
	Stop string
	// Objective is ½‖W‖² + C·Σ CE at the solution.
	Objective float64
	// GradMax is max |gradient| of Σ CE + ‖W‖²/(2C) at the solution.
	GradMax float64
}

// Probe is the linear-probe classifier. It implements train.Method,
// train.Fitter and train.Saver.
type Probe struct {
	opts      Options
	solver    lbfgsConfig
	device    gotch.Device
	hasDevice bool
	classes   int64
	log       *slog.Logger

	w      *ts.Tensor // [D, K] float64, transposed weights
	b      *ts.Tensor // [K] float64 intercepts
	c      float64
	valAcc float64
	trials []Trial
}

var (
	_ train.Method = (*Probe)(nil)
	_ train.Fitter = (*Probe)(nil)
	_ train.Saver  = (*Probe)(nil)
)

// New returns a probe with options o (zero numeric fields take their
// defaults, see Options).
func New(o Options) *Probe {
	d := DefaultOptions()
	if o.MaxIter <= 0 {
		o.MaxIter = d.MaxIter
	}
	if !(o.Tol > 0) {
		o.Tol = d.Tol
	}
	if len(o.Cs) == 0 {
		o.Cs = d.Cs
	} else {
		o.Cs = append([]float64(nil), o.Cs...)
	}
	if o.SearchSteps == 0 {
		o.SearchSteps = d.SearchSteps
	}
	solver := defaultLBFGS()
	solver.maxIter, solver.gtol = o.MaxIter, o.Tol
	return &Probe{opts: o, solver: solver, log: slog.New(slog.DiscardHandler), valAcc: math.NaN()}
}

// Options returns the probe's options after defaults.
func (p *Probe) Options() Options { return p.opts }

// Init implements train.Method. It records the device, the number of
// classes and the logger; the probe has nothing to build before Fit.
func (p *Probe) Init(ctx *train.Context, views []*train.Features) error {
	if ctx == nil {
		return errors.New("probe: nil context")
	}
	p.device, p.hasDevice = ctx.Device, true
	p.classes = int64(len(ctx.ClassNames))
	if ctx.Log != nil {
		p.log = ctx.Log
	}
	return nil
}

// Parameters implements train.Method: the loop does not train the probe.
func (p *Probe) Parameters() []train.Param { return nil }

// Chosen returns the C of the fitted classifier and its validation
// accuracy (NaN when it was fitted without validation features).
func (p *Probe) Chosen() (c, valAcc float64) { return p.c, p.valAcc }

// SearchLog returns the fits of the last Fit in the order they were made
// (the coarse grid in increasing C, then the refinement rounds, left then
// right).
func (p *Probe) SearchLog() []Trial { return append([]Trial(nil), p.trials...) }

// Extra implements train.Saver: the chosen C and its validation accuracy
// (left out when there is none: JSON has no NaN).
func (p *Probe) Extra() map[string]float64 {
	m := map[string]float64{"C": p.c}
	if !math.IsNaN(p.valAcc) {
		m["val_acc"] = p.valAcc
	}
	return m
}

// SetExtra implements train.Saver. It restores the chosen C, which then
// becomes the fixed C of the next Fit (no search is run again). The
// classifier itself is not part of the saved state; Fit refits it.
func (p *Probe) SetExtra(m map[string]float64) error {
	c, ok := m["C"]
	if !ok {
		return errors.New("probe: saved state lacks C")
	}
	if !(c > 0) || math.IsInf(c, 0) {
		return fmt.Errorf("probe: saved C = %v is not a positive finite number", c)
	}
	p.c, p.opts.C = c, c
	p.valAcc = math.NaN()
	if a, ok := m["val_acc"]; ok {
		p.valAcc = a
	}
	return nil
}

// Drop implements train.Method.
func (p *Probe) Drop() {
	drop(p.w, p.b)
	p.w, p.b = nil, nil
}

// Logits implements train.Method: x·Wᵀ + b for raw features [B, D]
// (normalized first when Options.Normalize is set), in the features'
// dtype.
func (p *Probe) Logits(features *ts.Tensor, training bool) (*ts.Tensor, error) {
	if p.w == nil {
		return nil, errors.New("probe: Logits called before Fit")
	}
	_, dim, err := shape2(features, "probe logits: features")
	if err != nil {
		return nil, err
	}
	wd, _, err := shape2(p.w, "probe weights")
	if err != nil {
		return nil, err
	}
	if dim != wd {
		return nil, fmt.Errorf("probe logits: features have %d dimensions, the classifier %d", dim, wd)
	}
	dev, err := p.w.Device()
	if err != nil {
		return nil, torch.Err("probe logits: device", err)
	}
	x, err := toDouble(features, dev, p.opts.Normalize)
	if err != nil {
		return nil, fmt.Errorf("probe logits: %w", err)
	}
	z, err := p.b.Addmm(x, p.w, false)
	drop(x)
	if err != nil {
		return nil, torch.Err("probe logits", err)
	}
	out, err := z.Totype(features.DType(), true)
	return out, torch.Err("probe logits", err)
}

// Fit implements train.Fitter: it checks the features, runs the C search
// (or fits the fixed C) and keeps the final classifier. val may be nil
// only when Options.C is set. Every class in [0, K) must have a training
// example (K from Init's class names, else the largest label + 1), and the
// features must be finite. On error the probe keeps its previous state.
// Fit stops with an error wrapping train.ErrInterrupted at the next
// L-BFGS evaluation once ctx is cancelled.
func (p *Probe) Fit(ctx context.Context, trn, val *train.Features) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return torch.NoGrad(func() error { return p.fit(ctx, trn, val) })
}

func (p *Probe) fit(ctx context.Context, trn, val *train.Features) error {
	if trn == nil || trn.X == nil {
		return errors.New("probe: no training features")
	}
	device := p.device
	if !p.hasDevice {
		d, err := trn.X.Device()
		if err != nil {
			return torch.Err("probe: training features", err)
		}
		device = d
	}
	classes := p.classes
	if classes <= 0 {
		for _, y := range trn.Y {
			classes = max(classes, y+1)
		}
	}
	dim, err := checkFeatures(trn, "training", classes, -1)
	if err != nil {
		return err
	}
	if err := checkAllClasses(trn.Y, classes); err != nil {
		return err
	}
	doSearch := !(p.opts.C > 0)
	hasVal := val != nil && val.Len() > 0
	if doSearch && !hasVal {
		return errors.New("probe: the C search needs validation features (or set Options.C)")
	}
	if hasVal {
		if _, err := checkFeatures(val, "validation", classes, dim); err != nil {
			return err
		}
	}

	xt, err := augmented(trn.X, device, p.opts.Normalize)
	if err != nil {
		return fmt.Errorf("probe: training features: %w", err)
	}
	pb, err := newProblem(xt, trn.Y, classes, device)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer pb.drop()
	s := &search{ctx: ctx, pb: pb, cfg: p.solver, cold: p.opts.ColdStart, log: p.log}
	defer s.drop()
	if hasVal {
		if s.xv, err = augmented(val.X, device, p.opts.Normalize); err != nil {
			return fmt.Errorf("probe: validation features: %w", err)
		}
		s.yv = val.Y
	}

	var final *fitted
	if doSearch {
		final, err = s.run(p.opts.Cs, p.opts.SearchSteps)
	} else {
		final, err = s.get(p.opts.C, -1)
		if err == nil {
			s.trials[len(s.trials)-1].Chosen = true
		}
	}
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	w, b, err := split(final.theta)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	p.Drop()
	p.w, p.b = w, b
	p.c, p.valAcc, p.trials = final.c, final.acc, s.trials
	p.log.Info("linear probe fitted", "C", p.c, "val_acc", p.valAcc, "fits", len(s.fits))
	return nil
}

// fitted is one solved C.
type fitted struct {
	c       float64
	theta   *ts.Tensor
	correct int
	acc     float64
	trial   Trial
}

// search runs fits on one problem and remembers them.
type search struct {
	ctx    context.Context
	pb     *problem
	xv     *ts.Tensor // validation features [M, D+1], nil without
	yv     []int64
	cfg    lbfgsConfig
	cold   bool
	log    *slog.Logger
	fits   []*fitted
	trials []Trial
}

func (s *search) drop() {
	for _, f := range s.fits {
		drop(f.theta)
	}
	drop(s.xv)
}

// sameC reports whether two C values are equal up to rounding in
// CoOp's 10^log10 round trips.
func sameC(a, b float64) bool { return math.Abs(math.Log10(a)-math.Log10(b)) <= 1e-9 }

// get returns the classifier for c, fitting it unless it was fitted
// before, and logs a trial for round.
func (s *search) get(c float64, round int) (*fitted, error) {
	for _, f := range s.fits {
		if sameC(f.c, c) {
			t := f.trial
			t.Round, t.Reused, t.Chosen = round, true, false
			s.trials = append(s.trials, t)
			return f, nil
		}
	}
	var init *ts.Tensor
	var from float64
	if !s.cold {
		best := math.Inf(1)
		for _, f := range s.fits {
			if d := math.Abs(math.Log10(f.c) - math.Log10(c)); d < best || (d == best && f.c < from) {
				best, init, from = d, f.theta, f.c
			}
		}
	}
	theta, res, err := s.pb.fit(s.ctx, c, init, s.cfg)
	if err != nil {
		return nil, err
	}
	f := &fitted{c: c, theta: theta, acc: math.NaN()}
	s.fits = append(s.fits, f)
	if s.xv != nil {
		if f.correct, err = countCorrect(s.xv, theta, s.yv); err != nil {
			return nil, fmt.Errorf("validation accuracy at C=%g: %w", c, err)
		}
		f.acc = float64(f.correct) / float64(len(s.yv))
	}
	f.trial = Trial{
		Round: round, C: c, ValAcc: f.acc, WarmStart: from,
		Iterations: res.iterations, Evaluations: res.evaluations,
		Converged: res.stop.converged(), Stop: string(res.stop),
		Objective: c * res.f, GradMax: res.gradMax,
	}
	s.trials = append(s.trials, f.trial)
	s.log.Debug("linear probe fit", "round", round, "C", c, "val_acc", f.acc,
		"iterations", res.iterations, "stop", string(res.stop), "warm_start", from)
	if !res.stop.converged() {
		s.log.Warn("linear probe fit did not converge", "C", c, "stop", string(res.stop),
			"iterations", res.iterations, "grad_max", res.gradMax)
	}
	return f, nil
}

// run is CoOp's search: coarse grid, then steps refinement rounds.
func (s *search) run(grid []float64, steps int) (*fitted, error) {
	for _, c := range grid {
		if !(c > 0) || math.IsInf(c, 0) {
			return nil, fmt.Errorf("grid value C = %v: want a positive finite number", c)
		}
	}
	// Fit in increasing C (warm starts from the more regularized side),
	// then pick the peak in grid order.
	order := append([]float64(nil), grid...)
	slices.Sort(order)
	for _, c := range order {
		if _, err := s.get(c, 0); err != nil {
			return nil, err
		}
	}
	var peak *fitted
	for _, c := range grid {
		f, err := s.lookup(c)
		if err != nil {
			return nil, err
		}
		if peak == nil || f.correct > peak.correct {
			peak = f
		}
	}
	for i := range s.trials {
		if sameC(s.trials[i].C, peak.c) {
			s.trials[i].Chosen = true
		}
	}
	if steps < 0 {
		return peak, nil
	}
	cl, cr := 0.1*peak.c, 10*peak.c
	var chosen *fitted
	for round := 1; round <= steps; round++ {
		left, err := s.get(cl, round)
		if err != nil {
			return nil, err
		}
		right, err := s.get(cr, round)
		if err != nil {
			return nil, err
		}
		mid := 0.5 * (math.Log10(cl) + math.Log10(cr))
		if left.correct < right.correct {
			chosen = right
			s.trials[len(s.trials)-1].Chosen = true
			cl, cr = math.Pow(10, mid), math.Pow(10, math.Log10(cr))
		} else {
			chosen = left
			s.trials[len(s.trials)-2].Chosen = true
			cl, cr = math.Pow(10, math.Log10(cl)), math.Pow(10, mid)
		}
	}
	return chosen, nil
}

func (s *search) lookup(c float64) (*fitted, error) {
	for _, f := range s.fits {
		if sameC(f.c, c) {
			return f, nil
		}
	}
	return nil, fmt.Errorf("C=%g was not fitted", c)
}

// Build is the linear probe's constructor for the method registry: it
// fits on test-transform features of the train set.
func Build(o Options) (train.Method, train.Needs, error) {
	return New(o), train.Needs{TrainFeatures: true}, nil
}

var _ train.Restorer = (*Probe)(nil)

// Frozen implements train.Restorer: the fitted classifier, "weight" (the
// transposed weights, [D, K] float64) and "bias" ([K] float64); none
// before Fit.
func (p *Probe) Frozen() []train.Param {
	if p.w == nil {
		return nil
	}
	return []train.Param{{Name: "weight", Tensor: p.w}, {Name: "bias", Tensor: p.b}}
}

// Restore implements train.Restorer: Init, then the fitted classifier is
// taken from frozen ("weight" [D, K], "bias" [K], K the context's classes)
// instead of running Fit. The chosen C comes back with SetExtra.
func (p *Probe) Restore(ctx *train.Context, frozen map[string]*ts.Tensor) error {
	if err := p.Init(ctx, nil); err != nil {
		return err
	}
	w, b := frozen["weight"], frozen["bias"]
	if w == nil || b == nil {
		return errors.New("probe: the saved state lacks weight or bias")
	}
	d, k, err := shape2(w, "probe: saved weight")
	if err != nil {
		return err
	}
	if k != p.classes || (ctx.FeatureDim != 0 && d != ctx.FeatureDim) {
		return fmt.Errorf("probe: saved weight has shape [%d %d], want [%d %d] (feature dimension, classes)", d, k, ctx.FeatureDim, p.classes)
	}
	bs, err := b.Size()
	if err != nil {
		return torch.Err("probe: saved bias", err)
	}
	if len(bs) != 1 || bs[0] != k {
		return fmt.Errorf("probe: saved bias has shape %v, want [%d]", bs, k)
	}
	wd, err := w.ToDevice(p.device, gotch.Double, false, true, false)
	if err != nil {
		return torch.Err("probe: restore weight", err)
	}
	bd, err := b.ToDevice(p.device, gotch.Double, false, true, false)
	if err != nil {
		drop(wd)
		return torch.Err("probe: restore bias", err)
	}
	drop(p.w, p.b)
	p.w, p.b = wd, bd
	return nil
}
