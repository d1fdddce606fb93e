package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/datasets/loader"
	"github.com/clipadapter/clipgo/internal/progress"
	"github.com/clipadapter/clipgo/internal/torch"
)

// newImageLoader starts decoding the images at paths (in parallel, workers
// at a time, a few batches ahead) and applying CLIP's test transform for
// input resolution size in OpenAI's order (resize and crop in the image's
// own mode, then convert to RGB), as clip.load's preprocess does.
func newImageLoader(paths []string, size int, pre preprocess.Config, batch, workers int) (*loader.Loader, error) {
	items := make([]datasets.Item, len(paths))
	for i, p := range paths {
		items[i] = datasets.Item{Path: filepath.ToSlash(p), Label: i}
	}
	return loader.New(&datasets.Dataset{Name: "images"}, items, loader.Options{
		Transform: preprocess.TestWith(size, pre),
		Order:     preprocess.OrderOpenAI,
		BatchSize: batch,
		Workers:   workers,
	})
}

// imageError returns the loader's error about one image as that image's
// error (which names the file), and other errors unchanged.
func imageError(err error) error {
	var ie *loader.ImageError
	if errors.As(err, &ie) {
		return ie
	}
	return err
}

// nextImageBatch returns l's next batch (ok false after the last one),
// or the error of an image naming its file; ctx stops it between batches.
func nextImageBatch(ctx context.Context, l *loader.Loader) (b *loader.Batch, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("interrupted: %w", err)
	}
	b, err = l.Next()
	if errors.Is(err, io.EOF) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, imageError(err)
	}
	return b, true, nil
}

// forEachImageBatch decodes and preprocesses the images at paths and calls
// fn with each batch of n images (pixels [n, 3, size, size], valid only
// during the call), in order.
func forEachImageBatch(ctx context.Context, paths []string, size int, pre preprocess.Config, f *modelFlags, fn func(pixels []float32, n int) error) error {
	l, err := newImageLoader(paths, size, pre, f.batch, f.workerCount())
	if err != nil {
		return err
	}
	defer l.Close()
	for {
		b, ok, err := nextImageBatch(ctx, l)
		if err != nil || !ok {
			return err
		}
		err = fn(b.Pixels, b.N)
		l.Recycle(b)
		if err != nil {
			return err
		}
	}
}

// encodedBatch is the features of a batch of n images and the time the
// model took.
type encodedBatch struct {
	feats   []float32
	n       int
	forward time.Duration
}

// encodeImages returns the image features [len(paths), D] of the images at
// paths, encoded f.batch at a time: on the CPU, as many batches at once as
// libtorch has threads, each on one thread (torch.BatchWorkers). Each
// batch's tensors are dropped when it is done; only the features are
// kept, in Go memory.
func encodeImages(ctx context.Context, m *clip.Model, device gotch.Device, paths []string, f *modelFlags, stderr io.Writer) ([]float32, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cfg := m.Config()
	res, dim := cfg.ImageResolution, cfg.EmbedDim
	l, err := newImageLoader(paths, res, m.Preprocessing(), f.batch, f.workerCount())
	if err != nil {
		return nil, err
	}
	defer l.Close()
	out := make([]float32, 0, len(paths)*dim)
	bar := progress.New(stderr, "encode images", len(paths), "img")
	tm := newTimer(f.timing, stderr, "encode", "images", l.Batches())
	workers, threads := torch.BatchWorkers(device, l.Batches())
	tm.workers = workers
	err = torch.ForEachBatch(workers, threads,
		func() (*loader.Batch, bool, error) { return nextImageBatch(ctx, l) },
		func(b *loader.Batch) (encodedBatch, error) {
			t0 := time.Now()
			feats, err := encodeImageBatch(m, b.Pixels, b.N, res, dim)
			e := encodedBatch{feats: feats, n: b.N, forward: time.Since(t0)}
			l.Recycle(b)
			return e, err
		},
		func(_ *loader.Batch, e encodedBatch) error {
			out = append(out, e.feats...)
			bar.Add(e.n)
			tm.batch(e.n, e.forward)
			return nil
		}, nil)
	if err != nil {
		return nil, err
	}
	bar.Finish()
	tm.finish()
	return out, nil
}

// encodeImageBatch encodes n preprocessed images and returns their
// features [n, dim] in Go memory.
func encodeImageBatch(m *clip.Model, pixels []float32, n, res, dim int) ([]float32, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	x, err := tensorOf(pixels, []int64{int64(n), 3, int64(res), int64(res)})
	if err != nil {
		return nil, fmt.Errorf("image batch: %w", err)
	}
	feats, err := m.EncodeImage(x)
	x.Drop()
	if err != nil {
		return nil, err
	}
	defer feats.Drop()
	return copyFeatures(feats, n, dim)
}

// tensorOf returns a CPU float32 tensor of the given shape holding a copy
// of data.
func tensorOf(data []float32, shape []int64) (*ts.Tensor, error) {
	flat, err := ts.OfSlice(data)
	if err != nil {
		return nil, torch.Err("tensor", err)
	}
	x, err := flat.View(shape, true)
	return x, torch.Err("tensor", err)
}

// copyFeatures copies a float32 [n, dim] tensor (on any device) into Go
// memory.
func copyFeatures(t *ts.Tensor, n, dim int) ([]float32, error) {
	shape, err := t.Size()
	if err != nil {
		return nil, torch.Err("features", err)
	}
	if len(shape) != 2 || shape[0] != int64(n) || shape[1] != int64(dim) || t.DType() != gotch.Float {
		return nil, fmt.Errorf("features have shape %v and dtype %v, want [%d %d] float32", shape, t.DType(), n, dim)
	}
	out, err := torch.Values[float32](t)
	if err != nil {
		return nil, fmt.Errorf("copy features: %w", err)
	}
	return out, nil
}

// encodeTexts returns the text features [len(texts), D] of texts, f.batch
// at a time. A text longer than the model's context is an error naming it,
// unless truncate is set.
func encodeTexts(ctx context.Context, m *clip.Model, device gotch.Device, texts []string, truncate bool, f *modelFlags, stderr io.Writer) ([]float32, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tok, err := tokenizer.New()
	if err != nil {
		return nil, err
	}
	cfg := m.Config()
	ctxLen, dim := cfg.ContextLength, cfg.EmbedDim
	rows, err := tok.Tokenize(texts, ctxLen, truncate)
	if err != nil {
		return nil, err
	}
	out := make([]float32, 0, len(texts)*dim)
	batches := (len(texts) + f.batch - 1) / f.batch
	bar := progress.New(stderr, "encode texts", len(texts), "text")
	tm := newTimer(f.timing, stderr, "encode", "texts", batches)
	for lo := 0; lo < len(rows); lo += f.batch {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted: %w", err)
		}
		hi := min(lo+f.batch, len(rows))
		flat := make([]int64, 0, (hi-lo)*ctxLen)
		for _, r := range rows[lo:hi] {
			flat = append(flat, r...)
		}
		t0 := time.Now()
		feats, err := encodeTokenBatch(m, device, flat, hi-lo, ctxLen, dim)
		if err != nil {
			return nil, fmt.Errorf("texts %d-%d: %w", lo, hi-1, err)
		}
		forward := time.Since(t0)
		out = append(out, feats...)
		bar.Add(hi - lo)
		tm.batch(hi-lo, forward)
	}
	bar.Finish()
	tm.finish()
	return out, nil
}

// encodeTokenBatch encodes n rows of token ids and returns their features
// [n, dim] in Go memory.
func encodeTokenBatch(m *clip.Model, device gotch.Device, ids []int64, n, ctxLen, dim int) ([]float32, error) {
	flat, err := ts.OfSlice(ids)
	if err != nil {
		return nil, torch.Err("tokens", err)
	}
	x, err := flat.View([]int64{int64(n), int64(ctxLen)}, true)
	if err != nil {
		return nil, torch.Err("tokens", err)
	}
	xd, err := x.To(device, true)
	if err != nil {
		return nil, torch.Err("tokens to "+torch.DeviceName(device), err)
	}
	feats, err := m.EncodeText(xd)
	xd.Drop()
	if err != nil {
		return nil, err
	}
	defer feats.Drop()
	return copyFeatures(feats, n, dim)
}

// textSide is the model's text encoder for the zero-shot classifier.
func textSide(m *clip.Model, device gotch.Device, batch int) (*clip.TextSide, error) {
	tok, err := tokenizer.New()
	if err != nil {
		return nil, err
	}
	return &clip.TextSide{Model: m, Tokenizer: tok, Device: device, Batch: batch}, nil
}
