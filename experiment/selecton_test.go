package experiment

import (
	"context"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/config"
)

// TestSelectOnChoosesOnTheNamedData runs GDA (training-free; its α is
// chosen by Tune on the selection data) with each train.select_on. The
// accuracy Tune reports for the chosen α is measured on the selection
// data, so it must equal the result's few-shot val top-1 by default and
// its test top-1 when selecting on test; the result and the run directory
// name record a non-default choice.
func TestSelectOnChoosesOnTheNamedData(t *testing.T) {
	dir := t.TempDir()
	text := `
[model]
name = "random:tiny"
device = "cpu"
[data]
dataset = "synthetic"
root = "` + filepath.Join(dir, "data") + `"
synth_classes = 4
synth_per_class = 16
shots = 4
num_workers = 1
[method]
name = "gda"
augment_views = 2
[train]
epochs = 0
[output]
dir = "` + dir + `"
`
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		selectOn string
		want     func(val, test float64) float64
	}{
		{config.SelectOnFewShotVal, func(val, _ float64) float64 { return val }},
		{config.SelectOnTest, func(_, test float64) float64 { return test }},
		{config.SelectOnFullVal, nil},
	} {
		cfg, err := config.Parse(text, []string{"train.select_on=" + tc.selectOn})
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), Options{Config: cfg, Progress: io.Discard, Log: log})
		if err != nil {
			t.Fatalf("%s: %v", tc.selectOn, err)
		}
		acc, ok := res.Tuned["val_accuracy"]
		if !ok {
			t.Fatalf("%s: tuned %v has no val_accuracy", tc.selectOn, res.Tuned)
		}
		if tc.want != nil {
			if w := tc.want(res.Val.Top1, res.Test.Top1) / 100; math.Abs(acc-w) > 1e-9 {
				t.Errorf("%s: the chosen alpha's selection accuracy %.4f, want %.4f", tc.selectOn, acc, w)
			}
		}
		named := tc.selectOn != config.SelectOnFewShotVal
		if (res.SelectOn == tc.selectOn) != named || strings.Contains(cfg.RunName(), "_select-"+tc.selectOn) != named {
			t.Errorf("%s: result select_on %q, run name %s", tc.selectOn, res.SelectOn, cfg.RunName())
		}
	}
}
