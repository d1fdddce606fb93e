package probe

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch/ts"

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
	ftol      float64 // converged when (f_k-f_k+1)/max(|f_k|,|f_k+1|,1) <= ftol (scipy: factr*eps)
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

// Strong Wolfe constants: sufficient decrease c1 and curvature c2, the usual
// choice for quasi-Newton methods (Nocedal & Wright, ch. 3).
const (
	wolfeC1 = 1e-4
	wolfeC2 = 0.9
)

// Approximate Wolfe conditions (Hager & Zhang, 2005): near the minimum the
// change in f drowns in rounding while the slope is still informative, so a
// step is also accepted when f(t) <= f(0) + approxEps*|f(0)| and
// c2*phi'(0) <= phi'(t) <= (2*approxDelta - 1)*phi'(0). approxEps is a few
// thousand ulps: far below the default relative-reduction test (2.2e-9), so
// this only lets tightly configured fits reach a smaller gradient.
const (
	approxEps   = 1e-12
	approxDelta = 0.1
)

// point is an evaluated point on the search line x + t*d.
type point struct {
	t    float64
	f    float64
	dphi float64    // directional derivative <grad, d>
	x    *ts.Tensor // nil for t = 0 (the caller's point)
	g    *ts.Tensor
}

func (p *point) drop() {
	drop(p.x, p.g)
	p.x, p.g = nil, nil
}

// minimize runs L-BFGS from x0 (not modified) and returns the final point,
// which the caller owns. It fails only on tensor errors or a non-finite
// objective at x0; not converging is reported in the result.
func minimize(fn objective, x0 *ts.Tensor, cfg lbfgsConfig) (*ts.Tensor, lbfgsResult, error) {
	var res lbfgsResult
	x, err := clone(x0)
	if err != nil {
		return nil, res, err
	}
	f, g, err := fn(x)
	if err != nil {
		drop(x)
		return nil, res, err
	}
	res.evaluations = 1
	if math.IsNaN(f) || math.IsInf(f, 0) {
		drop(x, g)
		return nil, res, fmt.Errorf("objective is %v at the starting point", f)
	}
	hist := &history{memory: cfg.memory}
	defer hist.drop()
	// fail drops the current point on a tensor error.
	fail := func(err error) (*ts.Tensor, lbfgsResult, error) {
		drop(x, g)
		return nil, res, err
	}
	finish := func(stop stopReason) (*ts.Tensor, lbfgsResult, error) {
		gmax, err := maxAbs(g)
		if err != nil {
			return fail(err)
		}
		drop(g)
		res.f, res.gradMax, res.stop = f, gmax, stop
		return x, res, nil
	}
	gmax, err := maxAbs(g)
	if err != nil {
		return fail(err)
	}
	if gmax <= cfg.gtol {
		return finish(stopGradient)
	}
	for res.iterations < cfg.maxIter {
		if res.evaluations >= cfg.maxEval {
			return finish(stopMaxEval)
		}
		d, err := hist.direction(g)
		if err != nil {
			return fail(err)
		}
		dphi0, err := dot(g, d)
		if err != nil {
			drop(d)
			return fail(err)
		}
		if !(dphi0 < 0) && hist.len() > 0 {
			// Not a descent direction (rounding): restart from steepest descent.
			hist.reset()
			drop(d)
			if d, err = hist.direction(g); err != nil {
				return fail(err)
			}
			if dphi0, err = dot(g, d); err != nil {
				drop(d)
				return fail(err)
			}
		}
		if !(dphi0 < 0) {
			drop(d)
			return finish(stopLineSearch)
		}
		// Without curvature pairs (first iteration, restarts) the first trial
		// step has unit length, as in L-BFGS-B; otherwise t = 1.
		t0 := 1.0
		if hist.len() == 0 {
			t0 = 1 / math.Sqrt(-dphi0) // d = -g
		}
		budget := min(cfg.maxSearch, cfg.maxEval-res.evaluations)
		p, evals, err := lineSearch(fn, x, f, dphi0, d, t0, budget)
		res.evaluations += evals
		if err != nil {
			drop(d)
			return fail(err)
		}
		if p.x == nil {
			drop(d)
			if hist.len() > 0 {
				// Forget the curvature pairs and retry along -g, as L-BFGS-B does.
				hist.reset()
				continue
			}
			return finish(stopLineSearch)
		}
		res.iterations++
		// s = t*d, y = g_new - g.
		s, err := d.MulScalar(ts.FloatScalar(p.t), true)
		if err != nil {
			p.drop()
			return fail(torch.Err("lbfgs: step", err))
		}
		y, err := p.g.Sub(g, false)
		if err != nil {
			drop(s)
			p.drop()
			return fail(torch.Err("lbfgs: gradient change", err))
		}
		fOld := f
		drop(x, g)
		x, g, f = p.x, p.g, p.f
		if gmax, err = maxAbs(g); err != nil {
			drop(s, y)
			return fail(err)
		}
		if gmax <= cfg.gtol {
			drop(s, y)
			return finish(stopGradient)
		}
		if fOld-f <= cfg.ftol*max(math.Abs(fOld), math.Abs(f), 1) {
			drop(s, y)
			return finish(stopReduction)
		}
		if err := hist.add(s, y); err != nil {
			return fail(err)
		}
	}
	return finish(stopMaxIter)
}

// history holds the L-BFGS correction pairs s_i = x_{i+1} - x_i,
// y_i = g_{i+1} - g_i (oldest first) as the rows of one [2m, P] tensor
// (s rows, then y rows), with their inner products kept on the host, so
// that a direction costs two matrix products (the compact representation
// of Byrd, Nocedal and Schnabel, 1994) instead of 4m vector operations.
type history struct {
	memory int
	shape  []int64      // shape of x
	s, y   []*ts.Tensor // [1, P] rows, oldest first
	stack  *ts.Tensor   // [2k, P]: s rows then y rows; nil when k = 0
	sy, yy [][]float64  // sy[i][j] = s_i'y_j, yy[i][j] = y_i'y_j
}

func (h *history) len() int { return len(h.s) }

func (h *history) reset() {
	drop(h.s...)
	drop(h.y...)
	drop(h.stack)
	h.s, h.y, h.stack, h.sy, h.yy = nil, nil, nil, nil, nil
}

func (h *history) drop() { h.reset() }

// add takes ownership of s and y and stores them as the newest pair,
// forgetting the oldest beyond memory, unless s'y is not positive (no
// curvature information), in which case the pair is skipped.
func (h *history) add(s, y *ts.Tensor) error {
	shape, err := s.Size()
	if err != nil {
		drop(s, y)
		return torch.Err("lbfgs: history", err)
	}
	sr, err := s.View([]int64{1, -1}, true)
	if err != nil {
		drop(y)
		return torch.Err("lbfgs: history", err)
	}
	yr, err := y.View([]int64{1, -1}, true)
	if err != nil {
		drop(sr)
		return torch.Err("lbfgs: history", err)
	}
	keep := 0
	if len(h.s) >= h.memory {
		keep = len(h.s) - h.memory + 1
	}
	ss := append(append([]*ts.Tensor(nil), h.s[keep:]...), sr)
	ys := append(append([]*ts.Tensor(nil), h.y[keep:]...), yr)
	stack, err := ts.Cat(append(append([]*ts.Tensor(nil), ss...), ys...), 0)
	if err != nil {
		drop(sr, yr)
		return torch.Err("lbfgs: history", err)
	}
	// Inner products of every row with the new s and y: [2k, 2].
	pair, err := ts.Cat([]*ts.Tensor{sr, yr}, 0)
	if err == nil {
		pair, err = pair.T(true)
	}
	var prod *ts.Tensor
	if err == nil {
		prod, err = stack.Mm(pair, false)
		drop(pair)
	}
	var v []float64
	if err == nil {
		v, err = torch.Values[float64](prod)
		drop(prod)
	}
	if err != nil {
		drop(sr, yr, stack)
		return torch.Err("lbfgs: history", err)
	}
	k := len(ss)
	sy, yy := v[2*(k-1)+1], v[2*(2*k-1)+1] // s'y and y'y of the new pair
	if !(sy > 2.220446049250313e-16*yy && yy > 0) {
		drop(sr, yr, stack) // no positive curvature: skip the update
		return nil
	}
	drop(h.s[:keep]...)
	drop(h.y[:keep]...)
	drop(h.stack)
	h.shape, h.s, h.y, h.stack = shape, ss, ys, stack
	grow := func(m [][]float64) [][]float64 {
		out := make([][]float64, k)
		for i := range out {
			out[i] = make([]float64, k)
			if i < k-1 {
				copy(out[i], m[i+keep][keep:])
			}
		}
		return out
	}
	h.sy, h.yy = grow(h.sy), grow(h.yy)
	for i := 0; i < k; i++ {
		// Row i of prod: [s_i's, s_i'y]; row k+i: [y_i's, y_i'y].
		h.sy[i][k-1] = v[2*i+1]   // s_i'y_new
		h.sy[k-1][i] = v[2*(k+i)] // s_new'y_i = y_i's_new
		h.yy[i][k-1] = v[2*(k+i)+1]
		h.yy[k-1][i] = v[2*(k+i)+1]
	}
	return nil
}

// direction returns -H*g for the L-BFGS inverse Hessian approximation H
// with initial matrix gamma*I, gamma = s'y/y'y of the newest pair. In the
// compact form, with S and Y the pair matrices, R the upper triangle of
// S'Y and D its diagonal:
//
//	H g = gamma g + S R^-T ((D + gamma Y'Y) R^-1 S'g - gamma Y'g) - gamma Y R^-1 S'g.
//
// Without pairs it is -g.
func (h *history) direction(g *ts.Tensor) (*ts.Tensor, error) {
	k := len(h.s)
	if k == 0 {
		d, err := g.MulScalar(ts.FloatScalar(-1), false)
		return d, torch.Err("lbfgs: direction", err)
	}
	gc, err := g.View([]int64{-1, 1}, false)
	if err != nil {
		return nil, torch.Err("lbfgs: direction", err)
	}
	prod, err := h.stack.Mm(gc, false) // [S'g; Y'g]
	drop(gc)
	if err != nil {
		return nil, torch.Err("lbfgs: direction", err)
	}
	v, err := torch.Values[float64](prod)
	drop(prod)
	if err != nil {
		return nil, fmt.Errorf("lbfgs: direction: %w", err)
	}
	sg, yg := v[:k], v[k:]
	gamma := h.sy[k-1][k-1] / h.yy[k-1][k-1]
	// p = R^-1 S'g (R upper triangular: back substitution).
	p := make([]float64, k)
	for i := k - 1; i >= 0; i-- {
		sum := sg[i]
		for j := i + 1; j < k; j++ {
			sum -= h.sy[i][j] * p[j]
		}
		p[i] = sum / h.sy[i][i]
	}
	// w = (D + gamma Y'Y) p - gamma Y'g.
	w := make([]float64, k)
	for i := range w {
		sum := h.sy[i][i]*p[i] - gamma*yg[i]
		for j := range p {
			sum += gamma * h.yy[i][j] * p[j]
		}
		w[i] = sum
	}
	// q = R^-T w (R^T lower triangular: forward substitution).
	q := make([]float64, k)
	for i := 0; i < k; i++ {
		sum := w[i]
		for j := 0; j < i; j++ {
			sum -= h.sy[j][i] * q[j]
		}
		q[i] = sum / h.sy[i][i]
	}
	// -H g = -gamma g - S q + gamma Y p.
	coef := make([]float64, 2*k)
	for i := range k {
		coef[i], coef[k+i] = -q[i], gamma*p[i]
	}
	dev, err := g.Device()
	if err != nil {
		return nil, torch.Err("lbfgs: direction", err)
	}
	c, err := ts.OfSlice(coef)
	if err == nil {
		c, err = c.ToDevice(dev, g.DType(), false, false, true)
	}
	if err == nil {
		c, err = c.View([]int64{1, 2 * int64(k)}, true)
	}
	var comb *ts.Tensor
	if err == nil {
		comb, err = c.Mm(h.stack, true) // [1, P]
	}
	if err == nil {
		comb, err = comb.View(h.shape, true)
	}
	if err != nil {
		return nil, torch.Err("lbfgs: direction", err)
	}
	if err := axpy(comb, -gamma, g); err != nil {
		drop(comb)
		return nil, err
	}
	return comb, nil
}

// lineSearch looks for a step t > 0 along d from x that satisfies the strong
// Wolfe conditions (Nocedal & Wright, algorithms 3.5 and 3.6, with safeguarded
// cubic interpolation) or the approximate Wolfe conditions. If the evaluation budget runs out first it returns
// the best point with sufficient decrease found so far; if there is none, a
// point with nil x. It returns the number of evaluations used. The returned
// point's x and g belong to the caller.
func lineSearch(fn objective, x *ts.Tensor, f0, dphi0 float64, d *ts.Tensor, t float64, budget int) (point, int, error) {
	evals := 0
	eval := func(t float64) (point, error) {
		xt, err := addScaled(x, t, d)
		if err != nil {
			return point{}, err
		}
		ft, gt, err := fn(xt)
		evals++
		if err != nil {
			drop(xt)
			return point{}, err
		}
		p := point{t: t, f: ft, x: xt, g: gt}
		if math.IsNaN(ft) || math.IsInf(ft, 0) {
			// Treat as a failed (too long) step: no decrease, steep slope.
			p.f, p.dphi = math.Inf(1), math.Inf(1)
			return p, nil
		}
		p.dphi, err = dot(gt, d)
		if err != nil {
			p.drop()
			return point{}, err
		}
		return p, nil
	}
	armijo := func(p point) bool { return p.f <= f0+wolfeC1*p.t*dphi0 }
	curvature := func(p point) bool { return math.Abs(p.dphi) <= -wolfeC2*dphi0 }
	approx := func(p point) bool {
		return p.f <= f0+approxEps*math.Abs(f0) && p.dphi >= wolfeC2*dphi0 && p.dphi <= (2*approxDelta-1)*dphi0
	}

	prev := point{t: 0, f: f0, dphi: dphi0}
	var lo, hi point
	bracketed := false
	for !bracketed {
		if evals >= budget {
			if prev.x != nil {
				return prev, evals, nil // sufficient decrease holds at prev
			}
			return point{}, evals, nil
		}
		cur, err := eval(t)
		if err != nil {
			prev.drop()
			return point{}, evals, err
		}
		switch {
		case !armijo(cur) && approx(cur):
			prev.drop()
			return cur, evals, nil
		case !armijo(cur) || (prev.x != nil && cur.f >= prev.f):
			lo, hi, bracketed = prev, cur, true
		case curvature(cur):
			prev.drop()
			return cur, evals, nil
		case cur.dphi >= 0:
			lo, hi, bracketed = cur, prev, true
		default:
			// Still descending: extrapolate, between 2 and 10 times further.
			next := cubicMin(prev, cur)
			lower, upper := cur.t+2*(cur.t-prev.t), cur.t+10*(cur.t-prev.t)
			if math.IsNaN(next) || next < lower || next > upper {
				next = lower
			}
			prev.drop()
			prev, t = cur, next
		}
	}
	// Zoom: lo has sufficient decrease and the lowest f so far; the minimizer
	// lies between lo.t and hi.t.
	for {
		if evals >= budget || math.Abs(hi.t-lo.t) <= 1e-14*max(lo.t, hi.t) {
			hi.drop()
			if lo.x != nil {
				return lo, evals, nil
			}
			return point{}, evals, nil
		}
		a, b := min(lo.t, hi.t), max(lo.t, hi.t)
		next := cubicMin(lo, hi)
		if math.IsInf(hi.f, 1) || math.IsNaN(next) || next < a+0.1*(b-a) || next > b-0.1*(b-a) {
			next = (a + b) / 2
		}
		cur, err := eval(next)
		if err != nil {
			lo.drop()
			hi.drop()
			return point{}, evals, err
		}
		if !armijo(cur) && approx(cur) {
			lo.drop()
			hi.drop()
			return cur, evals, nil
		}
		if !armijo(cur) || cur.f >= lo.f {
			hi.drop()
			hi = cur
			continue
		}
		if curvature(cur) {
			lo.drop()
			hi.drop()
			return cur, evals, nil
		}
		if cur.dphi*(hi.t-lo.t) >= 0 {
			hi.drop()
			hi = lo
		} else {
			lo.drop()
		}
		lo = cur
	}
}

// cubicMin returns the minimizer of the cubic that interpolates f and its
// slope at a and b, or NaN when that cubic has no minimizer.
func cubicMin(a, b point) float64 {
	if math.IsInf(a.f, 0) || math.IsInf(b.f, 0) || a.t == b.t {
		return math.NaN()
	}
	d1 := a.dphi + b.dphi - 3*(a.f-b.f)/(a.t-b.t)
	disc := d1*d1 - a.dphi*b.dphi
	if disc < 0 {
		return math.NaN()
	}
	d2 := math.Sqrt(disc)
	if b.t < a.t {
		d2 = -d2
	}
	den := b.dphi - a.dphi + 2*d2
	if den == 0 {
		return math.NaN()
	}
	return b.t - (b.t-a.t)*(b.dphi+d2-d1)/den
}
