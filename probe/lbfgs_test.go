package probe

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sugarme/gotch/ts"

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

func TestCubicMin(t *testing.T) {
	// phi(t) = (t-2)^2 - 1 is its own cubic interpolant: the minimizer is 2
	// from any two points.
	phi := func(t float64) point { return point{t: t, f: (t-2)*(t-2) - 1, dphi: 2 * (t - 2)} }
	for _, pair := range [][2]float64{{0, 1}, {0, 5}, {3, 0.5}, {-1, 4}} {
		if got := cubicMin(phi(pair[0]), phi(pair[1])); math.Abs(got-2) > 1e-12 {
			t.Errorf("cubicMin(%v) = %v, want 2", pair, got)
		}
	}
	// phi(t) = t^3 - 3t has its local minimum at t = 1.
	cube := func(t float64) point { return point{t: t, f: t*t*t - 3*t, dphi: 3*t*t - 3} }
	if got := cubicMin(cube(0), cube(2)); math.Abs(got-1) > 1e-12 {
		t.Errorf("cubicMin on t^3-3t = %v, want 1", got)
	}
}

// twoLoop is the textbook L-BFGS two-loop recursion (Nocedal & Wright,
// algorithm 7.4) in plain Go: the reference for history.direction.
func twoLoop(g []float64, ss, ys [][]float64) []float64 {
	dotf := func(a, b []float64) float64 {
		s := 0.0
		for i := range a {
			s += a[i] * b[i]
		}
		return s
	}
	k := len(ss)
	q := append([]float64(nil), g...)
	alpha := make([]float64, k)
	for i := k - 1; i >= 0; i-- {
		alpha[i] = dotf(ss[i], q) / dotf(ys[i], ss[i])
		for j := range q {
			q[j] -= alpha[i] * ys[i][j]
		}
	}
	gamma := dotf(ss[k-1], ys[k-1]) / dotf(ys[k-1], ys[k-1])
	for j := range q {
		q[j] *= gamma
	}
	for i := 0; i < k; i++ {
		beta := dotf(ys[i], q) / dotf(ys[i], ss[i])
		for j := range q {
			q[j] += (alpha[i] - beta) * ss[i][j]
		}
	}
	for j := range q {
		q[j] = -q[j]
	}
	return q
}

// TestDirectionMatchesTwoLoop feeds random curvature pairs (more than the
// memory, so old ones are forgotten, and one with negative curvature, which
// must be skipped) to history and compares its compact-form direction with
// the two-loop recursion.
func TestDirectionMatchesTwoLoop(t *testing.T) {
	lockThread(t)
	rng := rand.New(rand.NewPCG(3, 4))
	const rows, cols, memory = 3, 7, 4
	n := rows * cols
	vec := func() []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	tensor := func(v []float64) *ts.Tensor {
		return ts.MustOfSlice(v).MustView([]int64{rows, cols}, true)
	}
	h := &history{memory: memory}
	defer h.drop()
	var ss, ys [][]float64
	for step := 0; step < 7; step++ {
		s := vec()
		// y = A s with A symmetric positive definite (diagonal 1..n), plus
		// noise: positive curvature like a real objective.
		y := make([]float64, n)
		for i := range y {
			y[i] = float64(i+1)*s[i] + 0.1*rng.NormFloat64()
		}
		if step == 3 {
			for i := range y {
				y[i] = -s[i] // s'y < 0: must be skipped
			}
		} else {
			ss, ys = append(ss, s), append(ys, y)
			if len(ss) > memory {
				ss, ys = ss[1:], ys[1:]
			}
		}
		if err := h.add(tensor(s), tensor(y)); err != nil {
			t.Fatal(err)
		}
		if h.len() != len(ss) {
			t.Fatalf("step %d: history holds %d pairs, want %d", step, h.len(), len(ss))
		}
		g := vec()
		gt := tensor(g)
		d, err := h.direction(gt)
		gt.MustDrop()
		if err != nil {
			t.Fatal(err)
		}
		if sz := d.MustSize(); len(sz) != 2 || sz[0] != rows || sz[1] != cols {
			t.Fatalf("direction shape %v", sz)
		}
		got, err := torch.Values[float64](d)
		d.MustDrop()
		if err != nil {
			t.Fatal(err)
		}
		want := twoLoop(g, ss, ys)
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-10*max(1, math.Abs(want[i])) {
				t.Fatalf("step %d: direction[%d] = %.15g, two-loop %.15g", step, i, got[i], want[i])
			}
		}
	}
}
