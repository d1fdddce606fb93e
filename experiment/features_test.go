package experiment

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// meanEncoder maps images [B,3,R,R] to their per-channel means [B,3].
type meanEncoder struct{ calls int }

func (e *meanEncoder) EncodeImage(x *ts.Tensor) (*ts.Tensor, error) {
	e.calls++
	return x.MeanDim([]int64{2, 3}, false, gotch.Float, false)
}

type sliceBatches struct{ batches []*ImageBatch }

func (s *sliceBatches) Next() (*ImageBatch, error) {
	if len(s.batches) == 0 {
		return nil, io.EOF
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return b, nil
}
func (s *sliceBatches) Close() error { return nil }

func TestEncodeImagesAndCache(t *testing.T) {
	const r = 2
	mk := func(vals []float32, labels []int64) *ImageBatch {
		var px []float32
		for _, v := range vals {
			for i := 0; i < 3*r*r; i++ {
				px = append(px, v)
			}
		}
		return &ImageBatch{Pixels: px, Labels: labels, N: len(vals)}
	}
	enc := &meanEncoder{}
	it := &sliceBatches{batches: []*ImageBatch{mk([]float32{1, 2}, []int64{0, 1}), mk([]float32{3}, []int64{1})}}
	f, err := EncodeImages(context.Background(), enc, it, r, gotch.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.X.MustSize(); got[0] != 3 || got[1] != 3 || enc.calls != 2 {
		t.Fatalf("features %v after %d calls", got, enc.calls)
	}
	if v := f.X.Float64Values(); v[0] != 1 || v[3] != 2 || v[6] != 3 {
		t.Errorf("features %v", v)
	}
	cache := FeatureCache{Dir: t.TempDir()}
	key := FeatureKey{Model: "m", Dataset: "d", Split: "train", Items: ItemsHash([]string{"a", "b", "c"}, []int64{0, 1, 1}), View: 2}
	labels := []int64{0, 1, 1}
	if _, ok, err := cache.Load(key, labels, gotch.CPU); ok || err != nil {
		t.Fatalf("empty cache: ok=%v err=%v", ok, err)
	}
	if err := cache.Store(key, f); err != nil {
		t.Fatal(err)
	}
	g, ok, err := cache.Load(key, labels, gotch.CPU)
	if !ok || err != nil {
		t.Fatalf("cached load: ok=%v err=%v", ok, err)
	}
	if g.Len() != 3 || g.Y[2] != 1 || g.X.Float64Values()[6] != 3 {
		t.Errorf("cached features differ: %v %v", g.Y, g.X.Float64Values())
	}
	other := key
	other.View = 3
	if _, ok, _ := cache.Load(other, labels, gotch.CPU); ok {
		t.Error("a different view hit the cache")
	}

	// Fault injection: every kind of damage is reported by path, never
	// used, never a crash.
	path := cache.path(key)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		labels []int64
		want   string
	}{
		{"float bytes changed", func(b []byte) []byte { b[len(b)-40] ^= 0x01; return b }, labels, "corrupt"},
		{"shape in the header changed", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"shape":[3,3]`), []byte(`"shape":[9,3]`), 1)
		}, labels, "corrupt"},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, labels, "corrupt"},
		{"labels of other items", func(b []byte) []byte { return b }, []int64{0, 1, 0}, "want 3 rows with the items' labels"},
		{"fewer items", func(b []byte) []byte { return b }, []int64{0, 1}, "want 2 rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, tc.damage(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			f, ok, err := cache.Load(key, tc.labels, gotch.CPU)
			if ok || f != nil || err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ok=%v err=%v; want an error naming %s and %q", ok, err, path, tc.want)
			}
		})
	}
}

// TestEncoderForLayers: a method's Needs.Layer picks the activations
// after an intermediate image encoder layer, cached under a key of their
// own; the last layer is the output features under today's key.
func TestEncoderForLayers(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	model, cfg := tinyModel(t)
	if model.ImageLayers() != 2 {
		t.Fatalf("tiny has %d image layers, the test assumes 2", model.ImageLayers())
	}
	r := int64(cfg.ImageResolution)
	images := ts.MustRandn([]int64{3, 3, r, r}, gotch.Float, gotch.CPU)
	defer images.MustDrop()
	out, err := model.EncodeImage(images)
	if err != nil {
		t.Fatal(err)
	}
	defer out.MustDrop()
	want, _ := torch.Values[float32](out)

	ds := &datasets.Dataset{Name: "synthetic", Dir: "d"}
	conf := &config.Config{}
	keys := map[string]FeatureKey{}
	for _, tc := range []struct {
		name  string
		needs train.Needs
		shape []int64
		extra []string
	}{
		{"output", train.Needs{}, []int64{3, 64}, nil},
		{"last layer", train.Needs{Layer: 2}, []int64{3, 64}, nil},
		{"layer 1", train.Needs{Layer: 1}, []int64{3, 17, 64}, []string{"layer:1"}},
		{"pre-projection", train.Needs{PreProjection: true}, []int64{3, 64}, []string{"pre-projection"}},
	} {
		enc, extra, err := EncoderFor(model, tc.needs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(extra, tc.extra) {
			t.Errorf("%s: key extra %q, want %q", tc.name, extra, tc.extra)
		}
		f, err := enc.EncodeImage(images)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := f.MustSize(); !slices.Equal(got, tc.shape) {
			t.Errorf("%s: features of shape %v, want %v", tc.name, got, tc.shape)
		}
		if tc.extra == nil {
			if got, _ := torch.Values[float32](f); !slices.Equal(got, want) {
				t.Errorf("%s: features differ from the output features", tc.name)
			}
		}
		f.MustDrop()
		e := &extractor{modelID: "tiny", ds: ds, cfg: conf, enc: enc, keyExtra: extra}
		keys[tc.name] = e.key("train", "items", "train:64", 0)
	}
	if keys["last layer"].Hash() != keys["output"].Hash() {
		t.Error("the last layer's features are cached under another key than the output features")
	}
	if h := keys["layer 1"].Hash(); h == keys["output"].Hash() || h == keys["pre-projection"].Hash() {
		t.Error("layer 1's features share a cache key with other features")
	}
	for _, tc := range []struct {
		needs train.Needs
		want  string
	}{
		{train.Needs{Layer: 3}, "has 2 layers"},
		{train.Needs{Layer: -1}, "image layer -1"},
		{train.Needs{Layer: 1, PreProjection: true}, "pre-projection"},
	} {
		if _, _, err := EncoderFor(model, tc.needs); err == nil || !strings.Contains(err.Error(), "method.layer") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("needs %+v: %v, want an error naming method.layer and %q", tc.needs, err, tc.want)
		}
	}

	// Intermediate activations go through the cache like features.
	enc, extra, _ := EncoderFor(model, train.Needs{Layer: 1})
	f, err := EncodeImages(context.Background(), enc, &sliceBatches{batches: []*ImageBatch{{Pixels: values(t, images), Labels: []int64{0, 1, 0}, N: 3}}}, int(r), gotch.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Drop()
	cache := FeatureCache{Dir: t.TempDir()}
	key := FeatureKey{Model: "tiny", Split: "val", Extra: extra}
	if err := cache.Store(key, f); err != nil {
		t.Fatal(err)
	}
	g, ok, err := cache.Load(key, []int64{0, 1, 0}, gotch.CPU)
	if !ok || err != nil {
		t.Fatalf("cached layer-1 tokens: ok=%v err=%v", ok, err)
	}
	defer g.Drop()
	if got, want := values(t, g.X), values(t, f.X); !slices.Equal(got, want) || !slices.Equal(g.X.MustSize(), []int64{3, 17, 64}) {
		t.Errorf("cached layer-1 tokens differ: shape %v", g.X.MustSize())
	}
}

func values(t *testing.T, x *ts.Tensor) []float32 {
	t.Helper()
	v, err := torch.Values[float32](x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// countedBatches is sliceBatches that says how many batches it holds, so
// that EncodeImages may encode several at once.
type countedBatches struct{ sliceBatches }

func (c *countedBatches) Batches() int { return len(c.batches) }

// TestEncodeImagesBatchesAtOnce encodes seven batches of a tiny CLIP with
// two libtorch threads, which EncodeImages runs two batches at a time, and
// compares with the same batches encoded one after the other: the same
// rows in the same order, to float32 rounding, and the caller's thread
// count is unchanged.
func TestEncodeImagesBatchesAtOnce(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := torch.NumThreads()
	if err != nil {
		t.Fatal(err)
	}
	defer torch.SetNumThreads(prev)
	if err := torch.SetNumThreads(2); err != nil {
		t.Fatal(err)
	}
	model, cfg := tinyModel(t)
	r := cfg.ImageResolution
	var batches []*ImageBatch
	label := int64(0)
	for _, n := range []int{3, 1, 4, 2, 3, 3, 2} {
		x := ts.MustRandn([]int64{int64(n), 3, int64(r), int64(r)}, gotch.Float, gotch.CPU)
		b := &ImageBatch{Pixels: values(t, x), N: n}
		x.MustDrop()
		for range n {
			b.Labels = append(b.Labels, label)
			label++
		}
		batches = append(batches, b)
	}
	if w, _ := torch.BatchWorkers(gotch.CPU, len(batches)); w != 2 {
		t.Fatalf("BatchWorkers with 2 threads: %d workers, want 2", w)
	}
	serial, err := EncodeImages(context.Background(), model, &sliceBatches{batches: slices.Clone(batches)}, r, gotch.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer serial.Drop()
	both, err := EncodeImages(context.Background(), model, &countedBatches{sliceBatches{batches: slices.Clone(batches)}}, r, gotch.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer both.Drop()
	if !slices.Equal(both.Y, serial.Y) || !slices.IsSorted(both.Y) || len(both.Y) != int(label) {
		t.Fatalf("labels %v, want 0..%d in order", both.Y, label-1)
	}
	a, b := serial.X.Float64Values(), both.X.Float64Values()
	var maxDiff, maxRef float64
	for i := range a {
		maxDiff = max(maxDiff, math.Abs(a[i]-b[i]))
		maxRef = max(maxRef, math.Abs(a[i]))
	}
	t.Logf("max |two at once - one after the other| / max |feature| = %.2g", maxDiff/maxRef)
	if len(a) != len(b) || maxDiff > 1e-5*maxRef {
		t.Errorf("features differ by %g (largest %g), want <= 1e-5 relative", maxDiff, maxRef)
	}
	if n, err := torch.NumThreads(); err != nil || n != 2 {
		t.Errorf("caller's libtorch threads after: %d, %v; want 2", n, err)
	}
}

// tinyModel returns the "tiny" CLIP with random weights (seed 1) on the
// CPU and its config; it is dropped when the test ends.
func tinyModel(t *testing.T) (*clip.Model, clip.Config) {
	t.Helper()
	cfg, err := clip.ArchConfig("tiny")
	if err != nil {
		t.Fatal(err)
	}
	model, err := clip.New(cfg, gotch.CPU, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(model.Drop)
	return model, cfg
}
