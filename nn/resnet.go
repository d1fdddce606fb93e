package nn

import (
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
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
	// folded holds the convolutions with their batch norms folded in, once
	// Fold has run; Forward then uses them.
	folded *foldedBottleneck
}

// foldedBottleneck is a Bottleneck's convolutions with their batch norms
// folded in; down is nil for an identity shortcut.
type foldedBottleneck struct{ c1, c2, c3, down *FoldedConv }

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

// FoldedConv is a convolution followed by inference-mode batch
// normalisation, folded into one convolution with a bias: with
// s = γ/√(σ² + ε) per output channel,
//
//	bn(conv(x; W)) = conv(x; W·s) + (β − μ·s).
//
// It saves the batch norm's pass over the activation. Its weight is stored
// channels-last (NHWC in memory, the logical shape unchanged): libtorch's
// CPU convolutions (oneDNN) then run in that layout instead of reordering
// every input and output, and produce channels-last activations, which the
// element-wise operations, pooling and the next convolution keep. Both
// change the results by rounding only.
type FoldedConv struct {
	Weight, Bias    *ts.Tensor
	Stride, Padding int64
}

// FoldBatchNorm returns c followed by n as one convolution, computed in
// fp32 and stored in c's weight dtype.
func FoldBatchNorm(c *Conv2d, n *BatchNorm2d) (*FoldedConv, error) {
	var out *FoldedConv
	err := torch.NoGrad(func() error {
		var s torch.Scope
		defer s.Drop()
		eps := ts.FloatScalar(n.Eps)
		defer eps.Drop()
		v, err := s.Op("fold batch norm: variance")(n.RunningVar.AddScalar(eps, false))
		if err != nil {
			return err
		}
		inv, err := s.Op("fold batch norm: scale")(v.Rsqrt(false))
		if err != nil {
			return err
		}
		scale, err := s.Op("fold batch norm: scale")(inv.Mul(n.Weight, false))
		if err != nil {
			return err
		}
		ws, err := size(c.Weight)
		if err != nil {
			return err
		}
		col, err := s.Op("fold batch norm: scale")(scale.View([]int64{ws[0], 1, 1, 1}, false))
		if err != nil {
			return err
		}
		w32, err := s.Op("fold batch norm: weight")(c.Weight.Totype(gotch.Float, false))
		if err != nil {
			return err
		}
		w, err := s.Op("fold batch norm: weight")(w32.Mul(col, false))
		if err != nil {
			return err
		}
		if w, err = s.Op("fold batch norm: weight")(w.Totype(c.Weight.DType(), false)); err != nil {
			return err
		}
		// Channels-last: [out, kh, kw, in] in memory, viewed as [out, in, kh, kw].
		nhwc, err := s.Op("fold batch norm: channels-last weight")(w.Permute([]int64{0, 2, 3, 1}, false))
		if err != nil {
			return err
		}
		if nhwc, err = s.Op("fold batch norm: channels-last weight")(nhwc.Contiguous(false)); err != nil {
			return err
		}
		weight, err := s.Op("fold batch norm: channels-last weight")(nhwc.Permute([]int64{0, 3, 1, 2}, false))
		if err != nil {
			return err
		}
		shift, err := s.Op("fold batch norm: bias")(n.RunningMean.Mul(scale, false))
		if err != nil {
			return err
		}
		b, err := s.Op("fold batch norm: bias")(n.Bias.Sub(shift, false))
		if err != nil {
			return err
		}
		if b, err = s.Op("fold batch norm: bias")(b.Totype(c.Weight.DType(), false)); err != nil {
			return err
		}
		out = &FoldedConv{Weight: s.Release(weight), Bias: s.Release(b), Stride: c.Stride, Padding: c.Padding}
		return nil
	})
	return out, err
}

// Forward convolves x [N, in, H, W] and adds the bias.
func (f *FoldedConv) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	y, err := ts.Conv2d(x, f.Weight, f.Bias, []int64{f.Stride, f.Stride}, []int64{f.Padding, f.Padding}, []int64{1, 1}, 1)
	return y, wrap("conv2d (batch norm folded in)", err)
}

// Drop frees the folded weight and bias.
func (f *FoldedConv) Drop() {
	f.Weight.Drop()
	f.Bias.Drop()
}

// reluOwned returns relu(y) for a y the caller owns and gives up: y itself,
// rectified in place, where no gradient is tracked, else a new tensor (y
// dropped).
func reluOwned(y *ts.Tensor) (*ts.Tensor, error) {
	if Untracked(y) {
		if err := y.Relu_(); err != nil {
			y.Drop()
			return nil, wrap("relu", err)
		}
		return y, nil
	}
	r, err := y.Relu(true)
	return r, wrap("relu", err)
}

// Fold makes Forward use the block's convolutions with their batch norms
// folded in (see FoldedConv): the block's function is the same up to
// rounding, and it no longer follows later changes to the batch norms or
// convolutions. DropFolded frees the folded weights.
func (k *Bottleneck) Fold() error {
	type pair struct {
		dst **FoldedConv
		c   *Conv2d
		n   *BatchNorm2d
	}
	f := &foldedBottleneck{}
	pairs := []pair{{&f.c1, k.Conv1, k.BN1}, {&f.c2, k.Conv2, k.BN2}, {&f.c3, k.Conv3, k.BN3}}
	if k.DownConv != nil {
		pairs = append(pairs, pair{&f.down, k.DownConv, k.DownBN})
	}
	for _, p := range pairs {
		c, err := FoldBatchNorm(p.c, p.n)
		if err != nil {
			f.drop()
			return err
		}
		*p.dst = c
	}
	k.DropFolded()
	k.folded = f
	return nil
}

// DropFolded frees the folded weights Fold made, if any; Forward then runs
// the convolutions and batch norms as they are.
func (k *Bottleneck) DropFolded() {
	if k.folded != nil {
		k.folded.drop()
		k.folded = nil
	}
}

func (f *foldedBottleneck) drop() {
	for _, c := range []*FoldedConv{f.c1, f.c2, f.c3, f.down} {
		if c != nil {
			c.Drop()
		}
	}
}

// convBN returns bn(conv(x)): through f, the two folded into one
// convolution (see FoldedConv), when f is not nil.
func convBN(x *ts.Tensor, c *Conv2d, n *BatchNorm2d, f *FoldedConv) (*ts.Tensor, error) {
	if f != nil {
		return f.Forward(x)
	}
	y, err := c.Forward(x)
	if err != nil {
		return nil, err
	}
	z, err := n.Forward(y)
	y.Drop()
	return z, err
}

// ConvBNReLU returns relu(bn(conv(x))) (see convBN), rectified in place
// where no gradient is tracked.
func ConvBNReLU(x *ts.Tensor, c *Conv2d, n *BatchNorm2d, f *FoldedConv) (*ts.Tensor, error) {
	y, err := convBN(x, c, n, f)
	if err != nil {
		return nil, err
	}
	return reluOwned(y)
}

// Forward runs the block on x [N, C, H, W], through the folded
// convolutions once Fold has run. Without gradients the residual sum and
// the ReLUs are computed in place.
func (k *Bottleneck) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	var f foldedBottleneck // nil convolutions: not folded
	if k.folded != nil {
		f = *k.folded
	}
	h, err := ConvBNReLU(x, k.Conv1, k.BN1, f.c1)
	if err != nil {
		return nil, err
	}
	s.Keep(h)
	if h, err = ConvBNReLU(h, k.Conv2, k.BN2, f.c2); err != nil {
		return nil, err
	}
	s.Keep(h)
	if k.Stride > 1 {
		if h, err = AvgPool2d(h, k.Stride); err != nil {
			return nil, err
		}
		s.Keep(h)
	}
	if h, err = convBN(h, k.Conv3, k.BN3, f.c3); err != nil {
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
		if d, err = convBN(d, k.DownConv, k.DownBN, f.down); err != nil {
			return nil, err
		}
		shortcut = s.Keep(d)
	}
	var sum *ts.Tensor
	if Untracked(h, shortcut) {
		if err := h.Add_(shortcut); err != nil {
			return nil, wrap("bottleneck: residual", err)
		}
		sum = s.Release(h)
	} else if sum, err = h.Add(shortcut, false); err != nil {
		return nil, wrap("bottleneck: residual", err)
	}
	return reluOwned(sum)
}
