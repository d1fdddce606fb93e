package probe

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/sugarme/gotch/ts"
	"gonum.org/v1/gonum/optimize"

	"github.com/clipadapter/clipgo/internal/torch"
)

// rosenbrock is f(x, y) = (1-x)² + 100(y-x²)² with its gradient, evaluated
// in Go on a 2-element tensor; its minimum is f(1, 1) = 0.
func rosenbrock(t *testing.T, evals *int) objective {
	return func(x *ts.Tensor) (float64, *ts.Tensor, error) {
		*evals++
		v, err := torch.Values[float64](x)
		if err != nil {
			return 0, nil, err
		}
		a, b := v[0], v[1]
		f := (1-a)*(1-a) + 100*(b-a*a)*(b-a*a)
		g := []float64{-2*(1-a) - 400*a*(b-a*a), 200 * (b - a*a)}
		gt, err := ts.OfSlice(g)
		return f, gt, err
	}
}

func TestMinimizeRosenbrock(t *testing.T) {
	lockThread(t)
	tests := []struct {
		name  string
		start []float64
	}{
		{"classic start", []float64{-1.2, 1}},
		{"far start", []float64{3, -4}},
		{"at the minimum", []float64{1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x0 := ts.MustOfSlice(tc.start)
			defer x0.MustDrop()
			cfg := defaultLBFGS()
			cfg.gtol, cfg.ftol = 1e-10, 0
			evals := 0
			x, res, err := minimize(rosenbrock(t, &evals), x0, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer x.MustDrop()
			v, err := torch.Values[float64](x)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(v[0]-1) > 1e-8 || math.Abs(v[1]-1) > 1e-8 {
				t.Errorf("minimum at %v, want (1, 1) within 1e-8 (%+v)", v, res)
			}
			if res.f > 1e-16 || res.evaluations != evals || res.iterations > 200 {
				t.Errorf("result %+v (evaluations counted: %d): want f <= 1e-16 within 200 iterations", res, evals)
			}
			if x0v, _ := torch.Values[float64](x0); x0v[0] != tc.start[0] || x0v[1] != tc.start[1] {
				t.Errorf("minimize changed its starting point to %v", x0v)
			}
		})
	}
}

// TestMinimizeLimits checks the iteration limit and that a minimizer that
// stops early says so.
func TestMinimizeLimits(t *testing.T) {
	lockThread(t)
	x0 := ts.MustOfSlice([]float64{-1.2, 1})
	defer x0.MustDrop()
	cfg := defaultLBFGS()
	cfg.maxIter = 5
	evals := 0
	x, res, err := minimize(rosenbrock(t, &evals), x0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	x.MustDrop()
	if res.iterations != 5 || res.stop != stopMaxIter || res.stop.converged() {
		t.Errorf("result %+v: want 5 iterations and %q", res, stopMaxIter)
	}
}

// TestMinimizeObjectiveError checks that a tensor error in the middle of a
// run (gonum evaluates on its own goroutine) comes back as an error.
func TestMinimizeObjectiveError(t *testing.T) {
	lockThread(t)
	x0 := ts.MustOfSlice([]float64{-1.2, 1})
	defer x0.MustDrop()
	evals := 0
	inner := rosenbrock(t, &evals)
	fn := func(x *ts.Tensor) (float64, *ts.Tensor, error) {
		if evals == 3 {
			return 0, nil, errors.New("device lost")
		}
		return inner(x)
	}
	x, _, err := minimize(fn, x0, defaultLBFGS())
	if err == nil || !strings.Contains(err.Error(), "device lost") {
		t.Errorf("err = %v, want the objective's error", err)
	}
	if x != nil {
		t.Errorf("got a point with an error")
	}
}

// TestMinimizeNonFinite: f is NaN beyond x = 2 (a step too long), which
// the line search must step back from; at the start it is an error.
func TestMinimizeNonFinite(t *testing.T) {
	lockThread(t)
	fn := func(x *ts.Tensor) (float64, *ts.Tensor, error) {
		v, err := torch.Values[float64](x)
		if err != nil {
			return 0, nil, err
		}
		f := (v[0] - 1.5) * (v[0] - 1.5)
		if v[0] > 2 {
			f = math.NaN()
		}
		g, err := ts.OfSlice([]float64{2 * (v[0] - 1.5)})
		return f, g, err
	}
	x0 := ts.MustOfSlice([]float64{-1000})
	defer x0.MustDrop()
	cfg := defaultLBFGS()
	cfg.gtol, cfg.ftol = 1e-9, -1
	x, res, err := minimize(fn, x0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := torch.Values[float64](x)
	x.MustDrop()
	if math.Abs(v[0]-1.5) > 1e-8 || !res.stop.converged() {
		t.Errorf("minimum at %v (%+v), want 1.5", v, res)
	}
	bad := ts.MustOfSlice([]float64{3})
	defer bad.MustDrop()
	if _, _, err := minimize(fn, bad, cfg); err == nil || !strings.Contains(err.Error(), "starting point") {
		t.Errorf("NaN at the start: err = %v", err)
	}
}

func TestReductionTest(t *testing.T) {
	r := &reductionTest{ftol: 1e-3}
	r.Init(1)
	for i, c := range []struct {
		f    float64
		want optimize.Status
	}{
		{100, optimize.NotTerminated}, // first point
		{50, optimize.NotTerminated},  // reduction 0.5
		{49.99, optimize.FunctionConvergence},
		{0.5, optimize.NotTerminated},
		{0.4995, optimize.FunctionConvergence}, // 5e-4 <= 1e-3 * max(.., 1)
	} {
		if got := r.Converged(&optimize.Location{F: c.f}); got != c.want {
			t.Errorf("step %d (f=%v): %v, want %v", i, c.f, got, c.want)
		}
	}
	off := &reductionTest{ftol: -1}
	off.Init(1)
	for _, f := range []float64{1, 1, 1} {
		if got := off.Converged(&optimize.Location{F: f}); got != optimize.NotTerminated {
			t.Errorf("disabled test stopped: %v", got)
		}
	}
}

// TestCappedSearchBudget: with one evaluation allowed, a step with
// sufficient decrease is taken and one without fails the search.
func TestCappedSearchBudget(t *testing.T) {
	c := &cappedSearch{max: 1}
	// phi(t) = (t-10)^2: phi(0) = 100, phi'(0) = -20; t = 1 decreases f
	// but is far from the curvature condition.
	c.Init(100, -20, 1)
	if op, step, err := c.Iterate(81, -18); err != nil || op != optimize.MajorIteration || step != 1 {
		t.Errorf("sufficient decrease at the budget: %v %v %v", op, step, err)
	}
	c.Init(100, -20, 30)
	if _, _, err := c.Iterate(400, 40); !errors.Is(err, optimize.ErrLinesearcherFailure) {
		t.Errorf("no decrease at the budget: err = %v", err)
	}
}
