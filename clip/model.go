// Package clip is OpenAI's CLIP model on gotch: the ViT and ModifiedResNet
// image towers and the causal text transformer, numerically matching the
// PyTorch reference (docs/models.md).
//
// Load reads the released checkpoints (TorchScript archives) and plain
// torch.save state dicts; the architecture is inferred from the tensor
// shapes. New builds a randomly initialised model. All weights are frozen.
//
// EncodeImage and EncodeText are inference helpers: they run with gradients
// off (restoring the caller's mode). EncodeTextEmbeddings is the entry point
// for prompt learning (CoOp): it runs in the caller's grad mode so that
// gradients reach learned token embeddings. Every method locks the calling
// goroutine to its OS thread while it runs (libtorch's grad mode is per
// thread). Returned features are fp32 and owned by the caller.
package clip

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
)

// Precision selects the dtype of the convolution and linear weights.
type Precision int

const (
	// FP32 computes everything in fp32 (what OpenAI's loader does on CPU).
	FP32 Precision = iota
	// FP16 keeps the released fp16 weights as fp16 (CUDA only): the
	// convolution, linear and attention-projection weights and the
	// projections are fp16; LayerNorm/BatchNorm parameters, embeddings and
	// logit_scale stay fp32; LayerNorm computes in fp32. Features are still
	// returned as fp32.
	FP16
	// BF16 is FP16's layout with bfloat16 weights and activations, on CPU
	// (libtorch 2.x has bf16 CPU kernels; 1.13 lacks some) or CUDA. bf16
	// has fp32's exponent range, so gradients through it need no loss
	// scaling.
	BF16
)

func (p Precision) String() string {
	switch p {
	case FP16:
		return "fp16"
	case BF16:
		return "bf16"
	}
	return "fp32"
}

// ParsePrecision reads "fp32", "fp16" or "bf16".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32", "":
		return FP32, nil
	case "fp16":
		return FP16, nil
	case "bf16":
		return BF16, nil
	}
	return 0, fmt.Errorf("clip: unknown precision %q (want fp32, fp16 or bf16)", s)
}

// Option adjusts New and Load.
type Option func(*options)

type options struct {
	precision       Precision
	fullTextContext bool
	openclipConfig  string
	arch            string
}

// WithPrecision selects FP32 (the default), FP16 (CUDA only) or BF16.
func WithPrecision(p Precision) Option { return func(o *options) { o.precision = p } }

// WithFullTextContext makes the text tower run over every position it is
// given. By default it stops after the batch's last end-of-text token: the
// transformer is causal and its output is read at the end-of-text tokens,
// so the positions after the longest prompt's cannot change any result, and
// prompts of a few tokens padded to 77 cost a fraction of the work. The two
// agree to float rounding; this option is there to compare them.
func WithFullTextContext() Option { return func(o *options) { o.fullTextContext = true } }

// Model is a CLIP model with frozen weights. It is not safe for concurrent
// use: serialise calls. Drop releases its tensors.
type Model struct {
	cfg       Config
	device    gotch.Device
	precision Precision
	// fullTextContext turns off the cut after the last end-of-text token.
	fullTextContext bool
	dtype           gotch.DType // dtype of activations (weights of linear layers)
	params          *nn.Params
	// preprocess is the checkpoint's image preprocessing (zero: OpenAI's).
	preprocess preprocess.Config

	vit *visionTransformer
	rn  *modifiedResNet

	transformer         *nn.Transformer
	tokenEmbedding      *ts.Tensor
	positionalEmbedding *ts.Tensor
	lnFinal             *nn.LayerNorm
	textProjection      *ts.Tensor
	logitScale          *ts.Tensor
	mask                *ts.Tensor // causal [context, context] additive mask, fp32
}

type visionTransformer struct {
	conv1               *nn.Conv2d
	classEmbedding      *ts.Tensor
	positionalEmbedding *ts.Tensor
	lnPre               *nn.LayerNorm
	transformer         *nn.Transformer
	lnPost              *nn.LayerNorm
	proj                *ts.Tensor
	width, grid         int64
}

type modifiedResNet struct {
	conv1, conv2, conv3 *nn.Conv2d
	bn1, bn2, bn3       *nn.BatchNorm2d
	layers              [4][]*nn.Bottleneck
	attnpool            *nn.AttentionPool2d
	// stem is conv1..conv3 with bn1..bn3 folded in, once fold has run
	// (the blocks hold their own folded convolutions).
	stem []*nn.FoldedConv
}

// fold folds every batch norm of the tower into the convolution before it
// (see nn.FoldedConv), which the forward passes then use.
func (r *modifiedResNet) fold() error {
	for _, cb := range r.stemLayers() {
		f, err := nn.FoldBatchNorm(cb.c, cb.b)
		if err != nil {
			r.dropFolded()
			return fmt.Errorf("clip: fold the stem's batch norms: %w", err)
		}
		r.stem = append(r.stem, f)
	}
	for s, stage := range r.layers {
		for j, blk := range stage {
			if err := blk.Fold(); err != nil {
				r.dropFolded()
				return fmt.Errorf("clip: fold the batch norms of layer%d.%d: %w", s+1, j, err)
			}
		}
	}
	return nil
}

// dropFolded frees what fold made.
func (r *modifiedResNet) dropFolded() {
	for _, f := range r.stem {
		f.Drop()
	}
	r.stem = nil
	for _, stage := range r.layers {
		for _, blk := range stage {
			blk.DropFolded()
		}
	}
}

// convBN is one of the stem's convolutions with its batch norm.
type convBN struct {
	c *nn.Conv2d
	b *nn.BatchNorm2d
}

// stemLayers returns the stem's three convolutions with their batch norms.
func (r *modifiedResNet) stemLayers() []convBN {
	return []convBN{{r.conv1, r.bn1}, {r.conv2, r.bn2}, {r.conv3, r.bn3}}
}

// prepare readies a model whose weights are in place for fast inference:
// in fp32, a ResNet tower's batch norms are folded into its convolutions
// (see nn.FoldedConv; it costs a second copy of the convolution weights,
// 94 MB for RN50). fp16 and bf16 towers keep their batch norms, which
// compute in fp32: folding would round the scaled weights to 16 bits.
func (m *Model) prepare() error {
	if m.rn != nil && m.dtype == gotch.Float {
		return m.rn.fold()
	}
	return nil
}

// build declares every parameter of cfg in params (the official state-dict
// names) and wires the layers. In a shape-only store the model cannot run.
func build(cfg Config, params *nn.Params, weightDType gotch.DType) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := nn.NewBuilder(params, weightDType)
	m := &Model{cfg: cfg, params: params, device: params.Device(), dtype: weightDType}
	W, D := int64(cfg.TransformerWidth), int64(cfg.EmbedDim)
	visionMLP, textMLP := cfg.mlpWidths()

	v := b.Sub("visual")
	if cfg.IsViT() {
		w, p := int64(cfg.VisionWidth), int64(cfg.VisionPatchSize)
		grid := int64(cfg.ImageResolution / cfg.VisionPatchSize)
		m.vit = &visionTransformer{
			conv1:               nn.NewConv2d(v.Sub("conv1"), 3, w, p, p, 0),
			classEmbedding:      v.Float("class_embedding", w),
			positionalEmbedding: v.Float("positional_embedding", grid*grid+1, w),
			lnPre:               nn.NewLayerNorm(v.Sub("ln_pre"), w),
			transformer: nn.NewTransformerWith(v.Sub("transformer"), w, int64(cfg.VisionLayers[0]), int64(cfg.VisionHeads()),
				nn.BlockOptions{MLPWidth: int64(visionMLP), Activation: cfg.Activation}),
			lnPost: nn.NewLayerNorm(v.Sub("ln_post"), w),
			proj:   v.Weight("proj", w, D),
			width:  w,
			grid:   grid,
		}
	} else {
		w := int64(cfg.VisionWidth)
		r := &modifiedResNet{
			conv1: nn.NewConv2d(v.Sub("conv1"), 3, w/2, 3, 2, 1),
			bn1:   nn.NewBatchNorm2d(v.Sub("bn1"), w/2),
			conv2: nn.NewConv2d(v.Sub("conv2"), w/2, w/2, 3, 1, 1),
			bn2:   nn.NewBatchNorm2d(v.Sub("bn2"), w/2),
			conv3: nn.NewConv2d(v.Sub("conv3"), w/2, w, 3, 1, 1),
			bn3:   nn.NewBatchNorm2d(v.Sub("bn3"), w),
		}
		inplanes := w
		for s := range r.layers {
			planes := w << s
			for j := 0; j < cfg.VisionLayers[s]; j++ {
				stride := int64(1)
				if s > 0 && j == 0 {
					stride = 2
				}
				blk := nn.NewBottleneck(v.Sub(fmt.Sprintf("layer%d.%d", s+1, j)), inplanes, planes, stride)
				r.layers[s] = append(r.layers[s], blk)
				inplanes = 4 * planes
			}
		}
		r.attnpool = nn.NewAttentionPool2d(v.Sub("attnpool"), int64(cfg.ImageResolution/32), 32*w, int64(cfg.VisionHeads()), D)
		m.rn = r
	}

	m.transformer = nn.NewTransformerWith(b.Sub("transformer"), W, int64(cfg.TransformerLayers), int64(cfg.TransformerHeads),
		nn.BlockOptions{MLPWidth: int64(textMLP), Activation: cfg.Activation})
	m.tokenEmbedding = b.Sub("token_embedding").Float("weight", int64(cfg.VocabSize), W)
	m.positionalEmbedding = b.Float("positional_embedding", int64(cfg.ContextLength), W)
	m.lnFinal = nn.NewLayerNorm(b.Sub("ln_final"), W)
	m.textProjection = b.Weight("text_projection", W, D)
	m.logitScale = b.Float("logit_scale")
	if err := b.Err(); err != nil {
		params.Drop()
		return nil, err
	}
	if !params.ShapeOnly() {
		mask, err := causalMask(int64(cfg.ContextLength), m.device)
		if err != nil {
			params.Drop()
			return nil, err
		}
		m.mask = mask
	}
	return m, nil
}

// causalMask returns the [n, n] additive mask: −∞ above the diagonal, 0 on
// and below it.
func causalMask(n int64, device gotch.Device) (*ts.Tensor, error) {
	inf := ts.FloatScalar(negInf)
	defer inf.Drop()
	full, err := ts.Full([]int64{n, n}, inf, gotch.Float, device)
	if err != nil {
		return nil, torch.Err("causal mask", err)
	}
	m, err := full.Triu(1, true)
	return m, torch.Err("causal mask", err)
}

func weightDType(p Precision, device gotch.Device) (gotch.DType, error) {
	switch p {
	case FP32:
		return gotch.Float, nil
	case FP16:
		if !device.IsCuda() {
			return 0, errors.New("clip: fp16 precision needs a CUDA device (libtorch's CPU kernels lack fp16 convolutions and matrix products); use FP32 on CPU")
		}
		return gotch.Half, nil
	case BF16:
		return gotch.BFloat16, nil
	}
	return 0, fmt.Errorf("clip: unknown precision %d", int(p))
}

// Config returns the model's hyper-parameters.
func (m *Model) Config() Config { return m.cfg }

// Device returns the device of the model's tensors.
func (m *Model) Device() gotch.Device { return m.device }

// Precision returns the weight precision.
func (m *Model) Precision() Precision { return m.precision }

// DType returns the dtype the towers compute in (gotch.Float, or gotch.Half
// in FP16 mode). Learned token embeddings fed to EncodeTextEmbeddings are
// converted to it.
func (m *Model) DType() gotch.DType { return m.dtype }

// Params returns the model's frozen weights, named as in the PyTorch state
// dict. Read them, do not change them: an fp32 ResNet tower computes with
// convolutions that Load and New folded from them (see nn.FoldedConv).
func (m *Model) Params() *nn.Params { return m.params }

// Drop releases the model's tensors; the model must not be used afterwards.
func (m *Model) Drop() {
	if m.rn != nil {
		m.rn.dropFolded()
	}
	m.params.Drop()
	if m.mask != nil {
		m.mask.Drop()
		m.mask = nil
	}
}

// inference runs fn on a locked OS thread with gradients off.
func inference(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return torch.NoGrad(fn)
}

// EncodeImage returns the image features [N, EmbedDim] (fp32, not
// normalised) of preprocessed images [N, 3, R, R] with R = ImageResolution.
// It runs with gradients off.
func (m *Model) EncodeImage(images *ts.Tensor) (*ts.Tensor, error) {
	var out *ts.Tensor
	err := inference(func() error {
		var err error
		out, err = m.encodeImage(images, false)
		return err
	})
	return out, err
}

// EncodeImagePreProjection returns the image tower's output before its
// last projection, [N, P] fp32: the ViT's ln_post(class token) (P = vision
// width) or the ResNet attention pool's output before c_proj (P = 32 ×
// vision width). EncodeImage is this times ImageProjection. It runs with
// gradients off.
func (m *Model) EncodeImagePreProjection(images *ts.Tensor) (*ts.Tensor, error) {
	var out *ts.Tensor
	err := inference(func() error {
		var err error
		out, err = m.encodeImage(images, true)
		return err
	})
	return out, err
}

// ImageProjection returns float32 copies of the image tower's last
// projection in PyTorch's Linear layout, so that features = pre · weightᵀ
// + bias: weight [EmbedDim, P] (the ViT's projᵀ, the ResNet's c_proj
// weight) and bias [EmbedDim] (the ResNet's c_proj bias; nil for a ViT).
func (m *Model) ImageProjection() (weight, bias *ts.Tensor, err error) {
	err = inference(func() error {
		var w *ts.Tensor
		if m.vit != nil {
			t, err := m.vit.proj.T(false)
			if err != nil {
				return torch.Err("clip: transpose visual projection", err)
			}
			defer t.Drop()
			w = t
		} else {
			w = m.rn.attnpool.CProj.Weight
			if b := m.rn.attnpool.CProj.Bias; b != nil {
				if bias, err = copyFloat(b); err != nil {
					return err
				}
			}
		}
		if weight, err = copyFloat(w); err != nil {
			if bias != nil {
				bias.Drop()
				bias = nil
			}
			return err
		}
		return nil
	})
	return weight, bias, err
}

// copyFloat returns a contiguous float32 copy of x with its own storage
// (one copy; a second only when x is a transposed view).
func copyFloat(x *ts.Tensor) (*ts.Tensor, error) {
	f, err := x.ToDtype(gotch.Float, false, true, false)
	if err != nil {
		return nil, torch.Err("clip: copy projection", err)
	}
	c, err := f.Contiguous(true)
	if err != nil {
		f.Drop()
		return nil, torch.Err("clip: copy projection", err)
	}
	return c, nil
}

// EncodeText returns the text features [N, EmbedDim] (fp32, not normalised)
// of token ids [N, L] (L ≤ ContextLength, int32 or int64), read at each
// row's end-of-text token (the row's largest id). It runs with gradients off.
func (m *Model) EncodeText(tokens *ts.Tensor) (*ts.Tensor, error) {
	var out *ts.Tensor
	err := inference(func() error {
		ids, _, l, err := m.tokenIDs(tokens)
		if err != nil {
			return err
		}
		x, err := m.tokenEmbeddingOf(tokens)
		if err != nil {
			return err
		}
		defer x.Drop()
		out, err = m.encodeTextEmbeddings(x, EndOfTextPositions(ids, int64(l)))
		return err
	})
	return out, err
}

// TokenEmbedding returns the token embeddings [N, L, TransformerWidth] of
// token ids [N, L], in the model's compute dtype (DType). It runs in the
// caller's grad mode (the embedding table itself is frozen).
func (m *Model) TokenEmbedding(tokens *ts.Tensor) (*ts.Tensor, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, _, _, err := m.tokenIDs(tokens); err != nil {
		return nil, err
	}
	return m.tokenEmbeddingOf(tokens)
}

// EncodeTextEmbeddings runs the text tower from token embeddings x [N, L,
// TransformerWidth] (L ≤ ContextLength): it adds the positional embedding,
// runs the transformer with the causal mask, applies ln_final at position
// eot[i] of row i and projects with text_projection. The result is [N,
// EmbedDim] fp32. It runs in the caller's grad mode, so gradients flow into
// x (CoOp's learned context).
func (m *Model) EncodeTextEmbeddings(x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return m.encodeTextEmbeddings(x, eot)
}

// EOTPositions returns each row's end-of-text position: the index of the
// row's largest token id (the first one on ties), as CLIP reads it;
// see EndOfTextPositions, which works on ids already read.
func (m *Model) EOTPositions(tokens *ts.Tensor) ([]int64, error) {
	ids, _, l, err := m.tokenIDs(tokens)
	if err != nil {
		return nil, err
	}
	return EndOfTextPositions(ids, int64(l)), nil
}

// LogitScale returns exp(logit_scale), the factor applied to cosine
// similarities (about 100 for the released models).
func (m *Model) LogitScale() (float64, error) {
	v, err := scalarValue(m.logitScale)
	if err != nil {
		return 0, fmt.Errorf("logit scale: %w", err)
	}
	return expf(v), nil
}

// Logits returns LogitScale · f̂ ĝᵀ [Ni, Nt] for image features f [Ni, D]
// and text features g [Nt, D] (each row L2-normalised first). It runs in
// the caller's grad mode.
func (m *Model) Logits(imageFeatures, textFeatures *ts.Tensor) (*ts.Tensor, error) {
	scale, err := m.LogitScale()
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	g, err := nn.Normalize(textFeatures)
	if err != nil {
		return nil, err
	}
	defer g.Drop()
	return Classify(imageFeatures, g, scale)
}

// Forward returns the logits per image [Ni, Nt] and per text [Nt, Ni] of
// images and token ids, like CLIP's forward. It runs with gradients off.
func (m *Model) Forward(images, tokens *ts.Tensor) (perImage, perText *ts.Tensor, err error) {
	f, err := m.EncodeImage(images)
	if err != nil {
		return nil, nil, err
	}
	defer f.Drop()
	g, err := m.EncodeText(tokens)
	if err != nil {
		return nil, nil, err
	}
	defer g.Drop()
	err = inference(func() error {
		var err error
		if perImage, err = m.Logits(f, g); err != nil {
			return err
		}
		t, err := perImage.Transpose(0, 1, false)
		if err != nil {
			perImage.Drop()
			return torch.Err("logits per text", err)
		}
		perText, err = t.Contiguous(true)
		if err != nil {
			perImage.Drop()
			return torch.Err("logits per text", err)
		}
		return nil
	})
	return perImage, perText, err
}

// ImageLayers returns the number of places the image encoder can be split
// at (EncodeImageUpTo): the transformer's residual blocks for a ViT
// (12 for ViT-B), the four stages (layer1..layer4) for a ResNet.
func (m *Model) ImageLayers() int {
	if m.vit != nil {
		return m.vit.numLayers()
	}
	return m.rn.numLayers()
}

// ImageLayerChannels returns the width of EncodeImageUpTo(·, k)'s
// activation: the ViT's token width W for every k, or the ResNet's
// channels after stage k (the stem's width for k = 0, then 4·width·2^(k−1)).
func (m *Model) ImageLayerChannels(k int) (int64, error) {
	if k < 0 || k > m.ImageLayers() {
		return 0, fmt.Errorf("clip: image layer %d: want 0 to %d", k, m.ImageLayers())
	}
	w := int64(m.cfg.VisionWidth)
	if m.vit != nil || k == 0 {
		return w, nil
	}
	return 4 * (w << (k - 1)), nil
}

// EncodeImageUpTo runs the image encoder on preprocessed images [N, 3, R,
// R] through block (ViT) or stage (ResNet) k, 0 ≤ k ≤ ImageLayers(), with
// gradients off: the ViT's tokens [N, L, W] after block k (k = 0: after
// ln_pre), the ResNet's feature maps [N, C, H, W] after stage k (k = 0:
// after the stem), in the model's compute dtype. EncodeImageFrom(·, k)
// finishes the encoding; features cached at block k and an adapter applied
// there (CLIP-Adapter inserted after an intermediate layer) meet there.
func (m *Model) EncodeImageUpTo(images *ts.Tensor, k int) (*ts.Tensor, error) {
	if k < 0 || k > m.ImageLayers() {
		return nil, fmt.Errorf("clip: image layer %d: want 0 to %d", k, m.ImageLayers())
	}
	var out *ts.Tensor
	err := inference(func() error {
		shape, err := images.Size()
		if err != nil {
			return torch.Err("images", err)
		}
		r := int64(m.cfg.ImageResolution)
		if len(shape) != 4 || shape[1] != 3 || shape[2] != r || shape[3] != r || shape[0] == 0 {
			return fmt.Errorf("clip: images have shape %v, want [N, 3, %d, %d]", shape, r, r)
		}
		var s torch.Scope
		defer s.Drop()
		x, err := m.toModel(&s, images, m.dtype)
		if err != nil {
			return err
		}
		if m.vit != nil {
			out, err = m.vit.upTo(x, k)
		} else {
			out, err = m.rn.upTo(x, k)
		}
		if err != nil {
			return fmt.Errorf("clip: image tower up to layer %d: %w", k, err)
		}
		return nil
	})
	return out, err
}

// EncodeImageFrom runs the image encoder from after block or stage k on h
// (what EncodeImageUpTo(·, k) returned, or an adapted version of it):
// the remaining blocks or stages, then ln_post and the projection (ViT) or
// the attention pool (ResNet), giving image features [N, EmbedDim] fp32.
// It runs in the caller's grad mode, so gradients flow into h (the frozen
// weights get none). EncodeImageFrom(EncodeImageUpTo(x, k), k) equals
// EncodeImage(x) for every k.
func (m *Model) EncodeImageFrom(h *ts.Tensor, k int) (*ts.Tensor, error) {
	if k < 0 || k > m.ImageLayers() {
		return nil, fmt.Errorf("clip: image layer %d: want 0 to %d", k, m.ImageLayers())
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var s torch.Scope
	defer s.Drop()
	x, err := m.toModel(&s, h, m.dtype)
	if err != nil {
		return nil, err
	}
	var f *ts.Tensor
	if m.vit != nil {
		f, err = m.vit.from(x, k, false)
	} else {
		f, err = m.rn.from(x, k, false)
	}
	if err != nil {
		return nil, fmt.Errorf("clip: image tower from layer %d: %w", k, err)
	}
	out, err := f.Totype(gotch.Float, true)
	return out, torch.Err("image features", err)
}

// TextPrefix is the text transformer's state after the first Len positions
// of a sequence: every block's keys and values of those positions ([1, H,
// Len, d] each), which the later positions attend to. Prompts that share
// their first positions (CoOp's start token and learned context) can run
// them once and continue each prompt from the shared state: the mask is
// causal, so those positions' states do not depend on what follows. Drop
// releases it.
type TextPrefix struct {
	KV  []nn.KV
	Len int64
}

// Tensors returns the state as a flat list: block 0's keys, its values,
// block 1's keys, and so on.
func (p *TextPrefix) Tensors() []*ts.Tensor {
	out := make([]*ts.Tensor, 0, 2*len(p.KV))
	for _, kv := range p.KV {
		out = append(out, kv.K, kv.V)
	}
	return out
}

// Drop releases the state's tensors.
func (p *TextPrefix) Drop() {
	for _, kv := range p.KV {
		kv.Drop()
	}
	p.KV = nil
}

// TextPrefixOf reads a state back from Tensors' list (which the prefix
// then shares; it is not copied). The tensors must be [1, H, P, d] with
// the model's heads and width, two per block.
func (m *Model) TextPrefixOf(tensors []*ts.Tensor) (*TextPrefix, error) {
	layers := len(m.transformer.Blocks)
	if len(tensors) != 2*layers {
		return nil, fmt.Errorf("clip: a text prefix state of %d tensors, want %d (keys and values of %d blocks)", len(tensors), 2*layers, layers)
	}
	h := int64(m.cfg.TransformerHeads)
	d := int64(m.cfg.TransformerWidth) / h
	p := &TextPrefix{}
	for i, t := range tensors {
		s, err := t.Size()
		if err != nil {
			return nil, torch.Err("text prefix state", err)
		}
		if len(s) != 4 || s[0] != 1 || s[1] != h || s[3] != d || s[2] < 1 || (i > 0 && s[2] != p.Len) {
			return nil, fmt.Errorf("clip: text prefix state tensor %d has shape %v, want [1, %d, P, %d] with one P", i, s, h, d)
		}
		p.Len = s[2]
	}
	for i := 0; i < layers; i++ {
		p.KV = append(p.KV, nn.KV{K: tensors[2*i], V: tensors[2*i+1]})
	}
	return p, nil
}

// EncodeTextPrefix runs the text tower over the first positions of a
// sequence, token embeddings x [1, P, TransformerWidth] (P <
// ContextLength), and returns its state for EncodeTextAfterPrefix. It runs
// in the caller's grad mode: gradients flowing into the state reach x.
func (m *Model) EncodeTextPrefix(x *ts.Tensor) (*TextPrefix, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return m.encodeTextPrefix(x)
}

// EncodeTextAfterPrefix is EncodeTextEmbeddings for sequences that all
// begin with the prefix: x [N, L, TransformerWidth] holds positions P..P+L-1
// of each (P = prefix.Len) and eot[i] is row i's end-of-text position in
// the whole sequence (P ≤ eot[i] < P+L). The features equal those of the
// whole sequences to float rounding. It runs in the caller's grad mode.
func (m *Model) EncodeTextAfterPrefix(prefix *TextPrefix, x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	if prefix == nil {
		return nil, errors.New("clip: nil text prefix")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return m.encodeTextAfter(prefix, x, eot)
}

// EncodeTextWithPrefix encodes groups of sequences that all begin with the
// same prefix, prefix and groups in one pass: pre [A, P,
// TransformerWidth] holds the token embeddings of A prefixes (positions
// 0..P-1), xs[g] [N_g, L_g, TransformerWidth] positions P..P+L_g-1 of
// group g's sequences (N_g a multiple of A: each run of N_g/A consecutive
// sequences continues one prefix, in order), and eots[g] their end-of-text
// positions in the whole sequence. The result is the features [ΣN_g, EmbedDim] (fp32,
// groups in order), equal to those of the whole sequences to float
// rounding. Every layer's position-wise weights are applied once to the
// rows of the prefix and of all the groups together; only attention runs
// group by group. It runs in the caller's grad mode: gradients reach pre
// and xs.
func (m *Model) EncodeTextWithPrefix(pre *ts.Tensor, xs []*ts.Tensor, eots [][]int64) (*ts.Tensor, error) {
	if pre == nil || len(xs) == 0 {
		return nil, errors.New("clip: EncodeTextWithPrefix needs prefix embeddings and at least one group")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, _, err := m.encodeTextPacked(pre, nil, xs, eots, false)
	return f, err
}
