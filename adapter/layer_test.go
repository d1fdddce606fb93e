package adapter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// Small random CLIPs for the intermediate-layer tests: a three-block ViT
// (17 tokens of width 64) and a ResNet with one block per stage.
var (
	layerViT = clip.Config{EmbedDim: 16, ImageResolution: 32, VisionLayers: []int{3}, VisionWidth: 64, VisionPatchSize: 8,
		ContextLength: 77, VocabSize: 64, TransformerWidth: 32, TransformerHeads: 1, TransformerLayers: 1}
	layerRN = clip.Config{EmbedDim: 16, ImageResolution: 64, VisionLayers: []int{1, 1, 1, 1}, VisionWidth: 8,
		ContextLength: 77, VocabSize: 64, TransformerWidth: 32, TransformerHeads: 1, TransformerLayers: 1}
)

// layerFixture is a random CLIP, random images and a context whose text
// encoder returns random class features.
type layerFixture struct {
	model  *clip.Model
	images *ts.Tensor
	ctx    *train.Context
	labels []int64
}

func newLayerFixture(t *testing.T, cfg clip.Config, n int, seed uint64) *layerFixture {
	t.Helper()
	m, err := clip.New(cfg, gotch.CPU, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Drop)
	rng := rand.New(rand.NewPCG(seed, 5))
	r := cfg.ImageResolution
	px := make([]float32, n*3*r*r)
	for i := range px {
		px[i] = float32(rng.NormFloat64())
	}
	images, err := torch.FromFloats(px, []int64{int64(n), 3, int64(r), int64(r)}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(images.MustDrop)
	classes := []string{"cat", "dog", "owl"}
	d := int64(cfg.EmbedDim)
	enc := &fakeText{rows: map[string][]float32{}, dim: d, scale: 50}
	for _, c := range classes {
		row := make([]float32, d)
		for i := range row {
			row[i] = float32(rng.NormFloat64())
		}
		enc.rows["a photo of a "+c+"."] = row
	}
	labels := make([]int64, n)
	for i := range labels {
		labels[i] = int64(i % len(classes))
	}
	ctx := &train.Context{Text: enc, ClassNames: classes, Templates: []string{"a photo of a {}."}, FeatureDim: d,
		Device: gotch.CPU, Seed: 3, Image: m}
	return &layerFixture{model: m, images: images, ctx: ctx, labels: labels}
}

// upTo returns the activations after layer k as float32 (what the
// experiment caches), or the output features for k = 0.
func (f *layerFixture) upTo(t *testing.T, k int) *ts.Tensor {
	t.Helper()
	var x *ts.Tensor
	var err error
	if k == 0 {
		x, err = f.model.EncodeImage(f.images)
	} else if x, err = f.model.EncodeImageUpTo(f.images, k); err == nil {
		x, err = x.Totype(gotch.Float, true)
	}
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func newInitialized(t *testing.T, o CLIPAdapterOptions, ctx *train.Context) *CLIPAdapter {
	t.Helper()
	a := NewCLIPAdapter(o)
	if err := a.Init(ctx, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Drop)
	return a
}

func values(t *testing.T, x *ts.Tensor) []float32 {
	t.Helper()
	v, err := torch.Values[float32](x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCLIPAdapterLayerLastIsToday: the adapter placed after the image
// encoder's last layer is today's adapter on the output features: the
// features the experiment encodes for it are the output features (the
// layer resolves to 0), and it has the same parameters, the same logits
// and the same SGD step, bit for bit, as the adapter with layer 0.
func TestCLIPAdapterLayerLastIsToday(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  clip.Config
	}{{"vit", layerViT}, {"rn", layerRN}} {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t)
			f := newLayerFixture(t, tc.cfg, 6, 1)
			last := f.model.ImageLayers()
			if k, err := (train.Needs{Layer: last}).SplitLayer(last); k != 0 || err != nil {
				t.Fatalf("layer %d of %d resolves to %d (%v), want the output features", last, last, k, err)
			}
			x := f.upTo(t, 0)
			defer x.MustDrop()
			y := ts.MustOfSlice(f.labels)
			defer y.MustDrop()
			o := DefaultCLIPAdapterOptions()
			today := newInitialized(t, o, f.ctx)
			o.Layer = last
			atLast := newInitialized(t, o, f.ctx)
			if atLast.Layer() != 0 {
				t.Fatalf("Layer() = %d, want 0", atLast.Layer())
			}
			step := func(a *CLIPAdapter) (logits []float32, params [][]float32) {
				l, err := a.Logits(x, true)
				if err != nil {
					t.Fatal(err)
				}
				logits = values(t, l)
				loss := l.CrossEntropyForLogits(y)
				loss.MustBackward()
				loss.MustDrop()
				l.MustDrop()
				if err := train.NewSGD(a.Parameters(), 0.9, 5e-4).Step(0.1); err != nil {
					t.Fatal(err)
				}
				for _, p := range a.Parameters() {
					params = append(params, values(t, p.Tensor))
				}
				return logits, params
			}
			l0, p0 := step(today)
			l1, p1 := step(atLast)
			if !slices.Equal(l0, l1) {
				t.Errorf("logits differ from today's adapter")
			}
			if len(p0) != 2 || len(p0) != len(p1) {
				t.Fatalf("%d and %d parameters", len(p0), len(p1))
			}
			for i := range p0 {
				if !slices.Equal(p0[i], p1[i]) {
					t.Errorf("parameter %s after one SGD step differs from today's", today.Parameters()[i].Name)
				}
			}
		})
	}
}

// TestCLIPAdapterLayerAlphaZeroIsZeroShot: with α = 0 the adapter at any
// intermediate layer leaves the activations as they are, so its logits
// are zero-shot CLIP's.
func TestCLIPAdapterLayerAlphaZeroIsZeroShot(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  clip.Config
	}{{"vit", layerViT}, {"rn", layerRN}} {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t)
			f := newLayerFixture(t, tc.cfg, 4, 2)
			out := f.upTo(t, 0)
			defer out.MustDrop()
			for k := 1; k < f.model.ImageLayers(); k++ {
				o := DefaultCLIPAdapterOptions()
				o.Alpha, o.Layer = 0, k
				a := newInitialized(t, o, f.ctx)
				want, err := zeroshot.ScaledCosine(out, a.classifier, a.scale)
				if err != nil {
					t.Fatal(err)
				}
				h := f.upTo(t, k)
				got, err := a.Logits(h, false)
				if err != nil {
					t.Fatal(err)
				}
				// The same function; zero-shot CLIP ran without gradients,
				// through the encoder's in-place shortcuts (see package nn),
				// the adapter's layers with them: fp32 rounding.
				assertClose(t, fmt.Sprintf("layer %d, alpha 0: logits against zero-shot CLIP's", k), got,
					array{shape: want.MustSize(), data: values(t, want)}, fp32)
				for _, x := range []*ts.Tensor{want, h, got} {
					x.MustDrop()
				}
			}
		})
	}
}

// TestCLIPAdapterLayerMatchesReference: the adapter at an intermediate
// layer is h' = α·A(h) + (1−α)·h with A(v) = ReLU(ReLU(v·W1ᵀ)·W2ᵀ) applied
// to every token (ViT) or every position's channel vector (ResNet),
// computed here in float64 from the parameters; the encoder's remaining
// layers then make the features that the logits compare with the text
// classifier.
func TestCLIPAdapterLayerMatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      clip.Config
		channels int // the dimension holding the channels
	}{{"vit", layerViT, 2}, {"rn", layerRN, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t)
			f := newLayerFixture(t, tc.cfg, 3, 4)
			for k := 1; k < f.model.ImageLayers(); k++ {
				o := DefaultCLIPAdapterOptions()
				o.Alpha, o.Layer, o.Reduction = 0.6, k, 2
				a := newInitialized(t, o, f.ctx)
				h := f.upTo(t, k)
				shape := h.MustSize()
				hv := values(t, h)
				w1, w2 := values(t, a.visual.fc1), values(t, a.visual.fc2)
				c := int(shape[tc.channels])
				hid := len(w1) / c
				// stride between channels, and the positions' offsets.
				stride, inner := 1, 1
				for _, s := range shape[tc.channels+1:] {
					stride *= int(s)
					inner *= int(s)
				}
				mixed := make([]float32, len(hv))
				v, z := make([]float64, c), make([]float64, hid)
				for base := 0; base < len(hv); base += c * inner {
					for p := 0; p < inner; p++ {
						for i := range v {
							v[i] = float64(hv[base+p+i*stride])
						}
						for j := range z {
							z[j] = 0
							for i := range v {
								z[j] += float64(w1[j*c+i]) * v[i]
							}
							z[j] = math.Max(z[j], 0)
						}
						for i := range v {
							var y float64
							for j := range z {
								y += float64(w2[i*hid+j]) * z[j]
							}
							y = math.Max(y, 0) // relu_after_second
							mixed[base+p+i*stride] = float32(0.6*y + 0.4*v[i])
						}
					}
				}
				mt, err := torch.FromFloats(mixed, shape, gotch.CPU)
				if err != nil {
					t.Fatal(err)
				}
				feats, err := f.model.EncodeImageFrom(mt, k)
				if err != nil {
					t.Fatal(err)
				}
				fs := feats.MustSize()
				want := zeroShot(array{fs, values(t, feats)}, array{a.classifier.MustSize(), values(t, a.classifier)}, a.scale)
				got, err := a.Logits(h, false)
				if err != nil {
					t.Fatal(err)
				}
				assertValues(t, fmt.Sprintf("layer %d logits", k), got.Float64Values(), want, tolerance{rel: 1e-4, abs: 1e-5})
				// AdaptFeatures gives the features the classifier compares.
				af, err := a.AdaptFeatures(h)
				if err != nil {
					t.Fatal(err)
				}
				assertValues(t, fmt.Sprintf("layer %d adapted features", k), af.Float64Values(), values(t, feats), tolerance{rel: 1e-4, abs: 1e-5})
				for _, x := range []*ts.Tensor{h, mt, feats, got, af} {
					x.MustDrop()
				}
			}
		})
	}
}

// TestCLIPAdapterLayerLearns trains the adapter after the first of three
// ViT blocks on a synthetic few-shot problem (each class a noisy version
// of its own random image; the random text classifier puts zero-shot near
// chance) and checks that it classifies held-out images well above chance,
// gradients flowing through the frozen blocks after it.
func TestCLIPAdapterLayerLearns(t *testing.T) {
	lockThread(t)
	const classes, shots, tests = 3, 8, 20
	f := newLayerFixture(t, layerViT, 1, 6)
	rng := rand.New(rand.NewPCG(6, 7))
	r := layerViT.ImageResolution
	size := 3 * r * r
	protos := make([][]float32, classes)
	for c := range protos {
		protos[c] = make([]float32, size)
		for i := range protos[c] {
			protos[c][i] = float32(rng.NormFloat64())
		}
	}
	sample := func(per int) (*ts.Tensor, []int64) {
		px := make([]float32, 0, per*classes*size)
		var y []int64
		for i := 0; i < per; i++ {
			for c := range protos {
				for _, v := range protos[c] {
					px = append(px, v+float32(0.8*rng.NormFloat64()))
				}
				y = append(y, int64(c))
			}
		}
		x, err := torch.FromFloats(px, []int64{int64(len(y)), 3, int64(r), int64(r)}, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		h, err := f.model.EncodeImageUpTo(x, 1)
		x.MustDrop()
		if err != nil {
			t.Fatal(err)
		}
		return h, y
	}
	trainX, trainY := sample(shots)
	defer trainX.MustDrop()
	testX, testY := sample(tests)
	defer testX.MustDrop()
	o := DefaultCLIPAdapterOptions()
	o.Layer, o.Alpha = 1, 0.5
	a := newInitialized(t, o, f.ctx)
	zs, err := a.Logits(testX, false)
	if err != nil {
		t.Fatal(err)
	}
	zsAcc := accuracy(t, zs, testY)
	zs.MustDrop()
	y := ts.MustOfSlice(trainY)
	defer y.MustDrop()
	opt := train.NewAdamW(a.Parameters(), 0.9, 0.999, 1e-8, 0)
	var first, last float64
	for step := 0; step < 60; step++ {
		logits, err := a.Logits(trainX, true)
		if err != nil {
			t.Fatal(err)
		}
		loss := logits.CrossEntropyForLogits(y)
		loss.MustBackward()
		last = loss.Float64Values()[0]
		if step == 0 {
			first = last
		}
		loss.MustDrop()
		logits.MustDrop()
		if err := opt.Step(0.01); err != nil {
			t.Fatal(err)
		}
	}
	logits, err := a.Logits(testX, false)
	if err != nil {
		t.Fatal(err)
	}
	defer logits.MustDrop()
	acc := accuracy(t, logits, testY)
	t.Logf("layer 1 of 3: accuracy %.3f before training (chance %.3f), train loss %.3f -> %.3f, held-out accuracy %.3f",
		zsAcc, 1.0/classes, first, last, acc)
	if acc < 0.8 || acc < zsAcc+0.2 {
		t.Errorf("held-out accuracy %.3f after training, want at least 0.8 and 0.2 above the untrained %.3f", acc, zsAcc)
	}
}

// TestCLIPAdapterLayerErrors: options and inputs that cannot work are
// errors naming what is wrong.
func TestCLIPAdapterLayerErrors(t *testing.T) {
	lockThread(t)
	f := newLayerFixture(t, layerViT, 2, 8)
	noImage := *f.ctx
	noImage.Image = nil
	opts := func(edit func(*CLIPAdapterOptions)) CLIPAdapterOptions {
		o := DefaultCLIPAdapterOptions()
		edit(&o)
		return o
	}
	for _, tc := range []struct {
		name string
		o    CLIPAdapterOptions
		ctx  *train.Context
		want string
	}{
		{"negative", opts(func(o *CLIPAdapterOptions) { o.Layer = -1 }), f.ctx, "layer -1"},
		{"past the last", opts(func(o *CLIPAdapterOptions) { o.Layer = 4 }), f.ctx, "has 3 layers"},
		{"text variant", opts(func(o *CLIPAdapterOptions) { o.Layer, o.Variant = 1, VariantText }), f.ctx, "has none"},
		{"hypernet", opts(func(o *CLIPAdapterOptions) { o.Layer, o.LearnRatios, o.Alpha = 1, RatiosHypernet, 0.5 }), f.ctx, "hypernet"},
		{"no image encoder", opts(func(o *CLIPAdapterOptions) { o.Layer = 1 }), &noImage, "no image encoder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewCLIPAdapter(tc.o)
			defer a.Drop()
			if err := a.Init(tc.ctx, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Init: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Features of the wrong kind: output features for an adapter at
	// layer 1.
	a := newInitialized(t, opts(func(o *CLIPAdapterOptions) { o.Layer = 1 }), f.ctx)
	out := f.upTo(t, 0)
	defer out.MustDrop()
	if _, err := a.Logits(out, false); err == nil || !strings.Contains(err.Error(), "after layer 1") {
		t.Errorf("Logits of output features: %v", err)
	}
	if _, _, err := BuildCLIPAdapter(opts(func(o *CLIPAdapterOptions) { o.Layer = -2 })); err == nil || !strings.Contains(err.Error(), "method.layer") {
		t.Errorf("Build with layer -2: %v", err)
	}
	_, needs, err := BuildCLIPAdapter(opts(func(o *CLIPAdapterOptions) { o.Layer = 2 }))
	if err != nil || needs.Layer != 2 {
		t.Errorf("Build with layer 2: needs %+v, %v", needs, err)
	}
}
