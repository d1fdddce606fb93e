// Package runtest trains the small finished runs that the commands' tests
// work on. It is imported by tests only.
package runtest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/experiment"
)

// zeroShotConfig is a zero-shot run of a small random CLIP on a 3-class
// synthetic dataset (6 images a class, 1 shot) under ROOT.
const zeroShotConfig = `
[model]
name = "random:tiny"
device = "cpu"
[data]
dataset = "synthetic"
root = "ROOT/data"
synth_classes = 3
synth_per_class = 6
shots = 1
num_workers = 1
[method]
name = "zeroshot"
[output]
dir = "ROOT/runs"
name = "zs"
`

// ZeroShot trains zeroShotConfig in a temporary folder and returns the
// run directory and the data root.
func ZeroShot(t testing.TB) (dir, dataRoot string) {
	t.Helper()
	root := t.TempDir()
	cfg, err := config.Parse(strings.ReplaceAll(zeroShotConfig, "ROOT", root), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := experiment.Run(context.Background(), experiment.Options{Config: cfg, Progress: io.Discard, Log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "runs", "zs"), filepath.Join(root, "data")
}
