package clip

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"runtime"
	"strings"
	"unsafe"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// New returns a randomly initialised model, as OpenAI's CLIP initialises one
// before training: PyTorch's default layer initialisation followed by
// CLIP's initialize_parameters (see initDist). The values come from a PCG
// generator seeded with seed, drawn in parameter order, so a seed always
// gives the same weights; libtorch's generator is not used.
func New(cfg Config, device gotch.Device, seed uint64, opts ...Option) (*Model, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	wdt, err := weightDType(o.precision, device)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m, err := build(cfg, nn.NewParams(device), wdt)
	if err != nil {
		return nil, err
	}
	m.precision = o.precision
	m.fullTextContext = o.fullTextContext
	rng := rand.New(rand.NewPCG(seed, 0x636c6970)) // "clip"
	for _, q := range m.params.List() {
		if err := fill(m.params, q, initDist(q.Name, q.Shape, cfg), rng); err != nil {
			m.Drop()
			return nil, err
		}
	}
	if err := m.prepare(); err != nil {
		m.Drop()
		return nil, err
	}
	return m, nil
}

// dist is an initial distribution: a constant, N(0, a²) or U(−a, a).
type dist struct {
	kind byte // 'c' constant, 'n' normal, 'u' uniform
	a    float64
}

func constant(v float64) dist     { return dist{'c', v} }
func normal(std float64) dist     { return dist{'n', std} }
func uniform(bound float64) dist  { return dist{'u', bound} }
func invSqrt(n float64) float64   { return 1 / math.Sqrt(n) }
func fanIn(shape []int64) float64 { return float64(numel(shape[1:])) }

func numel(shape []int64) int64 {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	return n
}

// A constant pattern: MustCompile cannot fail at run time.
var resnetBN3 = regexp.MustCompile(`^visual\.layer\d+\.\d+\.bn3\.weight$`)

// initDist returns the initial distribution of a parameter.
//
// PyTorch defaults: Linear and Conv2d weights and biases U(±1/√fan_in)
// (Kaiming-uniform with a = √5); nn.MultiheadAttention in_proj_weight
// Xavier-uniform U(±√(6/(fan_in+fan_out))), in_proj_bias and out_proj.bias
// 0; LayerNorm and BatchNorm weight 1, bias 0, running mean 0, variance 1.
//
// CLIP's initialize_parameters then sets: token_embedding N(0, 0.02²);
// positional_embedding N(0, 0.01²); logit_scale ln(1/0.07); for the text
// transformer (width W, L layers) in_proj_weight N(0, W⁻¹), out_proj.weight
// and mlp.c_proj.weight N(0, 1/(W·2L)), mlp.c_fc.weight N(0, 1/(2W));
// text_projection N(0, W⁻¹); for a ModifiedResNet the attention-pool
// q/k/v/c_proj weights N(0, 1/(32w)) and every bottleneck's bn3.weight 0.
// The image towers' own constructors draw the ViT class_embedding,
// positional_embedding and proj from N(0, 1/w) and the attention pool's
// positional_embedding from N(0, 1/(32w)).
func initDist(name string, shape []int64, cfg Config) dist {
	W := float64(cfg.TransformerWidth)
	leaf := name[strings.LastIndex(name, ".")+1:]
	switch name {
	case "token_embedding.weight":
		return normal(0.02)
	case "positional_embedding":
		return normal(0.01)
	case "logit_scale":
		return constant(math.Log(1 / 0.07))
	case "text_projection":
		return normal(invSqrt(W))
	case "visual.class_embedding", "visual.positional_embedding", "visual.proj":
		return normal(invSqrt(float64(cfg.VisionWidth)))
	case "visual.attnpool.positional_embedding":
		return normal(invSqrt(float64(32 * cfg.VisionWidth)))
	}
	switch leaf {
	case "running_mean", "num_batches_tracked":
		return constant(0)
	case "running_var":
		return constant(1)
	}
	if len(shape) == 1 && (strings.Contains(name, ".ln_") || strings.HasPrefix(name, "ln_") ||
		strings.Contains(name, ".bn") || strings.Contains(name, ".downsample.1.")) {
		if leaf == "bias" {
			return constant(0)
		}
		if resnetBN3.MatchString(name) {
			return constant(0)
		}
		return constant(1)
	}
	if rest, ok := strings.CutPrefix(name, "transformer.resblocks."); ok {
		projStd := invSqrt(W) * invSqrt(2*float64(cfg.TransformerLayers))
		switch {
		case strings.HasSuffix(rest, ".attn.in_proj_weight"):
			return normal(invSqrt(W))
		case strings.HasSuffix(rest, ".attn.out_proj.weight"), strings.HasSuffix(rest, ".mlp.c_proj.weight"):
			return normal(projStd)
		case strings.HasSuffix(rest, ".mlp.c_fc.weight"):
			return normal(invSqrt(2 * W))
		}
	}
	if strings.HasPrefix(name, "visual.attnpool.") && leaf == "weight" {
		return normal(invSqrt(float64(32 * cfg.VisionWidth)))
	}
	switch {
	case leaf == "in_proj_weight":
		return uniform(math.Sqrt(6 / float64(shape[0]+shape[1])))
	case leaf == "in_proj_bias", strings.HasSuffix(name, ".out_proj.bias"):
		return constant(0)
	case leaf == "weight": // Linear and Conv2d
		return uniform(invSqrt(fanIn(shape)))
	case leaf == "bias": // Linear: bound from the weight's fan-in
		return uniform(invSqrt(float64(linearFanIn(name, cfg))))
	}
	return constant(0)
}

// linearFanIn returns the input width of the Linear layer owning bias name.
func linearFanIn(name string, cfg Config) int {
	width := cfg.TransformerWidth
	if strings.HasPrefix(name, "visual.") {
		width = cfg.VisionWidth
	}
	switch {
	case strings.HasPrefix(name, "visual.attnpool."):
		return 32 * cfg.VisionWidth
	case strings.HasSuffix(name, ".mlp.c_proj.bias"):
		return 4 * width
	}
	return width
}

// fill draws q's values from d and copies them into the store.
func fill(p *nn.Params, q *nn.NamedTensor, d dist, rng *rand.Rand) error {
	if d.kind == 'c' && d.a == 0 {
		return nil // Add created zeros
	}
	n := numel(q.Shape)
	vals := make([]float32, n)
	for i := range vals {
		switch d.kind {
		case 'c':
			vals[i] = float32(d.a)
		case 'n':
			vals[i] = float32(rng.NormFloat64() * d.a)
		case 'u':
			vals[i] = float32((2*rng.Float64() - 1) * d.a)
		}
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(vals))), 4*len(vals))
	t, err := ts.OfDataSize(raw, []int64{n}, gotch.Float)
	if err != nil {
		return torch.Err(fmt.Sprintf("init %q", q.Name), err)
	}
	defer t.Drop()
	v, err := nn.Reshape(t, q.Shape)
	if err != nil {
		return fmt.Errorf("init %q: %w", q.Name, err)
	}
	defer v.Drop()
	return p.Copy(q.Name, v)
}
