// Package experiment is the application around the training loop: from a
// resolved configuration it locks the run directory, builds the method
// from the registry, loads the dataset and its few-shot split, loads the
// frozen CLIP, encodes image features (through the on-disk feature
// cache), gives the method CLIP's text side, trains it with package
// train's Loop (progress, evaluation, metrics and checkpoints attached as
// hooks), tunes it on validation, evaluates it on test and writes the run
// directory (package rundir). Run reads as that list of steps.
package experiment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sugarme/gotch"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/methods"
	"github.com/clipadapter/clipgo/metrics"
	"github.com/clipadapter/clipgo/rundir"
	"github.com/clipadapter/clipgo/train"
)

// Options configures Run.
type Options struct {
	Config *config.Config
	// Methods is the method registry (nil: methods.All()).
	Methods methods.Registry
	// Dir is the run directory; empty derives it from the config.
	Dir string
	// Resume continues the run in Dir from its last checkpoint.
	Resume bool
	// Progress receives progress bars (nil: os.Stderr).
	Progress io.Writer
	// Log receives messages (nil: slog.Default()).
	Log *slog.Logger
}

// ErrFinished is returned when the run directory already has a result.
var ErrFinished = errors.New("run already finished")

// run is one experiment in progress: what each step produced.
type run struct {
	o      Options
	cfg    *config.Config
	dir    string
	log    *slog.Logger
	out    io.Writer
	start  time.Time
	device gotch.Device

	method *methods.Built
	data   *datasets.Dataset
	split  *datasets.Split
	model  *clip.Model
	enc    *extractor
	views  []*train.Features
	val    *train.Features
	counts *rundir.DataCounts
	// mctx is what the method was given at Init.
	mctx *train.Context
	// sel selects the epoch and tunes hyper-parameters: val, or the full
	// validation split or the test set (train.select_on); test holds the
	// test features once encoded.
	sel, test *train.Features
	// selected is the state the result describes: "last", or "best_val"
	// once the best validation epoch has been reloaded.
	selected string
}

// Run executes one configured run end to end and returns its result,
// also written to the run directory's result.json.
func Run(ctx context.Context, o Options) (*rundir.Result, error) {
	r := newRun(o)
	unlock, err := r.openDir()
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer r.drop()
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		{"method", r.buildMethod},
		{"data", r.loadData}, // before the model: a wrong data.root should not wait for a download
		{"model", r.loadModel},
		{"features", r.encodeTrainVal},
		{"selection", r.encodeSelection},
		{"init", r.initMethod},
		{"train", r.train},
	}
	for _, s := range steps {
		if err := s.do(ctx); err != nil {
			return nil, r.stopped(s.name, err)
		}
	}
	res, err := r.finish(ctx)
	return res, r.stopped("finish", err)
}

// stopped adds what to do next to an interruption outside the training
// loop (which says so itself): continue from the checkpoint when there
// is one, else run again.
func (r *run) stopped(step string, err error) error {
	if !errors.Is(err, train.ErrInterrupted) || step == "train" {
		return err
	}
	if _, serr := os.Stat(r.file(rundir.CheckpointFile)); serr == nil {
		return fmt.Errorf("%w; no result written: continue with -resume %s", err, r.dir)
	}
	return fmt.Errorf("%w; no result written: run it again to start over", err)
}

func newRun(o Options) *run {
	r := &run{o: o, cfg: o.Config, dir: o.Dir, log: o.Log, out: o.Progress, start: time.Now(), selected: "last"}
	if r.o.Methods == nil {
		r.o.Methods = methods.All()
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.out == nil {
		r.out = os.Stderr
	}
	if r.dir == "" {
		name := r.cfg.Output.Name
		if name == "" {
			name = r.cfg.RunName()
		}
		r.dir = filepath.Join(r.cfg.Output.Dir, name)
	}
	return r
}

func (r *run) file(name string) string { return filepath.Join(r.dir, name) }

// openDir creates and locks the run directory and checks that it is in
// the state the request expects: not finished, and holding a checkpoint
// exactly when resuming. The lock comes first: a second process in the
// same directory is refused before it reads the state the first one is
// writing.
func (r *run) openDir() (unlock func(), err error) {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	unlock, err = rundir.Lock(r.dir)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (func(), error) { unlock(); return nil, err }
	if _, err := os.Stat(r.file(rundir.ResultFile)); err == nil {
		return fail(fmt.Errorf("%s: %w (delete it to run again)", r.dir, ErrFinished))
	}
	_, ckptErr := os.Stat(r.file(rundir.CheckpointFile))
	if ckptErr == nil && !r.o.Resume {
		return fail(fmt.Errorf("%s has a checkpoint of an unfinished run: continue it with -resume %s, or delete it", r.dir, r.dir))
	}
	if ckptErr != nil && r.o.Resume {
		// Starting over here would append a second copy of the epochs to
		// metrics.jsonl.
		return fail(fmt.Errorf("%s: nothing to resume: %s is missing (the run stopped before its first checkpoint, or the directory is not a run's); start it again with -config %s -out %s after deleting the directory", r.dir, rundir.CheckpointFile, r.file(rundir.ConfigFile), r.dir))
	}
	return unlock, nil
}

// buildMethod builds the method from the registry and records the
// resolved configuration and the versions in the run directory.
func (r *run) buildMethod(context.Context) error {
	b, err := r.o.Methods.Build(r.cfg)
	if err != nil {
		return err
	}
	r.method = b
	resolved, err := r.cfg.Resolved(b.Keys)
	if err != nil {
		return err
	}
	if !r.o.Resume {
		if err := rundir.WriteFileAtomic(r.file(rundir.ConfigFile), resolved); err != nil {
			return err
		}
	}
	if r.device, err = torch.ParseDevice(r.cfg.Model.Device); err != nil {
		return err
	}
	if err := rundir.WriteJSON(r.file(rundir.VersionsFile), CurrentVersions(torch.DeviceName(r.device))); err != nil {
		return err
	}
	r.log.Info("run", "dir", r.dir, "method", b.Spec.Name, "dataset", r.cfg.Data.Dataset, "shots", r.cfg.Data.Shots, "seed", r.cfg.Data.Seed, "device", torch.DeviceName(r.device))
	return nil
}

// loadData loads the dataset and the few-shot split.
func (r *run) loadData(context.Context) (err error) {
	r.data, r.split, err = LoadData(r.cfg.Data)
	if err != nil {
		return err
	}
	r.log.Info("data", "dataset", r.data.Name, "classes", len(r.data.ClassNames), "train", len(r.split.Train), "val", len(r.split.Val), "test", len(r.data.Test), "split", r.split.Source)
	r.counts = countData(r.data, r.split, r.testItems())
	shots := r.cfg.Data.Shots
	if n := len(r.counts.EmptyClasses); n > 0 {
		r.log.Warn("classes without a training image", "count", n, "classes", firstNames(r.counts.EmptyClasses, 10))
	}
	if n := len(r.counts.ShortClasses); n > 0 && shots > 0 {
		names := make([]string, 0, n)
		for c := range r.counts.ShortClasses {
			names = append(names, c)
		}
		slices.Sort(names)
		r.log.Warn("classes with fewer training images than data.shots", "shots", shots, "count", n,
			"fewest", r.counts.TrainPerClassMin, "classes", firstNames(names, 10))
	}
	return nil
}

// countData counts what the split really holds per class (ShortClasses
// is filled only for a few-shot split, against its shots).
func countData(ds *datasets.Dataset, split *datasets.Split, test []datasets.Item) *rundir.DataCounts {
	c := &rundir.DataCounts{Train: len(split.Train), Val: len(split.Val), Test: len(test)}
	per := make([]int, len(ds.ClassNames))
	for _, it := range split.Train {
		if it.Label >= 0 && it.Label < len(per) {
			per[it.Label]++
		}
	}
	for label, n := range per {
		if label == 0 || n < c.TrainPerClassMin {
			c.TrainPerClassMin = n
		}
		c.TrainPerClassMax = max(c.TrainPerClassMax, n)
		switch {
		case n == 0:
			c.EmptyClasses = append(c.EmptyClasses, ds.ClassNames[label])
		case split.Shots > 0 && n < split.Shots:
			if c.ShortClasses == nil {
				c.ShortClasses = map[string]int{}
			}
			c.ShortClasses[ds.ClassNames[label]] = n
		}
	}
	return c
}

// firstNames joins up to n names, with the number left out.
func firstNames(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, ... (%d more)", strings.Join(names[:n], ", "), len(names)-n)
}

// loadModel loads the frozen CLIP and sets up feature extraction.
func (r *run) loadModel(ctx context.Context) error {
	model, modelID, err := LoadModel(ctx, r.cfg.Model, r.device, r.out)
	if err != nil {
		return err
	}
	r.model = model
	enc, extra, err := EncoderFor(model, r.method.Needs)
	if err != nil {
		return err
	}
	if len(extra) > 0 && strings.HasPrefix(extra[0], "layer:") {
		r.log.Info("features after an intermediate image encoder layer", "layer", r.method.Needs.Layer, "of", model.ImageLayers())
	}
	r.enc = &extractor{ctx: ctx, model: model, modelID: modelID, ds: r.data, cfg: r.cfg, device: r.device, out: r.out,
		cache: FeatureCache{Dir: filepath.Join(r.cfg.Output.Dir, ".features")}, enc: enc, keyExtra: extra}
	return nil
}

// encodeTrainVal encodes the views of the train set the method needs and
// the validation set.
func (r *run) encodeTrainVal(context.Context) error {
	needs := r.method.Needs
	if needs.TrainFeatures {
		if !r.cfg.Train.CacheFeatures && needs.Augment {
			// The official way: features are recomputed every step; the
			// loop gets labels only.
			f, err := labelsOnly(r.split.Train, r.device)
			if err != nil {
				return err
			}
			r.views = []*train.Features{f}
		} else {
			for v := range r.trainViews() {
				f, err := r.enc.features("train", r.split.Train, needs, v)
				if err != nil {
					return err
				}
				r.views = append(r.views, f)
			}
		}
	}
	var err error
	r.val, err = r.enc.features("val", r.split.Val, train.Needs{}, 0)
	return err
}

// encodeSelection prepares the data that selects epochs and tunes
// hyper-parameters (train.select_on): the few-shot validation features, or
// the dataset's whole validation split, or the test set.
func (r *run) encodeSelection(context.Context) error {
	var err error
	switch r.cfg.Train.SelectOn {
	case config.SelectOnFullVal:
		if len(r.data.Val) == 0 {
			return fmt.Errorf("train.select_on = %q: %s has no validation split", config.SelectOnFullVal, r.data.Name)
		}
		r.log.Warn("selecting on the full validation split, not the few-shot one", "images", len(r.data.Val))
		r.sel, err = r.enc.features("fullval", r.data.Val, train.Needs{}, 0)
	case config.SelectOnTest:
		r.log.Warn("selecting on the TEST set: the result is not an honest few-shot number")
		if err = r.encodeTest(); err == nil {
			r.sel = r.test
		}
	default:
		r.sel = r.val
	}
	return err
}

// encodeTest encodes the test set (the first data.max_test images when
// set), once.
func (r *run) encodeTest() error {
	if r.test != nil {
		return nil
	}
	var err error
	r.test, err = r.enc.features("test", r.testItems(), train.Needs{}, 0)
	return err
}

// trainViews is the number of encoded views of the train set: the
// method's, else train.augment_views, else one per epoch; one without
// augmentation.
func (r *run) trainViews() int {
	needs := r.method.Needs
	if !needs.Augment {
		return 1
	}
	n := needs.Views
	if n == 0 {
		n = r.cfg.Train.AugmentViews
	}
	if n == 0 {
		n = max(r.cfg.Train.Epochs, 1)
	}
	return n
}

// initMethod gives the method CLIP's text side and the train features,
// and lets a Fitter fit itself.
func (r *run) initMethod(ctx context.Context) error {
	tok, err := tokenizer.New()
	if err != nil {
		return err
	}
	name := r.method.Spec.Name
	mctx := &train.Context{
		Text:       &clip.TextSide{Model: r.model, Tokenizer: tok, Device: r.device},
		ClassNames: PromptNames(r.data.ClassNames),
		Templates:  Templates(r.cfg.Data.Templates, r.data.Template, strings.HasPrefix(strings.ToLower(r.data.Name), "imagenet")),
		FeatureDim: int64(r.model.Config().EmbedDim),
		Device:     r.device,
		Seed:       uint64(r.cfg.Data.Seed),
		Log:        r.log,
		Image:      r.model,
	}
	r.mctx = mctx
	proj, err := ProjectionFor(r.model, r.method.Needs)
	if err != nil {
		return err
	}
	defer proj.Drop()
	mctx.Projection = proj
	if err := r.method.Method.Init(mctx, r.views); err != nil {
		return fmt.Errorf("%s: init: %w", name, err)
	}
	if f, ok := r.method.Method.(train.Fitter); ok {
		if len(r.views) == 0 {
			return fmt.Errorf("%s: fit: the method fits but asked for no train features", name)
		}
		if err := f.Fit(ctx, r.views[0], r.val); err != nil {
			return fmt.Errorf("%s: fit: %w", name, err)
		}
	}
	return nil
}

// trains says whether the loop trains the method.
func (r *run) trains() bool {
	return r.cfg.Train.Epochs > 0 && len(r.method.Method.Parameters()) > 0
}

// train runs the loop for methods with parameters, resuming from the
// checkpoint when asked, and reloads the best validation epoch when
// train.select is best_val.
func (r *run) train(ctx context.Context) error {
	if !r.trains() {
		return nil
	}
	loop, err := newLoop(r.cfg, r.method, r.views)
	if err != nil {
		return err
	}
	defer loop.Optimizer.Drop()
	if !r.cfg.Train.CacheFeatures && r.method.Needs.Augment {
		loop.Features = r.enc.onlineFeatures(r.split.Train, r.method.Needs)
	}
	ckpt := r.file(rundir.CheckpointFile)
	if r.o.Resume {
		st, err := train.LoadCheckpoint(ckpt, loop)
		if err != nil {
			return err
		}
		r.log.Info("resumed", "checkpoint", ckpt, "epoch", st.Epoch, "step", st.GlobalStep)
		if err := rundir.TruncateJSONL(r.file(rundir.MetricsFile), st.Epoch); err != nil {
			return err
		}
	}
	best := attachHooks(loop, r.cfg, r.dir, r.sel, r.out, r.log)
	err = loop.Run(ctx)
	var nf *train.NonFiniteLossError
	switch {
	case errors.Is(err, train.ErrInterrupted):
		return fmt.Errorf("%w: checkpoint written; continue with -resume %s", err, r.dir)
	case errors.As(err, &nf):
		return fmt.Errorf("%w; the last good checkpoint is kept in %s", err, ckpt)
	case err != nil:
		return err
	}
	if r.cfg.Train.Select == "best_val" && best.N > 0 {
		if _, err := train.LoadCheckpoint(r.file(rundir.BestFile), loop); err != nil {
			return fmt.Errorf("reload best checkpoint: %w", err)
		}
		r.selected = "best_val"
	}
	return nil
}

// finish tunes the method on validation (a Tuner), evaluates it on
// validation and test, and writes result.json.
func (r *run) finish(ctx context.Context) (*rundir.Result, error) {
	name := r.method.Spec.Name
	m := r.method.Method
	var tuned map[string]float64
	if t, ok := m.(train.Tuner); ok {
		var err error
		if tuned, err = t.Tune(ctx, r.sel); err != nil {
			return nil, fmt.Errorf("%s: tune: %w", name, err)
		}
	}
	if s, ok := m.(train.Saver); ok && tuned == nil {
		tuned = s.Extra() // e.g. the linear probe's chosen C
	}
	valM, err := train.EvaluateMethod(ctx, m, r.val, r.cfg.Train.EvalBatchSize)
	if err != nil {
		return nil, err
	}
	testM, err := r.evaluateTest(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.writeModel(ctx); err != nil {
		return nil, err
	}
	rank := r.method.Rank
	res := &rundir.Result{
		Method: name, MethodLabel: r.method.Spec.Label, MethodRank: &rank,
		Dataset: r.data.Name, Backbone: r.cfg.Model.Name, Shots: r.cfg.Data.Shots, Seed: r.cfg.Data.Seed,
		Test: testM, Val: &valM, Selected: r.selected, Tuned: tuned,
		Seconds: time.Since(r.start).Seconds(), Finished: time.Now().UTC().Format(time.RFC3339),
		Data: r.counts,
	}
	if r.trains() {
		res.Epochs = r.cfg.Train.Epochs
	}
	if so := r.cfg.Train.SelectOn; so != config.SelectOnFewShotVal {
		res.SelectOn = so
	}
	if err := rundir.WriteJSON(r.file(rundir.ResultFile), res); err != nil {
		return nil, err
	}
	r.log.Info("result", "method", res.Method, "test_top1", fmt.Sprintf("%.2f", testM.Top1), "test_top5", fmt.Sprintf("%.2f", testM.Top5), "val_top1", fmt.Sprintf("%.2f", valM.Top1), "dir", r.dir)
	return res, nil
}

// evaluateTest encodes the test set (the first data.max_test images when
// set), evaluates the method on it, records its prediction for every
// image (the top 5 classes) in predictions.csv, and with
// output.save_test_features writes the test features, logits and labels.
func (r *run) evaluateTest(ctx context.Context) (metrics.Metrics, error) {
	if err := r.encodeTest(); err != nil {
		return metrics.Metrics{}, err
	}
	test, items := r.test, r.testItems()
	if test.Len() != len(items) {
		// Bad images were skipped: the rows no longer follow the items.
		items = nil
	}
	logits, classes, err := train.Logits(ctx, r.method.Method, test, r.cfg.Train.EvalBatchSize)
	if err != nil {
		return metrics.Metrics{}, err
	}
	if test.Len() == 0 {
		return metrics.Metrics{}, errors.New("evaluate: no test examples")
	}
	m, err := metrics.Evaluate(logits, test.Y, classes)
	if err != nil {
		return m, err
	}
	if r.cfg.Output.SaveTestFeatures {
		if err := r.saveTestFeatures(test, logits, classes); err != nil {
			return m, err
		}
	}
	if items == nil {
		r.log.Warn("test images were skipped; predictions.csv is not written", "dir", r.dir)
		return m, nil
	}
	preds := make([]rundir.Prediction, len(items))
	for i, it := range items {
		top, probs := metrics.TopK(logits[i*classes:(i+1)*classes], 5)
		preds[i] = rundir.Prediction{File: r.data.File(it), Label: it.Label, Classes: top, Probs: probs}
	}
	return m, rundir.WritePredictions(r.file(rundir.PredictionsFile), preds)
}

// saveTestFeatures writes the test features as the method's classifier
// sees them, its logits and the labels (output.save_test_features).
func (r *run) saveTestFeatures(test *train.Features, logits []float32, classes int) error {
	feats, dim, err := train.AdaptedFeatures(r.method.Method, test, r.cfg.Train.EvalBatchSize)
	if err != nil {
		return fmt.Errorf("save test features: %w", err)
	}
	n := test.Len()
	if err := npy.Write(r.file(rundir.TestFeaturesFile), []int{n, dim}, feats); err != nil {
		return fmt.Errorf("save test features: %w", err)
	}
	if err := npy.Write(r.file(rundir.TestLogitsFile), []int{n, classes}, logits); err != nil {
		return fmt.Errorf("save test logits: %w", err)
	}
	if err := npy.WriteInt64(r.file(rundir.TestLabelsFile), []int{n}, test.Y); err != nil {
		return fmt.Errorf("save test labels: %w", err)
	}
	return nil
}

// testItems is the test list, cut to data.max_test when set.
func (r *run) testItems() []datasets.Item {
	items := r.data.Test
	if n := r.cfg.Data.MaxTest; n > 0 && len(items) > n {
		items = items[:n]
	}
	return items
}

// writeModel writes model.ckpt: the method's inference state and the
// classes, templates and backbone it needs (rundir.ModelInfo).
func (r *run) writeModel(ctx context.Context) error {
	digest, err := BackboneDigest(ctx, r.cfg.Model)
	if err != nil {
		return err
	}
	info := rundir.ModelInfo{
		Format: rundir.ModelFormat, Method: r.method.Spec.Name, MethodLabel: r.method.Spec.Label,
		Dataset: r.data.Name, Backbone: r.cfg.Model.Name, BackboneSHA256: digest,
		ClassNames: r.mctx.ClassNames, ClassIDs: r.data.ClassIDs, Templates: r.mctx.Templates,
		FeatureDim: r.mctx.FeatureDim,
	}
	if s, ok := r.method.Method.(train.Saver); ok {
		info.Extra = s.Extra()
	}
	if err := train.WriteModel(r.file(rundir.ModelFile), info, r.method.Method); err != nil {
		return fmt.Errorf("write the model: %w", err)
	}
	return nil
}

// drop frees what the steps made.
func (r *run) drop() {
	for _, v := range r.views {
		v.Drop()
	}
	if r.sel != r.val && r.sel != r.test {
		r.sel.Drop()
	}
	r.val.Drop()
	r.test.Drop()
	if r.method != nil {
		r.method.Method.Drop()
	}
	if r.model != nil {
		r.model.Drop()
	}
}

var _ train.TextEncoder = (*clip.TextSide)(nil)

// ProjectionFor returns CLIP's last image projection when the method asks
// for pre-projection features (Needs.PreProjection), for
// train.Context.Projection; nil otherwise. The caller drops it after the
// method's Init (or restore), which copies what it keeps.
func ProjectionFor(model *clip.Model, needs train.Needs) (*train.Projection, error) {
	if !needs.PreProjection {
		return nil, nil
	}
	w, b, err := model.ImageProjection()
	if err != nil {
		return nil, err
	}
	return &train.Projection{Weight: w, Bias: b}, nil
}
