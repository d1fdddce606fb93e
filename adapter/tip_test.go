package adapter

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/train"
)

// tipFixture builds a Tip-Adapter (or -F) on the fixture's cache views with
// the fixture's options.
func tipFixture(t *testing.T, m *meta, fine bool, edit func(*TipOptions)) *TipAdapter {
	t.Helper()
	ctx, _ := fixtureContext(t, m)
	views := readArray(t, "inputs/views")
	cl := readLabels(t, "inputs/cache_labels")
	nv, nk, d := views.shape[0], views.shape[1], views.shape[2]
	var vs []*train.Features
	for i := int64(0); i < nv; i++ {
		x := array{[]int64{nk, d}, views.data[i*nk*d : (i+1)*nk*d]}
		vs = append(vs, features(t, x, cl))
	}
	o := TipOptions{InitAlpha: m.Tip.InitAlpha, InitBeta: m.Tip.InitBeta, SearchScale: m.Tip.SearchScale,
		SearchSteps: m.Tip.SearchSteps, Templates: 1}
	if edit != nil {
		edit(&o)
	}
	a := NewTipAdapter(o)
	if fine {
		a = NewTipAdapterF(o)
	}
	if err := a.Init(ctx, vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		v.Drop()
	}
	return a
}

// TestTipAdapterMatchesPyTorch checks the cache keys and the logits with
// the initial α, β (scale 100 and the checkpoint's scale), and that α = 0
// gives the zero-shot logits.
func TestTipAdapterMatchesPyTorch(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	x := readArray(t, "inputs/features").tensor(t)
	for _, tc := range []struct {
		name string
		edit func(*TipOptions)
		want string
	}{
		{"scale 100", nil, "tip/logits"},
		{"checkpoint scale", func(o *TipOptions) { o.UseLogitScale = true }, "tip/logits_scale"},
		{"alpha 0", func(o *TipOptions) { o.InitAlpha = 0 }, "tip/zeroshot"},
	} {
		a := tipFixture(t, m, false, tc.edit)
		if len(a.Parameters()) != 0 {
			t.Errorf("%s: Tip-Adapter has parameters %v, want none", tc.name, a.Parameters())
		}
		assertClose(t, tc.name+": keys", a.keys, readArray(t, "inputs/tip_keys"), fp32)
		got, err := a.Logits(x, false)
		if err != nil {
			t.Fatal(err)
		}
		assertClose(t, tc.name+": logits", got, readArray(t, tc.want), fp32)
		a.Drop()
	}
}

// TestTipSearchMatchesPyTorch checks the number of correct validation
// predictions at every (β, α) of the grid, and the chosen pair, against a
// direct PyTorch loop over the grid.
func TestTipSearchMatchesPyTorch(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	a := tipFixture(t, m, false, nil)
	defer a.Drop()
	val := features(t, readArray(t, "inputs/val_features"), readLabels(t, "inputs/val_labels"))
	defer val.Drop()

	betas, alphas := a.Options().SearchGrid()
	want := readArray(t, "tip/counts")
	if want.shape[0] != int64(len(betas)) || want.shape[1] != int64(len(alphas)) {
		t.Fatalf("grid %dx%d, fixture %v", len(betas), len(alphas), want.shape)
	}
	for _, budget := range []int64{searchBudget, 7 * 20 * 5} { // one chunk; chunks of 7 rows
		counts, err := a.searchCounts(context.Background(), val, budget)
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for i := range betas {
			for j := range alphas {
				if w := int64(want.data[i*len(alphas)+j]); counts[i][j] != w {
					if bad < 5 {
						t.Errorf("budget %d: beta %g alpha %g: %d correct, PyTorch %d", budget, betas[i], alphas[j], counts[i][j], w)
					}
					bad++
				}
			}
		}
		if bad > 0 {
			t.Errorf("budget %d: %d of %d grid points differ", budget, bad, len(betas)*len(alphas))
		}
	}

	got, err := a.Tune(context.Background(), val)
	if err != nil {
		t.Fatal(err)
	}
	if got["alpha"] != m.Tip.BestAlpha || got["beta"] != m.Tip.BestBeta ||
		got["val_accuracy"] != float64(m.Tip.BestCorrect)/float64(m.Tip.ValSize) {
		t.Errorf("Tune = %v, want alpha %v beta %v val_accuracy %d/%d", got, m.Tip.BestAlpha, m.Tip.BestBeta, m.Tip.BestCorrect, m.Tip.ValSize)
	}
	if a.Alpha() != m.Tip.BestAlpha || a.Beta() != m.Tip.BestBeta {
		t.Errorf("after Tune alpha, beta = %v, %v; want the searched %v, %v", a.Alpha(), a.Beta(), m.Tip.BestAlpha, m.Tip.BestBeta)
	}
}

// TestTipSearchGrid checks the grids against the values listed for
// Tip-Adapter's configs (docs/hyperparameters.md §5: step and largest value).
func TestTipSearchGrid(t *testing.T) {
	for _, tc := range []struct {
		scale                   [2]float64
		betaStep, betaLast      float64
		alphaStep, alphaLast    float64
		betaFirst, alphaFirst   float64
		betaSteps, alphaSteps   int
		wantBetas, wantAlphaLen int
	}{
		{[2]float64{7, 3}, 0.0345, 6.9655, 0.145, 2.855, 0.1, 0.1, 0, 0, 200, 20},
		{[2]float64{50, 50}, 0.2495, 49.7505, 2.495, 47.505, 0.1, 0.1, 200, 20, 200, 20},
		{[2]float64{12, 10}, 0.0595, 11.9405, 0.495, 9.505, 0.1, 0.1, 200, 20, 200, 20},
	} {
		o := NewTipAdapter(TipOptions{SearchScale: tc.scale, SearchSteps: [2]int{tc.betaSteps, tc.alphaSteps}}).Options()
		betas, alphas := o.SearchGrid()
		if len(betas) != tc.wantBetas || len(alphas) != tc.wantAlphaLen {
			t.Fatalf("scale %v: %d betas, %d alphas; want %d, %d", tc.scale, len(betas), len(alphas), tc.wantBetas, tc.wantAlphaLen)
		}
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
		if !near(betas[0], tc.betaFirst) || !near(betas[1]-betas[0], tc.betaStep) || !near(betas[len(betas)-1], tc.betaLast) {
			t.Errorf("scale %v: betas %g, %g, ..., %g; want step %g, last %g", tc.scale, betas[0], betas[1], betas[len(betas)-1], tc.betaStep, tc.betaLast)
		}
		if !near(alphas[0], tc.alphaFirst) || !near(alphas[1]-alphas[0], tc.alphaStep) || !near(alphas[len(alphas)-1], tc.alphaLast) {
			t.Errorf("scale %v: alphas %g, %g, ..., %g; want step %g, last %g", tc.scale, alphas[0], alphas[1], alphas[len(alphas)-1], tc.alphaStep, tc.alphaLast)
		}
	}
}

// TestTipAdapterFMatchesPyTorch checks Tip-Adapter-F's parameter, logits,
// loss and gradient, and the keys after one AdamW step, against PyTorch.
func TestTipAdapterFMatchesPyTorch(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	a := tipFixture(t, m, true, nil)
	defer a.Drop()
	ps := a.Parameters()
	if len(ps) != 1 || ps[0].Name != "adapter.weight" || !ps[0].Tensor.MustRequiresGrad() {
		t.Fatalf("parameters %v, want adapter.weight requiring gradients", ps)
	}
	assertClose(t, "initial adapter.weight", ps[0].Tensor, readArray(t, "inputs/tip_keys"), fp32)
	x := readArray(t, "inputs/features").tensor(t)
	y := ts.MustOfSlice(readLabels(t, "inputs/labels"))
	logits, err := a.Logits(x, true)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "logits", logits, readArray(t, "tipf/logits"), fp32)
	loss := logits.CrossEntropyForLogits(y)
	assertClose(t, "loss", loss, readArray(t, "tipf/loss"), fp32)
	loss.MustBackward()
	assertClose(t, "grad adapter.weight", ps[0].Tensor.MustGrad(false), readArray(t, "tipf/grad/adapter.weight"), gradTol)
	w := m.Tip.AdamW
	opt := train.NewAdamW(ps, w.Betas[0], w.Betas[1], w.Eps, w.WeightDecay)
	if err := opt.Step(w.LR); err != nil {
		t.Fatal(err)
	}
	// Adam's first step moves every weight by about lr·sign(grad), so
	// the update carries the gradient's float32 noise only through its
	// sign and the ratio m/√v.
	assertClose(t, "stepped adapter.weight", ps[0].Tensor, readArray(t, "tipf/step/adapter.weight"), fp32)

	// The keys are trained as they are: no re-normalization.
	norms := ps[0].Tensor.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, false, false).Float64Values()
	off := 0.0
	for _, n := range norms {
		off = math.Max(off, math.Abs(n-1))
	}
	if off < 1e-5 {
		t.Errorf("keys after a step have unit norms (max |‖k‖−1| = %g); want them left unnormalized", off)
	}
}

// TestTipAdapterSaver checks that Extra/SetExtra carry α and β, and that
// Logits use them.
func TestTipAdapterSaver(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	a := tipFixture(t, m, false, nil)
	defer a.Drop()
	if e := a.Extra(); e["alpha"] != m.Tip.InitAlpha || e["beta"] != m.Tip.InitBeta {
		t.Errorf("Extra() = %v before tuning, want the initial alpha %v, beta %v", e, m.Tip.InitAlpha, m.Tip.InitBeta)
	}
	if err := a.SetExtra(map[string]float64{"alpha": 0, "beta": 3}); err != nil {
		t.Fatal(err)
	}
	x := readArray(t, "inputs/features").tensor(t)
	got, err := a.Logits(x, false)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "logits with restored alpha 0", got, readArray(t, "tip/zeroshot"), fp32)
	if err := a.SetExtra(map[string]float64{"alpha": 1}); err == nil || !strings.Contains(err.Error(), "lacks alpha or beta") {
		t.Errorf("SetExtra without beta: err = %v", err)
	}
	if err := a.SetExtra(map[string]float64{"alpha": 1, "beta": math.NaN()}); err == nil {
		t.Error("SetExtra with NaN beta succeeded")
	}
	if err := a.SetParameters(map[string]*ts.Tensor{"adapter.weight": x}); err == nil {
		t.Error("SetParameters on the training-free Tip-Adapter accepted a tensor")
	}
	if err := a.SetParameters(nil); err != nil {
		t.Errorf("SetParameters(nil) on the training-free Tip-Adapter: %v", err)
	}
}

// TestTipAdapterErrors checks bad caches and options.
func TestTipAdapterErrors(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	ctx, _ := fixtureContext(t, m)
	x := ts.MustOnes([]int64{3, m.Dim}, gotch.Float, gotch.CPU)
	view := func(y ...int64) *train.Features { return &train.Features{X: x, Y: y} }
	for _, tc := range []struct {
		name  string
		o     TipOptions
		views []*train.Features
		want  string
	}{
		{"no views", DefaultTipOptions(), nil, "no training features"},
		{"order", DefaultTipOptions(), []*train.Features{view(0, 1, 2), view(0, 2, 1)}, "view 1 does not list the labels"},
		{"label range", DefaultTipOptions(), []*train.Features{view(0, 1, 9)}, "label 9 of example 2"},
		{"rows", DefaultTipOptions(), []*train.Features{view(0, 1)}, "3 feature rows for 2 labels"},
		{"scale", TipOptions{InitBeta: 1}, []*train.Features{view(0, 1, 2)}, "search scale"},
	} {
		err := NewTipAdapter(tc.o).Init(ctx, tc.views)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	a := NewTipAdapter(TipOptions{InitBeta: 1, NoSearch: true})
	if err := a.Init(ctx, []*train.Features{view(0, 1, 2)}); err != nil {
		t.Fatal(err)
	}
	defer a.Drop()
	got, err := a.Tune(context.Background(), nil)
	if err != nil || got["alpha"] != 0 || got["beta"] != 1 {
		t.Errorf("Tune with NoSearch = %v, %v; want the initial alpha 0, beta 1", got, err)
	}
}

// BenchmarkTipSearch times the full 200×20 (beta, alpha) search on a
// validation set of 1000 examples, 100 classes and a 16-shot cache
// (D = 1024): go test -run '^$' -bench TipSearch ./adapter
func BenchmarkTipSearch(b *testing.B) {
	lockThread(b)
	const d, c, shots, nval = 1024, 100, 16, 1000
	rng := rand.New(rand.NewPCG(1, 2))
	gauss := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	text := map[string][]float32{}
	var names []string
	for k := 0; k < c; k++ {
		name := "c" + string(rune('0'+k/10)) + string(rune('0'+k%10))
		names = append(names, name)
		text[name] = gauss(d)
	}
	ctx := &train.Context{Text: &fakeText{rows: text, dim: d, scale: 100}, ClassNames: names, Templates: []string{"{}"},
		FeatureDim: d, Device: gotch.CPU}
	var y []int64
	for k := 0; k < c; k++ {
		for j := 0; j < shots; j++ {
			y = append(y, int64(k))
		}
	}
	train1 := &train.Features{X: array{[]int64{c * shots, d}, gauss(c * shots * d)}.tensor(b), Y: y}
	defer train1.Drop()
	vy := make([]int64, nval)
	for i := range vy {
		vy[i] = int64(rng.IntN(c))
	}
	val := &train.Features{X: array{[]int64{nval, d}, gauss(nval * d)}.tensor(b), Y: vy}
	defer val.Drop()
	a := NewTipAdapter(DefaultTipOptions())
	if err := a.Init(ctx, []*train.Features{train1}); err != nil {
		b.Fatal(err)
	}
	defer a.Drop()
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		if _, err := a.Tune(context.Background(), val); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e9, "cpu-s/op")
}

// cpuTime returns the CPU time this process has used (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countdownCtx is a context whose Err turns to Canceled after n calls: a
// Ctrl-C that arrives after n checks, deterministically.
type countdownCtx struct {
	context.Context
	n atomic.Int64
}

func newCountdown(n int64) *countdownCtx {
	c := &countdownCtx{Context: context.Background()}
	c.n.Store(n)
	return c
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestTipSearchStops: a cancelled search stops within one β of the grid
// with ErrInterrupted and leaves α and β as they were.
func TestTipSearchStops(t *testing.T) {
	lockThread(t)
	m := loadMeta(t)
	a := tipFixture(t, m, false, nil)
	defer a.Drop()
	val := features(t, readArray(t, "inputs/val_features"), readLabels(t, "inputs/val_labels"))
	defer val.Drop()
	alpha, beta := a.Alpha(), a.Beta()
	betas, _ := a.Options().SearchGrid()
	ctx := newCountdown(3)
	_, err := a.Tune(ctx, val)
	if !errors.Is(err, train.ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if checks := 3 - ctx.n.Load(); checks != 4 || len(betas) < 10 {
		t.Errorf("stopped after %d checks of %d betas, want at the 4th", checks, len(betas))
	}
	if a.Alpha() != alpha || a.Beta() != beta {
		t.Errorf("alpha, beta changed to %v, %v by an interrupted search", a.Alpha(), a.Beta())
	}
}
