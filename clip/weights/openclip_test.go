package weights

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipadapter/clipgo/clip/openclip"
)

// hub emulates the Hugging Face Hub: /<repo>/resolve/main/<file> answers
// 302 to /cdn/<file> with the file's SHA-256 in X-Linked-Etag (digest ""
// leaves the header out); /cdn/<file> serves the bytes with Range support.
// Files missing from files answer 404.
func hub(t *testing.T, files map[string][]byte, digest func(name string) string) *server {
	return newServer(t, nil, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if name, ok := strings.CutPrefix(r.URL.Path, "/cdn/"); ok {
			b, ok := files[name]
			if !ok {
				http.NotFound(w, r)
				return
			}
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
			return
		}
		_, name, ok := strings.Cut(r.URL.Path, "/resolve/main/")
		if _, exists := files[name]; !ok || !exists {
			http.NotFound(w, r)
			return
		}
		if d := digest(name); d != "" {
			w.Header().Set("X-Linked-Etag", `"`+d+`"`)
		}
		http.Redirect(w, r, "/cdn/"+name, http.StatusFound)
	})
}

// tinyTag is a test registry entry shaped like OpenCLIP's.
func tinyTag() Checkpoint {
	base := hubHost + "/org/Tiny-CLIP/resolve/main/"
	return Checkpoint{
		Name: "Tiny-1/laion_test", URL: base + "open_clip_model.safetensors", FallbackURL: base + "open_clip_pytorch_model.bin",
		CacheName: "open_clip/org--Tiny-CLIP/open_clip_model.safetensors", Arch: "Tiny-1", Tag: "laion_test",
		OpenCLIPConfig: []byte(`{"model_cfg": {}}` + "\n"),
	}
}

func hubOptions(t *testing.T, s *server, log io.Writer) Options {
	if log == nil {
		log = io.Discard
	}
	return Options{CacheDir: t.TempDir(), BaseURL: s.URL, Extra: []Checkpoint{tinyTag()},
		Logger: slog.New(slog.NewTextHandler(log, nil))}
}

func TestOpenCLIPDownloadVerifiesHubDigest(t *testing.T) {
	payload, digest := testPayload(31)
	files := map[string][]byte{"open_clip_model.safetensors": payload}
	s := hub(t, files, func(string) string { return digest })
	o := hubOptions(t, s, nil)
	var progress bytes.Buffer
	o.Progress = &progress
	got, err := Resolve(context.Background(), "tiny-1/LAION_test", o)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(o.CacheDir, "open_clip", "org--Tiny-CLIP", "open_clip_model.safetensors")
	if got != want {
		t.Fatalf("path %s, want %s", got, want)
	}
	if !bytes.Equal(mustReadFile(t, got), payload) {
		t.Error("cached file differs from the payload")
	}
	if cfg := mustReadFile(t, filepath.Join(filepath.Dir(got), openclip.ConfigFileName)); string(cfg) != string(tinyTag().OpenCLIPConfig) {
		t.Errorf("config %q", cfg)
	}
	if !strings.Contains(progress.String(), "downloading Tiny-1/laion_test") {
		t.Errorf("progress %q", progress.String())
	}
	// Cached: no more requests; the config is rewritten if it was lost.
	os.Remove(filepath.Join(filepath.Dir(got), openclip.ConfigFileName))
	n := s.requests.Load()
	if _, err := Resolve(context.Background(), "Tiny-1/laion_test", o); err != nil {
		t.Fatal(err)
	}
	if s.requests.Load() != n {
		t.Error("a cached checkpoint was fetched again")
	}
	mustReadFile(t, filepath.Join(filepath.Dir(got), openclip.ConfigFileName))
}

func TestOpenCLIPDownloadResumes(t *testing.T) {
	payload, digest := testPayload(32)
	s := hub(t, map[string][]byte{"open_clip_model.safetensors": payload}, func(string) string { return digest })
	o := hubOptions(t, s, nil)
	final := filepath.Join(o.CacheDir, "open_clip", "org--Tiny-CLIP", "open_clip_model.safetensors")
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(final+".part", payload[:400000], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(context.Background(), "Tiny-1/laion_test", o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustReadFile(t, final), payload) {
		t.Error("resumed file differs")
	}
	if r := s.rangeHeaders(); len(r) == 0 || r[0] != "bytes=400000-" {
		t.Errorf("range headers %q, want the resumption from 400000 first", r)
	}
	// The missing bytes, plus the short HTML body of the redirect.
	if sent, missing := s.sent.Load(), int64(len(payload)-400000); sent < missing || sent > missing+200 {
		t.Errorf("server sent %d bytes, want the missing %d (and a redirect page)", sent, missing)
	}
}

func TestOpenCLIPDownloadFallsBackToBin(t *testing.T) {
	payload, digest := testPayload(33)
	s := hub(t, map[string][]byte{"open_clip_pytorch_model.bin": payload}, func(string) string { return digest })
	o := hubOptions(t, s, nil)
	got, err := Resolve(context.Background(), "Tiny-1/laion_test", o)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(got) != "open_clip_pytorch_model.bin" || !bytes.Equal(mustReadFile(t, got), payload) {
		t.Errorf("got %s", got)
	}
	mustReadFile(t, filepath.Join(filepath.Dir(got), openclip.ConfigFileName))
	// The cached .bin is found without a request.
	n := s.requests.Load()
	if again, err := Resolve(context.Background(), "Tiny-1/laion_test", o); err != nil || again != got || s.requests.Load() != n {
		t.Errorf("second resolve: %s, %v, %d requests", again, err, s.requests.Load()-n)
	}
}

func TestOpenCLIPDownloadRejects(t *testing.T) {
	payload, digest := testPayload(34)
	files := map[string][]byte{"open_clip_model.safetensors": payload}
	t.Run("no digest", func(t *testing.T) {
		s := hub(t, files, func(string) string { return "" })
		o := hubOptions(t, s, nil)
		_, err := Resolve(context.Background(), "Tiny-1/laion_test", o)
		if err == nil || !strings.Contains(err.Error(), "did not publish the file's SHA-256") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("wrong digest", func(t *testing.T) {
		wrong := strings.Repeat("0", 64)
		s := hub(t, files, func(string) string { return wrong })
		o := hubOptions(t, s, nil)
		_, err := Resolve(context.Background(), "Tiny-1/laion_test", o)
		var ce *ChecksumError
		if !errors.As(err, &ce) || ce.Expected != wrong || ce.Got != digest {
			t.Fatalf("error %v, want a checksum mismatch", err)
		}
		assertMissing(t, filepath.Join(o.CacheDir, "open_clip", "org--Tiny-CLIP", "open_clip_model.safetensors"))
	})
	t.Run("offline", func(t *testing.T) {
		s := hub(t, files, func(string) string { return digest })
		o := hubOptions(t, s, nil)
		s.Close()
		_, err := Resolve(context.Background(), "Tiny-1/laion_test", o)
		final := filepath.Join(o.CacheDir, "open_clip", "org--Tiny-CLIP", "open_clip_model.safetensors")
		for _, want := range []string{s.URL + "/org/Tiny-CLIP/resolve/main/open_clip_model.safetensors", "place the file at " + final} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v lacks %q", err, want)
			}
		}
	})
}

// TestOpenCLIPRegistry checks the built-in OpenCLIP names: the published
// URLs, the cache layout, the configuration written next to the weights,
// and the "openai" tags mapped to OpenAI's checkpoints.
func TestOpenCLIPRegistry(t *testing.T) {
	c, ok := Lookup("ViT-B-32/laion2b_s34b_b79k")
	if !ok {
		t.Fatal("ViT-B-32/laion2b_s34b_b79k unknown")
	}
	if c.URL != "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_model.safetensors" ||
		c.FallbackURL != "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_pytorch_model.bin" {
		t.Errorf("URLs %s, %s", c.URL, c.FallbackURL)
	}
	if c.InputResolution != 224 || c.EmbedDim != 512 || !c.ViT || c.SHA256 != "" {
		t.Errorf("entry %+v", c)
	}
	f, err := openclip.Parse(c.OpenCLIPConfig)
	if err != nil {
		t.Fatal(err)
	}
	if f.Model.QuickGELU || f.Model.Vision.Width != 768 || f.Preprocess.ResizeMode != "shortest" {
		t.Errorf("config %+v", f)
	}
	p, err := CachePath("ViT-B-32/laion2b_s34b_b79k", Options{CacheDir: "/c"})
	if err != nil || p != "/c/open_clip/laion--CLIP-ViT-B-32-laion2B-s34B-b79K/open_clip_model.safetensors" {
		t.Errorf("cache path %s, %v", p, err)
	}
	// Tags trained with QuickGELU say so even under the plain architecture.
	q, _ := Lookup("ViT-B-32/laion400m_e32")
	if f, err := openclip.Parse(q.OpenCLIPConfig); err != nil || !f.Model.QuickGELU {
		t.Errorf("laion400m_e32: %v quick_gelu %v", err, f.Model.QuickGELU)
	}
	h, _ := Lookup("ViT-H-14/laion2b_s32b_b79k")
	if f, err := openclip.Parse(h.OpenCLIPConfig); err != nil || f.Model.Vision.HeadWidth != 80 {
		t.Errorf("ViT-H-14: %v head width %d", err, f.Model.Vision.HeadWidth)
	}
	o, ok := Lookup("ViT-B-32-quickgelu/openai")
	official, _ := Lookup("ViT-B/32")
	if !ok || o.URL != official.URL || o.SHA256 != official.SHA256 {
		t.Errorf("ViT-B-32-quickgelu/openai = %+v", o)
	}
	if s := Suggest("ViT-B-32/laion2b_s34b_b97k"); s != "ViT-B-32/laion2b_s34b_b79k" {
		t.Errorf("suggestion %q", s)
	}
	// Every entry has a distinct name and a parsable config.
	seen := map[string]bool{}
	for _, c := range openclipCheckpoints() {
		if seen[strings.ToLower(c.Name)] {
			t.Errorf("duplicate name %s", c.Name)
		}
		seen[strings.ToLower(c.Name)] = true
		if c.OpenCLIPConfig != nil {
			if _, err := openclip.Parse(c.OpenCLIPConfig); err != nil {
				t.Errorf("%s: %v", c.Name, err)
			}
		}
	}
	if len(seen) < 80 {
		t.Errorf("%d OpenCLIP names", len(seen))
	}
}
