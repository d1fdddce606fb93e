// Package openclip describes OpenCLIP checkpoints of the standard CLIP
// architectures: their configuration file (open_clip_config.json), the
// named architectures (ViT-B-32, ViT-H-14-quickgelu, ...) and the
// pretrained tags (ViT-B-32/laion2b_s34b_b79k, ...) with the Hugging Face
// repositories that publish them. It has no cgo; package clip loads the
// weights and package weights downloads them.
//
// These models use OpenAI's parameter names, so the weights load into the
// same network; what the weights do not say is in the configuration: the
// MLP activation (exact GELU for most OpenCLIP models, QuickGELU for
// OpenAI's and the "-quickgelu" ones), the head width of the image tower,
// and the preprocessing (mean, std, interpolation, resize mode). Other
// model families that OpenCLIP supports (timm or Hugging Face towers, CoCa,
// SigLIP, CLIPA, EVA, layer scale, ...) are rejected with an
// *UnsupportedError naming the family (docs/models.md §7).
package openclip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

// ConfigFileName is the name OpenCLIP gives the configuration stored next
// to a checkpoint (in its Hugging Face repositories).
const ConfigFileName = "open_clip_config.json"

// File is the content of an open_clip_config.json.
type File struct {
	Model      ModelConfig      `json:"model_cfg"`
	Preprocess PreprocessConfig `json:"preprocess_cfg"`
}

// ModelConfig is OpenCLIP's model_cfg for a standard CLIP model.
type ModelConfig struct {
	EmbedDim  int          `json:"embed_dim"`
	QuickGELU bool         `json:"quick_gelu"`
	Vision    VisionConfig `json:"vision_cfg"`
	Text      TextConfig   `json:"text_cfg"`
}

// VisionConfig is OpenCLIP's vision_cfg for a ViT or a ModifiedResNet.
type VisionConfig struct {
	// ImageSize is the side of the square input.
	ImageSize int
	// Layers has one element (the ViT depth) or four (ResNet stages).
	Layers []int
	Width  int
	// HeadWidth is the width of an attention head (OpenCLIP's default 64).
	HeadWidth int
	// MLPRatio is the ViT MLP's hidden width over its width (default 4).
	MLPRatio float64
	// PatchSize is the ViT patch size; 0 for a ResNet.
	PatchSize int
}

// TextConfig is OpenCLIP's text_cfg for the standard text transformer.
type TextConfig struct {
	ContextLength int     `json:"context_length"`
	VocabSize     int     `json:"vocab_size"`
	Width         int     `json:"width"`
	Heads         int     `json:"heads"`
	Layers        int     `json:"layers"`
	MLPRatio      float64 `json:"mlp_ratio"`
}

// PreprocessConfig is OpenCLIP's preprocess_cfg: how images are turned
// into the model's input at test time.
type PreprocessConfig struct {
	Mean [3]float64 `json:"mean"`
	Std  [3]float64 `json:"std"`
	// Interpolation is "bicubic" or "bilinear".
	Interpolation string `json:"interpolation"`
	// ResizeMode is "shortest" (resize the shorter side, center crop),
	// "longest" (resize the longer side, pad) or "squash" (resize both
	// sides, ignoring the aspect ratio).
	ResizeMode string `json:"resize_mode"`
}

// OpenAIPreprocess is the preprocessing of OpenAI's models and OpenCLIP's
// default: OpenAI's mean and std, bicubic, shortest side.
func OpenAIPreprocess() PreprocessConfig {
	return PreprocessConfig{
		Mean:          [3]float64{0.48145466, 0.4578275, 0.40821073},
		Std:           [3]float64{0.26862954, 0.26130258, 0.27577711},
		Interpolation: "bicubic",
		ResizeMode:    "shortest",
	}
}

// MLPWidth returns the hidden width of the ViT's MLP, computed as OpenCLIP
// does: int(width × mlp_ratio).
func (v VisionConfig) MLPWidth() int { return int(float64(v.Width) * v.MLPRatio) }

// MLPWidth returns the hidden width of the text MLP: int(width × mlp_ratio).
func (t TextConfig) MLPWidth() int { return int(float64(t.Width) * t.MLPRatio) }

// UnsupportedError reports a checkpoint or configuration of an OpenCLIP
// model family this toolkit does not implement.
type UnsupportedError struct {
	// Family names the model family ("timm image tower", "SigLIP", ...).
	Family string
	// Evidence is what gave it away (a parameter name or config key).
	Evidence string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s is not supported (%s); only OpenCLIP's standard CLIP architectures (OpenAI's parameter names: ViT or ModifiedResNet image tower, causal text transformer) load", e.Family, e.Evidence)
}

// keyRule says how a config key outside the standard ones is treated: a
// value equal to one of ok is harmless; any other value means family.
type keyRule struct {
	ok     []string // JSON encodings of harmless values
	family string
}

// extraKeys lists the model_cfg, vision_cfg and text_cfg keys of OpenCLIP
// configs beyond the standard sizes.
var extraKeys = map[string]map[string]keyRule{
	"model": {
		"custom_text":           {[]string{"false"}, "CustomTextCLIP (a separate text tower under text.*)"},
		"multimodal_cfg":        {[]string{"null", "{}"}, "CoCa (multimodal text decoder)"},
		"init_logit_bias":       {[]string{"null"}, "SigLIP (sigmoid loss with a logit_bias)"},
		"init_logit_scale":      {nil, ""}, // initialisation only
		"cast_dtype":            {nil, ""},
		"nonscalar_logit_scale": {[]string{"false"}, "non-scalar logit scale"},
	},
	"vision": {
		"timm_model_name":       {[]string{"null", `""`}, "timm image tower (visual.trunk.*)"},
		"timm_model_pretrained": {nil, ""},
		"timm_pool":             {nil, ""},
		"timm_proj":             {nil, ""},
		"timm_proj_bias":        {nil, ""},
		"timm_drop":             {nil, ""},
		"timm_drop_path":        {nil, ""},
		"eva_model_name":        {[]string{"null"}, "EVA image tower"},
		"ls_init_value":         {[]string{"null"}, "layer scale (ls_init_value)"},
		"patch_dropout":         {nil, ""}, // training only
		"attentional_pool":      {[]string{"false"}, "attentional pooler (attentional_pool)"},
		"attn_pooler_queries":   {nil, ""},
		"attn_pooler_heads":     {nil, ""},
		"no_ln_pre":             {[]string{"false"}, "ViT without ln_pre (CLIPA-style, no_ln_pre)"},
		"pos_embed_type":        {[]string{`"learnable"`}, "ViT with a non-learned position embedding"},
		"final_ln_after_pool":   {[]string{"false"}, "ViT with final_ln_after_pool"},
		"pool_type":             {[]string{`"tok"`}, "ViT with a non-token pooling (pool_type)"},
		"output_tokens":         {nil, ""},
		"act_kwargs":            {[]string{"null", "{}"}, "custom activation arguments (act_kwargs)"},
		"norm_kwargs":           {[]string{"null", "{}"}, "custom norm arguments (norm_kwargs)"},
		"input_patchnorm":       {[]string{"false"}, "input patch norm"},
		"global_average_pool":   {[]string{"false"}, "ViT with global average pooling"},
		"image_mean":            {nil, ""}, // preprocessing, read separately
		"image_std":             {nil, ""},
		"interpolation":         {nil, ""},
		"resize_mode":           {nil, ""},
		"fill_color":            {[]string{"0"}, "padding with a non-black fill colour"},
	},
	"text": {
		"hf_model_name":       {[]string{"null", `""`}, "Hugging Face text tower (hf_model_name)"},
		"hf_model_pretrained": {nil, ""},
		"hf_tokenizer_name":   {[]string{"null", `""`}, "a tokenizer other than CLIP's BPE (hf_tokenizer_name)"},
		"hf_proj_type":        {nil, ""},
		"hf_pooler_type":      {nil, ""},
		"tokenizer_kwargs":    {[]string{"null", "{}"}, "a tokenizer other than CLIP's BPE (tokenizer_kwargs)"},
		"pool_type":           {[]string{`"argmax"`}, "text tower with a non-argmax pooling (pool_type)"},
		"proj_type":           {[]string{`"linear"`}, "text tower with a non-linear projection (proj_type)"},
		"proj_bias":           {[]string{"false"}, "text projection with a bias (proj_bias)"},
		"embed_cls":           {[]string{"false"}, "text tower with a CLS embedding (embed_cls)"},
		"no_causal_mask":      {[]string{"false"}, "text tower without the causal mask (no_causal_mask)"},
		"pad_id":              {[]string{"0"}, "text tower with a non-zero pad id (pad_id)"},
		"eos_id":              {nil, ""}, // only read by the eos pooling, rejected above
		"ls_init_value":       {[]string{"null"}, "layer scale (ls_init_value)"},
		"output_tokens":       {nil, ""},
		"act_kwargs":          {[]string{"null", "{}"}, "custom activation arguments (act_kwargs)"},
		"norm_kwargs":         {[]string{"null", "{}"}, "custom norm arguments (norm_kwargs)"},
		"attn_mask":           {[]string{"true"}, "text tower without the causal mask (attn_mask)"},
	},
}

// checkKeys returns an *UnsupportedError for the first key of m (in sorted
// order) that is neither standard nor harmless.
func checkKeys(section string, m map[string]json.RawMessage, standard []string) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(standard, k) {
			continue
		}
		rule, ok := extraKeys[section][k]
		if !ok {
			return &UnsupportedError{Family: "an OpenCLIP model with unknown config key " + section + "_cfg." + k, Evidence: fmt.Sprintf("%s = %s", k, compact(m[k]))}
		}
		if rule.family == "" {
			continue
		}
		v := compact(m[k])
		if !slices.Contains(rule.ok, v) {
			name := section + "_cfg." + k
			if section == "model" {
				name = k
			}
			return &UnsupportedError{Family: rule.family, Evidence: fmt.Sprintf("config %s = %s", name, v)}
		}
	}
	return nil
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// ReadFile reads and checks an open_clip_config.json.
func ReadFile(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("openclip config: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return File{}, fmt.Errorf("openclip config %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes an open_clip_config.json (or a bare model config, as in
// OpenCLIP's model_configs/*.json) and checks that it describes a standard
// CLIP model. Missing preprocessing fields take OpenCLIP's defaults
// (OpenAIPreprocess), after the vision config's own image_mean, image_std,
// interpolation and resize_mode where it has them.
func Parse(data []byte) (File, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return File{}, fmt.Errorf("not a JSON object: %w", err)
	}
	modelRaw, ok := top["model_cfg"]
	if !ok {
		modelRaw = data // a bare model config
		top = map[string]json.RawMessage{}
	}
	model, err := parseModel(modelRaw)
	if err != nil {
		return File{}, err
	}
	f := File{Model: model.cfg, Preprocess: OpenAIPreprocess()}
	// The vision config's preprocessing keys, then preprocess_cfg.
	if err := mergePreprocess(&f.Preprocess, model.vision, map[string]string{
		"image_mean": "mean", "image_std": "std", "interpolation": "interpolation", "resize_mode": "resize_mode",
	}); err != nil {
		return File{}, fmt.Errorf("vision_cfg: %w", err)
	}
	if raw, ok := top["preprocess_cfg"]; ok && compact(raw) != "null" {
		var pp map[string]json.RawMessage
		if err := json.Unmarshal(raw, &pp); err != nil {
			return File{}, fmt.Errorf("preprocess_cfg: %w", err)
		}
		if err := mergePreprocess(&f.Preprocess, pp, map[string]string{
			"mean": "mean", "std": "std", "interpolation": "interpolation", "resize_mode": "resize_mode",
		}); err != nil {
			return File{}, fmt.Errorf("preprocess_cfg: %w", err)
		}
		if v, ok := pp["fill_color"]; ok && compact(v) != "0" {
			return File{}, &UnsupportedError{Family: "padding with a non-black fill colour", Evidence: "preprocess_cfg.fill_color = " + compact(v)}
		}
	}
	if err := f.Preprocess.Check(); err != nil {
		return File{}, err
	}
	return f, nil
}

// Check reports preprocessing this toolkit cannot reproduce.
func (p PreprocessConfig) Check() error {
	switch p.Interpolation {
	case "bicubic", "bilinear":
	default:
		return fmt.Errorf("preprocess interpolation %q is not supported (want bicubic or bilinear)", p.Interpolation)
	}
	switch p.ResizeMode {
	case "shortest", "longest", "squash":
	default:
		return fmt.Errorf("preprocess resize_mode %q is not supported (want shortest, longest or squash)", p.ResizeMode)
	}
	for c := range 3 {
		if !(p.Std[c] > 0) {
			return fmt.Errorf("preprocess std %v must be positive", p.Std)
		}
	}
	return nil
}

// mergePreprocess sets the fields of p named by keys (config key → field)
// that m has and that are not null.
func mergePreprocess(p *PreprocessConfig, m map[string]json.RawMessage, keys map[string]string) error {
	for key, field := range keys {
		raw, ok := m[key]
		if !ok || compact(raw) == "null" {
			continue
		}
		var err error
		switch field {
		case "mean":
			p.Mean, err = triple(raw)
		case "std":
			p.Std, err = triple(raw)
		case "interpolation":
			err = json.Unmarshal(raw, &p.Interpolation)
		case "resize_mode":
			err = json.Unmarshal(raw, &p.ResizeMode)
		}
		if err != nil {
			return fmt.Errorf("%s = %s: %w", key, compact(raw), err)
		}
	}
	return nil
}

// triple decodes three numbers, or one number used for all channels.
func triple(raw json.RawMessage) ([3]float64, error) {
	var one float64
	if err := json.Unmarshal(raw, &one); err == nil {
		return [3]float64{one, one, one}, nil
	}
	var v []float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return [3]float64{}, err
	}
	if len(v) != 3 {
		return [3]float64{}, fmt.Errorf("want 3 values, got %d", len(v))
	}
	return [3]float64{v[0], v[1], v[2]}, nil
}

type parsedModel struct {
	cfg    ModelConfig
	vision map[string]json.RawMessage
}

func parseModel(raw json.RawMessage) (parsedModel, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return parsedModel{}, fmt.Errorf("model_cfg: %w", err)
	}
	if err := checkKeys("model", top, []string{"embed_dim", "quick_gelu", "vision_cfg", "text_cfg"}); err != nil {
		return parsedModel{}, err
	}
	var p parsedModel
	var errs []string
	need := func(m map[string]json.RawMessage, section, key string, dst any) {
		v, ok := m[key]
		if !ok || compact(v) == "null" {
			errs = append(errs, section+key+" is missing")
			return
		}
		if err := json.Unmarshal(v, dst); err != nil {
			errs = append(errs, fmt.Sprintf("%s%s = %s: %v", section, key, compact(v), err))
		}
	}
	optional := func(m map[string]json.RawMessage, section, key string, dst any) {
		if v, ok := m[key]; ok && compact(v) != "null" {
			if err := json.Unmarshal(v, dst); err != nil {
				errs = append(errs, fmt.Sprintf("%s%s = %s: %v", section, key, compact(v), err))
			}
		}
	}
	need(top, "", "embed_dim", &p.cfg.EmbedDim)
	optional(top, "", "quick_gelu", &p.cfg.QuickGELU)

	var vision, text map[string]json.RawMessage
	need(top, "", "vision_cfg", &vision)
	need(top, "", "text_cfg", &text)
	if len(errs) > 0 {
		return parsedModel{}, fmt.Errorf("model_cfg: %s", strings.Join(errs, "; "))
	}
	if _, ok := text["hf_model_name"]; ok {
		// Checked before the sizes: a Hugging Face tower has none.
		if err := checkKeys("text", map[string]json.RawMessage{"hf_model_name": text["hf_model_name"]}, nil); err != nil {
			return parsedModel{}, err
		}
	}
	if err := checkKeys("vision", vision, []string{"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size"}); err != nil {
		return parsedModel{}, err
	}
	if err := checkKeys("text", text, []string{"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}); err != nil {
		return parsedModel{}, err
	}
	v := &p.cfg.Vision
	v.HeadWidth, v.MLPRatio = 64, 4
	var size json.RawMessage
	need(vision, "vision_cfg.", "image_size", &size)
	if size != nil {
		var one int
		var two []int
		switch {
		case json.Unmarshal(size, &one) == nil:
			v.ImageSize = one
		case json.Unmarshal(size, &two) == nil && len(two) == 2 && two[0] == two[1]:
			v.ImageSize = two[0]
		default:
			errs = append(errs, fmt.Sprintf("vision_cfg.image_size = %s: want one size (square input)", compact(size)))
		}
	}
	var layers json.RawMessage
	need(vision, "vision_cfg.", "layers", &layers)
	if layers != nil {
		var one int
		switch {
		case json.Unmarshal(layers, &one) == nil:
			v.Layers = []int{one}
		case json.Unmarshal(layers, &v.Layers) == nil && len(v.Layers) == 4:
		default:
			errs = append(errs, fmt.Sprintf("vision_cfg.layers = %s: want a ViT depth or four ResNet stage depths", compact(layers)))
		}
	}
	need(vision, "vision_cfg.", "width", &v.Width)
	optional(vision, "vision_cfg.", "head_width", &v.HeadWidth)
	optional(vision, "vision_cfg.", "mlp_ratio", &v.MLPRatio)
	optional(vision, "vision_cfg.", "patch_size", &v.PatchSize)
	if len(v.Layers) == 1 && v.PatchSize == 0 {
		errs = append(errs, "vision_cfg.patch_size is missing for a ViT")
	}
	t := &p.cfg.Text
	t.ContextLength, t.VocabSize, t.MLPRatio = 77, 49408, 4
	optional(text, "text_cfg.", "context_length", &t.ContextLength)
	optional(text, "text_cfg.", "vocab_size", &t.VocabSize)
	need(text, "text_cfg.", "width", &t.Width)
	need(text, "text_cfg.", "heads", &t.Heads)
	need(text, "text_cfg.", "layers", &t.Layers)
	optional(text, "text_cfg.", "mlp_ratio", &t.MLPRatio)
	if len(errs) > 0 {
		return parsedModel{}, fmt.Errorf("model_cfg: %s", strings.Join(errs, "; "))
	}
	p.vision = vision
	return p, nil
}

// MarshalJSON writes the config with OpenCLIP's keys: layers as a number
// for a ViT and a list for a ResNet, patch_size null for a ResNet.
func (v VisionConfig) MarshalJSON() ([]byte, error) {
	m := map[string]any{"image_size": v.ImageSize, "width": v.Width, "head_width": v.HeadWidth, "mlp_ratio": v.MLPRatio}
	if len(v.Layers) == 1 {
		m["layers"] = v.Layers[0]
		m["patch_size"] = v.PatchSize
	} else {
		m["layers"] = v.Layers
		m["patch_size"] = nil
	}
	return json.Marshal(m)
}

// Marshal returns the file as OpenCLIP writes it (indented JSON).
func (f File) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// stateDictFamilies maps tell-tale parameter names to the model family
// they belong to.
var stateDictFamilies = []struct {
	match  func(string) bool
	family string
}{
	{func(n string) bool { return strings.HasPrefix(n, "text.") }, "CustomTextCLIP (a separate text tower under text.*: Hugging Face or custom text encoders)"},
	{func(n string) bool { return strings.HasPrefix(n, "visual.trunk.") }, "timm image tower (visual.trunk.*)"},
	{func(n string) bool {
		return strings.HasPrefix(n, "vision_model.") || strings.HasPrefix(n, "text_model.")
	},
		"Hugging Face transformers CLIPModel layout (vision_model.*, text_model.*)"},
	{func(n string) bool { return n == "logit_bias" }, "SigLIP (sigmoid loss with a logit_bias)"},
	{func(n string) bool { return strings.HasPrefix(n, "text_decoder.") }, "CoCa (multimodal text decoder)"},
	{func(n string) bool { return strings.HasPrefix(n, "visual.attn_pool.") }, "attentional pooler (visual.attn_pool.*)"},
	{func(n string) bool { return strings.HasSuffix(n, ".ls_1.gamma") || strings.HasSuffix(n, ".ls_2.gamma") }, "layer scale (*.ls_1.gamma)"},
	{func(n string) bool { return strings.HasPrefix(n, "visual.blocks.") }, "EVA or timm-style ViT (visual.blocks.*)"},
	{func(n string) bool {
		return strings.HasPrefix(n, "visual.stem.") || strings.HasPrefix(n, "visual.stages.")
	},
		"convolutional timm tower (visual.stem.*, visual.stages.*)"},
}

// DetectFamily returns an *UnsupportedError when the parameter names
// belong to a model family other than the standard CLIP architectures,
// and nil otherwise (which does not guarantee that the names are CLIP's).
func DetectFamily(names []string) error {
	sorted := slices.Clone(names)
	sort.Strings(sorted)
	for _, f := range stateDictFamilies {
		for _, n := range sorted {
			if f.match(n) {
				return &UnsupportedError{Family: f.family, Evidence: fmt.Sprintf("parameter %q", n)}
			}
		}
	}
	return nil
}
