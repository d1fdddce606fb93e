package predict

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"sync"

	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/datasets/loader"
	"github.com/clipadapter/clipgo/experiment"
	"github.com/clipadapter/clipgo/internal/progress"
	"github.com/clipadapter/clipgo/train"
)

// FileResult is the prediction for one image file, or the reason it could
// not be read (Err, with Prediction empty).
type FileResult struct {
	// Index is the file's position in the list given to PredictFiles.
	Index int
	Path  string
	Prediction
	Err error
}

// transform is the run's test transform (the checkpoint's preprocessing)
// and its name in feature-cache keys.
func (c *Classifier) transform() (preprocess.Transform, string) {
	return experiment.TransformFor(c.model, train.Needs{})
}

// PredictFiles predicts the top k classes of each image file, decoded and
// transformed as the run's test images were, in batches. fn receives the
// results in the order of paths as soon as their batch is done; an image
// that cannot be read or decoded is passed with Err set and the others go
// on. An error from fn, a cancelled ctx (between batches) or a failure of
// the model ends it with that error.
func (c *Classifier) PredictFiles(ctx context.Context, paths []string, k int, fn func(FileResult) error) error {
	if len(paths) == 0 {
		return nil
	}
	items := make([]datasets.Item, len(paths))
	for i, p := range paths {
		items[i] = datasets.Item{Path: p, Label: i} // the label carries the index
	}
	var mu sync.Mutex
	bad := map[string]error{}
	open := func(path string) (*preprocess.Image, error) {
		img, err := preprocess.Open(path)
		if err != nil {
			mu.Lock()
			bad[path] = err
			mu.Unlock()
		}
		return img, err
	}
	tr, _ := c.transform()
	l, err := loader.New(&datasets.Dataset{Name: "predict"}, items, loader.Options{
		Transform: tr, BatchSize: c.batch, Workers: c.work, SkipBadImages: true, Open: open,
	})
	if err != nil {
		return err
	}
	defer l.Close()
	next := 0
	emitBad := func(upTo int) error {
		for ; next < upTo; next++ {
			mu.Lock()
			e := bad[paths[next]]
			mu.Unlock()
			if e == nil {
				e = errors.New("not read")
			}
			if err := fn(FileResult{Index: next, Path: paths[next], Err: e}); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("predict: %w", train.ErrInterrupted)
		}
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		preds, err := c.predictBatch(ctx, b.Pixels, b.N, tr.Size(), k)
		if err != nil {
			return err
		}
		for i, p := range preds {
			idx := int(b.Labels[i])
			if err := emitBad(idx); err != nil {
				return err
			}
			if err := fn(FileResult{Index: idx, Path: paths[idx], Prediction: p}); err != nil {
				return err
			}
			next = idx + 1
		}
		l.Recycle(b)
	}
	return emitBad(len(paths))
}

// Predict predicts the top k classes of decoded images. Go's decoders and
// this package's (preprocess.Open, which PredictFiles uses and matches
// Pillow) may differ slightly on JPEG files; use PredictFiles to reproduce
// the run's own predictions.
func (c *Classifier) Predict(images []image.Image, k int) ([]Prediction, error) {
	tr, _ := c.transform()
	size := 3 * tr.Size() * tr.Size()
	var out []Prediction
	for lo := 0; lo < len(images); lo += c.batch {
		hi := min(lo+c.batch, len(images))
		pixels := make([]float32, (hi-lo)*size)
		for i, img := range images[lo:hi] {
			if img == nil {
				return nil, fmt.Errorf("image %d is nil", lo+i)
			}
			if err := tr.Apply(preprocess.FromImage(img), nil, pixels[i*size:(i+1)*size]); err != nil {
				return nil, fmt.Errorf("image %d: %w", lo+i, err)
			}
		}
		p, err := c.predictBatch(context.Background(), pixels, hi-lo, tr.Size(), k)
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
	}
	return out, nil
}

// predictBatch encodes n preprocessed images and returns their top k.
func (c *Classifier) predictBatch(ctx context.Context, pixels []float32, n, res, k int) ([]Prediction, error) {
	f, err := experiment.EncodeImages(ctx, c.enc, &oneBatch{b: &experiment.ImageBatch{Pixels: pixels, Labels: make([]int64, n), N: n}}, res, c.device, nil)
	if err != nil {
		return nil, err
	}
	defer f.Drop()
	logits, err := c.Logits(ctx, f)
	if err != nil {
		return nil, err
	}
	return c.predictions(logits, k), nil
}

// oneBatch is a BatchIterator of one batch.
type oneBatch struct{ b *experiment.ImageBatch }

func (o *oneBatch) Next() (*experiment.ImageBatch, error) {
	if o.b == nil {
		return nil, io.EOF
	}
	b := o.b
	o.b = nil
	return b, nil
}

func (o *oneBatch) Close() error { return nil }

// encodeItems encodes a dataset's items with the run's test transform,
// through the feature cache in cacheDir (none when empty). Bad images are
// skipped when skipBad is set.
func (c *Classifier) encodeItems(ctx context.Context, ds *datasets.Dataset, items []datasets.Item, cacheDir string, skipBad bool, out io.Writer) (*train.Features, error) {
	tr, trName := c.transform()
	paths := make([]string, len(items))
	labels := make([]int64, len(items))
	for i, it := range items {
		paths[i], labels[i] = it.Path, int64(it.Label)
	}
	cache := experiment.FeatureCache{Dir: cacheDir}
	key := experiment.FeatureKey{Model: "sha256:" + c.info.BackboneSHA256 + ":" + c.cfg.Model.Precision, Dataset: ds.Name + ":" + ds.Dir,
		Split: "eval", Items: experiment.ItemsHash(paths, labels), Transform: trName, Extra: c.keyExtra}
	if f, ok, err := cache.Load(key, labels, c.device); err != nil {
		c.log.Warn("ignoring feature cache", "err", err)
	} else if ok {
		return f, nil
	}
	l, err := loader.New(ds, items, loader.Options{Transform: tr, BatchSize: c.batch, Workers: c.work, SkipBadImages: skipBad})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	bar := progress.New(out, "encode "+ds.Name, len(items), "img")
	f, err := experiment.EncodeImages(ctx, c.enc, experiment.LoaderBatches(l), tr.Size(), c.device, bar)
	if err != nil {
		return nil, fmt.Errorf("encode %s images: %w", ds.Name, err)
	}
	if b := l.Bad(); b.Count > 0 {
		c.log.Warn("skipped bad images", "dataset", ds.Name, "count", b.Count, "first", b.First)
	} else if err := cache.Store(key, f); err != nil {
		c.log.Warn("could not cache features", "err", err)
	}
	return f, nil
}
