package probe

import (
	"encoding/json"
	"math"
	"os"
	"runtime"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// fixture is testdata/sklearn.json, written by testdata/gen.py.
type fixture struct {
	SklearnVersion string       `json:"sklearn_version"`
	Fits           []fitCase    `json:"fits"`
	Searches       []searchCase `json:"searches"`
}

type fitCase struct {
	Name      string      `json:"name"`
	Normalize bool        `json:"normalize"`
	Classes   int         `json:"classes"`
	X         [][]float64 `json:"x"`
	Y         []int64     `json:"y"`
	Fits      []struct {
		C                     float64     `json:"C"`
		Coef                  [][]float64 `json:"coef"`
		Intercept             []float64   `json:"intercept"`
		Proba                 [][]float64 `json:"proba"`
		Objective             float64     `json:"objective"`
		GradMax               float64     `json:"grad_max"`
		LBFGSTightObjective   float64     `json:"lbfgs_tight_objective"`
		LBFGSTightIter        int         `json:"lbfgs_tight_n_iter"`
		LBFGSDefaultObjective float64     `json:"lbfgs_default_objective"`
		LBFGSDefaultIter      int         `json:"lbfgs_default_n_iter"`
	} `json:"fits"`
}

type searchCase struct {
	Name      string       `json:"name"`
	Normalize bool         `json:"normalize"`
	Classes   int          `json:"classes"`
	Grid      []float64    `json:"grid"`
	NumStep   int          `json:"num_step"`
	XTrain    [][]float64  `json:"x_train"`
	YTrain    []int64      `json:"y_train"`
	XVal      [][]float64  `json:"x_val"`
	YVal      []int64      `json:"y_val"`
	Exact     searchResult `json:"exact"`
	LBFGS     searchResult `json:"lbfgs"`
}

// searchResult is one run of CoOp's search with scikit-learn.
type searchResult struct {
	Solver       string  `json:"solver"`
	Tol          float64 `json:"tol"`
	Peak         float64 `json:"peak"`
	ChosenC      float64 `json:"chosen_C"`
	ChosenValAcc float64 `json:"chosen_val_acc"`
	Trials       []struct {
		Round   int     `json:"round"`
		C       float64 `json:"C"`
		ValAcc  float64 `json:"val_acc"`
		NIter   int     `json:"n_iter"`
		GradMax float64 `json:"grad_max"`
	} `json:"trials"`
}

func loadFixture(t testing.TB) *fixture {
	t.Helper()
	b, err := os.ReadFile("testdata/sklearn.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("testdata/sklearn.json: %v", err)
	}
	return &f
}

// lockThread pins the test goroutine to its OS thread (libtorch's grad
// mode is per thread).
func lockThread(t testing.TB) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

// matrix returns x as a float64 tensor on the CPU.
func matrix(t testing.TB, x [][]float64, dtype gotch.DType) *ts.Tensor {
	t.Helper()
	n, d := len(x), len(x[0])
	flat := make([]float64, 0, n*d)
	for _, row := range x {
		flat = append(flat, row...)
	}
	m := ts.MustOfSlice(flat).MustView([]int64{int64(n), int64(d)}, true)
	if dtype != gotch.Double {
		m = m.MustTotype(dtype, true)
	}
	return m
}

// features builds train.Features from Go data; dropped at cleanup.
func features(t testing.TB, x [][]float64, y []int64, dtype gotch.DType) *train.Features {
	t.Helper()
	f := &train.Features{X: matrix(t, x, dtype), Labels: ts.MustOfSlice(y), Y: y}
	t.Cleanup(f.Drop)
	return f
}

// params returns the fitted W [K][D] and b [K] of p.
func params(t testing.TB, p *Probe) ([][]float64, []float64) {
	t.Helper()
	wt, err := torch.Values[float64](p.w) // [D, K]
	if err != nil {
		t.Fatal(err)
	}
	b, err := torch.Values[float64](p.b)
	if err != nil {
		t.Fatal(err)
	}
	k := len(b)
	d := len(wt) / k
	w := make([][]float64, k)
	for c := range w {
		w[c] = make([]float64, d)
		for j := range w[c] {
			w[c][j] = wt[j*k+c]
		}
	}
	return w, b
}

// proba returns softmax(Logits(x)) computed in Go from p's logits.
func proba(t testing.TB, p *Probe, x [][]float64) [][]float64 {
	t.Helper()
	xt := matrix(t, x, gotch.Double)
	defer xt.MustDrop()
	z, err := p.Logits(xt, false)
	if err != nil {
		t.Fatal(err)
	}
	defer z.MustDrop()
	if z.DType() != gotch.Double {
		t.Fatalf("logits dtype %v for float64 features", z.DType())
	}
	flat, err := torch.Values[float64](z)
	if err != nil {
		t.Fatal(err)
	}
	k := len(flat) / len(x)
	out := make([][]float64, len(x))
	for i := range out {
		out[i] = softmax(flat[i*k : (i+1)*k])
	}
	return out
}

func softmax(z []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = max(m, v)
	}
	s := 0.0
	p := make([]float64, len(z))
	for i, v := range z {
		p[i] = math.Exp(v - m)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return p
}

// normalizeRows returns x with unit-L2 rows (Go, for the references).
func normalizeRows(x [][]float64) [][]float64 {
	out := make([][]float64, len(x))
	for i, row := range x {
		n := 0.0
		for _, v := range row {
			n += v * v
		}
		n = max(math.Sqrt(n), 1e-12)
		out[i] = make([]float64, len(row))
		for j, v := range row {
			out[i][j] = v / n
		}
	}
	return out
}

// objectiveGo evaluates ½‖W‖² + C·Σ CE and max |∇(Σ CE + ‖W‖²/(2C))| in
// plain Go, independently of the tensor code.
func objectiveGo(x [][]float64, y []int64, w [][]float64, b []float64, c float64) (obj, gradMax float64) {
	k, d := len(w), len(w[0])
	gw := make([][]float64, k)
	for i := range gw {
		gw[i] = make([]float64, d)
	}
	gb := make([]float64, k)
	ce := 0.0
	z := make([]float64, k)
	for i, row := range x {
		for cl := 0; cl < k; cl++ {
			z[cl] = b[cl]
			for j, v := range row {
				z[cl] += w[cl][j] * v
			}
		}
		p := softmax(z)
		ce -= math.Log(p[y[i]])
		p[y[i]]--
		for cl := 0; cl < k; cl++ {
			gb[cl] += p[cl]
			for j, v := range row {
				gw[cl][j] += p[cl] * v
			}
		}
	}
	pen := 0.0
	for cl := range w {
		for j, v := range w[cl] {
			pen += v * v
			gradMax = max(gradMax, math.Abs(gw[cl][j]+v/c))
		}
		gradMax = max(gradMax, math.Abs(gb[cl]))
	}
	return 0.5*pen + c*ce, gradMax
}

func maxAbsDiff(a, b [][]float64) float64 {
	m := 0.0
	for i := range a {
		for j := range a[i] {
			m = max(m, math.Abs(a[i][j]-b[i][j]))
		}
	}
	return m
}

func maxAbsAll(a [][]float64) float64 {
	m := 0.0
	for _, row := range a {
		for _, v := range row {
			m = max(m, math.Abs(v))
		}
	}
	return m
}

// centered returns v minus its mean (intercepts are defined up to a common
// shift; both solvers keep their sum at zero, this removes rounding).
func centered(v []float64) []float64 {
	m := 0.0
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x - m
	}
	return out
}
