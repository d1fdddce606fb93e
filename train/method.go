// Package train is the contract between a few-shot method and the loop
// that trains it: Method and its optional interfaces (Fitter, Tuner,
// Saver), what a method needs prepared (Needs), the Loop with its named
// hooks (step, epoch, interrupt; in the style of GoMLX's ml/train), the
// optimizers and learning-rate schedules, and checkpoint state. It knows
// nothing of configuration files, datasets, model weights or run
// directories: package experiment wires those to it.
package train

import (
	"context"
	"fmt"
	"log/slog"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

// Features is a set of image features with their labels, on one device.
type Features struct {
	// X holds raw (not normalized) CLIP image features, [N, D] float32;
	// for a method whose Needs.Layer names an intermediate layer, the image
	// encoder's activations there: [N, L, W] tokens (ViT) or [N, C, H, W]
	// feature maps (ResNet).
	X *ts.Tensor
	// Labels holds the class indices, [N] int64, on the same device as X.
	Labels *ts.Tensor
	// Y holds the same labels on the Go side.
	Y []int64
}

// Len returns the number of examples.
func (f *Features) Len() int { return len(f.Y) }

// Drop frees the tensors; it may be called on a nil *Features, and on
// Features without X (labels only).
func (f *Features) Drop() {
	if f == nil {
		return
	}
	var s torch.Scope
	s.Keep(f.X)
	s.Keep(f.Labels)
	s.Drop()
}

// TextEncoder is what methods may use of CLIP's frozen text side.
type TextEncoder interface {
	// EncodeTexts tokenizes and encodes texts into [len(texts), D] raw
	// text features (not normalized), without gradients.
	EncodeTexts(texts []string) (*ts.Tensor, error)
	// Tokenize returns the [len(texts), ContextLength] token ids.
	Tokenize(texts []string) (*ts.Tensor, error)
	// TokenEmbedding maps token ids [N, L] to embeddings [N, L, W].
	TokenEmbedding(tokens *ts.Tensor) (*ts.Tensor, error)
	// EncodeEmbeddings runs the text transformer on token embeddings
	// [N, L, W] (positional embedding added inside) and projects the rows
	// at the end-of-text positions eot (one per row): [N, D]. Gradients
	// flow to the embeddings when enabled.
	EncodeEmbeddings(embeddings *ts.Tensor, eot []int64) (*ts.Tensor, error)
	// LogitScale returns exp(logit_scale) of the checkpoint.
	LogitScale() (float64, error)
}

// LogitScaleOf returns text's logit scale, checked to be positive and
// finite.
func LogitScaleOf(text TextEncoder) (float64, error) {
	s, err := text.LogitScale()
	if err != nil {
		return 0, fmt.Errorf("the text encoder's logit scale: %w", err)
	}
	if !(s > 0) || math.IsInf(s, 0) {
		return 0, fmt.Errorf("the text encoder's logit scale is %g, want a positive finite value", s)
	}
	return s, nil
}

// PrefixEncoder is what a TextEncoder may add for prompts that share
// their first positions (CoOp's start token and shared context): those
// positions are run once, and every prompt continues from their state.
// The text transformer is causal, so the result equals encoding each
// prompt whole, to float rounding.
type PrefixEncoder interface {
	// EncodePrefix runs the text transformer over the shared positions'
	// embeddings [1, P, W] and returns their state (for a transformer,
	// every block's keys and values), which the caller drops. Gradients
	// flow from the state to the embeddings when enabled.
	EncodePrefix(embeddings *ts.Tensor) ([]*ts.Tensor, error)
	// EncodeAfterPrefix encodes embeddings [N, L, W] of positions
	// P..P+L-1 following the prefix whose state is given and projects the
	// rows at eot (positions in the whole sequence, P ≤ eot[i] < P+L):
	// [N, D]. Gradients flow to the embeddings and the state when enabled.
	EncodeAfterPrefix(state []*ts.Tensor, embeddings *ts.Tensor, eot []int64) (*ts.Tensor, error)
	// EncodeWithPrefix encodes A prefixes [A, P, W] and the groups of
	// prompts that follow them (groups[g] [N_g, L_g, W], positions
	// P..P+L_g-1, N_g a multiple of A: each run of N_g/A consecutive
	// prompts follows one prefix, in order; eot[g] as for
	// EncodeAfterPrefix) in one pass, and returns their features [ΣN_g,
	// D] in group order. It equals encoding each prompt whole, to float
	// rounding, and runs the position-wise layers once over all rows.
	EncodeWithPrefix(prefix *ts.Tensor, groups []*ts.Tensor, eot [][]int64) (*ts.Tensor, error)
}

// Recomputer is implemented by methods whose training Logits leave part of
// the computation out of the autograd graph to bound memory (activation
// recomputation, or gradient checkpointing): after the loss's backward
// pass, and before the optimizer step, FinishBackward recomputes that part
// with gradients and back-propagates into the parameters. The Loop calls
// it; callers that run their own steps must too.
type Recomputer interface {
	FinishBackward() error
}

// Context is what a method is given to set itself up.
type Context struct {
	// Text is CLIP's frozen text side.
	Text TextEncoder
	// ClassNames are the dataset's class names, in label order, with "_"
	// already replaced by spaces.
	ClassNames []string
	// Templates are the prompt templates, each with one "{}" for the
	// class name. The first is the dataset's single template.
	Templates []string
	// FeatureDim is D, the size of CLIP's joint embedding.
	FeatureDim int64
	// Device is where tensors live.
	Device gotch.Device
	// Seed seeds every random choice a method makes (initialization).
	Seed uint64
	// Log receives the method's messages.
	Log *slog.Logger
	// Projection is CLIP's last image projection, given to methods whose
	// Needs ask for PreProjection features (nil otherwise). Its tensors are
	// valid during Init only: a method copies what it keeps.
	Projection *Projection
	// Image is CLIP's frozen image encoder from an intermediate layer on,
	// for methods that adapt activations there (Needs.Layer). It is set
	// whenever a CLIP model is loaded.
	Image ImageTail
}

// ImageTail is what methods may use of CLIP's frozen image encoder after
// an intermediate layer: the residual blocks of a ViT or the stages of a
// ResNet that follow layer k.
type ImageTail interface {
	// ImageLayers returns the number of layers (ViT blocks, ResNet
	// stages).
	ImageLayers() int
	// ImageLayerChannels returns the width of the activation after layer
	// k: the ViT's token width, or the ResNet's channels after stage k.
	ImageLayerChannels(k int) (int64, error)
	// EncodeImageFrom runs the layers after k on h (the activation after
	// layer k, possibly adapted) and returns the raw image features
	// [N, D] float32, in the caller's grad mode: gradients flow into h.
	EncodeImageFrom(h *ts.Tensor, k int) (*ts.Tensor, error)
}

// Projection is the image tower's last linear projection, in PyTorch's
// Linear layout: features = pre · Weightᵀ + Bias.
type Projection struct {
	// Weight is [D, P] float32 (P: the pre-projection width).
	Weight *ts.Tensor
	// Bias is [D] float32, or nil (ViT models have none).
	Bias *ts.Tensor
}

// Drop frees the projection's tensors; a nil projection is a no-op.
func (p *Projection) Drop() {
	if p == nil {
		return
	}
	if p.Weight != nil {
		p.Weight.Drop()
	}
	if p.Bias != nil {
		p.Bias.Drop()
	}
}

// Needs says what a method needs the experiment to prepare: which image
// features of the train set, and how they are augmented.
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
	// PreProjection: every feature the method sees (train views,
	// validation, test) is the image tower's output before its last
	// projection, and Context.Projection holds that projection.
	PreProjection bool
	// Layer asks for the image encoder's activation after block (ViT) or
	// stage (ResNet) Layer instead of its output: every feature set the
	// method sees is then [N, L, W] tokens or [N, C, H, W] feature maps
	// (see Features.X), and Context.Image finishes the encoding. 0, or the
	// number of layers, is the encoder's output (SplitLayer).
	Layer int
}

// SplitLayer returns the intermediate layer whose activations n asks for
// from an image encoder with the given number of layers, or 0 for the
// encoder's output features (Layer 0 or the last layer). A Layer outside
// 0..layers is an error naming it.
func (n Needs) SplitLayer(layers int) (int, error) {
	if n.Layer < 0 || n.Layer > layers {
		return 0, fmt.Errorf("image layer %d: the image encoder has %d layers (want 0 to %d; 0 or %d: its output)", n.Layer, layers, layers, layers)
	}
	if n.Layer == layers {
		return 0, nil
	}
	if n.Layer > 0 && n.PreProjection {
		return 0, fmt.Errorf("image layer %d: pre-projection features come from the encoder's output, not an intermediate layer", n.Layer)
	}
	return n.Layer, nil
}

// Method is a few-shot classifier on top of frozen CLIP features.
//
// The loop calls Init once, then, for methods with parameters, trains them
// with SGD or AdamW on cross-entropy of Logits, and evaluates Logits on the
// validation and test features. Methods that fit or tune themselves
// implement Fitter or Tuner as well.
type Method interface {
	// Init builds the method's frozen parts (text classifier, cache) and
	// its learnable parameters. views holds the training features, one
	// Features per augmented view of the few-shot train set (same order
	// of examples in every view).
	Init(ctx *Context, views []*Features) error
	// Parameters returns the learnable tensors in a fixed order; empty
	// for methods that the loop does not train.
	Parameters() []Param
	// Logits maps raw image features [B, D] to class logits [B, C].
	// training is false during evaluation, when a method may reuse work
	// across batches (CoOp's class text features).
	Logits(features *ts.Tensor, training bool) (*ts.Tensor, error)
	// Drop frees the method's tensors.
	Drop()
}

// Fitter is implemented by methods that fit their parameters themselves
// (the linear probe's L-BFGS) instead of training with the loop. Fit
// returns an error wrapping ErrInterrupted soon after ctx is cancelled
// (between two steps of its work).
type Fitter interface {
	Fit(ctx context.Context, train, val *Features) error
}

// Tuner is implemented by methods that choose hyper-parameters on the
// validation features after training (Tip-Adapter's alpha/beta search). It
// returns the chosen values for the result file, or an error wrapping
// ErrInterrupted soon after ctx is cancelled.
type Tuner interface {
	Tune(ctx context.Context, val *Features) (map[string]float64, error)
}

// Regularizer is implemented by methods whose training loss is the
// cross-entropy plus a penalty on their parameters (ProLIP's distance to
// the pre-trained weights). The loop adds Penalty to every step's loss.
type Regularizer interface {
	// Penalty returns the scalar penalty, with gradients flowing to the
	// parameters.
	Penalty() (*ts.Tensor, error)
}

// Saver is implemented by methods whose checkpointed state is more than
// their Parameters (for example tuned hyper-parameters).
type Saver interface {
	// Extra returns non-parameter state to store in checkpoints.
	Extra() map[string]float64
	// SetExtra restores it.
	SetExtra(map[string]float64) error
}
