package probe

import (
	"errors"
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/optimize"

	"github.com/clipadapter/clipgo/internal/torch"
)

// objective evaluates a smooth function and its gradient at x. The caller
// owns (and drops) the returned gradient, which has the shape of x.
type objective func(x *ts.Tensor) (f float64, grad *ts.Tensor, err error)

// lbfgsConfig holds the stopping rules and sizes of the L-BFGS minimizer.
// The defaults (see defaultLBFGS) are those of scipy's L-BFGS-B as
// scikit-learn calls it.
type lbfgsConfig struct {
	maxIter   int     // iterations (sklearn: max_iter)
	maxEval   int     // objective evaluations (scipy: maxfun 15000)
	gtol      float64 // converged when max|grad| <= gtol (scipy: pgtol = sklearn tol)
	ftol      float64 // converged when (f_k-f_k+1)/max(|f_k|,|f_k+1|,1) <= ftol (scipy: factr*eps); negative: never
	memory    int     // correction pairs kept (scipy: maxcor 10)
	maxSearch int     // evaluations per line search (scipy: maxls 20)
}

func defaultLBFGS() lbfgsConfig {
	return lbfgsConfig{
		maxIter:   1000,
		maxEval:   15000,
		gtol:      1e-4,
		ftol:      1e7 * 2.220446049250313e-16,
		memory:    10,
		maxSearch: 20,
	}
}

// stopReason says why the minimizer stopped.
type stopReason string

const (
	stopGradient   stopReason = "gradient below tolerance"
	stopReduction  stopReason = "relative reduction below tolerance"
	stopMaxIter    stopReason = "iteration limit"
	stopMaxEval    stopReason = "evaluation limit"
	stopLineSearch stopReason = "line search found no decrease"
)

// converged reports whether the stop was one of the convergence tests.
func (r stopReason) converged() bool { return r == stopGradient || r == stopReduction }

// lbfgsResult describes a finished minimization.
type lbfgsResult struct {
	f           float64 // objective at the solution
	gradMax     float64 // max |grad| at the solution
	iterations  int
	evaluations int
	stop        stopReason
}

// Line search constants: sufficient decrease c1 and curvature c2 of the
// strong Wolfe conditions, the usual choice for quasi-Newton methods
// (Nocedal & Wright, ch. 3).
const (
	wolfeC1 = 1e-4
	wolfeC2 = 0.9
)

// Approximate Wolfe conditions (Hager & Zhang, 2005): near the minimum the
// change in f drowns in rounding while the slope is still informative, so a
// step is also accepted when f(t) <= f(0) + approxEps*|f(0)| and
// c2*phi'(0) <= phi'(t) <= (2*approxDelta - 1)*phi'(0). approxEps is a few
// thousand ulps: far below the default relative-reduction test (2.2e-9), so
// this only lets tightly configured fits reach a smaller gradient. gonum's
// line searches test sufficient decrease on f alone and stop a few times
// above a gradient of 1e-9 on the probe's tests.
const (
	approxEps   = 1e-12
	approxDelta = 0.1
)

// minimize runs gonum's L-BFGS (optimize.LBFGS with a Moré–Thuente line
// search) from x0 (not modified) and returns the final point, which the
// caller owns. The parameters travel between the device and the host as
// float64 at every evaluation; the objective itself runs where x0 lives.
//
// Stopping follows cfg: the gradient test (max |grad| < gtol), scipy's
// relative-reduction test (see reductionTest), the iteration and
// evaluation limits, and at most maxSearch evaluations per line search.
// When a line search fails after some iterations, the curvature pairs are
// forgotten and the minimization restarts along the gradient from the best
// point (a fresh gonum run); a failure on the first step of a run ends the
// fit with stopLineSearch.
//
// minimize fails only on tensor errors or a non-finite objective at x0;
// not converging is reported in the result.
func minimize(fn objective, x0 *ts.Tensor, cfg lbfgsConfig) (*ts.Tensor, lbfgsResult, error) {
	var res lbfgsResult
	shape, err := x0.Size()
	if err != nil {
		return nil, res, torch.Err("lbfgs: start", err)
	}
	dev, err := x0.Device()
	if err != nil {
		return nil, res, torch.Err("lbfgs: start", err)
	}
	x, err := torch.Values[float64](x0)
	if err != nil {
		return nil, res, fmt.Errorf("lbfgs: start: %w", err)
	}
	if len(x) == 0 {
		return nil, res, errors.New("lbfgs: no parameters")
	}
	ev := &evaluator{fn: fn, shape: shape, device: dev}
	f, g := ev.value(x)
	if ev.err != nil {
		return nil, res, ev.err
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, res, fmt.Errorf("objective is %v at the starting point", f)
	}
	g = append([]float64(nil), g...)
	for {
		run, err := optimize.Minimize(
			optimize.Problem{Func: ev.fun, Grad: ev.grad, Status: ev.status},
			x,
			&optimize.Settings{
				InitValues:        &optimize.Location{F: f, Gradient: g},
				GradientThreshold: cfg.gtol,
				Converger:         &reductionTest{ftol: cfg.ftol},
				// gonum counts the starting point as a major iteration.
				MajorIterations: cfg.maxIter - res.iterations + 1,
				FuncEvaluations: max(1, cfg.maxEval-ev.count),
			},
			&optimize.LBFGS{
				Store:             cfg.memory,
				GradStopThreshold: math.NaN(), // Settings.GradientThreshold decides
				Linesearcher:      &cappedSearch{max: cfg.maxSearch},
			},
		)
		if ev.err != nil {
			return nil, res, ev.err
		}
		if run == nil {
			return nil, res, fmt.Errorf("lbfgs: %w", err)
		}
		iters := max(0, run.MajorIterations-1)
		res.iterations += iters
		x, f, g = run.X, run.F, run.Gradient
		var stop stopReason
		switch run.Status {
		case optimize.GradientThreshold:
			stop = stopGradient
		case optimize.FunctionConvergence:
			stop = stopReduction
		case optimize.IterationLimit:
			stop = stopMaxIter
		case optimize.FunctionEvaluationLimit:
			stop = stopMaxEval
		default:
			if err == nil {
				return nil, res, fmt.Errorf("lbfgs: unexpected stop %v", run.Status)
			}
			// A failed line search (no decrease, no progress in float64,
			// not a descent direction): retry along the gradient, unless
			// this run never got past its first step.
			if iters > 0 && res.iterations < cfg.maxIter && ev.count < cfg.maxEval {
				continue
			}
			stop = stopLineSearch
			if res.iterations >= cfg.maxIter {
				stop = stopMaxIter
			} else if ev.count >= cfg.maxEval {
				stop = stopMaxEval
			}
		}
		res.f, res.gradMax, res.stop, res.evaluations = f, floats.Norm(g, math.Inf(1)), stop, ev.count
		out, err := ev.tensor(x)
		if err != nil {
			return nil, res, err
		}
		return out, res, nil
	}
}

// evaluator adapts a tensor objective to gonum's Func and Grad, which
// gonum calls separately at the same point: the last point's value and
// gradient are kept so that each point costs one evaluation.
type evaluator struct {
	fn     objective
	shape  []int64
	device gotch.Device
	count  int   // evaluations of fn
	err    error // first tensor error; evaluations stop after it

	x, g []float64
	f    float64
}

// value returns f and the gradient at x, evaluating fn unless x is the
// last point. A non-finite f reads as +Inf (a step too long). After an
// error it returns +Inf without evaluating.
func (e *evaluator) value(x []float64) (float64, []float64) {
	if e.err != nil {
		return math.Inf(1), e.g
	}
	if e.x != nil && floats.Equal(x, e.x) {
		return e.f, e.g
	}
	f, g, err := e.eval(x)
	e.count++
	if err != nil {
		e.err = err
		return math.Inf(1), e.g
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		f = math.Inf(1)
	}
	e.x = append(e.x[:0], x...)
	e.f, e.g = f, g
	return f, g
}

// eval runs fn at x on the device. gonum evaluates on its own goroutine,
// so gradient tracking is turned off there (torch.NoGrad locks the thread).
func (e *evaluator) eval(x []float64) (f float64, g []float64, err error) {
	err = torch.NoGrad(func() error {
		xt, err := e.tensor(x)
		if err != nil {
			return err
		}
		defer drop(xt)
		var gt *ts.Tensor
		f, gt, err = e.fn(xt)
		if err != nil {
			return err
		}
		defer drop(gt)
		g, err = torch.Values[float64](gt)
		if err != nil {
			return fmt.Errorf("lbfgs: gradient: %w", err)
		}
		if len(g) != len(x) {
			return fmt.Errorf("lbfgs: gradient has %d values for %d parameters", len(g), len(x))
		}
		return nil
	})
	return f, g, err
}

// tensor copies x to a float64 tensor of the parameters' shape and device.
func (e *evaluator) tensor(x []float64) (*ts.Tensor, error) {
	t, err := ts.OfSlice(x)
	if err == nil {
		t, err = t.ToDevice(e.device, gotch.Double, false, false, true)
	}
	if err == nil {
		t, err = t.View(e.shape, true)
	}
	return t, torch.Err("lbfgs: parameters", err)
}

func (e *evaluator) fun(x []float64) float64 {
	f, _ := e.value(x)
	return f
}

func (e *evaluator) grad(dst, x []float64) {
	_, g := e.value(x)
	if len(g) == len(dst) {
		copy(dst, g)
		return
	}
	for i := range dst {
		dst[i] = math.NaN()
	}
}

// status stops gonum after a tensor error.
func (e *evaluator) status() (optimize.Status, error) {
	if e.err != nil {
		return optimize.Failure, e.err
	}
	return optimize.NotTerminated, nil
}

// reductionTest is scipy's L-BFGS-B relative-reduction test as a gonum
// Converger: converged when (f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <=
// ftol between consecutive iterations. A negative ftol disables it.
type reductionTest struct {
	ftol  float64
	prev  float64
	first bool
}

// Init implements optimize.Converger.
func (r *reductionTest) Init(int) { r.first = true }

// Converged implements optimize.Converger.
func (r *reductionTest) Converged(loc *optimize.Location) optimize.Status {
	f := loc.F
	if r.first || r.ftol < 0 {
		r.prev, r.first = f, false
		return optimize.NotTerminated
	}
	prev := r.prev
	r.prev = f
	if prev-f <= r.ftol*max(math.Abs(prev), math.Abs(f), 1) {
		return optimize.FunctionConvergence
	}
	return optimize.NotTerminated
}

// cappedSearch is gonum's Moré–Thuente line search for the strong Wolfe
// conditions (c1 = 1e-4, c2 = 0.9) with at most max evaluations per
// search (scipy's maxls), which also accepts a step that meets the
// approximate Wolfe conditions (see approxEps). When the budget runs out,
// the last step is accepted if it decreased f sufficiently; otherwise the
// search fails. A
// non-finite f (the evaluator's +Inf) restarts the search at a tenth of
// the step, which Moré–Thuente's interpolation cannot handle.
type cappedSearch struct {
	max int

	mt           optimize.MoreThuente
	f0, g0, step float64
	evals        int
}

// Init implements optimize.Linesearcher.
func (c *cappedSearch) Init(f, g, step float64) optimize.Operation {
	c.f0, c.g0, c.step, c.evals = f, g, step, 0
	return c.restart(step)
}

func (c *cappedSearch) restart(step float64) optimize.Operation {
	if !(step > 0) || math.IsInf(step, 1) {
		step = 1 // Moré–Thuente needs a positive finite first step
	}
	c.mt = optimize.MoreThuente{DecreaseFactor: wolfeC1, CurvatureFactor: wolfeC2}
	c.step = step
	return c.mt.Init(c.f0, c.g0, step)
}

// Iterate implements optimize.Linesearcher.
func (c *cappedSearch) Iterate(f, g float64) (optimize.Operation, float64, error) {
	c.evals++
	if math.IsInf(f, 1) || math.IsNaN(f) {
		if c.evals >= c.max {
			return optimize.NoOperation, c.step, optimize.ErrLinesearcherFailure
		}
		op := c.restart(c.step / 10)
		return op, c.step, nil
	}
	if !optimize.ArmijoConditionMet(f, c.f0, c.g0, c.step, wolfeC1) &&
		f <= c.f0+approxEps*math.Abs(c.f0) && g >= wolfeC2*c.g0 && g <= (2*approxDelta-1)*c.g0 {
		return optimize.MajorIteration, c.step, nil
	}
	op, step, err := c.mt.Iterate(f, g)
	if err != nil || op == optimize.MajorIteration {
		return op, step, err
	}
	if c.evals >= c.max {
		if optimize.ArmijoConditionMet(f, c.f0, c.g0, c.step, wolfeC1) {
			return optimize.MajorIteration, c.step, nil
		}
		return optimize.NoOperation, c.step, optimize.ErrLinesearcherFailure
	}
	c.step = step
	return op, step, nil
}
