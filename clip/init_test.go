package clip

import (
	"math"
	"reflect"
	"testing"

	"github.com/sugarme/gotch"
)

// stats returns the mean, standard deviation and largest magnitude.
func stats(v []float64) (mean, std, maxAbs float64) {
	for _, x := range v {
		mean += x
		maxAbs = math.Max(maxAbs, math.Abs(x))
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v))), maxAbs
}

func TestNewInitialisation(t *testing.T) {
	lockThread(t)
	vit, err := New(vitConfig, gotch.CPU, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer vit.Drop()
	rn, err := New(rnConfig, gotch.CPU, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer rn.Drop()

	// Expected distributions (CLIP's initialize_parameters and PyTorch's
	// layer defaults), for the text width W = 128 and L = 2 layers of the
	// ViT config, and width w = 16 of the ResNet config.
	const (
		W  = 128.0
		L  = 2.0
		w  = 64.0 // ViT width
		rw = 16.0 // ResNet width
	)
	type want struct {
		kind  byte // 'n' normal(std), 'u' uniform(bound), 'c' constant
		value float64
	}
	for _, tc := range []struct {
		model *Model
		name  string
		want  want
	}{
		{vit, "token_embedding.weight", want{'n', 0.02}},
		{vit, "positional_embedding", want{'n', 0.01}},
		{vit, "text_projection", want{'n', 1 / math.Sqrt(W)}},
		{vit, "logit_scale", want{'c', math.Log(1 / 0.07)}},
		{vit, "ln_final.weight", want{'c', 1}},
		{vit, "ln_final.bias", want{'c', 0}},
		{vit, "transformer.resblocks.1.attn.in_proj_weight", want{'n', 1 / math.Sqrt(W)}},
		{vit, "transformer.resblocks.1.attn.in_proj_bias", want{'c', 0}},
		{vit, "transformer.resblocks.0.attn.out_proj.weight", want{'n', 1 / math.Sqrt(W) / math.Sqrt(2*L)}},
		{vit, "transformer.resblocks.0.attn.out_proj.bias", want{'c', 0}},
		{vit, "transformer.resblocks.0.mlp.c_fc.weight", want{'n', 1 / math.Sqrt(2*W)}},
		{vit, "transformer.resblocks.0.mlp.c_fc.bias", want{'u', 1 / math.Sqrt(W)}},
		{vit, "transformer.resblocks.0.mlp.c_proj.weight", want{'n', 1 / math.Sqrt(W) / math.Sqrt(2*L)}},
		{vit, "transformer.resblocks.0.mlp.c_proj.bias", want{'u', 1 / math.Sqrt(4*W)}},
		{vit, "visual.conv1.weight", want{'u', 1 / math.Sqrt(3*8*8)}},
		{vit, "visual.class_embedding", want{'n', 1 / math.Sqrt(w)}},
		{vit, "visual.positional_embedding", want{'n', 1 / math.Sqrt(w)}},
		{vit, "visual.proj", want{'n', 1 / math.Sqrt(w)}},
		{vit, "visual.transformer.resblocks.0.attn.in_proj_weight", want{'u', math.Sqrt(6 / (4 * w))}},
		{vit, "visual.transformer.resblocks.0.attn.out_proj.weight", want{'u', 1 / math.Sqrt(w)}},
		{vit, "visual.transformer.resblocks.1.mlp.c_proj.weight", want{'u', 1 / math.Sqrt(4*w)}},
		{vit, "visual.ln_post.weight", want{'c', 1}},
		{rn, "visual.conv2.weight", want{'u', 1 / math.Sqrt(rw/2*9)}},
		{rn, "visual.bn3.weight", want{'c', 1}},
		{rn, "visual.layer3.0.bn3.weight", want{'c', 0}},
		{rn, "visual.layer3.0.bn2.weight", want{'c', 1}},
		{rn, "visual.layer3.0.downsample.1.weight", want{'c', 1}},
		{rn, "visual.layer3.0.downsample.1.running_var", want{'c', 1}},
		{rn, "visual.layer3.0.downsample.1.running_mean", want{'c', 0}},
		{rn, "visual.layer4.0.conv2.weight", want{'u', 1 / math.Sqrt(8*rw*9)}},
		{rn, "visual.attnpool.positional_embedding", want{'n', 1 / math.Sqrt(32*rw)}},
		{rn, "visual.attnpool.k_proj.weight", want{'n', 1 / math.Sqrt(32*rw)}},
		{rn, "visual.attnpool.c_proj.weight", want{'n', 1 / math.Sqrt(32*rw)}},
		{rn, "visual.attnpool.v_proj.bias", want{'u', 1 / math.Sqrt(32*rw)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.model.Params().Lookup(tc.name)
			if q == nil {
				t.Fatal("no such parameter")
			}
			shape, v := valuesOf(t, q.Tensor)
			if !equalShape(shape, q.Shape) {
				t.Fatalf("shape %v, declared %v", shape, q.Shape)
			}
			mean, std, maxAbs := stats(v)
			n := float64(len(v))
			switch tc.want.kind {
			case 'c':
				for i, x := range v {
					if math.Abs(x-tc.want.value) > 1e-6 {
						t.Fatalf("element %d = %v, want %v", i, x, tc.want.value)
					}
				}
			case 'n':
				// The sample std of n normal draws is within a few
				// 1/√(2n) of the true one.
				if math.Abs(std/tc.want.value-1) > 5/math.Sqrt(2*n)+0.01 || math.Abs(mean) > 5*tc.want.value/math.Sqrt(n) {
					t.Errorf("mean %.4g std %.4g over %d values, want N(0, %.4g²)", mean, std, len(v), tc.want.value)
				}
			case 'u':
				wantStd := tc.want.value / math.Sqrt(3)
				if maxAbs > tc.want.value || math.Abs(std/wantStd-1) > 5/math.Sqrt(n)+0.01 {
					t.Errorf("max %.4g std %.4g over %d values, want U(±%.4g) (std %.4g)", maxAbs, std, len(v), tc.want.value, wantStd)
				}
			}
		})
	}
}

func TestNewIsDeterministic(t *testing.T) {
	lockThread(t)
	const name = "transformer.resblocks.0.attn.in_proj_weight"
	values := func(seed uint64) []float64 {
		m, err := New(rnConfig, gotch.CPU, seed)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Drop()
		_, v := valuesOf(t, m.Params().Lookup(name).Tensor)
		return v
	}
	a, b, c := values(1), values(1), values(2)
	if !reflect.DeepEqual(a, b) {
		t.Error("the same seed gave different weights")
	}
	if reflect.DeepEqual(a, c) {
		t.Error("different seeds gave the same weights")
	}
}

// TestNewModelRuns checks that a random model runs end to end with sane
// outputs.
func TestNewModelRuns(t *testing.T) {
	lockThread(t)
	m, err := New(vitConfig, gotch.CPU, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	images := tensorFrom(t, mustNpy(t, "vit_images"), false)
	tokens := tensorFrom(t, mustNpy(t, "vit_tokens"), true)
	perImage, perText, err := m.Forward(images, tokens)
	if err != nil {
		t.Fatal(err)
	}
	defer perImage.Drop()
	defer perText.Drop()
	shape, v := valuesOf(t, perImage)
	if !reflect.DeepEqual(shape, []int64{4, 4}) {
		t.Fatalf("logits shape %v", shape)
	}
	scale := 1 / 0.07
	for _, x := range v {
		if math.IsNaN(x) || math.Abs(x) > scale+1e-3 {
			t.Fatalf("logit %v outside ±%v", x, scale)
		}
	}
}
