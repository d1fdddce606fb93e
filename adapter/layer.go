package adapter

import (
	"fmt"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// initLayer resolves Options.Layer against the context's image encoder:
// the encoder's last layer means its output (layer 0, today's adapter),
// any other layer keeps the encoder's remaining layers and the width of
// the activation there.
func (m *CLIPAdapter) initLayer(ctx *train.Context) error {
	if ctx.Image == nil {
		return fmt.Errorf("layer %d: the context has no image encoder to run the layers after it", m.opts.Layer)
	}
	k, err := train.Needs{Layer: m.opts.Layer}.SplitLayer(ctx.Image.ImageLayers())
	if err != nil {
		return err
	}
	if k == 0 {
		return nil
	}
	w, err := ctx.Image.ImageLayerChannels(k)
	if err != nil {
		return err
	}
	m.layer, m.tail, m.width = k, ctx.Image, w
	return nil
}

// Layer returns the intermediate image encoder layer the visual adapter
// acts after, or 0 when it acts on the output features (set by Init).
func (m *CLIPAdapter) Layer() int { return m.layer }

// encodeAdapted adapts the activations h after the image encoder's layer
// m.layer, h' = α·A_v(h) + (1−α)·h, with A_v applied to every token of ViT
// tokens [B, L, W] or every position of ResNet feature maps [B, C, H, W]
// (over the channels, a 1×1 convolution), and runs the encoder's
// remaining layers on h': image features [B, D]. Gradients flow to the
// adapter through the frozen layers.
func (m *CLIPAdapter) encodeAdapted(h *ts.Tensor) (*ts.Tensor, error) {
	shape, err := shapeOf(h, "clip-adapter: image activations")
	if err != nil {
		return nil, err
	}
	// The channel dimension: ViT tokens keep it last, ResNet maps second.
	var perm, back []int64
	switch {
	case len(shape) == 3 && shape[2] == m.width:
	case len(shape) == 4 && shape[1] == m.width:
		perm, back = []int64{0, 2, 3, 1}, []int64{0, 3, 1, 2}
	default:
		return nil, fmt.Errorf("clip-adapter: image activations after layer %d have shape %v, want [N, L, %d] tokens or [N, %d, H, W] feature maps",
			m.layer, shape, m.width, m.width)
	}
	var s torch.Scope
	defer s.Drop()
	x := h
	if perm != nil {
		if x, err = s.Op("channels last")(h.Permute(perm, false)); err != nil {
			return nil, err
		}
	}
	last, err := shapeOf(x, "clip-adapter: image activations")
	if err != nil {
		return nil, err
	}
	rows, err := s.Op("activations as rows")(x.Reshape([]int64{-1, m.width}, false))
	if err != nil {
		return nil, err
	}
	a, err := m.visual.forward(rows)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: visual adapter: %w", err)
	}
	s.Keep(a)
	if a, err = s.Op("adapter output shape")(a.View(last, false)); err != nil {
		return nil, err
	}
	if back != nil {
		if a, err = s.Op("channels first")(a.Permute(back, false)); err != nil {
			return nil, err
		}
	}
	mixed, err := mix(a, h, m.opts.Alpha, m.alphaLogit)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: visual residual: %w", err)
	}
	s.Keep(mixed)
	f, err := m.tail.EncodeImageFrom(mixed, m.layer)
	if err != nil {
		return nil, fmt.Errorf("clip-adapter: image encoder after layer %d: %w", m.layer, err)
	}
	return f, nil
}
