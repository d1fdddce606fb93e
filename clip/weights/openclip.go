package weights

import (
	"path"
	"strings"

	"github.com/clipadapter/clipgo/clip/openclip"
)

// hubHost is the scheme and host of the Hugging Face Hub, which publishes
// OpenCLIP's checkpoints.
const hubHost = "https://huggingface.co"

// openclipCheckpoints returns OpenCLIP's pretrained tags of the standard
// CLIP architectures as checkpoints: "<arch>/<tag>" names whose weights are
// the open_clip_model.safetensors of the tag's Hugging Face repository
// (open_clip_pytorch_model.bin when the repository has no safetensors
// file), cached under open_clip/<org>--<repo>/ next to the
// open_clip_config.json that describes them. The Hub publishes each file's
// SHA-256 with the download (the X-Linked-Etag header), which Resolve
// checks. The "<arch>/openai" tags are OpenAI's own checkpoints.
func openclipCheckpoints() []Checkpoint {
	var out []Checkpoint
	for _, t := range openclip.Tags() {
		cfg, err := t.Config()
		if err != nil {
			continue // the generated tables always agree; see the tests
		}
		data, err := cfg.Marshal()
		if err != nil {
			continue
		}
		repo := hubHost + "/" + t.HFRepo + "/resolve/main/"
		out = append(out, Checkpoint{
			Name:            t.Name(),
			URL:             repo + "open_clip_model.safetensors",
			FallbackURL:     repo + "open_clip_pytorch_model.bin",
			CacheName:       path.Join("open_clip", strings.ReplaceAll(t.HFRepo, "/", "--"), "open_clip_model.safetensors"),
			InputResolution: cfg.Model.Vision.ImageSize,
			EmbedDim:        cfg.Model.EmbedDim,
			ViT:             len(cfg.Model.Vision.Layers) == 1,
			Arch:            t.Arch,
			Tag:             t.Tag,
			OpenCLIPConfig:  data,
		})
	}
	// The "openai" tags: OpenAI's checkpoints under OpenCLIP's names.
	for _, arch := range openclip.Archs() {
		name, ok := openclip.OpenAIArch(arch)
		if !ok {
			continue
		}
		if c, ok := lookupIn(official(), name); ok {
			c.Name = arch + "/openai"
			c.Arch, c.Tag = arch, "openai"
			out = append(out, c)
		}
	}
	return out
}

// hubDigest returns the SHA-256 the Hugging Face Hub publishes for a file
// in a response's headers: X-Linked-Etag (large files), else an ETag
// holding 64 hex digits; "" when there is none.
func hubDigest(h interface{ Get(string) string }) string {
	for _, key := range []string{"X-Linked-Etag", "ETag"} {
		v := strings.TrimPrefix(strings.TrimSpace(h.Get(key)), "W/")
		v = strings.ToLower(strings.Trim(v, `"`))
		if isSHA256(v) {
			return v
		}
	}
	return ""
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
