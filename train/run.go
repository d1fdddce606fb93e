package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/clip/weights"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/internal/progress"
	"github.com/clipadapter/clipgo/internal/torch"
)

// Needs says what a method needs from the run.
type Needs struct {
	// TrainFeatures: the method uses features of the few-shot train set.
	TrainFeatures bool
	// Augment: train features come from the training augmentation
	// (random resized crop and flip) instead of the test transform.
	Augment bool
	// Views is the number of augmented views to encode; 0 uses
	// train.augment_views, or one per epoch when that is 0 too.
	Views int
	// MinScale is the lower bound of the random resized crop's scale
	// (0: torchvision's 0.08).
	MinScale float64
	// Optimizer, when set, overrides train.optimizer for this method.
	Optimizer string
}

// MethodFactory builds a method from the configuration: it decodes the
// method's own keys with Config.DecodeMethod and returns the method, its
// resolved options (written to the run's config.toml) and its needs.
type MethodFactory func(cfg *Config) (Method, any, Needs, error)

// RunOptions configures Run.
type RunOptions struct {
	Config *Config
	// Methods maps method names to factories.
	Methods map[string]MethodFactory
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

// Run executes one configured run end to end: model, data, features,
// method, training, evaluation, and the run directory's files.
func Run(ctx context.Context, o RunOptions) (res *Result, err error) {
	start := time.Now()
	cfg := o.Config
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	out := o.Progress
	if out == nil {
		out = os.Stderr
	}
	dir := o.Dir
	if dir == "" {
		name := cfg.Output.Name
		if name == "" {
			name = RunName(cfg)
		}
		dir = filepath.Join(cfg.Output.Dir, name)
	}
	// Lock first: a second process in the same directory is refused before
	// it reads the state the first one is writing.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	unlock, err := LockRunDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, ResultFile)); err == nil {
		return nil, fmt.Errorf("%s: %w (delete it to run again)", dir, ErrFinished)
	}
	ckpt := filepath.Join(dir, CheckpointFile)
	_, ckptErr := os.Stat(ckpt)
	if ckptErr == nil && !o.Resume {
		return nil, fmt.Errorf("%s has a checkpoint of an unfinished run: continue it with -resume %s, or delete it", dir, dir)
	}
	if ckptErr != nil && o.Resume {
		// Starting over here would append a second copy of the epochs to
		// metrics.jsonl.
		return nil, fmt.Errorf("%s: nothing to resume: %s is missing (the run stopped before its first checkpoint, or the directory is not a run's); start it again with -config %s -out %s after deleting the directory", dir, CheckpointFile, filepath.Join(dir, ConfigFile), dir)
	}

	factory, err := lookupFactory(cfg, o.Methods)
	if err != nil {
		return nil, err
	}
	method, methodOpts, needs, err := factory(cfg)
	if err != nil {
		return nil, err
	}
	defer method.Drop()
	resolved, err := cfg.Resolved(methodOpts)
	if err != nil {
		return nil, err
	}
	if !o.Resume {
		if err := WriteFileAtomic(filepath.Join(dir, ConfigFile), resolved); err != nil {
			return nil, err
		}
	}

	device, err := torch.ParseDevice(cfg.Model.Device)
	if err != nil {
		return nil, err
	}
	if err := WriteJSON(filepath.Join(dir, VersionsFile), CurrentVersions(torch.DeviceName(device))); err != nil {
		return nil, err
	}
	log.Info("run", "dir", dir, "method", cfg.MethodName(), "dataset", cfg.Data.Dataset, "shots", cfg.Data.Shots, "seed", cfg.Data.Seed, "device", torch.DeviceName(device))

	// The data first: a wrong data.root should not wait for a model
	// download.
	ds, split, err := LoadData(cfg.Data)
	if err != nil {
		return nil, err
	}
	log.Info("data", "dataset", ds.Name, "classes", len(ds.ClassNames), "train", len(split.Train), "val", len(split.Val), "test", len(ds.Test), "split", split.Source)
	model, modelID, err := LoadModel(ctx, cfg.Model, device, out)
	if err != nil {
		return nil, err
	}
	defer model.Drop()
	tok, err := tokenizer.New()
	if err != nil {
		return nil, err
	}

	enc := &extractor{ctx: ctx, model: model, modelID: modelID, ds: ds, cfg: cfg, device: device, out: out,
		cache: FeatureCache{Dir: filepath.Join(cfg.Output.Dir, ".features")}}
	text := &TextSide{Model: model, Tokenizer: tok, Device: device}
	mctx := &Context{
		Text:       text,
		ClassNames: ds.ClassNames,
		Templates:  Templates(cfg.Data.Templates, ds.Template, strings.HasPrefix(strings.ToLower(ds.Name), "imagenet")),
		FeatureDim: int64(model.Config().EmbedDim),
		Device:     device,
		Seed:       uint64(cfg.Data.Seed),
		Log:        log,
	}

	// Features.
	var views []*Features
	trains := cfg.Train.Epochs > 0
	if needs.TrainFeatures {
		nViews := needs.Views
		if nViews == 0 {
			nViews = cfg.Train.AugmentViews
		}
		if nViews == 0 {
			nViews = max(cfg.Train.Epochs, 1)
		}
		if !needs.Augment {
			nViews = 1
		}
		if !cfg.Train.CacheFeatures && needs.Augment {
			// The official way: features are recomputed every step; the
			// loop gets labels only.
			views = []*Features{labelsOnly(split.Train, device)}
		} else {
			for v := 0; v < nViews; v++ {
				f, err := enc.features("train", split.Train, needs, v)
				if err != nil {
					return nil, err
				}
				views = append(views, f)
			}
		}
	}
	defer func() {
		for _, v := range views {
			v.Drop()
		}
	}()
	val, err := enc.features("val", split.Val, Needs{}, 0)
	if err != nil {
		return nil, err
	}
	defer val.Drop()

	if err := method.Init(mctx, views); err != nil {
		return nil, fmt.Errorf("%s: init: %w", cfg.MethodName(), err)
	}
	if f, ok := method.(Fitter); ok {
		if err := f.Fit(views[0], val); err != nil {
			return nil, fmt.Errorf("%s: fit: %w", cfg.MethodName(), err)
		}
	}

	selected := "last"
	var best *Metrics
	if params := method.Parameters(); len(params) > 0 && trains {
		loop, err := newRunLoop(cfg, needs, method, params, views)
		if err != nil {
			return nil, err
		}
		if !cfg.Train.CacheFeatures && needs.Augment {
			loop.Features = enc.onlineFeatures(split.Train, needs)
		}
		if o.Resume {
			if _, err := os.Stat(ckpt); err == nil {
				st, err := LoadCheckpoint(ckpt, loop)
				if err != nil {
					return nil, err
				}
				log.Info("resumed", "checkpoint", ckpt, "epoch", st.Epoch, "step", st.GlobalStep)
				if err := TruncateJSONL(filepath.Join(dir, MetricsFile), st.Epoch); err != nil {
					return nil, err
				}
			}
		}
		best, err = attachHooks(loop, cfg, dir, val, out, log)
		if err != nil {
			return nil, err
		}
		err = loop.Run(ctx)
		if errors.Is(err, ErrInterrupted) {
			return nil, fmt.Errorf("%w: checkpoint written; continue with -resume %s", err, dir)
		}
		if err != nil {
			var nf *NonFiniteLossError
			if errors.As(err, &nf) {
				return nil, fmt.Errorf("%w; the last good checkpoint is kept in %s", err, ckpt)
			}
			return nil, err
		}
		if cfg.Train.Select == "best_val" && best.N > 0 {
			if _, err := LoadCheckpoint(filepath.Join(dir, BestFile), loop); err != nil {
				return nil, fmt.Errorf("reload best checkpoint: %w", err)
			}
			selected = "best_val"
		}
	}
	var tuned map[string]float64
	if t, ok := method.(Tuner); ok {
		if tuned, err = t.Tune(val); err != nil {
			return nil, fmt.Errorf("%s: tune: %w", cfg.MethodName(), err)
		}
	}

	if s, ok := method.(Saver); ok && tuned == nil {
		tuned = s.Extra() // e.g. the linear probe's chosen C
	}
	valM, err := EvaluateMethod(method, val, cfg.Train.EvalBatchSize)
	if err != nil {
		return nil, err
	}
	testItems := ds.Test
	if cfg.Data.MaxTest > 0 && len(testItems) > cfg.Data.MaxTest {
		testItems = testItems[:cfg.Data.MaxTest]
	}
	test, err := enc.features("test", testItems, Needs{}, 0)
	if err != nil {
		return nil, err
	}
	defer test.Drop()
	testM, err := EvaluateMethod(method, test, cfg.Train.EvalBatchSize)
	if err != nil {
		return nil, err
	}
	res = &Result{
		Method: cfg.MethodName(), Dataset: ds.Name, Backbone: cfg.Model.Name, Shots: cfg.Data.Shots, Seed: cfg.Data.Seed,
		Test: testM, Val: &valM, Selected: selected, Epochs: cfg.Train.Epochs, Tuned: tuned,
		Seconds: time.Since(start).Seconds(), Finished: time.Now().UTC().Format(time.RFC3339),
	}
	if !trains || len(method.Parameters()) == 0 {
		res.Epochs = 0
	}
	if err := WriteJSON(filepath.Join(dir, ResultFile), res); err != nil {
		return nil, err
	}
	log.Info("result", "method", res.Method, "test_top1", fmt.Sprintf("%.2f", testM.Top1), "test_top5", fmt.Sprintf("%.2f", testM.Top5), "val_top1", fmt.Sprintf("%.2f", valM.Top1), "dir", dir)
	return res, nil
}

// lookupFactory returns the factory of cfg's method.name.
func lookupFactory(cfg *Config, methods map[string]MethodFactory) (MethodFactory, error) {
	factory, ok := methods[cfg.MethodName()]
	if !ok {
		return nil, fmt.Errorf("unknown method %q (want one of %s)", cfg.MethodName(), strings.Join(methodNames(methods), ", "))
	}
	return factory, nil
}

// CheckMethod reports the errors Run would give for cfg's [method] table
// (an unknown method name, a key or value its options reject) without
// loading a model or data: it builds the method and drops it. Sweeps call
// it on every cell before the first one starts.
func CheckMethod(cfg *Config, methods map[string]MethodFactory) error {
	factory, err := lookupFactory(cfg, methods)
	if err != nil {
		return err
	}
	m, _, _, err := factory(cfg)
	if err != nil {
		return err
	}
	m.Drop()
	return nil
}

func methodNames(m map[string]MethodFactory) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// newRunLoop builds the loop, optimizer and schedule from the config.
func newRunLoop(cfg *Config, needs Needs, m Method, params []Param, views []*Features) (*Loop, error) {
	t := cfg.Train
	optName := t.Optimizer
	if needs.Optimizer != "" {
		optName = needs.Optimizer
	}
	var opt Optimizer
	switch optName {
	case "sgd":
		opt = NewSGD(params, t.Momentum, t.WeightDecay)
	case "adamw":
		opt = NewAdamW(params, t.AdamBeta1, t.AdamBeta2, t.AdamEps, t.WeightDecay)
	default:
		return nil, fmt.Errorf("unknown optimizer %q", optName)
	}
	sched, err := NewSchedule(t.Schedule, t.LR, t.Epochs, t.WarmupEpochs, t.WarmupLR)
	if err != nil {
		return nil, err
	}
	return NewLoop(m, opt, sched, t.Epochs, t.BatchSize, views, uint64(cfg.Data.Seed)), nil
}

// attachHooks adds progress, evaluation, metrics, checkpoint and interrupt
// hooks. The returned Metrics is updated with the best validation result.
func attachHooks(l *Loop, cfg *Config, dir string, val *Features, out io.Writer, log *slog.Logger) (*Metrics, error) {
	best := &Metrics{}
	steps := l.StepsPerEpoch()
	var bar *progress.Bar
	l.Hooks.Step = append(l.Hooks.Step, func(l *Loop, s StepInfo) error {
		if bar == nil {
			bar = progress.New(out, fmt.Sprintf("epoch %d/%d", s.Epoch+1, l.Epochs), steps, "step")
		}
		bar.SetSuffix(fmt.Sprintf("loss %.4f lr %.2e", s.Loss, s.LR))
		bar.Add(1)
		return nil
	})
	l.Hooks.Epoch = append(l.Hooks.Epoch, func(l *Loop, e EpochInfo) error {
		if bar != nil {
			bar.Finish()
			bar = nil
		}
		rec := map[string]any{"epoch": e.Epoch + 1, "lr": e.LR, "loss": e.MeanLoss, "train_top1": e.TrainTop1, "step": l.GlobalStep}
		last := e.Epoch+1 == l.Epochs
		if (cfg.Train.EvalEvery > 0 && (e.Epoch+1)%cfg.Train.EvalEvery == 0) || last || cfg.Train.Select == "best_val" {
			m, err := EvaluateMethod(l.Method, val, cfg.Train.EvalBatchSize)
			if err != nil {
				return err
			}
			rec["val_top1"], rec["val_top5"] = m.Top1, m.Top5
			if m.Top1 > best.Top1 || best.N == 0 {
				*best = m
				if cfg.Train.Select == "best_val" {
					if err := SaveCheckpoint(filepath.Join(dir, BestFile), l, map[string]float64{"val_top1": m.Top1}); err != nil {
						return err
					}
				}
			}
			log.Info("epoch", "epoch", e.Epoch+1, "loss", fmt.Sprintf("%.4f", e.MeanLoss), "val_top1", fmt.Sprintf("%.2f", m.Top1))
		}
		if err := AppendJSONL(filepath.Join(dir, MetricsFile), rec); err != nil {
			return err
		}
		every := max(cfg.Train.CheckpointEvery, 1)
		if (e.Epoch+1)%every == 0 || last {
			return SaveCheckpoint(filepath.Join(dir, CheckpointFile), l, nil)
		}
		return nil
	})
	l.Hooks.Interrupt = append(l.Hooks.Interrupt, func(l *Loop) error {
		if bar != nil {
			bar.Finish()
		}
		log.Warn("interrupted: writing a checkpoint", "epoch", l.Epoch+1, "step", l.StepInEpoch, "dir", dir)
		return SaveCheckpoint(filepath.Join(dir, CheckpointFile), l, nil)
	})
	return best, nil
}

func labelsOnly(items []datasets.Item, device gotch.Device) *Features {
	y := make([]int64, len(items))
	for i, it := range items {
		y[i] = int64(it.Label)
	}
	return &Features{Labels: ts.MustOfSlice(y).MustTo(device, true), Y: y}
}

// LoadModel resolves model.name (official name, file, or random:ARCH) and
// loads it. It returns the model and an identity string for feature
// caching.
func LoadModel(ctx context.Context, mc ModelConfig, device gotch.Device, progressOut io.Writer) (*clip.Model, string, error) {
	prec := clip.FP32
	if mc.Precision == "fp16" {
		prec = clip.FP16
	}
	opts := []clip.Option{clip.WithPrecision(prec)}
	if mc.FullTextContext {
		opts = append(opts, clip.WithFullTextContext())
	}
	if arch, ok := strings.CutPrefix(mc.Name, "random:"); ok {
		c, err := clip.ArchConfig(arch)
		if err != nil {
			return nil, "", err
		}
		m, err := clip.New(c, device, mc.Seed, opts...)
		return m, fmt.Sprintf("random:%s:%d:%s", arch, mc.Seed, prec), err
	}
	path, err := weights.Resolve(ctx, mc.Name, weights.Options{CacheDir: mc.CacheDir, Progress: progressOut})
	if err != nil {
		return nil, "", err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	m, err := clip.Load(path, device, opts...)
	if err != nil {
		return nil, "", err
	}
	abs, _ := filepath.Abs(path)
	return m, fmt.Sprintf("%s:%d:%d:%s", abs, st.Size(), st.ModTime().UnixNano(), prec), nil
}

// LoadData loads the dataset and its few-shot split (the whole train split
// when shots is 0). Dataset "synthetic" is generated in root on first use.
func LoadData(dc DataConfig) (*datasets.Dataset, *datasets.Split, error) {
	name := dc.Dataset
	if strings.EqualFold(name, "synthetic") {
		if !datasets.SynthExists(dc.Root) {
			if err := datasets.Synth(dc.Root, dc.SynthClasses, dc.SynthPerClass, uint64(dc.Seed)); err != nil {
				return nil, nil, err
			}
		}
		name = datasets.SynthName
	}
	ds, err := datasets.Load(name, dc.Root)
	if err != nil {
		return nil, nil, err
	}
	if dc.Shots == 0 {
		return ds, &datasets.Split{Train: ds.Train, Val: ds.Val, Source: "full"}, nil
	}
	split, err := datasets.CachedFewShot(ds, dc.Shots, dc.Seed)
	if err != nil {
		return nil, nil, err
	}
	if split.CacheErr != nil {
		slog.Warn("few-shot split not cached", "err", split.CacheErr)
	}
	return ds, split, nil
}

// extractor encodes image sets, through the feature cache.
type extractor struct {
	// ctx stops encoding between batches (Ctrl-C, SIGTERM).
	ctx     context.Context
	model   *clip.Model
	modelID string
	ds      *datasets.Dataset
	cfg     *Config
	device  gotch.Device
	out     io.Writer
	cache   FeatureCache
}

func (e *extractor) transform(needs Needs) (preprocess.Transform, string) {
	res := e.model.Config().ImageResolution
	if !needs.Augment {
		return preprocess.Test(res), fmt.Sprintf("test:%d", res)
	}
	o := preprocess.TrainOptions{}
	if needs.MinScale > 0 {
		o.Scale = [2]float64{needs.MinScale, 1}
	}
	return preprocess.Train(res, o), fmt.Sprintf("train:%d:%v", res, o)
}

func (e *extractor) features(split string, items []datasets.Item, needs Needs, view int) (*Features, error) {
	tr, trName := e.transform(needs)
	paths := make([]string, len(items))
	labels := make([]int64, len(items))
	for i, it := range items {
		paths[i], labels[i] = it.Path, int64(it.Label)
	}
	key := FeatureKey{Model: e.modelID, Dataset: e.ds.Name + ":" + e.ds.Dir, Split: split, Items: ItemsHash(paths, labels),
		Transform: trName, Seed: uint64(e.cfg.Data.Seed), View: view}
	useCache := e.cfg.Train.CacheFeatures
	if useCache {
		if f, ok, err := e.cache.Load(key, labels, e.device); err != nil {
			slog.Warn("ignoring feature cache", "err", err)
		} else if ok {
			return f, nil
		}
	}
	loader, err := datasets.NewLoader(e.ds, items, datasets.LoaderOptions{
		Transform: tr, BatchSize: e.cfg.Train.EvalBatchSize, Workers: e.cfg.Data.NumWorkers,
		Seed: uint64(e.cfg.Data.Seed), Epoch: view, SkipBadImages: e.cfg.Data.SkipBadImages,
	})
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	label := split
	if needs.Augment {
		label = fmt.Sprintf("%s view %d", split, view+1)
	}
	bar := progress.New(e.out, "encode "+label, len(items), "img")
	f, err := EncodeImages(e.ctx, e.model, loaderBatches{loader}, tr.Size(), e.device, bar)
	if err != nil {
		return nil, fmt.Errorf("encode %s images: %w", split, err)
	}
	if bad := loader.Bad(); bad.Count > 0 {
		slog.Warn("skipped bad images", "split", split, "count", bad.Count, "first", strings.Join(bad.First, ", "))
	}
	if useCache {
		if err := e.cache.Store(key, f); err != nil {
			slog.Warn("could not cache features", "err", err)
		}
	}
	return f, nil
}

// onlineFeatures recomputes augmented features for every batch, as the
// official implementations do (train.cache_features = false).
func (e *extractor) onlineFeatures(items []datasets.Item, needs Needs) func(epoch int, idx []int) (*ts.Tensor, error) {
	tr, _ := e.transform(needs)
	return func(epoch int, idx []int) (*ts.Tensor, error) {
		sub := make([]datasets.Item, len(idx))
		for i, j := range idx {
			sub[i] = items[j]
		}
		loader, err := datasets.NewLoader(e.ds, sub, datasets.LoaderOptions{
			Transform: tr, BatchSize: len(sub), Workers: e.cfg.Data.NumWorkers,
			Seed: uint64(e.cfg.Data.Seed)*1_000_003 + uint64(epoch), SkipBadImages: false,
		})
		if err != nil {
			return nil, err
		}
		defer loader.Close()
		// Inside a training step: the loop itself stops between steps and
		// checkpoints, so this encoding is not cut short.
		f, err := EncodeImages(context.WithoutCancel(e.ctx), e.model, loaderBatches{loader}, tr.Size(), e.device, nil)
		if err != nil {
			return nil, err
		}
		f.Labels.MustDrop()
		return f.X, nil
	}
}

// loaderBatches adapts a datasets.Loader to BatchIterator.
type loaderBatches struct{ l *datasets.Loader }

func (b loaderBatches) Next() (*ImageBatch, error) {
	x, err := b.l.Next()
	if err != nil {
		return nil, err
	}
	return &ImageBatch{Pixels: x.Pixels, Labels: x.Labels, N: x.N}, nil
}

func (b loaderBatches) Close() error { return b.l.Close() }
