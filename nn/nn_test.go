package nn

import (
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

// The layers' end-to-end agreement with PyTorch is tested in package clip
// against fixtures written by PyTorch; these tests check each block against
// answers derived by hand (naive float64 loops).

func lock(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

func tensor(t *testing.T, data []float32, shape ...int64) *ts.Tensor {
	t.Helper()
	x, err := ts.OfSlice(data)
	if err != nil {
		t.Fatal(err)
	}
	y, err := x.View(shape, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Drop() })
	return y
}

func values(t *testing.T, x *ts.Tensor) []float64 {
	t.Helper()
	d, err := x.Totype(gotch.Double, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Drop()
	v := make([]float64, d.Numel())
	if err := d.CopyData(v, uint(len(v))); err != nil {
		t.Fatal(err)
	}
	return v
}

func shapeOf(t *testing.T, x *ts.Tensor) []int64 {
	t.Helper()
	s, err := x.Size()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func near(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %.7g, want %.7g", what, i, got[i], want[i])
		}
	}
}

// set copies values into a parameter.
func set(t *testing.T, p *Params, name string, data []float32) {
	t.Helper()
	q := p.Lookup(name)
	if q == nil {
		t.Fatalf("no parameter %s", name)
	}
	if err := p.Copy(name, tensor(t, data, q.Shape...)); err != nil {
		t.Fatal(err)
	}
}

func TestParamsAddLookupLoad(t *testing.T) {
	lock(t)
	p := NewParams(gotch.CPU)
	defer p.Drop()
	b := NewBuilder(p, gotch.Float).Sub("blk")
	NewLinear(b.Sub("fc"), 3, 2, true)
	b.Float("scale")
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range p.List() {
		names = append(names, q.Name)
	}
	if want := []string{"blk.fc.weight", "blk.fc.bias", "blk.scale"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	if p.NumElements() != 6+2+1 {
		t.Errorf("NumElements = %d", p.NumElements())
	}
	// Sticky builder error on a duplicate name.
	if NewLinear(b.Sub("fc"), 3, 2, true); b.Err() == nil || !strings.Contains(b.Err().Error(), "defined twice") {
		t.Errorf("duplicate: err = %v", b.Err())
	}

	w := tensor(t, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	one := tensor(t, []float32{7}, 1)
	extra := tensor(t, []float32{0}, 1)
	r, err := p.Load(map[string]*ts.Tensor{"blk.fc.weight": w, "blk.scale": one, "other": extra})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Missing, []string{"blk.fc.bias"}) || !reflect.DeepEqual(r.Unexpected, []string{"other"}) || r.OK() {
		t.Errorf("report %+v", r)
	}
	near(t, "weight", values(t, p.Lookup("blk.fc.weight").Tensor), []float64{1, 2, 3, 4, 5, 6}, 0)
	if s := shapeOf(t, p.Lookup("blk.scale").Tensor); len(s) != 0 {
		t.Errorf("scalar parameter has shape %v after loading a [1] tensor", s)
	}
	near(t, "scale", values(t, p.Lookup("blk.scale").Tensor), []float64{7}, 0)

	wt := tensor(t, []float32{1, 2, 3, 4, 5, 6}, 3, 2)
	if _, err := p.Load(map[string]*ts.Tensor{"blk.fc.weight": wt}); err == nil ||
		!strings.Contains(err.Error(), "blk.fc.weight") || !strings.Contains(err.Error(), "[3 2]") {
		t.Errorf("shape mismatch: err = %v", err)
	}
}

func TestParamsCopyConvertsDType(t *testing.T) {
	lock(t)
	p := NewParams(gotch.CPU)
	defer p.Drop()
	if _, err := p.Add("w", []int64{3}, gotch.Float); err != nil {
		t.Fatal(err)
	}
	h, err := tensor(t, []float32{0.1, -2.5, 65504}, 3).Totype(gotch.Half, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Drop()
	if err := p.Copy("w", h); err != nil {
		t.Fatal(err)
	}
	q := p.Lookup("w")
	if q.Tensor.DType() != gotch.Float {
		t.Errorf("dtype %v", q.Tensor.DType())
	}
	// 0.1 rounds to 0.0999755859375 in fp16.
	near(t, "w", values(t, q.Tensor), []float64{0.0999755859375, -2.5, 65504}, 0)
	if rg, _ := q.Tensor.RequiresGrad(); rg {
		t.Error("parameter requires grad")
	}
	if err := p.Copy("nope", h); err == nil {
		t.Error("copy to a missing name succeeded")
	}
}

func TestShapeParamsAllocateNothing(t *testing.T) {
	p := NewShapeParams()
	b := NewBuilder(p, gotch.Half)
	NewTransformer(b.Sub("transformer"), 1024, 24, 16)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	for _, q := range p.List() {
		if q.Tensor != nil {
			t.Fatalf("%s has a tensor", q.Name)
		}
	}
	q := p.Lookup("transformer.resblocks.23.attn.in_proj_weight")
	if q == nil || !reflect.DeepEqual(q.Shape, []int64{3072, 1024}) || q.DType != gotch.Half {
		t.Errorf("in_proj_weight: %+v", q)
	}
	if q := p.Lookup("transformer.resblocks.0.ln_1.weight"); q == nil || q.DType != gotch.Float {
		t.Errorf("ln_1.weight: %+v (LayerNorm parameters stay fp32)", q)
	}
	if want := int64(24 * (12*1024*1024 + 13*1024)); p.NumElements() != want {
		t.Errorf("NumElements = %d, want %d", p.NumElements(), want)
	}
}

func TestLayerNormAndQuickGELU(t *testing.T) {
	lock(t)
	p := NewParams(gotch.CPU)
	defer p.Drop()
	ln := NewLayerNorm(NewBuilder(p, gotch.Float), 4)
	set(t, p, "weight", []float32{1, 2, 1, 0.5})
	set(t, p, "bias", []float32{0, 0, 1, 0})
	x := []float64{1, 2, 3, 4}
	mean, v := 2.5, 1.25
	var want []float64
	for i, w := range []float64{1, 2, 1, 0.5} {
		want = append(want, (x[i]-mean)/math.Sqrt(v+1e-5)*w+[]float64{0, 0, 1, 0}[i])
	}
	for _, dt := range []gotch.DType{gotch.Float, gotch.Double} {
		in, err := tensor(t, []float32{1, 2, 3, 4}, 1, 4).Totype(dt, false)
		if err != nil {
			t.Fatal(err)
		}
		y, err := ln.Forward(in)
		in.Drop()
		if err != nil {
			t.Fatal(err)
		}
		if y.DType() != dt {
			t.Errorf("LayerNorm(%v) returned %v", dt, y.DType())
		}
		near(t, "layer norm", values(t, y), want, 1e-6)
		y.Drop()
	}

	g, err := QuickGELU(tensor(t, []float32{-1, 0, 2}, 3))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Drop()
	sig := func(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
	near(t, "quick gelu", values(t, g), []float64{-sig(-1.702), 0, 2 * sig(3.404)}, 1e-6)
}

// naiveMHA computes self-attention for x [L, E] with identity projections:
// head h attends with q = k = v = x[:, h·d:(h+1)·d].
func naiveMHA(x [][]float64, heads int, mask func(i, j int) bool) [][]float64 {
	l, e := len(x), len(x[0])
	d := e / heads
	out := make([][]float64, l)
	for i := range out {
		out[i] = make([]float64, e)
	}
	for h := 0; h < heads; h++ {
		for i := 0; i < l; i++ {
			scores := make([]float64, l)
			var maxS float64 = math.Inf(-1)
			for j := 0; j < l; j++ {
				if mask != nil && !mask(i, j) {
					scores[j] = math.Inf(-1)
					continue
				}
				for k := 0; k < d; k++ {
					scores[j] += x[i][h*d+k] * x[j][h*d+k]
				}
				scores[j] /= math.Sqrt(float64(d))
				maxS = math.Max(maxS, scores[j])
			}
			var z float64
			for j := range scores {
				scores[j] = math.Exp(scores[j] - maxS)
				z += scores[j]
			}
			for j := range scores {
				for k := 0; k < d; k++ {
					out[i][h*d+k] += scores[j] / z * x[j][h*d+k]
				}
			}
		}
	}
	return out
}

func TestMultiheadAttentionMatchesNaive(t *testing.T) {
	lock(t)
	const e, heads, l = 4, 2, 3
	p := NewParams(gotch.CPU)
	defer p.Drop()
	mha := NewMultiheadAttention(NewBuilder(p, gotch.Float), e, heads)
	// in_proj = [I; I; I], out_proj = I, biases zero.
	in := make([]float32, 3*e*e)
	for r := 0; r < 3*e; r++ {
		in[r*e+r%e] = 1
	}
	set(t, p, "in_proj_weight", in)
	id := make([]float32, e*e)
	for r := 0; r < e; r++ {
		id[r*e+r] = 1
	}
	set(t, p, "out_proj.weight", id)

	xs := [][]float64{{0.5, -1, 2, 0.1}, {1.5, 0.3, -0.7, 1}, {-0.2, 0.8, 0.4, -1.2}}
	var flat []float32
	for _, r := range xs {
		for _, v := range r {
			flat = append(flat, float32(v))
		}
	}
	x := tensor(t, flat, 1, l, e)
	inf := float32(math.Inf(-1))
	causal := tensor(t, []float32{0, inf, inf, 0, 0, inf, 0, 0, 0}, l, l)
	for _, tc := range []struct {
		name string
		mask *ts.Tensor
		keep func(i, j int) bool
	}{
		{"no mask", nil, nil},
		{"causal", causal, func(i, j int) bool { return j <= i }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y, err := mha.Forward(x, tc.mask)
			if err != nil {
				t.Fatal(err)
			}
			defer y.Drop()
			if s := shapeOf(t, y); !reflect.DeepEqual(s, []int64{1, l, e}) {
				t.Fatalf("shape %v", s)
			}
			var want []float64
			for _, r := range naiveMHA(xs, heads, tc.keep) {
				want = append(want, r...)
			}
			near(t, "attention", values(t, y), want, 1e-6)
		})
	}
}

func TestBatchNormAvgPoolNormalize(t *testing.T) {
	lock(t)
	p := NewParams(gotch.CPU)
	defer p.Drop()
	bn := NewBatchNorm2d(NewBuilder(p, gotch.Float), 2)
	set(t, p, "weight", []float32{2, 0.5})
	set(t, p, "bias", []float32{0.1, -1})
	set(t, p, "running_mean", []float32{1, -1})
	set(t, p, "running_var", []float32{4, 0.25})
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	y, err := bn.Forward(tensor(t, x, 1, 2, 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer y.Drop()
	var want []float64
	for i, v := range x {
		c := i / 4
		m, vr, w, b := []float64{1, -1}[c], []float64{4, 0.25}[c], []float64{2, 0.5}[c], []float64{0.1, -1}[c]
		want = append(want, (float64(v)-m)/math.Sqrt(vr+1e-5)*w+b)
	}
	near(t, "batch norm", values(t, y), want, 1e-6)
	// Inference mode: the running statistics are unchanged.
	near(t, "running_mean", values(t, p.Lookup("running_mean").Tensor), []float64{1, -1}, 0)

	img := make([]float32, 16)
	for i := range img {
		img[i] = float32(i)
	}
	a, err := AvgPool2d(tensor(t, img, 1, 1, 4, 4), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Drop()
	near(t, "avg pool", values(t, a), []float64{2.5, 4.5, 10.5, 12.5}, 0)

	n, err := Normalize(tensor(t, []float32{3, 4, 0, -2}, 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Drop()
	near(t, "normalize", values(t, n), []float64{0.6, 0.8, 0, -1}, 1e-7)
}

func TestForwardErrorsAreErrors(t *testing.T) {
	lock(t)
	p := NewParams(gotch.CPU)
	defer p.Drop()
	b := NewBuilder(p, gotch.Float)
	mha := NewMultiheadAttention(b.Sub("attn"), 4, 2)
	pool := NewAttentionPool2d(b.Sub("pool"), 2, 4, 2, 3)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	x := tensor(t, make([]float32, 10), 1, 2, 5) // width 5, not 4
	if _, err := mha.Forward(x, nil); err == nil {
		t.Error("attention on the wrong width succeeded")
	}
	fm := tensor(t, make([]float32, 36), 1, 4, 3, 3) // 3x3 grid, pool expects 2x2
	if _, err := pool.Forward(fm); err == nil || !strings.Contains(err.Error(), "positional embedding") {
		t.Errorf("attention pool on a 3x3 grid: err = %v", err)
	}
}

// TestAttendFusedMatchesExplicit compares libtorch's fused
// scaled_dot_product_attention with the written-out computation, with and
// without a causal mask, in the outputs and in the gradients they send back
// to q, k and v (float64, within 1e-12 relative), and checks that Attend
// takes the fused path. It is skipped against a libtorch without the fused
// operation (1.13), where Attend uses the written-out path.
func TestAttendFusedMatchesExplicit(t *testing.T) {
	lock(t)
	if torch.Stubbed("atg_scaled_dot_product_attention") {
		t.Skip("this libtorch has no scaled_dot_product_attention")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	randn := func(shape ...int64) *ts.Tensor {
		return randomInput(t, rng, gotch.Double, shape...).MustSetRequiresGrad(true, false)
	}
	const l = 5
	inf := math.Inf(-1)
	mask := make([]float64, l*l)
	for i := 0; i < l; i++ {
		for j := i + 1; j < l; j++ {
			mask[i*l+j] = inf
		}
	}
	causal := ts.MustOfSlice(mask).MustView([]int64{l, l}, true)
	for _, tc := range []struct {
		name string
		mask *ts.Tensor
	}{{"no mask", nil}, {"causal", causal}} {
		q, k, v := randn(2, 3, l, 8), randn(2, 3, l, 8), randn(2, 3, l, 8)
		run := func(attend func(q, k, v, mask *ts.Tensor) (*ts.Tensor, error)) (out []float64, grads [3][]float64) {
			y, err := attend(q, k, v, tc.mask)
			if err != nil {
				t.Fatal(err)
			}
			// A weighted sum, so that every output element has its own weight.
			w := randn(2, l, 24).MustDetach(true)
			loss := y.MustMul(w, false).MustSum(gotch.Double, true)
			for _, x := range []*ts.Tensor{q, k, v} {
				x.ZeroGrad()
			}
			loss.MustBackward()
			out = y.Float64Values()
			for i, x := range []*ts.Tensor{q, k, v} {
				grads[i] = x.MustGrad(false).Float64Values()
			}
			return out, grads
		}
		rng = rand.New(rand.NewPCG(9, 9)) // the same weights w for both runs
		fo, fg := run(attendFused)
		rng = rand.New(rand.NewPCG(9, 9))
		eo, eg := run(attendExplicit)
		near(t, tc.name+": output", fo, eo, 1e-12)
		for i, name := range []string{"q", "k", "v"} {
			near(t, tc.name+": grad "+name, fg[i], eg[i], 1e-12)
		}
	}
	// Attend takes the fused path: bit for bit the same as attendFused.
	q, k, v := randn(1, 2, 3, 4), randn(1, 2, 3, 4), randn(1, 2, 3, 4)
	a, err := Attend(q, k, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := attendFused(q, k, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	av, fv := a.Float64Values(), f.Float64Values()
	for i := range fv {
		if math.Float64bits(av[i]) != math.Float64bits(fv[i]) {
			t.Fatalf("Attend[%d] = %.17g, fused %.17g: Attend did not take the fused path", i, av[i], fv[i])
		}
	}
}
