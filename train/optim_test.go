package train

import (
	"encoding/json"
	"math"
	"os"
	"runtime"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

type optimRef struct {
	P0    []float32              `json:"p0"`
	Shape []int64                `json:"shape"`
	Grads [][]float32            `json:"grads"`
	LRs   []float64              `json:"lrs"`
	Cases map[string][][]float64 `json:"cases"`
}

// TestOptimizersMatchPyTorch feeds the same gradients as the PyTorch
// reference and compares the parameter after every step (tolerance 1e-6
// relative: both run float32 arithmetic).
func TestOptimizersMatchPyTorch(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("testdata/optim.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref optimRef
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	makers := map[string]func([]Param) Optimizer{
		"sgd_momentum_wd": func(ps []Param) Optimizer { return NewSGD(ps, 0.9, 5e-4) },
		"sgd_plain":       func(ps []Param) Optimizer { return NewSGD(ps, 0, 0) },
		"adamw":           func(ps []Param) Optimizer { return NewAdamW(ps, 0.9, 0.999, 1e-4, 0.01) },
	}
	for name, traj := range ref.Cases {
		t.Run(name, func(t *testing.T) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			p := ts.MustOfSlice(ref.P0).MustView(ref.Shape, true).MustSetRequiresGrad(true, true)
			opt := makers[name]([]Param{{Name: "p", Tensor: p}})
			for k, g := range ref.Grads {
				G := ts.MustOfSlice(g).MustView(ref.Shape, true)
				loss := p.MustMul(G, false).MustSum(gotch.Float, true)
				loss.MustBackward()
				if err := opt.Step(ref.LRs[k]); err != nil {
					t.Fatal(err)
				}
				got := p.Float64Values()
				for i, want := range traj[k] {
					if math.Abs(got[i]-want) > 1e-6*(1+math.Abs(want)) {
						t.Fatalf("step %d: p[%d] = %.9g, PyTorch %.9g", k+1, i, got[i], want)
					}
				}
				loss.MustDrop()
				G.MustDrop()
			}
		})
	}
}

func TestCosineWarmupMatchesReference(t *testing.T) {
	// Values from docs/hyperparameters.md §1 (Dassl's schedule as it runs).
	tests := []struct {
		epochs, epoch int
		want          float64
	}{
		{50, 0, 1e-5}, {50, 1, 0.002}, {50, 25, 1.0628e-3}, {50, 49, 7.885e-6},
		{200, 100, 1.0157e-3}, {200, 199, 4.934e-7},
	}
	for _, tt := range tests {
		s := CosineWarmup{Base: 0.002, Epochs: tt.epochs, WarmupEpochs: 1, WarmupLR: 1e-5}
		if got := s.LR(tt.epoch, 0, 1); math.Abs(got-tt.want) > 1e-3*tt.want {
			t.Errorf("E=%d: lr(%d) = %.5g, want %.5g", tt.epochs, tt.epoch, got, tt.want)
		}
	}
	c := CosinePerStep{Base: 1e-3, Epochs: 2}
	if got := c.LR(1, 0, 5); math.Abs(got-0.5e-3) > 1e-12 {
		t.Errorf("cosine_step halfway = %g, want 5e-4", got)
	}
}

// TestOptimizerErrorsAreReturned restores optimizer state of the wrong
// shape: the in-place update fails in libtorch, and Step must return an
// error naming the parameter and the operation (not end the process), and
// leave the step count alone.
func TestOptimizerErrorsAreReturned(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, tc := range []struct {
		name  string
		opt   func([]Param) Optimizer
		state []string
		want  string
	}{
		{"sgd", func(ps []Param) Optimizer { return NewSGD(ps, 0.9, 0) }, []string{"momentum.w"}, "momentum"},
		{"adamw", func(ps []Param) Optimizer { return NewAdamW(ps, 0.9, 0.999, 1e-8, 0) }, []string{"exp_avg.w", "exp_avg_sq.w"}, "first moment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ts.MustOfSlice([]float32{1, 2}).MustSetRequiresGrad(true, true)
			defer p.MustDrop()
			loss := p.MustSum(gotch.Float, false)
			defer loss.MustDrop()
			loss.MustBackward()
			opt := tc.opt([]Param{{Name: "w", Tensor: p}})
			state := map[string]*ts.Tensor{}
			for _, name := range tc.state {
				state[name] = ts.MustOfSlice([]float32{0, 0, 0})
				defer state[name].MustDrop()
			}
			if err := opt.SetState(state, 1); err != nil {
				t.Fatal(err)
			}
			err := opt.Step(0.1)
			if err == nil || !contains(err.Error(), "parameter w") || !contains(err.Error(), tc.want) {
				t.Fatalf("Step = %v, want an error naming parameter w and %q", err, tc.want)
			}
			if contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			if _, step := opt.State(); step != 1 {
				t.Errorf("step = %d after a failed step, want 1", step)
			}
		})
	}
}
