package clip

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"github.com/clipadapter/clipgo/clip/openclip"
	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/nn"
)

// TestOpenCLIPParity loads the checkpoints OpenCLIP saved itself
// (testdata/gen_openclip.py: safetensors and torch.save .bin, GELU and
// QuickGELU, a bare state dict and a {"state_dict"} training checkpoint
// with "module." keys) and compares the features with OpenCLIP's
// encode_image and encode_text: within 1e-4 relative to the largest
// reference value.
func TestOpenCLIPParity(t *testing.T) {
	lockThread(t)
	cases := []struct {
		dir, file string
		act       nn.Activation
		headWidth int
	}{
		{"gelu", "open_clip_model.safetensors", nn.ActGELU, 32},
		{"gelu", "open_clip_pytorch_model.bin", nn.ActGELU, 32},
		{"quickgelu", "open_clip_model.safetensors", nn.ActQuickGELU, 32},
		{"quickgelu", "open_clip_pytorch_model.bin", nn.ActQuickGELU, 32},
		{"rn", "open_clip_model.safetensors", nn.ActGELU, 32},
	}
	for _, c := range cases {
		t.Run(c.dir+"/"+c.file, func(t *testing.T) {
			dir := filepath.Join("testdata", "openclip", c.dir)
			m := loadModel(t, filepath.Join(dir, c.file))
			cfg := m.Config()
			if cfg.Activation != c.act || cfg.VisionHeadWidth != c.headWidth || cfg.TransformerHeads != 2 {
				t.Errorf("config %v: activation %v, head width %d, text heads %d", cfg, cfg.Activation, cfg.VisionHeadWidth, cfg.TransformerHeads)
			}
			if got := m.Preprocessing(); got.Mean != [3]float32{0.5, 0.4, 0.3} || got.Std != [3]float32{0.2, 0.25, 0.3} {
				t.Errorf("preprocessing %v, want the config's mean and std", got)
			}
			images := tensorFrom(t, mustNpyFile(t, filepath.Join(dir, "images.npy")), false)
			tokens := tensorFrom(t, mustNpyFile(t, filepath.Join(dir, "tokens.npy")), true)
			f, err := m.EncodeImage(images)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Drop()
			compare(t, "image features", f, mustNpyFile(t, filepath.Join(dir, "image_features.npy")), 1e-4)
			g, err := m.EncodeText(tokens)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Drop()
			compare(t, "text features", g, mustNpyFile(t, filepath.Join(dir, "text_features.npy")), 1e-4)
		})
	}
}

// TestOpenCLIPActivationMatters checks that the activation is taken from
// the configuration: the GELU model's weights run with QuickGELU (a named
// -quickgelu architecture would do that) give different features.
func TestOpenCLIPActivationMatters(t *testing.T) {
	lockThread(t)
	dir := filepath.Join("testdata", "openclip", "gelu")
	cfgPath := filepath.Join(t.TempDir(), "quick.json")
	data, err := os.ReadFile(filepath.Join(dir, "open_clip_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(data), `"quick_gelu": false`, `"quick_gelu": true`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(filepath.Join(dir, "open_clip_model.safetensors"), gotch.CPU, WithOpenCLIPConfig(cfgPath))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	if m.Config().Activation != nn.ActQuickGELU {
		t.Fatalf("activation %v, want QuickGELU from %s", m.Config().Activation, cfgPath)
	}
	tokens := tensorFrom(t, mustNpyFile(t, filepath.Join(dir, "tokens.npy")), true)
	g, err := m.EncodeText(tokens)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Drop()
	_, got := valuesOf(t, g)
	want := mustNpyFile(t, filepath.Join(dir, "text_features.npy"))
	var diff float64
	for i := range got {
		diff = max(diff, abs(got[i]-want.data[i]))
	}
	if diff < 1e-3 {
		t.Errorf("QuickGELU on GELU weights gives the GELU features (max diff %.3g): the activation is not applied", diff)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestOpenCLIPConfigErrors covers configurations that do not fit the
// weights, and the other model families.
func TestOpenCLIPConfigErrors(t *testing.T) {
	dir := filepath.Join("testdata", "openclip", "gelu")
	data, err := os.ReadFile(filepath.Join(dir, "open_clip_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, want string
		family               bool
	}{
		{"wrong width", `"width": 64,`, `"width": 128,`, "vision_cfg.width is 128, the weights have 64", false},
		{"timm tower", `"image_size": 32,`, `"image_size": 32, "timm_model_name": "vit_base_patch16_224",`, "timm image tower", true},
		{"hf text", `"context_length": 16,`, `"hf_model_name": "xlm-roberta-base", "context_length": 16,`, "Hugging Face text tower", true},
		{"siglip", `"embed_dim": 32,`, `"embed_dim": 32, "init_logit_bias": -10,`, "SigLIP", true},
		{"layer scale", `"image_size": 32,`, `"image_size": 32, "ls_init_value": 0.1,`, "layer scale", true},
		{"unknown key", `"image_size": 32,`, `"image_size": 32, "frobnicate": 1,`, "unknown config key vision_cfg.frobnicate", true},
		{"bad resize", `"resize_mode": "shortest"`, `"resize_mode": "random"`, `resize_mode "random" is not supported`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(data), c.old) {
				t.Fatalf("fixture config lacks %q", c.old)
			}
			p := filepath.Join(t.TempDir(), "cfg.json")
			if err := os.WriteFile(p, []byte(strings.Replace(string(data), c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadConfig(filepath.Join(dir, "open_clip_model.safetensors"), WithOpenCLIPConfig(p))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			var ue *openclip.UnsupportedError
			if errors.As(err, &ue) != c.family {
				t.Errorf("errors.As UnsupportedError = %v, want %v", !c.family, c.family)
			}
		})
	}
}

// TestOpenCLIPArchitectureOption loads the QuickGELU checkpoint with a
// named architecture instead of its config: the sizes must then match the
// named architecture, which they do not.
func TestOpenCLIPArchitectureOption(t *testing.T) {
	p := filepath.Join("testdata", "openclip", "quickgelu", "open_clip_model.safetensors")
	_, err := ReadConfig(p, WithArchitecture("ViT-B-32"))
	if err == nil || !strings.Contains(err.Error(), "OpenCLIP architecture ViT-B-32 does not match the weights") {
		t.Fatalf("error %v", err)
	}
	_, err = ReadConfig(p, WithArchitecture("ViT-Q-99"))
	if err == nil || !strings.Contains(err.Error(), `unknown OpenCLIP architecture "ViT-Q-99"`) {
		t.Fatalf("error %v", err)
	}
}

// TestOpenCLIPOtherFamilies: state dicts of other families are rejected
// by name before the CLIP keys are looked for.
func TestOpenCLIPOtherFamilies(t *testing.T) {
	for names, want := range map[string]string{
		"text.transformer.embeddings.word_embeddings.weight": "CustomTextCLIP",
		"visual.trunk.patch_embed.proj.weight":               "timm image tower",
		"vision_model.embeddings.patch_embedding.weight":     "Hugging Face transformers CLIPModel",
		"logit_bias": "SigLIP",
		"visual.transformer.resblocks.0.ls_1.gamma":    "layer scale",
		"text_decoder.resblocks.0.attn.in_proj_weight": "CoCa",
	} {
		err := openclip.DetectFamily([]string{"logit_scale", names})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), names) {
			t.Errorf("%s: error %v, want the family %q and the name", names, err, want)
		}
	}
	if err := openclip.DetectFamily([]string{"visual.proj", "text_projection", "logit_scale"}); err != nil {
		t.Errorf("standard names: %v", err)
	}
}

// TestOpenAIPreprocessingByDefault: OpenAI's archives keep the zero
// (CLIP) preprocessing.
func TestOpenAIPreprocessingByDefault(t *testing.T) {
	m := loadModel(t, "testdata/vit.pt")
	if !m.Preprocessing().IsCLIP() || m.Preprocessing() != (preprocess.Config{}) {
		t.Errorf("preprocessing %v", m.Preprocessing())
	}
}
