// Package train is the contract between a few-shot method and the loop
// that trains it: Method and its optional interfaces (Fitter, Tuner,
// Saver), what a method needs prepared (Needs), the Loop with its named
// hooks (step, epoch, interrupt; in the style of GoMLX's ml/train), the
// optimizers and learning-rate schedules, and checkpoint state. It knows
// nothing of configuration files, datasets, model weights or run
// directories: package experiment wires those to it.
package train

import (
	"log/slog"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Features is a set of image features with their labels, on one device.
type Features struct {
	// X holds raw (not normalized) CLIP image features, [N, D] float32.
	X *ts.Tensor
	// Labels holds the class indices, [N] int64, on the same device as X.
	Labels *ts.Tensor
	// Y holds the same labels on the Go side.
	Y []int64
}

// Len returns the number of examples.
func (f *Features) Len() int { return len(f.Y) }

// Drop frees the tensors.
func (f *Features) Drop() {
	if f == nil {
		return
	}
	if f.X != nil {
		f.X.MustDrop()
	}
	if f.Labels != nil {
		f.Labels.MustDrop()
	}
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
	LogitScale() float64
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
	// Optimizer, when set, overrides train.optimizer for this method.
	Optimizer string
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
// (the linear probe's L-BFGS) instead of training with the loop.
type Fitter interface {
	Fit(train, val *Features) error
}

// Tuner is implemented by methods that choose hyper-parameters on the
// validation features after training (Tip-Adapter's alpha/beta search). It
// returns the chosen values for the result file.
type Tuner interface {
	Tune(val *Features) (map[string]float64, error)
}

// Saver is implemented by methods whose checkpointed state is more than
// their Parameters (for example tuned hyper-parameters).
type Saver interface {
	// Extra returns non-parameter state to store in checkpoints.
	Extra() map[string]float64
	// SetExtra restores it.
	SetExtra(map[string]float64) error
}
