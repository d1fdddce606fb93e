package openclip

import (
	"fmt"
	"strings"
)

type archEntry struct {
	name string
	cfg  ModelConfig
}

// Arch returns the model config of a standard OpenCLIP architecture
// ("ViT-B-32", "ViT-B-32-quickgelu", "RN50", "ViT-H-14", ...; the names of
// OpenCLIP's model_configs, compared case-insensitively).
func Arch(name string) (ModelConfig, bool) {
	for _, a := range archTable() {
		if strings.EqualFold(a.name, name) {
			return a.cfg, true
		}
	}
	return ModelConfig{}, false
}

// Archs returns the names of the standard architectures, in table order.
func Archs() []string {
	t := archTable()
	names := make([]string, len(t))
	for i, a := range t {
		names[i] = a.name
	}
	return names
}

// Tag is one of OpenCLIP's pretrained checkpoints of a standard
// architecture.
type Tag struct {
	// Arch is the architecture ("ViT-B-32").
	Arch string
	// Tag is the pretraining tag ("laion2b_s34b_b79k").
	Tag string
	// HFRepo is the Hugging Face repository holding the weights
	// ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K").
	HFRepo string
	// QuickGELU reports whether the model was trained with QuickGELU (the
	// tag's or the architecture's setting).
	QuickGELU bool
	// Preprocess is the tag's preprocessing.
	Preprocess PreprocessConfig
}

// Name returns "<arch>/<tag>", the model name this toolkit accepts.
func (t Tag) Name() string { return t.Arch + "/" + t.Tag }

// Config returns the open_clip_config.json that describes the tag's
// checkpoint: the architecture's model config with the tag's activation,
// and the tag's preprocessing.
func (t Tag) Config() (File, error) {
	m, ok := Arch(t.Arch)
	if !ok {
		return File{}, fmt.Errorf("openclip tag %s: unknown architecture %q", t.Name(), t.Arch)
	}
	m.QuickGELU = t.QuickGELU
	return File{Model: m, Preprocess: t.Preprocess}, nil
}

// Tags returns the pretrained tags of the standard architectures (the
// "openai" tags excepted: they are OpenAI's own checkpoints), in
// OpenCLIP's order.
func Tags() []Tag { return tagTable() }

// LookupTag finds the tag called "<arch>/<tag>" (case-insensitive).
func LookupTag(name string) (Tag, bool) {
	for _, t := range tagTable() {
		if strings.EqualFold(t.Name(), name) {
			return t, true
		}
	}
	return Tag{}, false
}

// OpenAIArch maps the standard OpenCLIP architectures whose "openai" tag
// is one of OpenAI's released checkpoints to OpenAI's model name
// ("ViT-B-32" and "ViT-B-32-quickgelu" → "ViT-B/32").
func OpenAIArch(arch string) (string, bool) {
	base := strings.TrimSuffix(arch, "-quickgelu")
	m := map[string]string{
		"RN50": "RN50", "RN101": "RN101", "RN50x4": "RN50x4", "RN50x16": "RN50x16", "RN50x64": "RN50x64",
		"ViT-B-32": "ViT-B/32", "ViT-B-16": "ViT-B/16", "ViT-L-14": "ViT-L/14", "ViT-L-14-336": "ViT-L/14@336px",
	}
	for k, v := range m {
		if strings.EqualFold(k, base) {
			return v, true
		}
	}
	return "", false
}
