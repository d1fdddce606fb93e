// Package weights knows OpenAI's official CLIP checkpoints and OpenCLIP's
// pretrained tags of the standard CLIP architectures, and fetches them into
// a local cache.
//
// Resolve turns a model name ("ViT-B/32") or a file path into the path of a
// checkpoint on disk: a path is used as is, a name is looked up in the
// registry and, unless a verified copy is already cached, downloaded with
// resumption, progress reporting and SHA-256 verification.
//
// OpenAI's checkpoints are TorchScript archives; the URLs and their
// SHA-256 digests are those published with openai/CLIP (MIT licence).
// OpenCLIP's ("ViT-B-32/laion2b_s34b_b79k") are state dicts on the Hugging
// Face Hub, verified against the SHA-256 the Hub sends with each download.
package weights

import (
	"path"
	"path/filepath"
	"strings"

	"github.com/clipadapter/clipgo/internal/suggest"
)

// officialHost is the scheme and host that serve the official checkpoints.
const officialHost = "https://openaipublic.azureedge.net"

// Checkpoint describes one downloadable CLIP checkpoint.
type Checkpoint struct {
	// Name is the model name as OpenAI spells it ("ViT-B/32").
	Name string
	// URL is where the file is downloaded from. Its last path element is
	// the file name in the cache; for the official checkpoints the element
	// before it is the file's SHA-256.
	URL string
	// SHA256 is the lower-case hex SHA-256 digest of the whole file. Empty
	// means the server publishes it with the download (the Hugging Face
	// Hub's X-Linked-Etag header), and the download fails without it.
	SHA256 string
	// FallbackURL, when set, is downloaded instead when URL answers 404
	// (an OpenCLIP repository without a safetensors file). Its file is
	// cached in the same folder, under its own base name.
	FallbackURL string
	// CacheName is the file's path inside the cache ("/"-separated); empty
	// means File().
	CacheName string
	// Arch and Tag are the OpenCLIP architecture and pretraining tag
	// ("ViT-B-32", "laion2b_s34b_b79k"); empty for OpenAI's names.
	Arch, Tag string
	// OpenCLIPConfig, when set, is written as open_clip_config.json next
	// to the cached file: what the weights do not say (activation, head
	// width, preprocessing), read by clip.Load.
	OpenCLIPConfig []byte
	// InputResolution is the side of the square input image in pixels.
	InputResolution int
	// EmbedDim is the size of the joint image-text embedding.
	EmbedDim int
	// ViT reports a vision transformer; false means a ModifiedResNet.
	ViT bool
}

// File returns the checkpoint's file name: the last element of its URL.
func (c Checkpoint) File() string {
	u := c.URL
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return path.Base(u)
}

// official returns the registry of OpenAI's checkpoints, in OpenAI's order.
// It builds a fresh slice on each call so that callers cannot alter it.
func official() []Checkpoint {
	mk := func(name, sha, file string, res, dim int, vit bool) Checkpoint {
		return Checkpoint{
			Name:            name,
			URL:             officialHost + "/clip/models/" + sha + "/" + file,
			SHA256:          sha,
			InputResolution: res,
			EmbedDim:        dim,
			ViT:             vit,
		}
	}
	return []Checkpoint{
		mk("RN50", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50.pt", 224, 1024, false),
		mk("RN101", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", "RN101.pt", 224, 512, false),
		mk("RN50x4", "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", "RN50x4.pt", 288, 640, false),
		mk("RN50x16", "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa", "RN50x16.pt", 384, 768, false),
		mk("RN50x64", "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c", "RN50x64.pt", 448, 1024, false),
		mk("ViT-B/32", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", "ViT-B-32.pt", 224, 512, true),
		mk("ViT-B/16", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", "ViT-B-16.pt", 224, 512, true),
		mk("ViT-L/14", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", "ViT-L-14.pt", 224, 768, true),
		mk("ViT-L/14@336px", "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", "ViT-L-14-336px.pt", 336, 768, true),
	}
}

// cacheRel returns the file's path inside the cache.
func (c Checkpoint) cacheRel() string {
	if c.CacheName != "" {
		return filepath.FromSlash(c.CacheName)
	}
	return c.File()
}

// Names returns the names of the official checkpoints in OpenAI's order:
// RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16, ViT-L/14,
// ViT-L/14@336px.
func Names() []string {
	reg := official()
	names := make([]string, len(reg))
	for i, c := range reg {
		names[i] = c.Name
	}
	return names
}

// Lookup returns the official or OpenCLIP checkpoint called name. An
// exact match wins; otherwise the names are compared case-insensitively
// ("vit-b/32" finds "ViT-B/32").
func Lookup(name string) (Checkpoint, bool) {
	return lookupIn(known(), name)
}

// known returns OpenAI's checkpoints followed by OpenCLIP's.
func known() []Checkpoint { return append(official(), openclipCheckpoints()...) }

// lookupIn finds name in reg: exactly, else case-insensitively.
func lookupIn(reg []Checkpoint, name string) (Checkpoint, bool) {
	for _, c := range reg {
		if c.Name == name {
			return c, true
		}
	}
	for _, c := range reg {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Checkpoint{}, false
}

// Suggest returns the official name closest to name, or "" when none is
// close. Case, the separators '-', '/', '_' and ' ', and a trailing ".pt"
// are ignored, so "vit-b-32", "ViT-B-32.pt" and "ViT-B/23" all suggest
// "ViT-B/32".
func Suggest(name string) string {
	return suggestIn(known(), name)
}

// suggestIn returns the name in reg nearest to name by edit distance over
// normalised spellings, if that distance is small (at most a third of the
// candidate's length, and at most 3).
func suggestIn(reg []Checkpoint, name string) string {
	names := make([]string, len(reg))
	for i, c := range reg {
		names[i] = normalise(c.Name)
	}
	i, d := suggest.Nearest(normalise(name), names)
	if i < 0 || d > 3 || 3*d > len(names[i]) {
		return ""
	}
	return reg[i].Name
}

// normalise lower-cases s, drops a ".pt" suffix and unifies separators.
func normalise(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSuffix(s, ".pt")
	return strings.Map(func(r rune) rune {
		switch r {
		case '/', '_', ' ':
			return '-'
		}
		return r
	}, s)
}
