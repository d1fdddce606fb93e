package nn

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

// The inference shortcuts (silu for QuickGELU, residual sums and ReLUs in
// place, the last block for the first position alone, batch norms folded
// into convolutions) are checked against the general paths, which the
// tests above check against hand-derived answers and package clip against
// PyTorch: same outputs and, where gradients are tracked, same gradients.

// fillRandom fills every tensor of p with N(0, 0.3²) draws from rng;
// batch-norm variances get |draw| + 0.5 and the counter stays 0.
func fillRandom(t *testing.T, p *Params, rng *rand.Rand) {
	t.Helper()
	for _, q := range p.List() {
		if q.DType == gotch.Int64 {
			continue
		}
		n := int64(1)
		for _, s := range q.Shape {
			n *= s
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = 0.3 * rng.NormFloat64()
			if strings.HasSuffix(q.Name, "running_var") {
				v[i] = max(v[i], -v[i]) + 0.5
			}
		}
		x := ts.MustOfSlice(v).MustView(q.Shape, true)
		if err := p.Copy(q.Name, x); err != nil {
			t.Fatal(err)
		}
		x.MustDrop()
	}
}

// randomInput returns N(0, 1) draws of the given shape and dtype.
func randomInput(t *testing.T, rng *rand.Rand, dtype gotch.DType, shape ...int64) *ts.Tensor {
	t.Helper()
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	x := ts.MustOfSlice(v).MustView(shape, true).MustTotype(dtype, true)
	t.Cleanup(func() { x.MustDrop() })
	return x
}

// untrackedAndTracked runs f on x with gradients off, then on a copy of x
// that requires a gradient, and returns both outputs and the gradient of
// sum(w ⊙ output) with respect to x (w fixed weights, so that every output
// element counts on its own).
func untrackedAndTracked(t *testing.T, x *ts.Tensor, f func(*ts.Tensor) (*ts.Tensor, error)) (plain, tracked, grad []float64) {
	t.Helper()
	var y *ts.Tensor
	if err := torch.NoGrad(func() error {
		var err error
		y, err = f(x)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	plain = values(t, y)
	xg := x.MustDetach(false).MustSetRequiresGrad(true, true)
	defer xg.MustDrop()
	if Untracked(xg) {
		t.Fatal("Untracked is true for a tensor that requires a gradient")
	}
	yg, err := f(xg)
	if err != nil {
		t.Fatal(err)
	}
	tracked = values(t, yg)
	dt := yg.DType()
	w := ts.MustOnes(shapeOf(t, yg), dt, gotch.CPU).MustCumsum(0, dt, true)
	loss := yg.MustMul(w, true).MustSum(dt, true)
	loss.MustBackward()
	g := xg.MustGrad(false)
	grad = values(t, g)
	for _, z := range []*ts.Tensor{y, w, loss, g} {
		z.MustDrop()
	}
	return plain, tracked, grad
}

func TestMLPWithoutGradientsTakesSilu(t *testing.T) {
	lock(t)
	p := NewParams(gotch.CPU)
	defer p.Drop()
	m := NewMLP(NewBuilder(p, gotch.Double), 8)
	fillRandom(t, p, rand.New(rand.NewPCG(1, 2)))
	x := randomInput(t, rand.New(rand.NewPCG(3, 4)), gotch.Double, 2, 5, 8)
	if err := torch.NoGrad(func() error {
		if !Untracked(x) {
			t.Error("Untracked is false with gradients off")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	plain, tracked, grad := untrackedAndTracked(t, x, m.Forward)
	// Tracked: c_proj(x·sigmoid(1.702·x)) written out; untracked: silu.
	near(t, "silu route vs QuickGELU", plain, tracked, 1e-12)
	if slices.Max(grad) == 0 && slices.Min(grad) == 0 {
		t.Error("no gradient reached the input")
	}
}

func TestForwardFirstIsForwardAtTheFirstPosition(t *testing.T) {
	lock(t)
	p := NewParams(gotch.CPU)
	defer p.Drop()
	const n, l, w = 3, 5, 16
	blk := NewResidualAttentionBlock(NewBuilder(p, gotch.Double), w, 2)
	fillRandom(t, p, rand.New(rand.NewPCG(5, 6)))
	x := randomInput(t, rand.New(rand.NewPCG(7, 8)), gotch.Double, n, l, w)
	first := func(x *ts.Tensor) (*ts.Tensor, error) {
		y, err := blk.Forward(x, nil)
		if err != nil {
			return nil, err
		}
		return y.Select(1, 0, true)
	}
	wantPlain, wantTracked, wantGrad := untrackedAndTracked(t, x, first)
	plain, tracked, grad := untrackedAndTracked(t, x, blk.ForwardFirst)
	y, err := blk.ForwardFirst(x)
	if err != nil {
		t.Fatal(err)
	}
	if got := shapeOf(t, y); !slices.Equal(got, []int64{n, w}) {
		t.Errorf("ForwardFirst shape %v, want [%d %d]", got, n, w)
	}
	y.Drop()
	// LayerNorm computes in fp32, the same rows on both sides.
	near(t, "ForwardFirst without gradients", plain, wantPlain, 1e-10)
	near(t, "ForwardFirst with gradients", tracked, wantTracked, 1e-10)
	near(t, "gradient through ForwardFirst", grad, wantGrad, 1e-10)
	// The in-place and the general path of the whole block agree too.
	near(t, "block in place vs not", wantPlain, wantTracked, 1e-10)
}

func TestFoldedBottleneckMatchesBatchNorm(t *testing.T) {
	lock(t)
	for _, tc := range []struct {
		name                     string
		inplanes, planes, stride int64
	}{{"identity shortcut", 16, 4, 1}, {"strided, projected shortcut", 8, 4, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			lock(t)
			p := NewParams(gotch.CPU)
			defer p.Drop()
			k := NewBottleneck(NewBuilder(p, gotch.Float), tc.inplanes, tc.planes, tc.stride)
			fillRandom(t, p, rand.New(rand.NewPCG(9, uint64(tc.stride))))
			x := randomInput(t, rand.New(rand.NewPCG(11, 12)), gotch.Float, 2, tc.inplanes, 6, 6)
			wantPlain, wantTracked, wantGrad := untrackedAndTracked(t, x, k.Forward)
			if err := k.Fold(); err != nil {
				t.Fatal(err)
			}
			defer k.DropFolded()
			// Channels-last weights: strides [kh·kw·in, 1, kw·in, in].
			wc := k.folded.c2.Weight
			if st, _ := wc.Stride(); !slices.Equal(st, []int64{9 * tc.planes, 1, 3 * tc.planes, tc.planes}) {
				t.Errorf("folded 3x3 weight strides %v, want channels-last", st)
			}
			plain, tracked, grad := untrackedAndTracked(t, x, k.Forward)
			// fp32: the fold rounds W·s and β − μ·s once.
			near(t, "folded, no gradients", plain, wantPlain, 2e-5)
			near(t, "folded, with gradients", tracked, wantTracked, 2e-5)
			near(t, "gradient through the folded block", grad, wantGrad, 2e-5)
			// Unfolded again: the batch norms run as before, exactly.
			k.DropFolded()
			again, _, _ := untrackedAndTracked(t, x, k.Forward)
			near(t, "after DropFolded", again, wantPlain, 0)
		})
	}
}

func TestForwardPackedAtIsForwardPackedAtThoseRows(t *testing.T) {
	lock(t)
	p := NewParams(gotch.CPU)
	defer p.Drop()
	const w = 16
	tr := NewTransformer(NewBuilder(p, gotch.Double), w, 2, 2)
	fillRandom(t, p, rand.New(rand.NewPCG(13, 14)))
	// A shared prefix of 2 positions, then 3 sequences of 4 positions
	// after it, causal masks [L, P+L].
	causal := func(l, past int64) *ts.Tensor {
		m := make([]float64, l*(past+l))
		for i := int64(0); i < l; i++ {
			for j := past + i + 1; j < past+l; j++ {
				m[i*(past+l)+j] = math.Inf(-1)
			}
		}
		x := ts.MustOfSlice(m).MustView([]int64{l, past + l}, true)
		t.Cleanup(func() { x.MustDrop() })
		return x
	}
	segs := []Segment{{N: 1, L: 2, After: -1, Mask: causal(2, 0)}, {N: 3, L: 4, After: 0, Mask: causal(4, 2)}}
	x := randomInput(t, rand.New(rand.NewPCG(15, 16)), gotch.Double, 2+3*4, w)
	at := []int64{2 + 3, 2 + 4 + 1, 2 + 8 + 2, 0} // one row of each sequence, out of order
	full := func(x *ts.Tensor) (*ts.Tensor, error) {
		y, _, err := tr.ForwardPacked(x, segs, nil, false)
		if err != nil {
			return nil, err
		}
		defer y.MustDrop()
		return y.IndexSelect(0, ts.MustOfSlice(at), false)
	}
	picked := func(x *ts.Tensor) (*ts.Tensor, error) {
		y, _, err := tr.ForwardPackedAt(x, segs, nil, false, at)
		return y, err
	}
	wantPlain, wantTracked, wantGrad := untrackedAndTracked(t, x, full)
	plain, tracked, grad := untrackedAndTracked(t, x, picked)
	if len(plain) != len(at)*w {
		t.Fatalf("ForwardPackedAt returned %d values, want %d rows of %d", len(plain), len(at), w)
	}
	// LayerNorm computes in fp32 on both sides.
	near(t, "rows without gradients", plain, wantPlain, 1e-10)
	near(t, "rows with gradients", tracked, wantTracked, 1e-10)
	near(t, "gradient through the rows", grad, wantGrad, 1e-10)
}
