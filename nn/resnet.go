package nn

import (
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/sugarme/gotch/ts"
)

// Bottleneck is the ModifiedResNet block: 1×1 conv → BN → ReLU → 3×3 conv
// (padding 1) → BN → ReLU → average pool (when stride > 1) → 1×1 conv
// (expansion 4) → BN, plus a shortcut, then ReLU. All convolutions have
// stride 1: down-sampling is anti-aliased by average pooling. The shortcut
// is the identity, or, when stride > 1 or the channel count changes,
// average pool → 1×1 conv → BN (<prefix>.downsample.0 and .downsample.1).
type Bottleneck struct {
	Conv1, Conv2, Conv3 *Conv2d
	BN1, BN2, BN3       *BatchNorm2d
	// DownConv and DownBN are nil for an identity shortcut.
	DownConv *Conv2d
	DownBN   *BatchNorm2d
	Stride   int64
}

// NewBottleneck adds a block taking inplanes channels to 4·planes.
func NewBottleneck(b Builder, inplanes, planes, stride int64) *Bottleneck {
	k := &Bottleneck{
		Conv1:  NewConv2d(b.Sub("conv1"), inplanes, planes, 1, 1, 0),
		BN1:    NewBatchNorm2d(b.Sub("bn1"), planes),
		Conv2:  NewConv2d(b.Sub("conv2"), planes, planes, 3, 1, 1),
		BN2:    NewBatchNorm2d(b.Sub("bn2"), planes),
		Conv3:  NewConv2d(b.Sub("conv3"), planes, 4*planes, 1, 1, 0),
		BN3:    NewBatchNorm2d(b.Sub("bn3"), 4*planes),
		Stride: stride,
	}
	if stride > 1 || inplanes != 4*planes {
		k.DownConv = NewConv2d(b.Sub("downsample.0"), inplanes, 4*planes, 1, 1, 0)
		k.DownBN = NewBatchNorm2d(b.Sub("downsample.1"), 4*planes)
	}
	return k
}

// ConvBNReLU returns relu(bn(conv(x))).
func ConvBNReLU(x *ts.Tensor, c *Conv2d, n *BatchNorm2d) (*ts.Tensor, error) {
	y, err := c.Forward(x)
	if err != nil {
		return nil, err
	}
	z, err := n.Forward(y)
	y.Drop()
	if err != nil {
		return nil, err
	}
	r, err := z.Relu(true)
	return r, wrap("relu", err)
}

// Forward runs the block on x [N, C, H, W].
func (k *Bottleneck) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	h, err := ConvBNReLU(x, k.Conv1, k.BN1)
	if err != nil {
		return nil, err
	}
	s.Keep(h)
	if h, err = ConvBNReLU(h, k.Conv2, k.BN2); err != nil {
		return nil, err
	}
	s.Keep(h)
	if k.Stride > 1 {
		if h, err = AvgPool2d(h, k.Stride); err != nil {
			return nil, err
		}
		s.Keep(h)
	}
	if h, err = k.Conv3.Forward(h); err != nil {
		return nil, err
	}
	s.Keep(h)
	if h, err = k.BN3.Forward(h); err != nil {
		return nil, err
	}
	s.Keep(h)
	shortcut := x
	if k.DownConv != nil {
		d := x
		if k.Stride > 1 {
			if d, err = AvgPool2d(x, k.Stride); err != nil {
				return nil, err
			}
			s.Keep(d)
		}
		if d, err = k.DownConv.Forward(d); err != nil {
			return nil, err
		}
		s.Keep(d)
		if d, err = k.DownBN.Forward(d); err != nil {
			return nil, err
		}
		s.Keep(d)
		shortcut = d
	}
	sum, err := h.Add(shortcut, false)
	if err != nil {
		return nil, wrap("bottleneck: residual", err)
	}
	y, err := sum.Relu(true)
	return y, wrap("relu", err)
}
