package experiment

import "strings"

// EnsembleTemplates are CLIP's seven ImageNet templates chosen by forward
// selection (IMAGENET_TEMPLATES_SELECT in CoOp, Tip-Adapter's ImageNet
// ensemble), in selection order (docs/protocol.md §6).
var EnsembleTemplates = [...]string{
	"itap of a {}.",
	"a bad photo of the {}.",
	"a origami {}.",
	"a photo of the large {}.",
	"a {} in a video game.",
	"art of the {}.",
	"a photo of the small {}.",
}

// Templates returns the prompt templates for a dataset: its single CoOp
// template, or for "ensemble" the seven ImageNet templates plus the single
// one (CoOp's ZeroshotCLIP2; ImageNet uses only the seven).
func Templates(mode, single string, isImageNet bool) []string {
	if mode != "ensemble" {
		return []string{single}
	}
	out := append([]string{}, EnsembleTemplates[:]...)
	if !isImageNet {
		out = append(out, single)
	}
	return out
}

// PromptNames returns class names as prompts use them: "_" replaced by
// spaces, the only cleaning CoOp-family methods apply (datasets.Prompt).
func PromptNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ReplaceAll(n, "_", " ")
	}
	return out
}
