package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/internal/progress"
	"github.com/clipadapter/clipgo/methods"
	"github.com/clipadapter/clipgo/metrics"
	"github.com/clipadapter/clipgo/rundir"
	"github.com/clipadapter/clipgo/train"
)

// newLoop builds the loop, optimizer and schedule from the config.
func newLoop(cfg *config.Config, b *methods.Built, views []*train.Features) (*train.Loop, error) {
	t := cfg.Train
	params := b.Method.Parameters()
	var opt train.Optimizer
	switch t.Optimizer {
	case "sgd":
		opt = train.NewSGD(params, t.Momentum, t.WeightDecay)
	case "adamw":
		opt = train.NewAdamW(params, t.AdamBeta1, t.AdamBeta2, t.AdamEps, t.WeightDecay)
	default:
		return nil, fmt.Errorf("unknown optimizer %q", t.Optimizer)
	}
	sched, err := train.NewSchedule(t.Schedule, t.LR, t.Epochs, t.WarmupEpochs, t.WarmupLR)
	if err != nil {
		return nil, err
	}
	return train.NewLoop(b.Method, opt, sched, t.Epochs, t.BatchSize, views, uint64(cfg.Data.Seed)), nil
}

// attachHooks adds the experiment's hooks to the loop: a progress bar per
// epoch, validation (every train.eval_every epochs, at the end, or every
// epoch for train.select = best_val, keeping best.ckpt), a metrics.jsonl
// line per epoch, checkpoints every train.checkpoint_every epochs, and a
// checkpoint when interrupted. The returned Metrics follows the best
// validation result; for a resumed loop (one past its first step) it starts
// from the result stored in best.ckpt, so that a worse epoch after the
// resume does not replace the best one of before.
func attachHooks(l *train.Loop, cfg *config.Config, dir string, val *train.Features, out io.Writer, log *slog.Logger) *metrics.Metrics {
	best := &metrics.Metrics{}
	if cfg.Train.Select == "best_val" && l.GlobalStep > 0 {
		*best = storedBest(filepath.Join(dir, rundir.BestFile), val.Len(), log)
	}
	steps := l.StepsPerEpoch()
	var bar *progress.Bar
	l.Hooks.Step = append(l.Hooks.Step, func(l *train.Loop, s train.StepInfo) error {
		if bar == nil {
			bar = progress.New(out, fmt.Sprintf("epoch %d/%d", s.Epoch+1, l.Epochs), steps, "step")
		}
		bar.SetSuffix(fmt.Sprintf("loss %.4f lr %.2e", s.Loss, s.LR))
		bar.Add(1)
		return nil
	})
	l.Hooks.Epoch = append(l.Hooks.Epoch, func(l *train.Loop, e train.EpochInfo) error {
		if bar != nil {
			bar.Finish()
			bar = nil
		}
		rec := map[string]any{"epoch": e.Epoch + 1, "lr": e.LR, "loss": e.MeanLoss, "train_top1": e.TrainTop1, "step": l.GlobalStep}
		last := e.Epoch+1 == l.Epochs
		if (cfg.Train.EvalEvery > 0 && (e.Epoch+1)%cfg.Train.EvalEvery == 0) || last || cfg.Train.Select == "best_val" {
			// Runs to the end even when the run is being stopped: it is
			// quick (cached features), and the epoch's checkpoint follows;
			// the loop stops before its next step.
			m, err := train.EvaluateMethod(context.Background(), l.Method, val, cfg.Train.EvalBatchSize)
			if err != nil {
				return err
			}
			rec["val_top1"], rec["val_top5"] = m.Top1, m.Top5
			if m.Top1 > best.Top1 || best.N == 0 {
				*best = m
				if cfg.Train.Select == "best_val" {
					info := map[string]float64{"val_top1": m.Top1, "val_top5": m.Top5}
					if err := train.SaveSnapshot(filepath.Join(dir, rundir.BestFile), l, info); err != nil {
						return err
					}
				}
			}
			log.Info("epoch", "epoch", e.Epoch+1, "loss", fmt.Sprintf("%.4f", e.MeanLoss), "val_top1", fmt.Sprintf("%.2f", m.Top1))
		}
		if err := rundir.AppendJSONL(filepath.Join(dir, rundir.MetricsFile), rec); err != nil {
			return err
		}
		every := max(cfg.Train.CheckpointEvery, 1)
		if (e.Epoch+1)%every == 0 || last {
			return train.SaveCheckpoint(filepath.Join(dir, rundir.CheckpointFile), l, nil)
		}
		return nil
	})
	l.Hooks.Interrupt = append(l.Hooks.Interrupt, func(l *train.Loop) error {
		if bar != nil {
			bar.Finish()
		}
		log.Warn("interrupted: writing a checkpoint", "epoch", l.Epoch+1, "step", l.StepInEpoch, "dir", dir)
		return train.SaveCheckpoint(filepath.Join(dir, rundir.CheckpointFile), l, nil)
	})
	return best
}

// storedBest returns the validation result stored in the best checkpoint
// at path (top-1 and top-5 of n examples), or nothing when there is none
// yet; an unreadable one is logged and then replaced by the next
// evaluation.
func storedBest(path string, n int, log *slog.Logger) metrics.Metrics {
	st, err := train.ReadLoopState(path)
	if errors.Is(err, fs.ErrNotExist) {
		return metrics.Metrics{}
	}
	var info map[string]float64
	if err == nil && len(st.Info) > 0 {
		err = json.Unmarshal(st.Info, &info)
	}
	top1, ok := info["val_top1"]
	if err == nil && !ok {
		err = errors.New("no val_top1 stored")
	}
	if err != nil {
		log.Warn("resume: the best checkpoint's validation accuracy is unknown; the next evaluation replaces it", "file", path, "err", err)
		return metrics.Metrics{}
	}
	return metrics.Metrics{Top1: top1, Top5: info["val_top5"], N: n}
}
