// Package zeroshot is zero-shot CLIP as a train.Method: a frozen text
// classifier built from the class names and prompt templates, and logits
// that are the checkpoint's logit scale times the cosine similarities
// between image and class features. It has no parameters to train.
//
// The classifier follows CLIP's prompt ensembling: every class name is put
// into each template, the encoded texts are L2-normalized, averaged per class
// over the templates and normalized again. With one template this is the
// single-template classifier of CoOp's zero-shot baseline.
//
// Init builds the classifier without gradients; it locks its goroutine to
// its OS thread while it runs (libtorch's grad mode is per thread).
package zeroshot

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/train"
)

// DefaultBatchSize is how many texts go through the text encoder at once
// when Options.BatchSize is 0.
const DefaultBatchSize = 256

// Options configures the zero-shot classifier.
type Options struct {
	// Templates is how many of Context.Templates build the classifier,
	// counted from the first (the dataset's single template); 0 uses all
	// of them.
	Templates int `toml:"templates"`
	// BatchSize is how many texts are encoded at once; 0 means
	// DefaultBatchSize.
	BatchSize int `toml:"-"`
}

// Method is zero-shot CLIP. Create it with New; Init builds the classifier.
type Method struct {
	opts Options
	// weights holds the class features, [C, D] float32 unit rows.
	weights *ts.Tensor
	scale   float64
}

var _ train.Method = (*Method)(nil)

// New returns an uninitialized zero-shot method.
func New(o Options) *Method { return &Method{opts: o} }

// Init builds the text classifier from ctx.ClassNames and ctx.Templates.
// The training views are not used.
func (m *Method) Init(ctx *train.Context, views []*train.Features) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if ctx == nil {
		return errors.New("zero-shot: nil context")
	}
	if ctx.Text == nil {
		return errors.New("zero-shot: the context has no text encoder")
	}
	templates := ctx.Templates
	if n := m.opts.Templates; n < 0 || n > len(templates) {
		return fmt.Errorf("zero-shot: %d templates requested, the context has %d", n, len(templates))
	} else if n > 0 {
		templates = templates[:n]
	}
	w, err := Classifier(ctx.Text, ctx.ClassNames, templates, m.opts.BatchSize)
	if err != nil {
		return fmt.Errorf("zero-shot: %w", err)
	}
	if s := w.MustSize(); ctx.FeatureDim != 0 && s[1] != ctx.FeatureDim {
		w.MustDrop()
		return fmt.Errorf("zero-shot: text features have size %d, the context says D = %d", s[1], ctx.FeatureDim)
	}
	wd, err := w.To(ctx.Device, true)
	if err != nil {
		return torch.Err("zero-shot: move classifier to "+torch.DeviceName(ctx.Device), err)
	}
	scale := ctx.Text.LogitScale()
	if !(scale > 0) || math.IsInf(scale, 0) {
		wd.MustDrop()
		return fmt.Errorf("zero-shot: the text encoder's logit scale is %g, want a positive finite value", scale)
	}
	m.Drop()
	m.weights, m.scale = wd, scale
	return nil
}

// Classifier encodes every class name in every template (a template holds
// one "{}", replaced by the name), L2-normalizes each text feature, averages
// them per class over the templates and L2-normalizes the average. It
// returns the [len(names), D] float32 classifier, computed without
// gradients on the text encoder's device. batchSize bounds how many texts
// are encoded at once (0: DefaultBatchSize).
func Classifier(text train.TextEncoder, names, templates []string, batchSize int) (*ts.Tensor, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if len(names) == 0 {
		return nil, errors.New("text classifier: no class names")
	}
	if len(templates) == 0 {
		return nil, errors.New("text classifier: no prompt templates")
	}
	for _, t := range templates {
		if strings.Count(t, "{}") != 1 {
			return nil, fmt.Errorf("text classifier: template %q must contain exactly one {}", t)
		}
	}
	if batchSize <= 0 {
		batchSize = DefaultBatchSize
	}
	var out *ts.Tensor
	err := torch.NoGrad(func() error {
		var sum *ts.Tensor
		defer func() {
			if sum != nil && sum != out {
				sum.MustDrop()
			}
		}()
		for _, tmpl := range templates {
			texts := make([]string, len(names))
			for i, name := range names {
				texts[i] = strings.Replace(tmpl, "{}", name, 1)
			}
			g, err := encodeNormalized(text, texts, batchSize)
			if err != nil {
				return fmt.Errorf("template %q: %w", tmpl, err)
			}
			if sum == nil {
				sum = g
				continue
			}
			if s, t := sum.MustSize(), g.MustSize(); s[1] != t[1] {
				g.MustDrop()
				return fmt.Errorf("template %q: text features of size %d, earlier ones %d", tmpl, t[1], s[1])
			}
			err = sum.Add_(g)
			g.MustDrop()
			if err != nil {
				return torch.Err("sum over templates", err)
			}
		}
		if err := sum.DivScalar_(ts.FloatScalar(float64(len(templates)))); err != nil {
			return torch.Err("average over templates", err)
		}
		w, err := nn.Normalize(sum)
		if err != nil {
			return err
		}
		out = w
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("text classifier: %w", err)
	}
	return out, nil
}

// encodeNormalized encodes texts in batches and returns their L2-normalized
// float32 features, [len(texts), D].
func encodeNormalized(text train.TextEncoder, texts []string, batchSize int) (*ts.Tensor, error) {
	var parts []*ts.Tensor
	defer func() {
		for _, p := range parts {
			p.MustDrop()
		}
	}()
	for lo := 0; lo < len(texts); lo += batchSize {
		hi := min(lo+batchSize, len(texts))
		g, err := text.EncodeTexts(texts[lo:hi])
		if err != nil {
			return nil, fmt.Errorf("encode %q...: %w", texts[lo], err)
		}
		s, err := g.Size()
		if err != nil || len(s) != 2 || s[0] != int64(hi-lo) {
			g.MustDrop()
			return nil, fmt.Errorf("text encoder returned shape %v for %d texts", s, hi-lo)
		}
		gf, err := g.Totype(gotch.Float, true)
		if err != nil {
			return nil, torch.Err("cast text features to float32", err)
		}
		gn, err := nn.Normalize(gf)
		gf.MustDrop()
		if err != nil {
			return nil, err
		}
		parts = append(parts, gn)
	}
	if len(parts) == 1 {
		p := parts[0]
		parts = nil
		return p, nil
	}
	all, err := ts.Cat(parts, 0)
	if err != nil {
		return nil, torch.Err("concatenate text features", err)
	}
	return all, nil
}

// Parameters returns nil: zero-shot CLIP has nothing to train.
func (m *Method) Parameters() []train.Param { return nil }

// Logits returns LogitScale · f̂ · Wᵀ for raw image features f [B, D], as
// float32 [B, C], where f̂ has unit rows and W is the classifier. training
// makes no difference.
func (m *Method) Logits(features *ts.Tensor, training bool) (*ts.Tensor, error) {
	if m.weights == nil {
		return nil, errors.New("zero-shot: logits before Init")
	}
	return ScaledCosine(features, m.weights, m.scale)
}

// ScaledCosine returns scale · f̂ · wᵀ as float32, where f [B, D] is
// cast to float32 and normalized row-wise here and w [C, D] must already
// be float32 with unit rows: clip.Classify on float32 features.
func ScaledCosine(f, w *ts.Tensor, scale float64) (*ts.Tensor, error) {
	ff, err := f.Totype(gotch.Float, false)
	if err != nil {
		return nil, torch.Err("cast image features to float32", err)
	}
	defer ff.MustDrop()
	return clip.Classify(ff, w, scale)
}

// Weights returns the classifier, [C, D] unit rows (shared, not a copy),
// or nil before Init.
func (m *Method) Weights() *ts.Tensor { return m.weights }

// Drop frees the classifier.
func (m *Method) Drop() {
	if m.weights != nil {
		m.weights.MustDrop()
		m.weights = nil
	}
}

// DefaultOptions returns the defaults: every template of the context,
// DefaultBatchSize texts at a time.
func DefaultOptions() Options { return Options{} }

// Build is zero-shot CLIP's constructor for the method registry: it uses
// no features of the train set.
func Build(o Options) (train.Method, train.Needs, error) {
	if o.Templates < 0 {
		return nil, train.Needs{}, fmt.Errorf("method.templates = %d: want >= 0 (0: all)", o.Templates)
	}
	return New(o), train.Needs{}, nil
}
