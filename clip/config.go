package clip

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/clipadapter/clipgo/nn"
)

// Config holds the hyper-parameters of a CLIP model. InferConfig reads them
// from a state dict's shapes the way OpenAI's build_model does, so every
// released model loads without per-model code.
type Config struct {
	// EmbedDim is the size of the joint image-text embedding (D).
	EmbedDim int
	// ImageResolution is the input image side in pixels.
	ImageResolution int
	// VisionLayers has one element for a vision transformer (its depth) and
	// four for a ModifiedResNet (the number of blocks in each stage).
	VisionLayers []int
	// VisionWidth is the ViT width, or the ResNet stem width.
	VisionWidth int
	// VisionPatchSize is the ViT patch size; 0 for a ResNet.
	VisionPatchSize int
	// ContextLength is the number of text tokens (77).
	ContextLength int
	// VocabSize is the number of token embeddings (49408).
	VocabSize int
	// TransformerWidth, TransformerHeads and TransformerLayers describe the
	// text transformer.
	TransformerWidth  int
	TransformerHeads  int
	TransformerLayers int
	// VisionHeadWidth is the width of one attention head of the image
	// tower (the ViT's, or the ResNet's attention pool); 0 means 64, as in
	// OpenAI's models. OpenCLIP's ViT-H-14 uses 80.
	VisionHeadWidth int
	// VisionMLPWidth and TextMLPWidth are the hidden widths of the
	// transformer MLPs; 0 means 4× the tower's width (OpenAI's models;
	// OpenCLIP's ViT-g-14 and ViT-bigG-14 use other ratios).
	VisionMLPWidth int
	TextMLPWidth   int
	// Activation is the transformer MLPs' nonlinearity: nn.ActQuickGELU
	// (the zero value; OpenAI's models) or nn.ActGELU (most OpenCLIP
	// models). The weights do not say which; OpenCLIP's config does.
	Activation nn.Activation
}

// visionHeadWidth returns VisionHeadWidth or its default, 64.
func (c Config) visionHeadWidth() int {
	if c.VisionHeadWidth > 0 {
		return c.VisionHeadWidth
	}
	return 64
}

// mlpWidths returns the hidden widths of the vision (ViT) and text MLPs,
// with 0 meaning 4× the width.
func (c Config) mlpWidths() (vision, text int) {
	vision, text = c.VisionMLPWidth, c.TextMLPWidth
	if vision == 0 {
		vision = 4 * c.VisionWidth
	}
	if text == 0 {
		text = 4 * c.TransformerWidth
	}
	return vision, text
}

// IsViT reports whether the image tower is a vision transformer (otherwise
// it is a ModifiedResNet).
func (c Config) IsViT() bool { return len(c.VisionLayers) == 1 }

// VisionHeads returns the head count of the image tower's attention:
// width/h for a ViT, 32·width/h for the ResNet's attention pool, where h is
// the head width (64 unless VisionHeadWidth says otherwise).
func (c Config) VisionHeads() int {
	if c.IsViT() {
		return c.VisionWidth / c.visionHeadWidth()
	}
	return c.VisionWidth * 32 / c.visionHeadWidth()
}

func (c Config) String() string {
	tower := fmt.Sprintf("ModifiedResNet (%v, width %d)", c.VisionLayers, c.VisionWidth)
	if c.IsViT() {
		tower = fmt.Sprintf("ViT (%d layers, width %d, patch %d)", c.VisionLayers[0], c.VisionWidth, c.VisionPatchSize)
	}
	s := fmt.Sprintf("CLIP %s, input %d, embed %d, text %d/%d/%d, context %d, vocab %d",
		tower, c.ImageResolution, c.EmbedDim, c.TransformerWidth, c.TransformerHeads, c.TransformerLayers,
		c.ContextLength, c.VocabSize)
	if c.VisionHeadWidth > 0 && c.VisionHeadWidth != 64 {
		s += fmt.Sprintf(", vision head width %d", c.VisionHeadWidth)
	}
	if v, t := c.mlpWidths(); v != 4*c.VisionWidth || t != 4*c.TransformerWidth {
		s += fmt.Sprintf(", MLP %d/%d", v, t)
	}
	if c.Activation != nn.ActQuickGELU {
		s += ", " + c.Activation.String()
	}
	return s
}

// Validate checks that the hyper-parameters describe a buildable model.
func (c Config) Validate() error {
	pos := map[string]int{
		"EmbedDim": c.EmbedDim, "ImageResolution": c.ImageResolution, "VisionWidth": c.VisionWidth,
		"ContextLength": c.ContextLength, "VocabSize": c.VocabSize, "TransformerWidth": c.TransformerWidth,
		"TransformerHeads": c.TransformerHeads, "TransformerLayers": c.TransformerLayers,
	}
	names := make([]string, 0, len(pos))
	for k := range pos {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if pos[k] <= 0 {
			return fmt.Errorf("clip config: %s = %d, want > 0", k, pos[k])
		}
	}
	if c.TransformerWidth%c.TransformerHeads != 0 {
		return fmt.Errorf("clip config: text width %d is not divisible by %d heads", c.TransformerWidth, c.TransformerHeads)
	}
	if c.VisionHeadWidth < 0 || c.VisionMLPWidth < 0 || c.TextMLPWidth < 0 {
		return fmt.Errorf("clip config: negative head or MLP width (%d, %d, %d)", c.VisionHeadWidth, c.VisionMLPWidth, c.TextMLPWidth)
	}
	if c.Activation != nn.ActQuickGELU && c.Activation != nn.ActGELU {
		return fmt.Errorf("clip config: unknown activation %v", c.Activation)
	}
	switch len(c.VisionLayers) {
	case 1:
		if c.VisionLayers[0] <= 0 {
			return fmt.Errorf("clip config: %d vision layers, want > 0", c.VisionLayers[0])
		}
		if c.VisionPatchSize <= 0 || c.ImageResolution%c.VisionPatchSize != 0 {
			return fmt.Errorf("clip config: ViT patch size %d does not divide resolution %d", c.VisionPatchSize, c.ImageResolution)
		}
		if hw := c.visionHeadWidth(); c.VisionWidth%hw != 0 {
			return fmt.Errorf("clip config: ViT width %d is not a multiple of the head width %d", c.VisionWidth, hw)
		}
	case 4:
		for i, n := range c.VisionLayers {
			if n <= 0 {
				return fmt.Errorf("clip config: ResNet stage %d has %d blocks, want > 0", i+1, n)
			}
		}
		if c.VisionPatchSize != 0 {
			return fmt.Errorf("clip config: a ResNet has no patch size (got %d)", c.VisionPatchSize)
		}
		if hw := c.visionHeadWidth(); (32*c.VisionWidth)%hw != 0 {
			return fmt.Errorf("clip config: ResNet attention pool width %d is not a multiple of the head width %d", 32*c.VisionWidth, hw)
		}
		if c.VisionWidth%2 != 0 {
			return fmt.Errorf("clip config: ResNet width %d is odd (the stem uses width/2)", c.VisionWidth)
		}
		if c.ImageResolution%32 != 0 {
			return fmt.Errorf("clip config: ResNet resolution %d is not a multiple of 32", c.ImageResolution)
		}
	default:
		return fmt.Errorf("clip config: %d vision layer counts, want 1 (ViT) or 4 (ResNet)", len(c.VisionLayers))
	}
	return nil
}

// InferConfig derives the hyper-parameters from a state dict's tensor shapes
// exactly as OpenAI's build_model does (docs/models.md §2): a ViT iff visual.proj
// exists; widths, patch size, vocabulary and context from the shapes of
// specific tensors; depths from the number of distinct block indices.
func InferConfig(shapes map[string][]int64) (Config, error) {
	get := func(name string, dims int) ([]int64, error) {
		s, ok := shapes[name]
		if !ok {
			return nil, fmt.Errorf("not a CLIP state dict: no %q", name)
		}
		if len(s) != dims {
			return nil, fmt.Errorf("%q has shape %v, want %d dimensions", name, s, dims)
		}
		return s, nil
	}
	var c Config
	var errs []error
	must := func(s []int64, err error) []int64 {
		if err != nil {
			errs = append(errs, err)
			return make([]int64, 4)
		}
		return s
	}
	proj := must(get("text_projection", 2))
	pos := must(get("positional_embedding", 2))
	tok := must(get("token_embedding.weight", 2))
	lnf := must(get("ln_final.weight", 1))
	c.EmbedDim = int(proj[1])
	c.ContextLength = int(pos[0])
	c.VocabSize = int(tok[0])
	c.TransformerWidth = int(lnf[0])
	c.TransformerHeads = c.TransformerWidth / 64
	c.TransformerLayers = countBlocks(shapes, "transformer.resblocks.")
	if fc, ok := shapes["transformer.resblocks.0.mlp.c_fc.weight"]; ok && len(fc) == 2 && fc[1] == lnf[0] && fc[0] != 4*lnf[0] {
		c.TextMLPWidth = int(fc[0])
	}

	if _, vit := shapes["visual.proj"]; vit {
		conv := must(get("visual.conv1.weight", 4))
		vpos := must(get("visual.positional_embedding", 2))
		c.VisionWidth = int(conv[0])
		c.VisionPatchSize = int(conv[3])
		layers := 0
		for name := range shapes {
			if strings.HasPrefix(name, "visual.") && strings.HasSuffix(name, ".attn.in_proj_weight") {
				layers++
			}
		}
		c.VisionLayers = []int{layers}
		if fc, ok := shapes["visual.transformer.resblocks.0.mlp.c_fc.weight"]; ok && len(fc) == 2 && fc[1] == conv[0] && fc[0] != 4*conv[0] {
			c.VisionMLPWidth = int(fc[0])
		}
		grid, err := gridOf("visual.positional_embedding", vpos[0])
		if err != nil {
			errs = append(errs, err)
		}
		c.ImageResolution = c.VisionPatchSize * grid
	} else {
		c.VisionLayers = make([]int, 4)
		for b := range c.VisionLayers {
			c.VisionLayers[b] = countBlocks(shapes, fmt.Sprintf("visual.layer%d.", b+1))
		}
		conv := must(get("visual.layer1.0.conv1.weight", 4))
		apos := must(get("visual.attnpool.positional_embedding", 2))
		c.VisionWidth = int(conv[0])
		grid, err := gridOf("visual.attnpool.positional_embedding", apos[0])
		if err != nil {
			errs = append(errs, err)
		}
		c.ImageResolution = 32 * grid
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return Config{}, errors.New(strings.Join(msgs, "; "))
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("inferred %w", err)
	}
	return c, nil
}

// countBlocks counts the distinct block indices (the dotted component after
// prefix) among the names starting with prefix.
func countBlocks(shapes map[string][]int64, prefix string) int {
	seen := map[string]bool{}
	for name := range shapes {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			idx, _, _ := strings.Cut(rest, ".")
			seen[idx] = true
		}
	}
	return len(seen)
}

// gridOf returns g for a positional embedding of g²+1 rows.
func gridOf(name string, rows int64) (int, error) {
	g := int(math.Round(math.Sqrt(float64(rows - 1))))
	if int64(g*g+1) != rows || g == 0 {
		return 0, fmt.Errorf("%q has %d rows, not grid²+1", name, rows)
	}
	return g, nil
}
