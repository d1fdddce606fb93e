package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"log/slog"
	"strings"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/datasets/loader"
	"github.com/clipadapter/clipgo/internal/progress"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// ImageEncoder encodes preprocessed images [B, 3, R, R] into raw features
// [B, D] (or activations [B, ...] of an intermediate layer, see
// EncoderFor). clip.Model implements it.
type ImageEncoder interface {
	EncodeImage(images *ts.Tensor) (*ts.Tensor, error)
}

// ImageBatch is a batch of preprocessed images in CHW order.
type ImageBatch struct {
	Pixels []float32
	Labels []int64
	N      int
}

// BatchIterator yields image batches in a fixed order; Next returns io.EOF
// after the last one.
type BatchIterator interface {
	Next() (*ImageBatch, error)
	Close() error
}

// EncodeImages runs every batch of it through enc without gradients and
// returns the features on device. resolution is the images' side; bar may
// be nil. When ctx is cancelled it stops before the next batch with
// ErrInterrupted. On the CPU, when it knows how many batches there are
// (a BatchCounter), it encodes as many batches at once as libtorch has
// threads, each on one thread (torch.BatchWorkers); enc must then allow
// concurrent calls, as clip.Model does.
func EncodeImages(ctx context.Context, enc ImageEncoder, it BatchIterator, resolution int, device gotch.Device, bar *progress.Bar) (*train.Features, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	batches := 0
	if c, ok := it.(BatchCounter); ok {
		batches = c.Batches()
	}
	workers, threads := torch.BatchWorkers(device, batches)
	var parts torch.Scope // the features of each batch
	defer parts.Drop()
	var partList []*ts.Tensor
	var labels []int64
	next := func() (*ImageBatch, bool, error) {
		// Ctrl-C and SIGTERM are honoured between batches.
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("encoding images: %w", train.ErrInterrupted)
		}
		b, err := it.Next()
		if errors.Is(err, io.EOF) {
			return nil, false, nil
		}
		return b, err == nil, err
	}
	err := torch.NoGrad(func() error {
		return torch.ForEachBatch(workers, threads, next,
			func(b *ImageBatch) (*ts.Tensor, error) { return encodeBatch(enc, b, int64(resolution), device) },
			func(b *ImageBatch, f *ts.Tensor) error {
				partList = append(partList, parts.Keep(f))
				labels = append(labels, b.Labels...)
				if bar != nil {
					bar.Add(b.N)
				}
				return nil
			},
			func(f *ts.Tensor) { f.Drop() })
	})
	if err != nil {
		return nil, err
	}
	if bar != nil {
		bar.Finish()
	}
	if len(partList) == 0 {
		return nil, errors.New("encode images: no images")
	}
	var s torch.Scope
	defer s.Drop()
	x, err := s.Op("concatenate features")(ts.Cat(partList, 0))
	if err != nil {
		return nil, err
	}
	lab, err := s.Op("labels")(ts.OfSlice(labels))
	if err == nil {
		lab, err = s.Op("labels to " + torch.DeviceName(device))(lab.To(device, false))
	}
	if err != nil {
		return nil, err
	}
	return &train.Features{X: s.Release(x), Labels: s.Release(lab), Y: labels}, nil
}

// BatchCounter is a BatchIterator that knows how many batches it yields
// (at most).
type BatchCounter interface {
	Batches() int
}

// encodeBatch encodes one image batch into float32 features on device.
func encodeBatch(enc ImageEncoder, b *ImageBatch, r int64, device gotch.Device) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	x, err := s.Op("image batch")(ts.OfSlice(b.Pixels))
	if err == nil {
		x, err = s.Op("image batch: view")(x.View([]int64{int64(b.N), 3, r, r}, false))
	}
	if err == nil {
		x, err = s.Op("image batch to " + torch.DeviceName(device))(x.To(device, false))
	}
	if err != nil {
		return nil, err
	}
	f, err := enc.EncodeImage(x)
	if err != nil {
		return nil, err
	}
	s.Keep(f)
	out, err := s.Op("image features to float32")(f.Totype(gotch.Float, false))
	return s.Release(out), err
}

// FeatureCache stores encoded features on disk, keyed by everything that
// determines them.
type FeatureCache struct {
	Dir string
}

// FeatureKey is what identifies a set of cached features.
type FeatureKey struct {
	Model     string   `json:"model"`
	Dataset   string   `json:"dataset"`
	Split     string   `json:"split"`
	Items     string   `json:"items"` // hash of the image paths and labels, in order
	Transform string   `json:"transform"`
	Seed      uint64   `json:"seed"`
	View      int      `json:"view"`
	Extra     []string `json:"extra,omitempty"`
}

// Hash returns the key's file name stem.
func (k FeatureKey) Hash() string {
	b, _ := json.Marshal(k)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// ItemsHash hashes an ordered list of (path, label) pairs.
func ItemsHash(paths []string, labels []int64) string {
	h := sha256.New()
	for i, p := range paths {
		fmt.Fprintf(h, "%s\x00%d\n", p, labels[i])
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func (c FeatureCache) path(k FeatureKey) string {
	return filepath.Join(c.Dir, k.Split+"-"+k.Hash()+".feat")
}

// Load returns the cached features for k on device, or ok == false when
// there are none. labels are the items' labels in order: the file must hold
// one row per item with exactly these labels. A file that fails its
// checksum or these checks is an error naming it (the caller recomputes).
func (c FeatureCache) Load(k FeatureKey, labels []int64, device gotch.Device) (*train.Features, bool, error) {
	if c.Dir == "" {
		return nil, false, nil
	}
	p := c.path(k)
	if _, err := os.Stat(p); err != nil {
		return nil, false, nil
	}
	var stored FeatureKey
	t, err := train.ReadTensors(p, &stored, device)
	if err != nil {
		return nil, false, fmt.Errorf("feature cache: %w (recomputing)", err)
	}
	x, lab := t["x"], t["labels"]
	// The scope frees every tensor read on every return path, but x and
	// labels when they are returned.
	var s torch.Scope
	defer s.Drop()
	for _, tensor := range t {
		s.Keep(tensor)
	}
	if x == nil || lab == nil || stored.Hash() != k.Hash() {
		return nil, false, fmt.Errorf("feature cache %s does not match its key (recomputing)", p)
	}
	y, err := torch.Values[int64](lab)
	if err != nil {
		return nil, false, fmt.Errorf("feature cache %s: labels: %w", p, err)
	}
	shape, err := x.Size()
	if err != nil || len(shape) < 2 || shape[0] != int64(len(labels)) || !slices.Equal(y, labels) {
		return nil, false, fmt.Errorf("feature cache %s holds features of shape %v with %d labels, want %d rows with the items' labels (recomputing)", p, shape, len(y), len(labels))
	}
	return &train.Features{X: s.Release(x), Labels: s.Release(lab), Y: y}, true, nil
}

// Store writes features for k.
func (c FeatureCache) Store(k FeatureKey, f *train.Features) error {
	if c.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("feature cache: %w", err)
	}
	return train.WriteTensors(c.path(k), k, []train.Param{{Name: "x", Tensor: f.X}, {Name: "labels", Tensor: f.Labels}})
}

// extractor encodes image sets, through the feature cache.
type extractor struct {
	// ctx stops encoding between batches (Ctrl-C, SIGTERM).
	ctx     context.Context
	model   *clip.Model
	modelID string
	ds      *datasets.Dataset
	cfg     *config.Config
	device  gotch.Device
	out     io.Writer
	cache   FeatureCache
	// enc encodes every set into the features the method needs
	// (EncoderFor); keyExtra sets them apart in cache keys.
	enc      ImageEncoder
	keyExtra []string
}

// preProjectionEncoder is the ImageEncoder of pre-projection features.
type preProjectionEncoder struct{ m *clip.Model }

func (p preProjectionEncoder) EncodeImage(images *ts.Tensor) (*ts.Tensor, error) {
	return p.m.EncodeImagePreProjection(images)
}

// layerEncoder is the ImageEncoder of the activations after an
// intermediate layer of the image encoder.
type layerEncoder struct {
	m *clip.Model
	k int
}

func (l layerEncoder) EncodeImage(images *ts.Tensor) (*ts.Tensor, error) {
	return l.m.EncodeImageUpTo(images, l.k)
}

// EncoderFor returns the image encoder of the features a method with
// needs is given (train.Needs): model's output features, the output
// before the last projection (PreProjection), or the activations after an
// intermediate layer (Layer: [N, L, W] ViT tokens or [N, C, H, W] ResNet
// maps, float32). extra is what sets those features apart in a
// FeatureKey (nil for the output features). A Layer the model does not
// have is an error naming it.
func EncoderFor(model *clip.Model, needs train.Needs) (enc ImageEncoder, extra []string, err error) {
	k, err := needs.SplitLayer(model.ImageLayers())
	if err != nil {
		return nil, nil, fmt.Errorf("method.layer: %w", err)
	}
	switch {
	case k > 0:
		return layerEncoder{model, k}, []string{fmt.Sprintf("layer:%d", k)}, nil
	case needs.PreProjection:
		return preProjectionEncoder{model}, []string{"pre-projection"}, nil
	}
	return model, nil, nil
}

func (e *extractor) transform(needs train.Needs) (preprocess.Transform, string) {
	return TransformFor(e.model, needs)
}

// TransformFor returns the image transform of a model's features (the
// checkpoint's test transform, or its training augmentation when needs
// asks for it) and the transform's name in feature-cache keys.
func TransformFor(model *clip.Model, needs train.Needs) (preprocess.Transform, string) {
	res := model.Config().ImageResolution
	pre := model.Preprocessing()
	// The checkpoint's preprocessing is part of the cache key unless it is
	// CLIP's (which keeps the keys of existing caches).
	suffix := ""
	if !pre.IsCLIP() {
		suffix = ":" + pre.String()
	}
	if !needs.Augment {
		return preprocess.TestWith(res, pre), fmt.Sprintf("test:%d%s", res, suffix)
	}
	o := preprocess.TrainOptions{}
	if needs.MinScale > 0 {
		o.Scale = [2]float64{needs.MinScale, 1}
	}
	return preprocess.TrainWith(res, o, pre), fmt.Sprintf("train:%d:%v%s", res, o, suffix)
}

// key is the cache key of the features of a split's items (hashed), a
// transform and a view: the features the method needs (keyExtra) have
// keys of their own.
func (e *extractor) key(split, items, transform string, view int) FeatureKey {
	return FeatureKey{Model: e.modelID, Dataset: e.ds.Name + ":" + e.ds.Dir, Split: split, Items: items,
		Transform: transform, Seed: uint64(e.cfg.Data.Seed), View: view, Extra: slices.Clone(e.keyExtra)}
}

func (e *extractor) features(split string, items []datasets.Item, needs train.Needs, view int) (*train.Features, error) {
	tr, trName := e.transform(needs)
	paths := make([]string, len(items))
	labels := make([]int64, len(items))
	for i, it := range items {
		paths[i], labels[i] = it.Path, int64(it.Label)
	}
	key := e.key(split, ItemsHash(paths, labels), trName, view)
	useCache := e.cfg.Train.CacheFeatures
	if useCache {
		if f, ok, err := e.cache.Load(key, labels, e.device); err != nil {
			slog.Warn("ignoring feature cache", "err", err)
		} else if ok {
			return f, nil
		}
	}
	loader, err := loader.New(e.ds, items, loader.Options{
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
	f, err := EncodeImages(e.ctx, e.enc, loaderBatches{loader}, tr.Size(), e.device, bar)
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
func (e *extractor) onlineFeatures(items []datasets.Item, needs train.Needs) func(epoch int, idx []int) (*ts.Tensor, error) {
	tr, _ := e.transform(needs)
	return func(epoch int, idx []int) (*ts.Tensor, error) {
		sub := make([]datasets.Item, len(idx))
		for i, j := range idx {
			sub[i] = items[j]
		}
		loader, err := loader.New(e.ds, sub, loader.Options{
			Transform: tr, BatchSize: len(sub), Workers: e.cfg.Data.NumWorkers,
			Seed: uint64(e.cfg.Data.Seed)*1_000_003 + uint64(epoch), SkipBadImages: false,
		})
		if err != nil {
			return nil, err
		}
		defer loader.Close()
		// Inside a training step: the loop itself stops between steps and
		// checkpoints, so this encoding is not cut short.
		f, err := EncodeImages(context.WithoutCancel(e.ctx), e.enc, loaderBatches{loader}, tr.Size(), e.device, nil)
		if err != nil {
			return nil, err
		}
		f.Labels.Drop()
		return f.X, nil
	}
}

// LoaderBatches adapts a loader.Loader to BatchIterator.
func LoaderBatches(l *loader.Loader) BatchIterator { return loaderBatches{l} }

// loaderBatches adapts a loader.Loader to BatchIterator.
type loaderBatches struct{ l *loader.Loader }

func (b loaderBatches) Next() (*ImageBatch, error) {
	x, err := b.l.Next()
	if err != nil {
		return nil, err
	}
	return &ImageBatch{Pixels: x.Pixels, Labels: x.Labels, N: x.N}, nil
}

func (b loaderBatches) Close() error { return b.l.Close() }

// Batches implements BatchCounter.
func (b loaderBatches) Batches() int { return b.l.Batches() }

// labelsOnly is the train set's labels without features, for training
// that encodes images every step (train.cache_features = false).
func labelsOnly(items []datasets.Item, device gotch.Device) (*train.Features, error) {
	y := make([]int64, len(items))
	for i, it := range items {
		y[i] = int64(it.Label)
	}
	cpu, err := ts.OfSlice(y)
	if err != nil {
		return nil, torch.Err("train labels", err)
	}
	labels, err := cpu.To(device, true)
	if err != nil {
		return nil, torch.Err("train labels to device", err)
	}
	return &train.Features{Labels: labels, Y: y}, nil
}
