package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/metrics"
)

// ErrInterrupted is returned by Loop.Run when its context is cancelled
// (SIGINT): the step in progress finished and the Interrupt hooks ran.
var ErrInterrupted = errors.New("training interrupted")

// NonFiniteLossError reports a NaN or infinite loss.
type NonFiniteLossError struct {
	Epoch, Step int
	Loss        float64
}

func (e *NonFiniteLossError) Error() string {
	return fmt.Sprintf("loss is %v at epoch %d, step %d: stopping (lower the learning rate, or check the data and features)", e.Loss, e.Epoch+1, e.Step+1)
}

// StepInfo describes a finished optimization step.
type StepInfo struct {
	Epoch, Step, StepsPerEpoch int
	// GlobalStep counts steps over the whole run, from 1.
	GlobalStep int
	LR, Loss   float64
}

// EpochInfo describes a finished epoch.
type EpochInfo struct {
	// Epoch is the 0-based index of the finished epoch.
	Epoch    int
	Epochs   int
	LR       float64
	MeanLoss float64
	// TrainTop1 is the accuracy on the training batches as they were seen.
	TrainTop1 float64
}

// Hooks are called by the loop; any error stops training. Progress bars,
// evaluation, checkpoints and metric files attach here.
type Hooks struct {
	Step      []func(*Loop, StepInfo) error
	Epoch     []func(*Loop, EpochInfo) error
	Interrupt []func(*Loop) error
}

// Loop trains a method's parameters on (cached) training features with
// cross-entropy. It only steps and calls hooks.
type Loop struct {
	Method    Method
	Optimizer Optimizer
	Schedule  Schedule
	Epochs    int
	BatchSize int
	// Views are the training features, one per augmented view; epoch e
	// trains on view e mod len(Views).
	Views []*Features
	Hooks Hooks

	// Features, when set, computes the features of the examples idx of
	// the train set for epoch instead of reading them from Views (which
	// then only provide labels): the official, uncached way.
	Features func(epoch int, idx []int) (*ts.Tensor, error)

	// Epoch is the next epoch to run (0-based); GlobalStep counts steps.
	Epoch, GlobalStep int
	// StepInEpoch is the next step within Epoch (non-zero only after an
	// interruption mid-epoch).
	StepInEpoch int
	pcg         *rand.PCG
	// epochRNG is the shuffling RNG's state at the start of Epoch, from
	// which its permutation is drawn again when resuming mid-epoch;
	// inEpoch says that permutation has been drawn.
	epochRNG []byte
	inEpoch  bool
	// partial holds the running sums of the epoch in progress, so that an
	// epoch interrupted and resumed reports all its steps.
	partial EpochSums
}

// EpochSums are the running sums of an epoch's steps.
type EpochSums struct {
	LossSum float64 `json:"loss_sum"`
	Correct int     `json:"correct"`
	Seen    int     `json:"seen"`
}

// NewLoop returns a loop whose shuffling is seeded with seed.
func NewLoop(m Method, opt Optimizer, sched Schedule, epochs, batchSize int, views []*Features, seed uint64) *Loop {
	return &Loop{Method: m, Optimizer: opt, Schedule: sched, Epochs: epochs, BatchSize: batchSize, Views: views,
		pcg: rand.NewPCG(seed, 0x636c6970676f)}
}

// StepsPerEpoch returns the number of batches per epoch: the last partial
// batch is dropped when there is at least one full batch (as Dassl does).
func (l *Loop) StepsPerEpoch() int {
	n := l.Views[0].Len()
	if n >= l.BatchSize {
		return n / l.BatchSize
	}
	if n > 0 {
		return 1
	}
	return 0
}

// RNGState returns the shuffling RNG's state for checkpoints: mid-epoch,
// the state the epoch started from (its permutation is drawn again).
func (l *Loop) RNGState() ([]byte, error) {
	if l.inEpoch && l.epochRNG != nil {
		return append([]byte{}, l.epochRNG...), nil
	}
	return l.pcg.MarshalBinary()
}

// SetRNGState restores a state returned by RNGState.
func (l *Loop) SetRNGState(b []byte) error { return l.pcg.UnmarshalBinary(b) }

// Run trains from l.Epoch to l.Epochs. It locks the calling goroutine to its
// OS thread while it runs (libtorch's grad mode is per thread).
func (l *Loop) Run(ctx context.Context) (err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("training step failed: %s", cli.Recovered(r))
		}
	}()
	if len(l.Views) == 0 || l.Views[0].Len() == 0 {
		return errors.New("no training features")
	}
	if l.BatchSize <= 0 {
		return fmt.Errorf("batch size %d must be positive", l.BatchSize)
	}
	prev, err := torch.SetGradEnabled(true)
	if err != nil {
		return err
	}
	defer torch.SetGradEnabled(prev)
	rng := rand.New(l.pcg)
	steps := l.StepsPerEpoch()
	for l.Epoch < l.Epochs {
		view := l.Views[l.Epoch%len(l.Views)]
		if l.epochRNG, err = l.pcg.MarshalBinary(); err != nil {
			return err
		}
		perm := rng.Perm(view.Len())
		l.inEpoch = true
		if l.StepInEpoch == 0 {
			l.partial = EpochSums{}
		}
		var lr float64
		first := l.StepInEpoch
		for s := first; s < steps; s++ {
			if ctx.Err() != nil {
				l.StepInEpoch = s
				return l.interrupt()
			}
			lo, hi := s*l.BatchSize, min((s+1)*l.BatchSize, len(perm))
			lr = l.Schedule.LR(l.Epoch, s, steps)
			loss, nCorrect, err := l.step(view, perm[lo:hi], lr)
			if err != nil {
				return err
			}
			l.GlobalStep++
			l.partial.LossSum += loss
			l.partial.Correct += nCorrect
			l.partial.Seen += hi - lo
			for _, h := range l.Hooks.Step {
				if err := h(l, StepInfo{Epoch: l.Epoch, Step: s, StepsPerEpoch: steps, GlobalStep: l.GlobalStep, LR: lr, Loss: loss}); err != nil {
					return err
				}
			}
		}
		l.inEpoch = false
		// The sums cover the whole epoch, also when it was resumed mid-way
		// (they are restored from the checkpoint).
		ps := l.partial
		info := EpochInfo{Epoch: l.Epoch, Epochs: l.Epochs, LR: lr, MeanLoss: ps.LossSum / float64(max(steps, 1)), TrainTop1: 100 * float64(ps.Correct) / float64(max(ps.Seen, 1))}
		// The epoch is complete: hooks see l.Epoch as the next one to run,
		// so a checkpoint written by a hook resumes after it.
		l.Epoch++
		l.StepInEpoch = 0
		for _, h := range l.Hooks.Epoch {
			if err := h(l, info); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Loop) interrupt() error {
	for _, h := range l.Hooks.Interrupt {
		if err := h(l); err != nil {
			return fmt.Errorf("%w (and the interrupt hook failed: %v)", ErrInterrupted, err)
		}
	}
	return ErrInterrupted
}

// step runs one optimization step on the examples idx of view and returns
// the loss and the number of correct predictions.
func (l *Loop) step(view *Features, idx []int, lr float64) (float64, int, error) {
	var s torch.Scope
	defer s.Drop()
	ids := make([]int64, len(idx))
	for i, v := range idx {
		ids[i] = int64(v)
	}
	dev, err := view.Labels.Device()
	if err != nil {
		return 0, 0, torch.Err("features device", err)
	}
	index, err := s.Op("batch index")(ts.OfSlice(ids))
	if err == nil {
		index, err = s.Op("batch index to " + torch.DeviceName(dev))(index.To(dev, false))
	}
	if err != nil {
		return 0, 0, err
	}
	var x *ts.Tensor
	if l.Features != nil {
		if x, err = l.Features(l.Epoch, idx); err != nil {
			return 0, 0, err
		}
		s.Keep(x)
	} else if x, err = s.Op("batch features")(view.X.IndexSelect(0, index, false)); err != nil {
		return 0, 0, err
	}
	y, err := s.Op("batch labels")(view.Labels.IndexSelect(0, index, false))
	if err != nil {
		return 0, 0, err
	}

	logits, err := l.Method.Logits(x, true)
	if err != nil {
		return 0, 0, err
	}
	s.Keep(logits)
	loss, err := crossEntropy(&s, logits, y)
	if err != nil {
		return 0, 0, err
	}
	if r, ok := l.Method.(Regularizer); ok {
		pen, err := r.Penalty()
		if err != nil {
			return 0, 0, fmt.Errorf("penalty: %w", err)
		}
		s.Keep(pen)
		if loss, err = s.Op("add penalty")(loss.Add(pen, false)); err != nil {
			return 0, 0, err
		}
	}
	lv, err := torch.Values[float64](loss)
	if err != nil {
		return 0, 0, fmt.Errorf("loss: %w", err)
	}
	v := lv[0]
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, 0, &NonFiniteLossError{Epoch: l.Epoch, Step: int(l.GlobalStep), Loss: v}
	}
	if err := loss.Backward(); err != nil {
		return 0, 0, torch.Err("backward", err)
	}
	if r, ok := l.Method.(Recomputer); ok {
		if err := r.FinishBackward(); err != nil {
			return 0, 0, fmt.Errorf("backward: %w", err)
		}
	}
	if err := l.Optimizer.Step(lr); err != nil {
		return 0, 0, err
	}
	pred, err := s.Op("count correct: argmax")(logits.Argmax([]int64{1}, false, false))
	if err != nil {
		return 0, 0, err
	}
	eq, err := s.Op("count correct: compare")(pred.EqTensor(y, false))
	if err != nil {
		return 0, 0, err
	}
	sum, err := s.Op("count correct: sum")(eq.Sum(gotch.Int64, false))
	if err != nil {
		return 0, 0, err
	}
	n, err := torch.Values[int64](sum)
	if err != nil {
		return 0, 0, fmt.Errorf("count correct: %w", err)
	}
	return v, int(n[0]), nil
}

// crossEntropy returns the mean cross-entropy of logits [B, C] against the
// class indices y [B], computed as libtorch's log-softmax over the last
// dimension followed by the negative log-likelihood (no class weights, mean
// reduction, ignore index -100). Intermediates are recorded in s, and so
// is the result.
func crossEntropy(s *torch.Scope, logits, y *ts.Tensor) (*ts.Tensor, error) {
	logp, err := s.Op("cross-entropy: log-softmax")(logits.LogSoftmax(-1, logits.DType(), false))
	if err != nil {
		return nil, err
	}
	noWeight := s.Keep(ts.NewTensor()) // undefined: every class weighs 1
	const meanReduction, ignoreIndex = 1, -100
	return s.Op("cross-entropy: nll")(logp.NllLoss(y, noWeight, meanReduction, ignoreIndex, false))
}

// Logits evaluates the method on features in batches without gradients and
// returns the row-major logits on the CPU. It stops with ErrInterrupted
// between batches once ctx is cancelled.
func Logits(ctx context.Context, m Method, f *Features, batchSize int) ([]float32, int, error) {
	return mapBatches(ctx, f, batchSize, batchMap{what: "evaluate", out: "logits", cols: "classes"},
		func(rows *ts.Tensor) (*ts.Tensor, error) { return m.Logits(rows, false) })
}

// batchMap names what mapBatches computes, for its errors.
type batchMap struct {
	what string // the operation, for the batch size and interruption errors
	out  string // the result, for shape and copy errors
	cols string // the result's second dimension, for the shape error
}

// mapBatches applies fn to the rows of f.X in batches of batchSize without
// gradients, and returns fn's results on the CPU, concatenated row-major,
// with their width (the second dimension of each [batch, width] result).
// fn may return its argument itself; anything else it returns is dropped
// here once copied. mapBatches stops with ErrInterrupted between batches
// once ctx is cancelled.
func mapBatches(ctx context.Context, f *Features, batchSize int, name batchMap,
	fn func(rows *ts.Tensor) (*ts.Tensor, error),
) ([]float32, int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if batchSize <= 0 {
		return nil, 0, fmt.Errorf("%s: batch size %d must be positive", name.what, batchSize)
	}
	var out []float32
	width := 0
	n := f.Len()
	err := torch.NoGrad(func() error {
		for lo := 0; lo < n; lo += batchSize {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", name.what, ErrInterrupted)
			}
			buf, w, err := mapBatch(f.X, lo, min(lo+batchSize, n), name, fn)
			if err != nil {
				return err
			}
			width = w
			out = append(out, buf...)
		}
		return nil
	})
	return out, width, err
}

// mapBatch returns fn of the rows lo..hi of x on the CPU and its width.
func mapBatch(x *ts.Tensor, lo, hi int, name batchMap, fn func(rows *ts.Tensor) (*ts.Tensor, error)) ([]float32, int, error) {
	var s torch.Scope
	defer s.Drop()
	rows, err := s.Op(name.what + " batch")(x.Narrow(0, int64(lo), int64(hi-lo), false))
	if err != nil {
		return nil, 0, err
	}
	y, err := fn(rows)
	if err != nil {
		return nil, 0, err
	}
	if y != rows {
		s.Keep(y)
	}
	size, err := y.Size()
	if err == nil && len(size) != 2 {
		err = fmt.Errorf("shape %v, want [batch, %s]", size, name.cols)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name.out, err)
	}
	buf, err := torch.Values[float32](y)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name.out, err)
	}
	return buf, int(size[1]), nil
}

// EvaluateMethod computes metrics of m on f, batch by batch; it stops with
// ErrInterrupted between batches once ctx is cancelled.
func EvaluateMethod(ctx context.Context, m Method, f *Features, batchSize int) (metrics.Metrics, error) {
	logits, classes, err := Logits(ctx, m, f, batchSize)
	if err != nil {
		return metrics.Metrics{}, err
	}
	if f.Len() == 0 {
		return metrics.Metrics{}, errors.New("evaluate: no examples")
	}
	return metrics.Evaluate(logits, f.Y, classes)
}

// FeatureAdapter is implemented by methods that change the image features
// before comparing them with their classifier (CLIP-Adapter's visual
// branch). AdaptFeatures maps raw features [B, D] to the features the
// classifier compares, without gradients being needed.
type FeatureAdapter interface {
	AdaptFeatures(features *ts.Tensor) (*ts.Tensor, error)
}

// AdaptedFeatures returns the image features of f as m's classifier sees
// them (AdaptFeatures for a FeatureAdapter, else the raw features), on the
// CPU in row-major order, with their width.
func AdaptedFeatures(m Method, f *Features, batchSize int) ([]float32, int, error) {
	fa, adapts := m.(FeatureAdapter)
	return mapBatches(context.Background(), f, batchSize,
		batchMap{what: "adapt features", out: "adapted features", cols: "dim"},
		func(rows *ts.Tensor) (*ts.Tensor, error) {
			if !adapts {
				return rows, nil
			}
			y, err := fa.AdaptFeatures(rows)
			if err != nil {
				return nil, fmt.Errorf("adapt features: %w", err)
			}
			return y, nil
		})
}
