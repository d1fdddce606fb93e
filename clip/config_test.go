package clip

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/nn"
	"github.com/sugarme/gotch"
)

// officialShapes writes down the state-dict keys and shapes of a released
// CLIP model as docs/models.md §3 lists them (independently of the model code),
// including the archives' three extra scalars.
func officialShapes(embed, res int, vision []int, vw, patch, tw, tl int) map[string][]int64 {
	s := map[string][]int64{}
	add := func(name string, shape ...int) {
		v := make([]int64, len(shape))
		for i, d := range shape {
			v[i] = int64(d)
		}
		s[name] = v
	}
	ln := func(p string, w int) {
		add(p+".weight", w)
		add(p+".bias", w)
	}
	bn := func(p string, c int) {
		ln(p, c)
		add(p+".running_mean", c)
		add(p+".running_var", c)
		add(p + ".num_batches_tracked")
	}
	block := func(p string, w int) {
		ln(p+"ln_1", w)
		add(p+"attn.in_proj_weight", 3*w, w)
		add(p+"attn.in_proj_bias", 3*w)
		add(p+"attn.out_proj.weight", w, w)
		add(p+"attn.out_proj.bias", w)
		ln(p+"ln_2", w)
		add(p+"mlp.c_fc.weight", 4*w, w)
		add(p+"mlp.c_fc.bias", 4*w)
		add(p+"mlp.c_proj.weight", w, 4*w)
		add(p+"mlp.c_proj.bias", w)
	}
	add("positional_embedding", 77, tw)
	add("token_embedding.weight", 49408, tw)
	ln("ln_final", tw)
	add("text_projection", tw, embed)
	add("logit_scale")
	for i := 0; i < tl; i++ {
		block(fmt.Sprintf("transformer.resblocks.%d.", i), tw)
	}
	add("input_resolution")
	add("context_length")
	add("vocab_size")
	if len(vision) == 1 {
		grid := res / patch
		add("visual.conv1.weight", vw, 3, patch, patch)
		add("visual.class_embedding", vw)
		add("visual.positional_embedding", grid*grid+1, vw)
		ln("visual.ln_pre", vw)
		for i := 0; i < vision[0]; i++ {
			block(fmt.Sprintf("visual.transformer.resblocks.%d.", i), vw)
		}
		ln("visual.ln_post", vw)
		add("visual.proj", vw, embed)
		return s
	}
	add("visual.conv1.weight", vw/2, 3, 3, 3)
	bn("visual.bn1", vw/2)
	add("visual.conv2.weight", vw/2, vw/2, 3, 3)
	bn("visual.bn2", vw/2)
	add("visual.conv3.weight", vw, vw/2, 3, 3)
	bn("visual.bn3", vw)
	in := vw
	for st := 0; st < 4; st++ {
		p := vw << st
		for j := 0; j < vision[st]; j++ {
			pre := fmt.Sprintf("visual.layer%d.%d.", st+1, j)
			add(pre+"conv1.weight", p, in, 1, 1)
			bn(pre+"bn1", p)
			add(pre+"conv2.weight", p, p, 3, 3)
			bn(pre+"bn2", p)
			add(pre+"conv3.weight", 4*p, p, 1, 1)
			bn(pre+"bn3", 4*p)
			if j == 0 {
				add(pre+"downsample.0.weight", 4*p, in, 1, 1)
				bn(pre+"downsample.1", 4*p)
			}
			in = 4 * p
		}
	}
	g := res / 32
	add("visual.attnpool.positional_embedding", g*g+1, 32*vw)
	for _, n := range []string{"q", "k", "v"} {
		add("visual.attnpool."+n+"_proj.weight", 32*vw, 32*vw)
		add("visual.attnpool."+n+"_proj.bias", 32*vw)
	}
	add("visual.attnpool.c_proj.weight", embed, 32*vw)
	add("visual.attnpool.c_proj.bias", embed)
	return s
}

// official is the architecture table of docs/models.md §2.
var official = []struct {
	name    string
	cfg     Config
	nParams int64 // parameters without buffers, where known
}{
	{"RN50", Config{1024, 224, []int{3, 4, 6, 3}, 64, 0, 77, 49408, 512, 8, 12, 0, 0, 0, 0}, 0},
	{"RN101", Config{512, 224, []int{3, 4, 23, 3}, 64, 0, 77, 49408, 512, 8, 12, 0, 0, 0, 0}, 0},
	{"RN50x4", Config{640, 288, []int{4, 6, 10, 6}, 80, 0, 77, 49408, 640, 10, 12, 0, 0, 0, 0}, 0},
	{"RN50x16", Config{768, 384, []int{6, 8, 18, 8}, 96, 0, 77, 49408, 768, 12, 12, 0, 0, 0, 0}, 0},
	{"RN50x64", Config{1024, 448, []int{3, 15, 36, 10}, 128, 0, 77, 49408, 1024, 16, 12, 0, 0, 0, 0}, 0},
	{"ViT-B/32", Config{512, 224, []int{12}, 768, 32, 77, 49408, 512, 8, 12, 0, 0, 0, 0}, 151277313},
	{"ViT-B/16", Config{512, 224, []int{12}, 768, 16, 77, 49408, 512, 8, 12, 0, 0, 0, 0}, 0},
	{"ViT-L/14", Config{768, 224, []int{24}, 1024, 14, 77, 49408, 768, 12, 12, 0, 0, 0, 0}, 0},
	{"ViT-L/14@336px", Config{768, 336, []int{24}, 1024, 14, 77, 49408, 768, 12, 12, 0, 0, 0, 0}, 0},
}

func TestInferConfigOfficialModels(t *testing.T) {
	for _, tc := range official {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			shapes := officialShapes(c.EmbedDim, c.ImageResolution, c.VisionLayers, c.VisionWidth,
				c.VisionPatchSize, c.TransformerWidth, c.TransformerLayers)
			got, err := InferConfig(shapes)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("InferConfig = %+v, want %+v", got, c)
			}
			if got.VisionHeads() != map[bool]int{true: c.VisionWidth / 64, false: c.VisionWidth / 2}[c.IsViT()] {
				t.Errorf("VisionHeads = %d", got.VisionHeads())
			}

			// The model declares exactly these names and shapes (no
			// tensors are allocated in a shape-only store).
			m, err := build(got, nn.NewShapeParams(), gotch.Float)
			if err != nil {
				t.Fatal(err)
			}
			declared := map[string][]int64{}
			var params int64
			for _, q := range m.Params().List() {
				declared[q.Name] = q.Shape
				if !strings.HasSuffix(q.Name, "running_mean") && !strings.HasSuffix(q.Name, "running_var") &&
					!strings.HasSuffix(q.Name, "num_batches_tracked") {
					n := int64(1)
					for _, d := range q.Shape {
						n *= d
					}
					params += n
				}
			}
			for name := range extraEntries {
				delete(shapes, name)
			}
			if d := diffKeys(declared, shapes); d != "" {
				t.Errorf("declared parameters differ from docs/models.md: %s", d)
			}
			if tc.nParams != 0 && params != tc.nParams {
				t.Errorf("%d parameters, want %d", params, tc.nParams)
			}
			t.Logf("%s: %d tensors, %d parameters", tc.name, len(declared), params)
		})
	}
}

func diffKeys(got, want map[string][]int64) string {
	var d []string
	for k, v := range got {
		if w, ok := want[k]; !ok {
			d = append(d, "extra "+k)
		} else if !equalShape(v, w) {
			d = append(d, fmt.Sprintf("%s %v != %v", k, v, w))
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			d = append(d, "missing "+k)
		}
	}
	sort.Strings(d)
	if len(d) > 10 {
		d = append(d[:10], "...")
	}
	return strings.Join(d, "; ")
}

func TestInferConfigRejects(t *testing.T) {
	base := func() map[string][]int64 { return officialShapes(512, 224, []int{12}, 768, 32, 512, 12) }
	for _, tc := range []struct {
		name   string
		change func(map[string][]int64)
		want   string
	}{
		{"no text projection", func(s map[string][]int64) { delete(s, "text_projection") }, `no "text_projection"`},
		{"bad ViT grid", func(s map[string][]int64) { s["visual.positional_embedding"] = []int64{48, 768} }, "grid²+1"},
		{"ViT width", func(s map[string][]int64) {
			s["visual.conv1.weight"] = []int64{100, 3, 32, 32}
		}, "multiple of the head width 64"},
		{"ResNet pool grid", func(s map[string][]int64) {
			for k := range s {
				if strings.HasPrefix(k, "visual.") {
					delete(s, k)
				}
			}
			for k, v := range officialShapes(1024, 224, []int{3, 4, 6, 3}, 64, 0, 512, 12) {
				if strings.HasPrefix(k, "visual.") {
					s[k] = v
				}
			}
			s["visual.attnpool.positional_embedding"] = []int64{51, 2048}
		}, "grid²+1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.change(s)
			_, err := InferConfig(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
