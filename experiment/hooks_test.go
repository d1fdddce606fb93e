package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/rundir"
	"github.com/clipadapter/clipgo/train"
)

// scriptedMethod trains a linear map (logits = x·Wᵀ), but its evaluations
// are scripted: evaluation k classifies the first correct[k] examples
// right (their one-hot features as logits) and the others wrong (the
// negated features), so each epoch's validation top-1 is known.
type scriptedMethod struct {
	w       *ts.Tensor
	correct []int
	evals   int
}

func newScripted(classes int, correct ...int) *scriptedMethod {
	w := ts.MustZeros([]int64{int64(classes), int64(classes)}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, true)
	return &scriptedMethod{w: w, correct: correct}
}

func (m *scriptedMethod) Init(*train.Context, []*train.Features) error { return nil }
func (m *scriptedMethod) Parameters() []train.Param {
	return []train.Param{{Name: "w", Tensor: m.w}}
}
func (m *scriptedMethod) Drop() { m.w.MustDrop() }

func (m *scriptedMethod) Logits(x *ts.Tensor, training bool) (*ts.Tensor, error) {
	if training {
		wt := m.w.MustT(false)
		defer wt.MustDrop()
		return x.Matmul(wt, false)
	}
	if m.evals >= len(m.correct) {
		return nil, errors.New("more evaluations than scripted")
	}
	k := m.correct[m.evals]
	m.evals++
	v, err := torch.Values[float32](x)
	if err != nil {
		return nil, err
	}
	size := x.MustSize()
	for i := k * int(size[1]); i < len(v); i++ {
		v[i] = -v[i]
	}
	return ts.MustOfSlice(v).View(size, true)
}

// oneHot returns n examples of classes classes whose features are their
// labels' one-hot vectors.
func oneHot(n, classes int) *train.Features {
	x := make([]float32, n*classes)
	y := make([]int64, n)
	for i := range y {
		y[i] = int64(i % classes)
		x[i*classes+int(y[i])] = 1
	}
	return &train.Features{
		X:      ts.MustOfSlice(x).MustView([]int64{int64(n), int64(classes)}, true),
		Labels: ts.MustOfSlice(y),
		Y:      y,
	}
}

// TestResumeKeepsTheBestCheckpoint: a best_val run reaches 100% validation
// top-1 at epoch 2 and is interrupted; after -resume, epochs 3 and 4 score
// 75% and 50%. best.ckpt must still be epoch 2's (byte for byte), and the
// best result the hooks report must be epoch 2's, so that the run reloads
// it.
func TestResumeKeepsTheBestCheckpoint(t *testing.T) {
	const n, classes, epochs = 8, 4, 4
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Train.Select = "best_val"
	cfg.Train.Epochs = epochs
	cfg.Train.EvalBatchSize = n
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	views := []*train.Features{oneHot(n, classes)}
	defer views[0].Drop()
	val := oneHot(n, classes)
	defer val.Drop()
	newRun := func(m *scriptedMethod) *train.Loop {
		opt := train.NewSGD(m.Parameters(), 0.9, 0)
		return train.NewLoop(m, opt, train.CosineWarmup{Base: 0.1, Epochs: epochs}, epochs, 4, views, 1)
	}
	bestFile := filepath.Join(dir, rundir.BestFile)
	ckpt := filepath.Join(dir, rundir.CheckpointFile)

	// The first run: 25%, then 100%, then Ctrl-C.
	first := newScripted(classes, 2, 8)
	defer first.Drop()
	l := newRun(first)
	defer l.Optimizer.Drop()
	attachHooks(l, &cfg, dir, val, io.Discard, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l.Hooks.Epoch = append(l.Hooks.Epoch, func(l *train.Loop, _ train.EpochInfo) error {
		if l.Epoch == 2 {
			cancel()
		}
		return nil
	})
	if err := l.Run(ctx); !errors.Is(err, train.ErrInterrupted) {
		t.Fatalf("first run: err = %v, want ErrInterrupted", err)
	}
	before, err := os.ReadFile(bestFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedTop1(t, bestFile); got != 100 {
		t.Fatalf("best.ckpt after the first run holds val_top1 %v, want 100", got)
	}

	// The resumed run: 75%, 50%.
	second := newScripted(classes, 6, 4)
	defer second.Drop()
	l = newRun(second)
	defer l.Optimizer.Drop()
	if _, err := train.LoadCheckpoint(ckpt, l); err != nil {
		t.Fatal(err)
	}
	best := attachHooks(l, &cfg, dir, val, io.Discard, log)
	if err := l.Run(context.Background()); err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	if second.evals != 2 {
		t.Fatalf("%d evaluations after the resume, want 2 (epochs 3 and 4)", second.evals)
	}
	after, err := os.ReadFile(bestFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedTop1(t, bestFile); got != 100 || !bytes.Equal(before, after) {
		t.Errorf("best.ckpt was replaced after the resume (now val_top1 %v): a worse epoch replaced epoch 2's", got)
	}
	if best.Top1 != 100 || best.N != n {
		t.Errorf("best after the resume: top-1 %v of %d, want 100 of %d (epoch 2, before the interruption)", best.Top1, best.N, n)
	}
	if _, err := os.Stat(bestFile + train.PrevSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("best.ckpt has a previous copy (err %v): only the checkpoint resumed from keeps one", err)
	}
}

// storedTop1 returns the val_top1 stored in a best checkpoint.
func storedTop1(t *testing.T, path string) float64 {
	t.Helper()
	st, err := train.ReadLoopState(path)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]float64
	if err := json.Unmarshal(st.Info, &info); err != nil {
		t.Fatalf("%s: info %s: %v", path, st.Info, err)
	}
	return info["val_top1"]
}
