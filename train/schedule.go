package train

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate for an epoch and the step within it.
type Schedule interface {
	LR(epoch, step, stepsPerEpoch int) float64
}

// CosineWarmup is CoOp's schedule (Dassl's constant warm-up around
// CosineAnnealingLR, stepped once per epoch): the first WarmupEpochs epochs
// run at WarmupLR, then epoch e runs at
// Base·(1 + cos(π·(e − WarmupEpochs)/Epochs))/2, so the cosine starts late and
// never reaches zero, exactly as the reference code behaves.
type CosineWarmup struct {
	Base         float64
	Epochs       int
	WarmupEpochs int
	WarmupLR     float64
}

// LR implements Schedule.
func (s CosineWarmup) LR(epoch, _, _ int) float64 {
	if epoch < s.WarmupEpochs {
		return s.WarmupLR
	}
	return s.Base * (1 + math.Cos(math.Pi*float64(epoch-s.WarmupEpochs)/float64(s.Epochs))) / 2
}

// CosinePerStep is cosine annealing to zero over all iterations, stepped
// every iteration (Tip-Adapter-F): step t of T = Epochs·stepsPerEpoch runs at
// Base·(1 + cos(π·t/T))/2.
type CosinePerStep struct {
	Base   float64
	Epochs int
}

// LR implements Schedule.
func (s CosinePerStep) LR(epoch, step, stepsPerEpoch int) float64 {
	t := float64(epoch*stepsPerEpoch + step)
	total := float64(s.Epochs * stepsPerEpoch)
	return s.Base * (1 + math.Cos(math.Pi*t/total)) / 2
}

// Constant is a fixed learning rate.
type Constant float64

// LR implements Schedule.
func (c Constant) LR(int, int, int) float64 { return float64(c) }

// NewSchedule builds the schedule named name ("cosine", "cosine_step" or
// "constant").
func NewSchedule(name string, base float64, epochs, warmupEpochs int, warmupLR float64) (Schedule, error) {
	switch name {
	case "cosine", "":
		return CosineWarmup{Base: base, Epochs: epochs, WarmupEpochs: warmupEpochs, WarmupLR: warmupLR}, nil
	case "cosine_step":
		return CosinePerStep{Base: base, Epochs: epochs}, nil
	case "constant":
		return Constant(base), nil
	}
	return nil, fmt.Errorf("unknown lr schedule %q (want cosine, cosine_step or constant)", name)
}
