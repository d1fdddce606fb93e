package clip

import (
	"fmt"

	"github.com/clipadapter/clipgo/clip/openclip"
	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/nn"
)

// WithOpenCLIPConfig makes Load and ReadConfig read OpenCLIP's
// configuration (an open_clip_config.json, or a bare model config as in
// OpenCLIP's model_configs) from path instead of looking for one next to
// the checkpoint.
func WithOpenCLIPConfig(path string) Option {
	return func(o *options) { o.openclipConfig = path }
}

// WithArchitecture makes Load and ReadConfig use the configuration of a
// standard OpenCLIP architecture ("ViT-B-32", "ViT-B-32-quickgelu",
// "ViT-H-14", ...; see openclip.Archs) with OpenCLIP's default
// preprocessing, for a checkpoint that has no open_clip_config.json.
func WithArchitecture(name string) Option {
	return func(o *options) { o.arch = name }
}

// findOpenCLIPConfig returns the OpenCLIP configuration that applies to the
// checkpoint at path and where it came from, or nil when there is none.
func findOpenCLIPConfig(path string, src source, o options) (*openclip.File, string, error) {
	switch {
	case o.openclipConfig != "":
		f, err := openclip.ReadFile(o.openclipConfig)
		if err != nil {
			return nil, "", err
		}
		return &f, o.openclipConfig, nil
	case o.arch != "":
		m, ok := openclip.Arch(o.arch)
		if !ok {
			return nil, "", fmt.Errorf("unknown OpenCLIP architecture %q (the standard ones: %v)", o.arch, openclip.Archs())
		}
		return &openclip.File{Model: m, Preprocess: openclip.OpenAIPreprocess()}, "OpenCLIP architecture " + o.arch, nil
	case isTorchScript(src):
		return nil, "", nil
	}
	p := configBeside(path, openclip.ConfigFileName)
	if p == "" {
		return nil, "", nil
	}
	f, err := openclip.ReadFile(p)
	if err != nil {
		return nil, "", err
	}
	return &f, p, nil
}

// applyOpenCLIP checks the OpenCLIP model config against the configuration
// inferred from the weights and adds what the weights do not say: the
// activation, the image tower's head width and the text head count.
func applyOpenCLIP(c Config, m openclip.ModelConfig) (Config, error) {
	v, t := m.Vision, m.Text
	visionMLP, textMLP := c.mlpWidths()
	checks := []struct {
		name      string
		got, want any
	}{
		{"embed_dim", m.EmbedDim, c.EmbedDim},
		{"vision_cfg.image_size", v.ImageSize, c.ImageResolution},
		{"vision_cfg.layers", fmt.Sprint(v.Layers), fmt.Sprint(c.VisionLayers)},
		{"vision_cfg.width", v.Width, c.VisionWidth},
		{"vision_cfg.patch_size", v.PatchSize, c.VisionPatchSize},
		{"text_cfg.context_length", t.ContextLength, c.ContextLength},
		{"text_cfg.vocab_size", t.VocabSize, c.VocabSize},
		{"text_cfg.width", t.Width, c.TransformerWidth},
		{"text_cfg.layers", t.Layers, c.TransformerLayers},
		{"text_cfg.mlp_ratio (hidden width)", t.MLPWidth(), textMLP},
	}
	if c.IsViT() {
		checks = append(checks, struct {
			name      string
			got, want any
		}{"vision_cfg.mlp_ratio (hidden width)", v.MLPWidth(), visionMLP})
	}
	for _, k := range checks {
		if k.got != k.want {
			return Config{}, fmt.Errorf("%s is %v, the weights have %v", k.name, k.got, k.want)
		}
	}
	if v.HeadWidth <= 0 || t.Heads <= 0 || t.Width%t.Heads != 0 {
		return Config{}, fmt.Errorf("head width %d / text heads %d do not divide the widths", v.HeadWidth, t.Heads)
	}
	c.VisionHeadWidth = 0
	if v.HeadWidth != 64 {
		c.VisionHeadWidth = v.HeadWidth
	}
	c.TransformerHeads = t.Heads
	c.Activation = nn.ActGELU
	if m.QuickGELU {
		c.Activation = nn.ActQuickGELU
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ReadPreprocessing returns the image preprocessing of the checkpoint at
// path, as Load would set it (see Model.Preprocessing), without reading
// its weights.
func ReadPreprocessing(path string, opts ...Option) (preprocess.Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	src, err := openSource(path)
	if err != nil {
		return preprocess.Config{}, fmt.Errorf("clip: %w", err)
	}
	defer src.close()
	_, _, pre, err := sourceConfig(src, path, o)
	return pre, err
}

// OpenCLIPPreprocessing converts OpenCLIP's preprocess_cfg to the
// transform's configuration.
func OpenCLIPPreprocessing(p openclip.PreprocessConfig) (preprocess.Config, error) {
	if err := p.Check(); err != nil {
		return preprocess.Config{}, err
	}
	var c preprocess.Config
	for i := range 3 {
		c.Mean[i], c.Std[i] = float32(p.Mean[i]), float32(p.Std[i])
	}
	switch p.Interpolation {
	case "bilinear":
		c.Interpolation = preprocess.Bilinear
	default:
		c.Interpolation = preprocess.Bicubic
	}
	switch p.ResizeMode {
	case "longest":
		c.ResizeMode = preprocess.ResizeLongest
	case "squash":
		c.ResizeMode = preprocess.ResizeSquash
	default:
		c.ResizeMode = preprocess.ResizeShortest
	}
	return c, nil
}

// Preprocessing returns how images must be prepared for the model: the
// checkpoint's OpenCLIP preprocessing, or OpenAI's (the zero
// preprocess.Config) for OpenAI's checkpoints and models built by New.
func (m *Model) Preprocessing() preprocess.Config { return m.preprocess }
