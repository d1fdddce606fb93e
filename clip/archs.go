package clip

import (
	"fmt"
	"strings"
)

// archTable holds the architectures of the released models (docs/models.md §2)
// and a tiny one for demos and tests. Fields follow Config's order.
func archTable() []struct {
	name string
	cfg  Config
} {
	return []struct {
		name string
		cfg  Config
	}{
		{"RN50", Config{1024, 224, []int{3, 4, 6, 3}, 64, 0, 77, 49408, 512, 8, 12, 0, 0, 0, 0}},
		{"RN101", Config{512, 224, []int{3, 4, 23, 3}, 64, 0, 77, 49408, 512, 8, 12, 0, 0, 0, 0}},
		{"RN50x4", Config{640, 288, []int{4, 6, 10, 6}, 80, 0, 77, 49408, 640, 10, 12, 0, 0, 0, 0}},
		{"RN50x16", Config{768, 384, []int{6, 8, 18, 8}, 96, 0, 77, 49408, 768, 12, 12, 0, 0, 0, 0}},
		{"RN50x64", Config{1024, 448, []int{3, 15, 36, 10}, 128, 0, 77, 49408, 1024, 16, 12, 0, 0, 0, 0}},
		{"ViT-B/32", Config{512, 224, []int{12}, 768, 32, 77, 49408, 512, 8, 12, 0, 0, 0, 0}},
		{"ViT-B/16", Config{512, 224, []int{12}, 768, 16, 77, 49408, 512, 8, 12, 0, 0, 0, 0}},
		{"ViT-L/14", Config{768, 224, []int{24}, 1024, 14, 77, 49408, 768, 12, 12, 0, 0, 0, 0}},
		{"ViT-L/14@336px", Config{768, 336, []int{24}, 1024, 14, 77, 49408, 768, 12, 12, 0, 0, 0, 0}},
		// tiny: a small ViT for demos and tests (64-pixel input).
		{"tiny", Config{64, 64, []int{2}, 64, 16, 77, 49408, 64, 1, 2, 0, 0, 0, 0}},
	}
}

// ArchConfig returns the architecture of an official model name (RN50, ...,
// ViT-L/14@336px; case-insensitive) or "tiny", for randomly initialized
// models.
func ArchConfig(name string) (Config, error) {
	var names []string
	for _, a := range archTable() {
		if strings.EqualFold(a.name, name) {
			c := a.cfg
			c.VisionLayers = append([]int{}, a.cfg.VisionLayers...)
			return c, nil
		}
		names = append(names, a.name)
	}
	return Config{}, fmt.Errorf("unknown architecture %q (want one of %s)", name, strings.Join(names, ", "))
}
