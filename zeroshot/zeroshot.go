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
	"runtime"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/train"
)

// Options configures the zero-shot classifier.
type Options struct {
	// Templates is how many of Context.Templates build the classifier,
	// counted from the first (the dataset's single template); 0 uses all
	// of them.
	Templates int `toml:"templates"`
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
	templates, err := FirstTemplates(ctx.Templates, m.opts.Templates)
	if err != nil {
		return fmt.Errorf("zero-shot: %w", err)
	}
	w, err := Classifier(ctx.Text, ctx.ClassNames, templates)
	if err != nil {
		return fmt.Errorf("zero-shot: %w", err)
	}
	var s torch.Scope
	defer s.Drop()
	s.Keep(w)
	shape, err := w.Size()
	if err != nil {
		return torch.Err("zero-shot: classifier shape", err)
	}
	if len(shape) != 2 {
		return fmt.Errorf("zero-shot: classifier has shape %v, want [C, D]", shape)
	}
	if ctx.FeatureDim != 0 && shape[1] != ctx.FeatureDim {
		return fmt.Errorf("zero-shot: text features have size %d, the context says D = %d", shape[1], ctx.FeatureDim)
	}
	scale, err := train.LogitScaleOf(ctx.Text)
	if err != nil {
		return fmt.Errorf("zero-shot: %w", err)
	}
	wd, err := w.To(ctx.Device, false)
	if err != nil {
		return torch.Err("zero-shot: move classifier to "+torch.DeviceName(ctx.Device), err)
	}
	m.Drop()
	m.weights, m.scale = wd, scale
	return nil
}

// Classifier encodes every class name in every template (a template holds
// one "{}", replaced by the name), L2-normalizes each text feature, averages
// them per class over the templates and L2-normalizes the average. It
// returns the [len(names), D] float32 classifier, computed without
// gradients on the text encoder's device. The encoder bounds how many
// texts go through the model at once (clip.TextSide.Batch).
func Classifier(text train.TextEncoder, names, templates []string) (*ts.Tensor, error) {
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
	var out *ts.Tensor
	err := torch.NoGrad(func() error {
		var s torch.Scope
		defer s.Drop()
		var sum *ts.Tensor
		var dim int64
		// add encodes one template and adds it to sum, dropping its
		// features at once: only the running sum stays alive.
		add := func(tmpl string) error {
			texts := make([]string, len(names))
			for i, name := range names {
				texts[i] = strings.Replace(tmpl, "{}", name, 1)
			}
			g, err := encodeNormalized(text, texts)
			if err != nil {
				return fmt.Errorf("template %q: %w", tmpl, err)
			}
			shape, err := g.Size()
			if err != nil {
				g.Drop()
				return torch.Err(fmt.Sprintf("template %q: shape of text features", tmpl), err)
			}
			if sum == nil {
				sum, dim = s.Keep(g), shape[1]
				return nil
			}
			defer g.Drop()
			if shape[1] != dim {
				return fmt.Errorf("template %q: text features of size %d, earlier ones %d", tmpl, shape[1], dim)
			}
			return torch.Err("sum over templates", sum.Add_(g))
		}
		for _, tmpl := range templates {
			if err := add(tmpl); err != nil {
				return err
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

// encodeNormalized encodes texts and returns their L2-normalized float32
// features, [len(texts), D].
func encodeNormalized(text train.TextEncoder, texts []string) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	g, err := text.EncodeTexts(texts)
	if err != nil {
		return nil, fmt.Errorf("encode %q...: %w", texts[0], err)
	}
	s.Keep(g)
	shape, err := g.Size()
	if err != nil || len(shape) != 2 || shape[0] != int64(len(texts)) {
		return nil, fmt.Errorf("text encoder returned shape %v for %d texts", shape, len(texts))
	}
	gf, err := s.Op("cast text features to float32")(g.Totype(gotch.Float, false))
	if err != nil {
		return nil, err
	}
	return nn.Normalize(gf)
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

// FirstTemplates returns the first n of the templates all (n = 0: all of
// them): the methods' `templates` key. More than there are is an error.
func FirstTemplates(all []string, n int) ([]string, error) {
	if n < 0 || n > len(all) {
		return nil, fmt.Errorf("%d templates requested, the context has %d", n, len(all))
	}
	if n == 0 {
		return all, nil
	}
	return all[:n], nil
}

// ScaledCosine returns scale · f̂ · wᵀ as float32, where f [B, D] is
// cast to float32 and normalized row-wise here and w [C, D] must already
// be float32 with unit rows: clip.Classify on float32 features.
func ScaledCosine(f, w *ts.Tensor, scale float64) (*ts.Tensor, error) {
	ff, err := f.Totype(gotch.Float, false)
	if err != nil {
		return nil, torch.Err("cast image features to float32", err)
	}
	defer ff.Drop()
	return clip.Classify(ff, w, scale)
}

// Weights returns the classifier, [C, D] unit rows (shared, not a copy),
// or nil before Init.
func (m *Method) Weights() *ts.Tensor { return m.weights }

// Drop frees the classifier.
func (m *Method) Drop() {
	if m.weights != nil {
		m.weights.Drop()
		m.weights = nil
	}
}

// DefaultOptions returns the defaults: every template of the context.
func DefaultOptions() Options { return Options{} }

// Build is zero-shot CLIP's constructor for the method registry: it uses
// no features of the train set.
func Build(o Options) (train.Method, train.Needs, error) {
	if o.Templates < 0 {
		return nil, train.Needs{}, fmt.Errorf("method.templates = %d: want >= 0 (0: all)", o.Templates)
	}
	return New(o), train.Needs{}, nil
}

// TextBased implements train.TextBased: the classifier is built from the
// class names.
func (m *Method) TextBased() bool { return true }
