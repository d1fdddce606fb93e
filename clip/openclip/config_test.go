package openclip

import (
	"errors"
	"strings"
	"testing"
)

// TestParseFormats parses a Hugging Face open_clip_config.json and a bare
// model config as OpenCLIP's model_configs hold them.
func TestParseFormats(t *testing.T) {
	hf := `{"model_cfg": {"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280,
		"head_width": 80, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024,
		"heads": 16, "layers": 24}}, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
		"interpolation": "bilinear", "resize_mode": "squash"}}`
	f, err := Parse([]byte(hf))
	if err != nil {
		t.Fatal(err)
	}
	if f.Model.QuickGELU || f.Model.Vision.HeadWidth != 80 || f.Model.Vision.MLPWidth() != 5120 || f.Model.Text.Heads != 16 {
		t.Errorf("model %+v", f.Model)
	}
	if f.Preprocess != (PreprocessConfig{Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.5, 0.5, 0.5}, Interpolation: "bilinear", ResizeMode: "squash"}) {
		t.Errorf("preprocess %+v", f.Preprocess)
	}
	bare := `{"embed_dim": 1024, "quick_gelu": true, "vision_cfg": {"image_size": [224, 224], "layers": [3, 4, 6, 3],
		"width": 64, "patch_size": null}, "text_cfg": {"width": 512, "heads": 8, "layers": 12}}`
	f, err = Parse([]byte(bare))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Model.QuickGELU || len(f.Model.Vision.Layers) != 4 || f.Model.Vision.ImageSize != 224 || f.Model.Text.ContextLength != 77 ||
		f.Preprocess != OpenAIPreprocess() {
		t.Errorf("bare config %+v", f)
	}
	// Marshal and Parse round trip.
	b, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(b)
	if err != nil || g.Model.Vision.PatchSize != 0 || !g.Model.QuickGELU || g.Model.Vision.Layers[2] != 6 {
		t.Errorf("round trip %+v, %v", g, err)
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		`{"model_cfg": {"embed_dim": 512, "custom_text": true, "vision_cfg": {}, "text_cfg": {}}}`:                                                                                        "CustomTextCLIP",
		`{"embed_dim": 512, "vision_cfg": {"timm_model_name": "convnext_base", "image_size": 224}, "text_cfg": {"width": 512}}`:                                                           "timm image tower",
		`{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16}, "text_cfg": {"hf_model_name": "roberta-base"}}`:                              "Hugging Face text tower",
		`{"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14, "no_ln_pre": true}, "text_cfg": {"width": 768, "heads": 12, "layers": 12}}`:  "no_ln_pre",
		`{"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": {"width": 768, "heads": 12, "layers": 12, "pool_type": "eos"}}`: "pool_type",
		`{"embed_dim": 768, "init_logit_bias": -10, "vision_cfg": {}, "text_cfg": {}}`:                                                                                                    "SigLIP",
	}
	for cfg, want := range cases {
		_, err := Parse([]byte(cfg))
		var ue *UnsupportedError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want an UnsupportedError mentioning %q", cfg, err, want)
		}
	}
	if _, err := Parse([]byte(`{"embed_dim": 512, "vision_cfg": {"image_size": 224}, "text_cfg": {}}`)); err == nil ||
		!strings.Contains(err.Error(), "vision_cfg.layers is missing") {
		t.Errorf("missing sizes: %v", err)
	}
	// Harmless keys with their default values are accepted.
	ok := `{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32,
		"ls_init_value": null, "patch_dropout": 0.5, "pool_type": "tok"}, "text_cfg": {"width": 512, "heads": 8,
		"layers": 12, "proj_bias": false, "pool_type": "argmax"}}`
	if _, err := Parse([]byte(ok)); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestTables(t *testing.T) {
	if _, ok := Arch("vit-b-32-QUICKGELU"); !ok {
		t.Error("ViT-B-32-quickgelu unknown")
	}
	for _, tag := range Tags() {
		f, err := tag.Config()
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Preprocess.Check(); err != nil {
			t.Errorf("%s: %v", tag.Name(), err)
		}
		if strings.HasSuffix(tag.Arch, "-quickgelu") && !tag.QuickGELU {
			t.Errorf("%s: a -quickgelu architecture without QuickGELU", tag.Name())
		}
	}
	if tag, ok := LookupTag("ViT-H-14-378-quickgelu/dfn5b"); !ok || tag.Preprocess.ResizeMode != "squash" || tag.HFRepo != "apple/DFN5B-CLIP-ViT-H-14-378" {
		t.Errorf("dfn5b: %+v", tag)
	}
	if name, ok := OpenAIArch("ViT-L-14-336-quickgelu"); !ok || name != "ViT-L/14@336px" {
		t.Errorf("OpenAIArch = %q", name)
	}
}
