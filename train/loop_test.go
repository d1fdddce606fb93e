package train

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

// linearMethod is a toy method: logits = x·Wᵀ with W learned.
type linearMethod struct {
	w     *ts.Tensor
	scale float64 // multiplies the logits (a huge value makes the loss overflow)
}

func newLinear(classes, dim int, seed uint64) *linearMethod {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, classes*dim)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.01)
	}
	t := ts.MustOfSlice(w).MustView([]int64{int64(classes), int64(dim)}, true).MustSetRequiresGrad(true, true)
	return &linearMethod{w: t, scale: 1}
}

func (m *linearMethod) Init(*Context, []*Features) error { return nil }
func (m *linearMethod) Parameters() []Param              { return []Param{{Name: "w", Tensor: m.w}} }
func (m *linearMethod) Logits(x *ts.Tensor, _ bool) (*ts.Tensor, error) {
	wt := m.w.MustT(false)
	defer wt.MustDrop()
	l := x.MustMatmul(wt, false)
	if m.scale != 1 {
		l = l.MustMulScalar(ts.FloatScalar(m.scale), true)
	}
	return l, nil
}
func (m *linearMethod) Drop() { m.w.MustDrop() }

// blobs returns n features in dim dimensions around one centre per class.
func blobs(n, classes, dim int, seed uint64) *Features {
	rng := rand.New(rand.NewPCG(seed, 2))
	centres := make([]float64, classes*dim)
	for i := range centres {
		centres[i] = rng.NormFloat64() * 2
	}
	x := make([]float32, n*dim)
	y := make([]int64, n)
	for i := 0; i < n; i++ {
		c := i % classes
		y[i] = int64(c)
		for d := 0; d < dim; d++ {
			x[i*dim+d] = float32(centres[c*dim+d] + rng.NormFloat64())
		}
	}
	return &Features{
		X:      ts.MustOfSlice(x).MustView([]int64{int64(n), int64(dim)}, true),
		Labels: ts.MustOfSlice(y),
		Y:      y,
	}
}

func newTestLoop(epochs int, views []*Features) *Loop {
	m := newLinear(4, 8, 7)
	opt := NewSGD(m.Parameters(), 0.9, 5e-4)
	sched := CosineWarmup{Base: 0.05, Epochs: epochs, WarmupEpochs: 1, WarmupLR: 1e-3}
	return NewLoop(m, opt, sched, epochs, 10, views, 42)
}

func TestLoopLearnsAndEvaluates(t *testing.T) {
	train, test := blobs(64, 4, 8, 1), blobs(40, 4, 8, 1)
	l := newTestLoop(8, []*Features{train})
	var losses []float64
	l.Hooks.Epoch = append(l.Hooks.Epoch, func(_ *Loop, e EpochInfo) error {
		losses = append(losses, e.MeanLoss)
		return nil
	})
	if err := l.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(losses) != 8 || !(losses[7] < losses[0]/2) {
		t.Fatalf("epoch losses %v: want 8 epochs and a falling loss", losses)
	}
	if got := l.GlobalStep; got != 8*6 {
		t.Errorf("global steps = %d, want 48 (64 examples, batch 10, last partial batch dropped)", got)
	}
	m, err := EvaluateMethod(context.Background(), l.Method, test, 16)
	if err != nil {
		t.Fatal(err)
	}
	if m.Top1 < 90 {
		t.Errorf("test top-1 = %.1f%%, want > 90%% on separable blobs", m.Top1)
	}
}

// TestResumeIsBitIdentical interrupts training after 3 of 6 epochs through
// a checkpoint, resumes in a fresh loop, and compares the final weights with
// an uninterrupted run bit for bit.
func TestResumeIsBitIdentical(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	views := []*Features{blobs(50, 4, 8, 3), blobs(50, 4, 8, 4)}
	straight := newTestLoop(6, views)
	if err := straight.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := straight.Method.Parameters()[0].Tensor.Float64Values()

	ckpt := filepath.Join(t.TempDir(), "last.ckpt")
	first := newTestLoop(6, views)
	first.Hooks.Epoch = append(first.Hooks.Epoch, func(l *Loop, e EpochInfo) error {
		if err := SaveCheckpoint(ckpt, l, map[string]int{"epoch_done": e.Epoch}); err != nil {
			return err
		}
		if e.Epoch == 2 {
			return errStopHere
		}
		return nil
	})
	if err := first.Run(context.Background()); !errors.Is(err, errStopHere) {
		t.Fatalf("first half: %v", err)
	}
	resumed := newTestLoop(6, views)
	st, err := LoadCheckpoint(ckpt, resumed)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 3 || resumed.Epoch != 3 || resumed.GlobalStep != first.GlobalStep {
		t.Fatalf("resumed at epoch %d step %d, want epoch 3 step %d", resumed.Epoch, resumed.GlobalStep, first.GlobalStep)
	}
	if err := resumed.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := resumed.Method.Parameters()[0].Tensor.Float64Values()
	for i := range want {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			t.Fatalf("w[%d] = %.17g after resume, %.17g uninterrupted", i, got[i], want[i])
		}
	}
}

var errStopHere = errors.New("stop here")

func TestNonFiniteLossStops(t *testing.T) {
	l := newTestLoop(3, []*Features{blobs(20, 4, 8, 5)})
	l.Method.(*linearMethod).scale = math.Inf(1)
	err := l.Run(context.Background())
	var nf *NonFiniteLossError
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v, want a NonFiniteLossError", err)
	}
}

func TestInterruptRunsHooks(t *testing.T) {
	l := newTestLoop(5, []*Features{blobs(40, 4, 8, 6)})
	ctx, cancel := context.WithCancel(context.Background())
	interrupted := false
	l.Hooks.Step = append(l.Hooks.Step, func(_ *Loop, s StepInfo) error {
		if s.GlobalStep == 3 {
			cancel()
		}
		return nil
	})
	l.Hooks.Interrupt = append(l.Hooks.Interrupt, func(*Loop) error { interrupted = true; return nil })
	if err := l.Run(ctx); !errors.Is(err, ErrInterrupted) || !interrupted || l.GlobalStep != 3 {
		t.Fatalf("err = %v, hook ran %v, steps %d; want ErrInterrupted after 3 steps", err, interrupted, l.GlobalStep)
	}
}

func TestCheckpointErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.ckpt")
	x := ts.MustOfSlice([]float32{1, 2, 3})
	if err := WriteTensors(path, map[string]int{"a": 1}, []Param{{Name: "x", Tensor: x}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTensors(filepath.Join(dir, "missing.ckpt"), nil, gotch.CPU); err == nil {
		t.Error("missing file accepted")
	}
	// Truncate it.
	b := mustRead(t, path)
	bad := filepath.Join(dir, "bad.ckpt")
	mustWrite(t, bad, b[:len(b)-4])
	if _, err := ReadTensors(bad, nil, gotch.CPU); !errors.Is(err, ErrCorrupt) || !contains(err.Error(), bad) {
		t.Errorf("truncated checkpoint: err = %v, want the checksum error naming the file", err)
	}
	mustWrite(t, bad, []byte("not a checkpoint at all"))
	if _, err := ReadTensors(bad, nil, gotch.CPU); err == nil || !contains(err.Error(), "not a clipgo checkpoint") {
		t.Errorf("foreign file: err = %v", err)
	}
	m := newLinear(4, 8, 1)
	if err := CopyParameters(m.Parameters(), map[string]*ts.Tensor{"w": x}, ""); err == nil || !contains(err.Error(), "shape") {
		t.Errorf("shape mismatch: err = %v", err)
	}
}

// TestCorruptCheckpointIsDetected saves checkpoints after each of three
// epochs, flips one bit in the last one (in a tensor, then in the header)
// and resumes: the error must name the file, say it is corrupt and point at
// the previous checkpoint, which is kept intact; a checkpoint of the first
// format (no checksum) is still read.
func TestCorruptCheckpointIsDetected(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	views := []*Features{blobs(50, 4, 8, 3)}
	ckpt := filepath.Join(t.TempDir(), "last.ckpt")
	l := newTestLoop(3, views)
	l.Hooks.Epoch = append(l.Hooks.Epoch, func(l *Loop, e EpochInfo) error { return SaveCheckpoint(ckpt, l, nil) })
	if err := l.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	good := mustRead(t, ckpt)
	prev := ckpt + PrevSuffix
	var prevState LoopState
	if _, err := ReadTensors(prev, &prevState, gotch.CPU); err != nil || prevState.Epoch != 2 {
		t.Fatalf("previous checkpoint: epoch %d, err %v; want the one after epoch 2", prevState.Epoch, err)
	}
	for _, at := range []struct {
		what string
		off  int
	}{{"a tensor", len(good) - 40}, {"the header", len(checkpointMagic) + 12}} {
		b := append([]byte(nil), good...)
		b[at.off] ^= 0x10
		mustWrite(t, ckpt, b)
		_, err := LoadCheckpoint(ckpt, newTestLoop(3, views))
		if !errors.Is(err, ErrCorrupt) || !contains(err.Error(), ckpt) || !contains(err.Error(), prev+" is intact") {
			t.Errorf("bit flipped in %s: err = %v; want the corrupt file named and %s offered", at.what, err, prev)
		}
	}
	// The first format: magic v1, no checksum.
	v1 := append([]byte(checkpointMagicV1), good[len(checkpointMagic):len(good)-32]...)
	mustWrite(t, ckpt, v1)
	if _, err := LoadCheckpoint(ckpt, newTestLoop(3, views)); err != nil {
		t.Errorf("a first-format checkpoint: %v", err)
	}
}

// TestInterruptMidEpochResumesExactly cancels training in the middle of an
// epoch, checkpoints there, resumes, and compares with an uninterrupted run.
func TestInterruptMidEpochResumesExactly(t *testing.T) {
	for _, atEpochEnd := range []bool{false, true} {
		testInterruptResumes(t, atEpochEnd)
	}
}

// testInterruptResumes cancels at step 2 of epoch 2, or (atEpochEnd) in
// the hook after epoch 1, so the interruption lands on step 0 of epoch 2
// after its permutation was drawn.
func testInterruptResumes(t *testing.T, atEpochEnd bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	views := []*Features{blobs(50, 4, 8, 8)}
	straight := newTestLoop(4, views)
	var wantInfo []EpochInfo
	straight.Hooks.Epoch = append(straight.Hooks.Epoch, func(_ *Loop, e EpochInfo) error { wantInfo = append(wantInfo, e); return nil })
	if err := straight.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := straight.Method.Parameters()[0].Tensor.Float64Values()

	ckpt := filepath.Join(t.TempDir(), "last.ckpt")
	first := newTestLoop(4, views)
	ctx, cancel := context.WithCancel(context.Background())
	first.Hooks.Step = append(first.Hooks.Step, func(_ *Loop, s StepInfo) error {
		if s.GlobalStep == 7 && !atEpochEnd { // epoch 2, step 2 of 5
			cancel()
		}
		return nil
	})
	first.Hooks.Epoch = append(first.Hooks.Epoch, func(_ *Loop, e EpochInfo) error {
		if e.Epoch == 0 && atEpochEnd {
			cancel()
		}
		return nil
	})
	first.Hooks.Interrupt = append(first.Hooks.Interrupt, func(l *Loop) error { return SaveCheckpoint(ckpt, l, nil) })
	if err := first.Run(ctx); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("first run: %v", err)
	}
	resumed := newTestLoop(4, views)
	st, err := LoadCheckpoint(ckpt, resumed)
	if err != nil {
		t.Fatal(err)
	}
	wantStep := 2
	if atEpochEnd {
		wantStep = 0
	}
	if st.Epoch != 1 || st.StepInEpoch != wantStep {
		t.Fatalf("checkpoint at epoch %d step %d, want 1 and %d", st.Epoch, st.StepInEpoch, wantStep)
	}
	var gotInfo []EpochInfo
	resumed.Hooks.Epoch = append(resumed.Hooks.Epoch, func(_ *Loop, e EpochInfo) error { gotInfo = append(gotInfo, e); return nil })
	if err := resumed.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The resumed epochs report what the uninterrupted run reported,
	// the interrupted one included (its mean loss and accuracy cover all
	// its steps, not only those after the resume).
	if !reflect.DeepEqual(gotInfo, wantInfo[1:]) {
		t.Errorf("epoch infos after the resume %+v, uninterrupted %+v", gotInfo, wantInfo[1:])
	}
	got := resumed.Method.Parameters()[0].Tensor.Float64Values()
	for i := range want {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			t.Fatalf("w[%d] = %.17g after a mid-epoch resume, %.17g uninterrupted", i, got[i], want[i])
		}
	}
}

// cancelAfter wraps a method and cancels a context after its Logits has
// run n times: what a Ctrl-C during evaluation does.
type cancelAfter struct {
	Method
	n, calls int
	cancel   context.CancelFunc
}

func (c *cancelAfter) Logits(x *ts.Tensor, training bool) (*ts.Tensor, error) {
	c.calls++
	if c.calls == c.n {
		c.cancel()
	}
	return c.Method.Logits(x, training)
}

// TestEvaluateStopsBetweenBatches: evaluation stops with ErrInterrupted at
// the batch after the context is cancelled, not at the end of the set.
func TestEvaluateStopsBetweenBatches(t *testing.T) {
	test := blobs(100, 4, 8, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &cancelAfter{Method: newLinear(4, 8, 7), n: 2, cancel: cancel}
	_, err := EvaluateMethod(ctx, m, test, 10)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if m.calls != 2 {
		t.Errorf("%d of 10 batches evaluated after the cancel at the 2nd, want 2", m.calls)
	}
	// Not cancelled: all 10 batches.
	m2 := &cancelAfter{Method: newLinear(4, 8, 7), n: -1, cancel: func() {}}
	if _, err := EvaluateMethod(context.Background(), m2, test, 10); err != nil || m2.calls != 10 {
		t.Errorf("uncancelled: %d batches, %v", m2.calls, err)
	}
}

// TestWriteTensorsKeepsTypes: float64 and int64 tensors come back with
// their type and exact values, float32 as float32.
func TestWriteTensorsKeepsTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.ckpt")
	f64 := []float64{1.0000000000000002, math.Pi, -1e-300}
	i64 := []int64{1 << 40, -3}
	f32 := []float32{0.1, 2.5}
	in := []Param{
		{Name: "d", Tensor: ts.MustOfSlice(f64)},
		{Name: "i", Tensor: ts.MustOfSlice(i64)},
		{Name: "f", Tensor: ts.MustOfSlice(f32)},
	}
	if err := WriteTensors(path, map[string]int{"v": 1}, in); err != nil {
		t.Fatal(err)
	}
	var meta map[string]int
	out, err := ReadTensors(path, &meta, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if meta["v"] != 1 {
		t.Errorf("meta %v", meta)
	}
	if out["d"].DType() != gotch.Double || out["i"].DType() != gotch.Int64 || out["f"].DType() != gotch.Float {
		t.Errorf("dtypes %v %v %v", out["d"].DType(), out["i"].DType(), out["f"].DType())
	}
	gd, _ := torch.Values[float64](out["d"])
	gi, _ := torch.Values[int64](out["i"])
	gf, _ := torch.Values[float32](out["f"])
	if !slices.Equal(gd, f64) || !slices.Equal(gi, i64) || !slices.Equal(gf, f32) {
		t.Errorf("values %v %v %v", gd, gi, gf)
	}
}

// TestOptimizerStateAndCheckpointsAreFreed counts gotch's live tensors
// around a loop that trains, saves a checkpoint, loads it twice (the second
// load replaces the optimizer state the first one set) and is then dropped:
// nothing may be left for the finalizers (gotch's tensors no longer carry a
// 100 KB Go allocation, so garbage collections are rare).
func TestOptimizerStateAndCheckpointsAreFreed(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	views := []*Features{blobs(40, 4, 8, 3)}
	defer views[0].Drop()
	ckpt := filepath.Join(t.TempDir(), "last.ckpt")
	for _, tc := range []struct {
		name string
		opt  func([]Param) Optimizer
	}{
		{"sgd", func(ps []Param) Optimizer { return NewSGD(ps, 0.9, 5e-4) }},
		{"adamw", func(ps []Param) Optimizer { return NewAdamW(ps, 0.9, 0.999, 1e-8, 0.01) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := len(ts.ExistingTensors)
			m := newLinear(4, 8, 7)
			opt := tc.opt(m.Parameters())
			l := NewLoop(m, opt, CosineWarmup{Base: 0.05, Epochs: 2}, 2, 10, views, 42)
			if err := l.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := SaveCheckpoint(ckpt, l, nil); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if _, err := LoadCheckpoint(ckpt, l); err != nil {
					t.Fatal(err)
				}
			}
			if st, _ := opt.State(); len(st) == 0 {
				t.Fatal("the optimizer holds no state: the test proves nothing")
			}
			opt.Drop()
			m.Drop()
			if got := len(ts.ExistingTensors); got > live {
				t.Errorf("%d tensors live after the loop was dropped, %d before", got, live)
			}
		})
	}
}

// scaleAdapter wraps a method with AdaptFeatures(x) = k·x.
type scaleAdapter struct {
	Method
	k float64
}

func (a scaleAdapter) AdaptFeatures(x *ts.Tensor) (*ts.Tensor, error) {
	return x.MulScalar(ts.FloatScalar(a.k), false)
}

// TestAdaptedFeatures: the raw features for a method that does not adapt
// them, k·x for one that does, for every batch size, with no tensor left
// behind; a batch size that is not positive is an error.
func TestAdaptedFeatures(t *testing.T) {
	const n, dim = 10, 8
	f := blobs(n, 4, dim, 5)
	defer f.Drop()
	x, err := torch.Values[float32](f.X)
	if err != nil {
		t.Fatal(err)
	}
	m := newLinear(4, dim, 7)
	defer m.Drop()
	for _, tc := range []struct {
		name string
		m    Method
		k    float32
	}{{"raw", m, 1}, {"adapted", scaleAdapter{m, 3}, 3}} {
		for _, bs := range []int{1, 3, n, 64} {
			live := len(ts.ExistingTensors)
			got, width, err := AdaptedFeatures(tc.m, f, bs)
			if err != nil {
				t.Fatalf("%s, batch %d: %v", tc.name, bs, err)
			}
			if left := len(ts.ExistingTensors) - live; left > 0 {
				t.Errorf("%s, batch %d: %d tensors left behind", tc.name, bs, left)
			}
			if width != dim || len(got) != len(x) {
				t.Fatalf("%s, batch %d: %d values of width %d, want %d of width %d", tc.name, bs, len(got), width, len(x), dim)
			}
			for i := range x {
				if got[i] != tc.k*x[i] {
					t.Fatalf("%s, batch %d: value %d is %v, want %v", tc.name, bs, i, got[i], tc.k*x[i])
				}
			}
		}
	}
	for _, bs := range []int{0, -1} {
		if _, _, err := AdaptedFeatures(m, f, bs); err == nil || !contains(err.Error(), "batch size") {
			t.Errorf("batch size %d: err = %v, want a batch size error", bs, err)
		}
	}
}
