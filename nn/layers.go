package nn

import (
	"fmt"
	"math"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func wrap(what string, err error) error { return torch.Err(what, err) }

// size returns t's shape.
func size(t *ts.Tensor) ([]int64, error) {
	s, err := t.Size()
	return s, wrap("tensor shape", err)
}

// CastTo returns x converted to dtype; when x already has it, the result is
// a new handle on the same data (drop it like any other result).
func CastTo(x *ts.Tensor, dtype gotch.DType) (*ts.Tensor, error) {
	y, err := x.Totype(dtype, false)
	return y, wrap(fmt.Sprintf("convert to %v", dtype), err)
}

// Linear is y = x Wᵀ + b with PyTorch's weight layout [out, in].
type Linear struct {
	Weight *ts.Tensor
	Bias   *ts.Tensor // nil without bias
}

// NewLinear adds <prefix>.weight [out, in] and, with bias, <prefix>.bias
// [out], both of the builder's weight dtype.
func NewLinear(b Builder, in, out int64, bias bool) *Linear {
	l := &Linear{Weight: b.Weight("weight", out, in)}
	if bias {
		l.Bias = b.Weight("bias", out)
	}
	return l
}

// Forward applies the layer to the last dimension of x.
func (l *Linear) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	bias := l.Bias
	if bias == nil {
		bias = ts.None
	}
	y, err := ts.Linear(x, l.Weight, bias)
	return y, wrap("linear", err)
}

// LayerNorm normalises the last dimension in fp32 whatever the input dtype
// and casts the result back to the input dtype (CLIP's fp16-safe LayerNorm).
// Its weight and bias are fp32.
type LayerNorm struct {
	Weight, Bias *ts.Tensor
	Dim          int64
	Eps          float64
}

// NewLayerNorm adds <prefix>.weight and <prefix>.bias [dim] (fp32) with
// PyTorch's default eps 1e-5.
func NewLayerNorm(b Builder, dim int64) *LayerNorm {
	return &LayerNorm{Weight: b.Float("weight", dim), Bias: b.Float("bias", dim), Dim: dim, Eps: 1e-5}
}

// Forward normalises x over its last dimension.
func (l *LayerNorm) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	in := x.DType()
	if in == gotch.Float {
		y, err := ts.LayerNorm(x, []int64{l.Dim}, l.Weight, l.Bias, l.Eps, true)
		return y, wrap("layer norm", err)
	}
	x32, err := x.Totype(gotch.Float, false)
	if err != nil {
		return nil, wrap("layer norm: convert to fp32", err)
	}
	y, err := ts.LayerNorm(x32, []int64{l.Dim}, l.Weight, l.Bias, l.Eps, true)
	x32.Drop()
	if err != nil {
		return nil, wrap("layer norm", err)
	}
	out, err := y.Totype(in, true)
	return out, wrap("layer norm: convert back", err)
}

// QuickGELU returns x·sigmoid(1.702·x), CLIP's GELU approximation.
func QuickGELU(x *ts.Tensor) (*ts.Tensor, error) {
	k := ts.FloatScalar(1.702)
	defer k.Drop()
	s, err := x.MulScalar(k, false)
	if err != nil {
		return nil, wrap("quick gelu", err)
	}
	g, err := s.Sigmoid(true)
	if err != nil {
		return nil, wrap("quick gelu", err)
	}
	y, err := x.Mul(g, false)
	g.Drop()
	return y, wrap("quick gelu", err)
}

// Activation is the nonlinearity of a transformer MLP.
type Activation int

const (
	// ActQuickGELU is x·sigmoid(1.702·x), used by OpenAI's CLIP models
	// and OpenCLIP's "-quickgelu" ones. It is the zero value.
	ActQuickGELU Activation = iota
	// ActGELU is the exact GELU, x·Φ(x) (PyTorch's nn.GELU()), used by most
	// OpenCLIP models trained on LAION and DataComp.
	ActGELU
)

func (a Activation) String() string {
	switch a {
	case ActQuickGELU:
		return "QuickGELU"
	case ActGELU:
		return "GELU"
	}
	return fmt.Sprintf("Activation(%d)", int(a))
}

// Apply returns the activation of x.
func (a Activation) Apply(x *ts.Tensor) (*ts.Tensor, error) {
	switch a {
	case ActQuickGELU:
		return QuickGELU(x)
	case ActGELU:
		y, err := x.Gelu("none", false)
		return y, wrap("gelu", err)
	}
	return nil, fmt.Errorf("unknown activation %d", int(a))
}

// MLP is CLIP's transformer feed-forward block: c_fc (W→H), the
// activation, c_proj (H→W), with H = 4W in OpenAI's models.
type MLP struct {
	CFc, CProj *Linear
	Act        Activation
}

// NewMLP adds <prefix>.c_fc.* and <prefix>.c_proj.* with hidden width 4W
// and QuickGELU (OpenAI's block).
func NewMLP(b Builder, width int64) *MLP {
	return NewMLPWith(b, width, 4*width, ActQuickGELU)
}

// NewMLPWith adds an MLP of the given hidden width and activation.
func NewMLPWith(b Builder, width, hidden int64, act Activation) *MLP {
	return &MLP{CFc: NewLinear(b.Sub("c_fc"), width, hidden, true), CProj: NewLinear(b.Sub("c_proj"), hidden, width, true), Act: act}
}

// Forward applies the block to the last dimension of x.
//
// When no gradient is tracked (see Untracked), a QuickGELU MLP takes a
// shorter route to the same function: with k = 1.702,
//
//	c_proj(QuickGELU(c_fc(x))) = (W₂·silu(k·(W₁x + b₁)) + k·b₂) / k,
//
// and k·(W₁x + b₁) = W₁(k·x) + k·b₁. Scaling x (width W) and dividing the
// output (width W) are cheap; the hidden activation (width 4W, the large
// one) then takes one in-place pass, silu, instead of the three passes and
// two new tensors of x·sigmoid(k·x). The results differ by rounding.
func (m *MLP) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	if m.Act == ActQuickGELU && Untracked(x, m.CFc.Weight, m.CFc.Bias, m.CProj.Weight, m.CProj.Bias) {
		return m.forwardScaledSilu(x)
	}
	h, err := m.CFc.Forward(x)
	if err != nil {
		return nil, err
	}
	g, err := m.Act.Apply(h)
	h.Drop()
	if err != nil {
		return nil, err
	}
	y, err := m.CProj.Forward(g)
	g.Drop()
	return y, err
}

// quickGELUScale is k in QuickGELU's x·sigmoid(k·x).
const quickGELUScale = 1.702

// forwardScaledSilu is Forward of a QuickGELU MLP through silu (see
// Forward); it modifies tensors in place, so it must not run where
// gradients are tracked.
func (m *MLP) forwardScaledSilu(x *ts.Tensor) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	k := ts.FloatScalar(quickGELUScale)
	defer k.Drop()
	scaled := func(l *Linear, in *ts.Tensor) (*ts.Tensor, error) {
		bias := ts.None
		if l.Bias != nil {
			var err error
			if bias, err = s.Op("mlp: scale bias")(l.Bias.MulScalar(k, false)); err != nil {
				return nil, err
			}
		}
		return s.Op("linear")(ts.Linear(in, l.Weight, bias))
	}
	xk, err := s.Op("mlp: scale input")(x.MulScalar(k, false))
	if err != nil {
		return nil, err
	}
	h, err := scaled(m.CFc, xk)
	if err != nil {
		return nil, err
	}
	if err := h.Silu_(); err != nil {
		return nil, wrap("quick gelu (silu)", err)
	}
	y, err := scaled(m.CProj, h)
	if err != nil {
		return nil, err
	}
	if err := y.DivScalar_(k); err != nil {
		return nil, wrap("mlp: unscale output", err)
	}
	return s.Release(y), nil
}

// Untracked reports whether autograd records nothing for an operation on
// xs: gradient tracking is off on this thread, or no non-nil tensor among
// xs requires a gradient. Layers then compute in place where that saves
// memory passes.
func Untracked(xs ...*ts.Tensor) bool {
	if !torch.GradEnabled() {
		return true
	}
	for _, t := range xs {
		if t == nil {
			continue
		}
		if r, err := t.RequiresGrad(); err != nil || r {
			return false
		}
	}
	return true
}

// Conv2d is a 2-D convolution without bias (CLIP's convolutions have none),
// weight [out, in, k, k].
type Conv2d struct {
	Weight          *ts.Tensor
	Stride, Padding int64
}

// NewConv2d adds <prefix>.weight [out, in, k, k] of the weight dtype.
func NewConv2d(b Builder, in, out, kernel, stride, padding int64) *Conv2d {
	return &Conv2d{Weight: b.Weight("weight", out, in, kernel, kernel), Stride: stride, Padding: padding}
}

// Forward convolves x [N, in, H, W].
func (c *Conv2d) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	y, err := ts.Conv2d(x, c.Weight, ts.None, []int64{c.Stride, c.Stride}, []int64{c.Padding, c.Padding}, []int64{1, 1}, 1)
	return y, wrap("conv2d", err)
}

// BatchNorm2d is batch normalisation in inference mode: it uses the running
// statistics and never updates them. Its tensors are fp32 (the counter
// num_batches_tracked is int64 and unused).
type BatchNorm2d struct {
	Weight, Bias, RunningMean, RunningVar, NumBatchesTracked *ts.Tensor
	Eps                                                      float64
}

// NewBatchNorm2d adds <prefix>.weight, .bias, .running_mean, .running_var
// [channels] and .num_batches_tracked [] with eps 1e-5.
func NewBatchNorm2d(b Builder, channels int64) *BatchNorm2d {
	return &BatchNorm2d{
		Weight:            b.Float("weight", channels),
		Bias:              b.Float("bias", channels),
		RunningMean:       b.Float("running_mean", channels),
		RunningVar:        b.Float("running_var", channels),
		NumBatchesTracked: b.Param("num_batches_tracked", gotch.Int64),
		Eps:               1e-5,
	}
}

// Forward normalises x [N, C, H, W] per channel with the running statistics.
func (n *BatchNorm2d) Forward(x *ts.Tensor) (*ts.Tensor, error) {
	y, err := ts.BatchNorm(x, n.Weight, n.Bias, n.RunningMean, n.RunningVar, false, 0.1, n.Eps, true)
	return y, wrap("batch norm", err)
}

// AvgPool2d averages non-overlapping k×k windows (kernel = stride = k).
func AvgPool2d(x *ts.Tensor, k int64) (*ts.Tensor, error) {
	y, err := x.AvgPool2d([]int64{k, k}, []int64{k, k}, []int64{0, 0}, false, true, nil, false)
	return y, wrap("avg pool", err)
}

// Normalize divides each row of x (its last dimension) by its L2 norm.
func Normalize(x *ts.Tensor) (*ts.Tensor, error) {
	two := ts.FloatScalar(2)
	defer two.Drop()
	n, err := x.NormScalaroptDim(two, []int64{-1}, true, false)
	if err != nil {
		return nil, wrap("l2 norm", err)
	}
	y, err := x.Div(n, false)
	n.Drop()
	return y, wrap("l2 normalise", err)
}

// invSqrt returns 1/√d.
func invSqrt(d int64) float64 { return 1 / math.Sqrt(float64(d)) }
