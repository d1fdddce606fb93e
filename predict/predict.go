// Package predict uses a finished run as a classifier: Load reads a run
// directory (config.toml and model.ckpt, see rundir.ModelInfo), checks that
// the backbone is the one the run was trained with (SHA-256), loads CLIP
// and sets the method up for inference without the training data; the
// Classifier then predicts image files (PredictFiles, through the same
// decoding and test transform as the run) or decoded images (Predict).
// Evaluate scores a run on another dataset (ImageNet-V2, -Sketch, -A, -R,
// ...) and writes DIR/eval/<dataset>.json.
//
// Use from another program:
//
//	c, err := predict.Load(ctx, "runs/imagenet_tip-adapter_RN50_16shot_seed1", predict.Options{Device: "cpu"})
//	if err != nil { ... }
//	defer c.Close()
//	err = c.PredictFiles(ctx, []string{"cat.jpg"}, 5, func(r predict.FileResult) error {
//		fmt.Println(r.Path, r.Names[0], r.Probs[0], r.Err)
//		return nil
//	})
package predict

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/experiment"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/methods"
	"github.com/clipadapter/clipgo/metrics"
	"github.com/clipadapter/clipgo/rundir"
	"github.com/clipadapter/clipgo/train"
)

// Options configures Load.
type Options struct {
	// Device overrides the run's model.device ("cpu", "cuda", "cuda:N",
	// "auto"); empty keeps it.
	Device string
	// Backbone overrides the run's model.name with another name or file
	// of the same weights (for example where the weights cache moved):
	// its SHA-256 must still be the run's.
	Backbone string
	// BatchSize is how many images are encoded at once (0: the run's
	// train.eval_batch_size).
	BatchSize int
	// Workers is how many images are decoded at once (0: the run's
	// data.num_workers).
	Workers int
	// Target, when set, makes the classifier classify among other classes
	// (another dataset's): see Target.
	Target *Target
	// Methods is the method registry (nil: methods.All()).
	Methods methods.Registry
	// Progress receives the weights' download progress (nil: none).
	Progress io.Writer
	// Log receives messages (nil: slog.Default()).
	Log *slog.Logger
}

// Target is a list of classes to classify among instead of the run's own,
// each mapped to one of the run's classes: through IDs when both the
// target and the run have class ids (ImageNet's WordNet ids), else through
// the names ("_" and spaces alike). Text-based methods (train.TextBased)
// are set up with the target's names, as CoOp evaluates on ImageNet's
// variants; the others keep the run's classes and their logits are
// restricted to the mapped ones.
type Target struct {
	Names []string
	IDs   []string
}

// Classifier is a finished run set up for inference. Its methods must not
// be called concurrently.
type Classifier struct {
	dir   string
	info  rundir.ModelInfo
	cfg   *config.Config
	model *clip.Model
	// enc encodes images into the features the method takes
	// (experiment.EncoderFor), keyExtra sets them apart in cache keys.
	enc      experiment.ImageEncoder
	keyExtra []string
	method   train.Method
	device   gotch.Device
	batch    int
	work     int
	// names are the output classes; columns, when set, picks them from
	// the method's logits (restricted target).
	names   []string
	columns []int64
	log     *slog.Logger
}

// Load reads the finished run in dir and sets it up for inference. A
// directory without model.ckpt (an unfinished run, or one made before
// runs saved their model), a corrupt model file, a backbone whose SHA-256
// differs from the run's and target classes that do not map to the run's
// are errors naming the file or class.
func Load(ctx context.Context, dir string, o Options) (*Classifier, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Methods == nil {
		o.Methods = methods.All()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	cfg, info, tensors, err := readRun(dir, o.Device)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, t := range tensors {
			t.Drop()
		}
	}()
	c := &Classifier{dir: dir, info: *info, cfg: cfg, log: o.Log, batch: o.BatchSize, work: o.Workers}
	if err := c.setup(ctx, o, tensors); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// setup builds the method, loads and checks the backbone and restores the
// method's state from tensors.
func (c *Classifier) setup(ctx context.Context, o Options, tensors map[string]*ts.Tensor) (err error) {
	cfg, info, dir := c.cfg, &c.info, c.dir
	if c.batch <= 0 {
		c.batch = max(cfg.Train.EvalBatchSize, 1)
	}
	if c.work <= 0 {
		c.work = cfg.Data.NumWorkers
	}
	if c.device, err = torch.ParseDevice(cfg.Model.Device); err != nil {
		return err
	}
	b, err := o.Methods.Build(cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, rundir.ConfigFile), err)
	}
	c.method = b.Method
	if b.Spec.Name != info.Method {
		return fmt.Errorf("%s is a %s model but %s names method %s", filepath.Join(dir, rundir.ModelFile), info.Method, filepath.Join(dir, rundir.ConfigFile), b.Spec.Name)
	}

	mc := cfg.Model
	if o.Backbone != "" {
		mc.Name = o.Backbone
	}
	digest, err := experiment.BackboneDigest(ctx, mc)
	if err != nil {
		return fmt.Errorf("backbone: %w", err)
	}
	if digest != info.BackboneSHA256 {
		return fmt.Errorf("backbone %s has SHA-256 %s, but the run %s was trained with %s (SHA-256 %s): use the run's weights (-backbone FILE when they moved)",
			mc.Name, digest, dir, info.Backbone, info.BackboneSHA256)
	}
	if c.model, _, err = experiment.LoadModel(ctx, mc, c.device, o.Progress); err != nil {
		return err
	}
	if d := int64(c.model.Config().EmbedDim); d != info.FeatureDim {
		return fmt.Errorf("%s: the run's features have %d dimensions, the backbone %d", filepath.Join(dir, rundir.ModelFile), info.FeatureDim, d)
	}
	if c.enc, c.keyExtra, err = experiment.EncoderFor(c.model, b.Needs); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, rundir.ConfigFile), err)
	}

	names := info.ClassNames
	c.names = names
	if o.Target != nil {
		idx, err := mapClasses(info, o.Target)
		if err != nil {
			return err
		}
		c.names = experiment.PromptNames(o.Target.Names)
		if train.IsTextBased(c.method) {
			names = c.names
		} else {
			c.columns = idx
		}
	}
	tok, err := tokenizer.New()
	if err != nil {
		return err
	}
	mctx := &train.Context{
		Text:       &clip.TextSide{Model: c.model, Tokenizer: tok, Device: c.device},
		ClassNames: names,
		Templates:  info.Templates,
		FeatureDim: info.FeatureDim,
		Device:     c.device,
		Seed:       uint64(cfg.Data.Seed),
		Log:        slog.New(slog.DiscardHandler),
		Image:      c.model,
	}
	proj, err := experiment.ProjectionFor(c.model, b.Needs)
	if err != nil {
		return err
	}
	defer proj.Drop()
	mctx.Projection = proj
	if err := train.RestoreMethod(c.method, mctx, tensors, info.Extra); err != nil {
		return fmt.Errorf("%s: %s: %w", filepath.Join(dir, rundir.ModelFile), info.Method, err)
	}
	return nil
}

// readRun reads the run's config.toml and model.ckpt (tensors on the
// device the options or the config name).
func readRun(dir, device string) (*config.Config, *rundir.ModelInfo, map[string]*ts.Tensor, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, nil, nil, fmt.Errorf("run directory %s not found", dir)
	}
	modelPath := filepath.Join(dir, rundir.ModelFile)
	if _, err := os.Stat(modelPath); errors.Is(err, fs.ErrNotExist) {
		if _, rerr := os.Stat(filepath.Join(dir, rundir.ResultFile)); rerr == nil {
			return nil, nil, nil, fmt.Errorf("%s is missing: %s was made by an older version of clipgo that did not save the model; run it again to use it for prediction", modelPath, dir)
		}
		return nil, nil, nil, fmt.Errorf("%s is missing: %s is not a finished run (no %s)", modelPath, dir, rundir.ResultFile)
	}
	cfgPath := filepath.Join(dir, rundir.ConfigFile)
	var sets []string
	if device != "" {
		sets = []string{"model.device=" + device}
	}
	cfg, err := config.Load(cfgPath, sets)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("run %s: %w", dir, err)
	}
	dev, err := torch.ParseDevice(cfg.Model.Device)
	if err != nil {
		return nil, nil, nil, err
	}
	var info rundir.ModelInfo
	tensors, err := train.ReadTensors(modelPath, &info, dev)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := info.Check(modelPath); err != nil {
		for _, t := range tensors {
			t.Drop()
		}
		return nil, nil, nil, err
	}
	return cfg, &info, tensors, nil
}

// normName is a class name compared across datasets.
func normName(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(s, "_", " ")), " "))
}

// mapClasses returns, for each target class, the index of the run's class
// it is (see Target).
func mapClasses(info *rundir.ModelInfo, t *Target) ([]int64, error) {
	if len(t.Names) == 0 {
		return nil, errors.New("target: no classes")
	}
	byIDs := len(t.IDs) > 0 && len(info.ClassIDs) > 0
	if len(t.IDs) > 0 && len(t.IDs) != len(t.Names) {
		return nil, fmt.Errorf("target: %d ids for %d classes", len(t.IDs), len(t.Names))
	}
	keys, what := info.ClassNames, "name"
	if byIDs {
		keys, what = info.ClassIDs, "id"
	}
	index := make(map[string]int64, len(keys))
	dup := map[string]bool{}
	for i, k := range keys {
		if !byIDs {
			k = normName(k)
		}
		if _, ok := index[k]; ok {
			dup[k] = true
		}
		index[k] = int64(i)
	}
	out := make([]int64, len(t.Names))
	for j, name := range t.Names {
		k := name
		if byIDs {
			k = t.IDs[j]
		} else {
			k = normName(name)
		}
		i, ok := index[k]
		switch {
		case !ok && byIDs:
			return nil, fmt.Errorf("class %q (%s) is not one of the run's %d classes (trained on %s)", name, k, len(keys), info.Dataset)
		case !ok:
			return nil, fmt.Errorf("class %q is not one of the run's %d classes (trained on %s; classes are matched by %s)", name, len(keys), info.Dataset, what)
		case dup[k]:
			return nil, fmt.Errorf("class %q matches several of the run's classes by %s", name, what)
		}
		out[j] = i
	}
	return out, nil
}

// Info returns the run's model description.
func (c *Classifier) Info() rundir.ModelInfo { return c.info }

// Classes returns the names of the classes predictions index.
func (c *Classifier) Classes() []string { return c.names }

// Restricted reports whether the classifier's logits are the run's
// restricted to a target's classes (rather than the method set up with
// the target's names).
func (c *Classifier) Restricted() bool { return c.columns != nil }

// Close frees the model and the method.
func (c *Classifier) Close() {
	if c.method != nil {
		c.method.Drop()
		c.method = nil
	}
	if c.model != nil {
		c.model.Drop()
		c.model = nil
	}
}

// Logits returns the row-major logits [N, len(Classes())] of the method
// for raw image features, evaluated in batches of the batch size.
func (c *Classifier) Logits(ctx context.Context, features *train.Features) ([]float32, error) {
	logits, classes, err := train.Logits(ctx, c.method, features, c.batch)
	if err != nil {
		return nil, err
	}
	if c.columns == nil {
		if classes != len(c.names) {
			return nil, fmt.Errorf("the method gives %d logits for %d classes", classes, len(c.names))
		}
		return logits, nil
	}
	n := features.Len()
	out := make([]float32, n*len(c.columns))
	for i := range n {
		row := logits[i*classes : (i+1)*classes]
		for j, k := range c.columns {
			out[i*len(c.columns)+j] = row[k]
		}
	}
	return out, nil
}

// Prediction is the top classes of one image, best first, with their
// softmax probabilities over all of Classes().
type Prediction struct {
	Classes []int
	Names   []string
	Probs   []float64
}

// predictions turns row-major logits into the top k of each row.
func (c *Classifier) predictions(logits []float32, k int) []Prediction {
	nc := len(c.names)
	out := make([]Prediction, len(logits)/nc)
	for i := range out {
		top, probs := metrics.TopK(logits[i*nc:(i+1)*nc], k)
		names := make([]string, len(top))
		for j, t := range top {
			names[j] = c.names[t]
		}
		out[i] = Prediction{Classes: top, Names: names, Probs: probs}
	}
	return out
}
