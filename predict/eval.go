package predict

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/metrics"
	"github.com/clipadapter/clipgo/rundir"
)

// EvalOptions configures Evaluate.
type EvalOptions struct {
	Options
	// MaxTest evaluates the first MaxTest test images only (0: all).
	MaxTest int
	// CacheDir holds encoded test features, shared by the runs of one
	// backbone ("": the run's output.dir/.features, as training uses;
	// "-": no cache).
	CacheDir string
}

// Evaluate evaluates the finished run in dir on the test list of another
// dataset (datasets.Load(dataset, root): ImageNetV2, ImageNetSketch,
// ImageNetA, ImageNetR, or any other with the run's classes or a subset
// of them) and writes dir/eval/<dataset>.json (see rundir.EvalResult),
// <dataset> being the dataset's configuration name (imagenet_sketch).
// Text-based methods classify among the dataset's class names; the others
// have their logits restricted to the dataset's classes (see Target).
func Evaluate(ctx context.Context, dir, dataset, root string, o EvalOptions) (*rundir.EvalResult, error) {
	start := time.Now()
	res, err := rundir.ReadResult(dir)
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: not a finished run: %w", dir, err)
	}
	ds, err := datasets.Load(dataset, root)
	if err != nil {
		return nil, err
	}
	if len(ds.Test) == 0 {
		return nil, fmt.Errorf("%s: no test images", ds.Name)
	}
	o.Target = &Target{Names: ds.ClassNames, IDs: ds.ClassIDs}
	c, err := Load(ctx, dir, o.Options)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", dir, ds.Name, err)
	}
	defer c.Close()
	items := ds.Test
	if o.MaxTest > 0 && len(items) > o.MaxTest {
		items = items[:o.MaxTest]
	}
	cacheDir := o.CacheDir
	switch cacheDir {
	case "":
		if c.cfg.Train.CacheFeatures {
			cacheDir = filepath.Join(c.cfg.Output.Dir, ".features")
		} else {
			cacheDir = ""
		}
	case "-":
		cacheDir = ""
	}
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	f, err := c.encodeItems(ctx, ds, items, cacheDir, c.cfg.Data.SkipBadImages, out)
	if err != nil {
		return nil, err
	}
	defer f.Drop()
	logits, err := c.Logits(ctx, f)
	if err != nil {
		return nil, err
	}
	m, err := metrics.Evaluate(logits, f.Y, len(c.Classes()))
	if err != nil {
		return nil, err
	}
	name, _ := datasets.ConfigName(dataset)
	er := &rundir.EvalResult{
		Method: res.Method, MethodLabel: res.MethodLabel, MethodRank: res.MethodRank,
		Source: res.Dataset, Dataset: ds.Name, Backbone: res.Backbone, Shots: res.Shots, Seed: res.Seed,
		Classes: len(c.Classes()), Restricted: c.Restricted(), Test: m,
		Seconds: time.Since(start).Seconds(), Finished: time.Now().UTC().Format(time.RFC3339),
	}
	path := rundir.EvalFile(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := rundir.WriteJSON(path, er); err != nil {
		return nil, err
	}
	return er, nil
}
