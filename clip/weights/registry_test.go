package weights

import (
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The facts below are typed in from docs/models.md §1–2
// (OpenAI's clip.py and model table), independently of registry.go.
var wantRegistry = []struct {
	name, file, sha string
	res, dim        int
	vit             bool
}{
	{"RN50", "RN50.pt", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", 224, 1024, false},
	{"RN101", "RN101.pt", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", 224, 512, false},
	{"RN50x4", "RN50x4.pt", "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", 288, 640, false},
	{"RN50x16", "RN50x16.pt", "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa", 384, 768, false},
	{"RN50x64", "RN50x64.pt", "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c", 448, 1024, false},
	{"ViT-B/32", "ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", 224, 512, true},
	{"ViT-B/16", "ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", 224, 512, true},
	{"ViT-L/14", "ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", 224, 768, true},
	{"ViT-L/14@336px", "ViT-L-14-336px.pt", "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", 336, 768, true},
}

func TestNamesOrder(t *testing.T) {
	want := []string{"RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	// The returned slice is a copy: changing it must not change the registry.
	n := Names()
	n[0] = "changed"
	if Names()[0] != "RN50" {
		t.Fatal("Names() exposes mutable registry state")
	}
}

func TestLookupOfficial(t *testing.T) {
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, w := range wantRegistry {
		t.Run(w.name, func(t *testing.T) {
			c, ok := Lookup(w.name)
			if !ok {
				t.Fatalf("Lookup(%q) not found", w.name)
			}
			if c.Name != w.name || c.SHA256 != w.sha || c.InputResolution != w.res || c.EmbedDim != w.dim || c.ViT != w.vit {
				t.Errorf("got %+v, want %+v", c, w)
			}
			if !hex64.MatchString(c.SHA256) {
				t.Errorf("SHA256 %q is not 64 lower-case hex digits", c.SHA256)
			}
			wantURL := "https://openaipublic.azureedge.net/clip/models/" + w.sha + "/" + w.file
			if c.URL != wantURL {
				t.Errorf("URL = %q, want %q", c.URL, wantURL)
			}
			if c.File() != w.file {
				t.Errorf("File() = %q, want %q", c.File(), w.file)
			}
			// The URL's second-to-last path element is the digest.
			u, err := url.Parse(c.URL)
			if err != nil {
				t.Fatal(err)
			}
			if got := path.Base(path.Dir(u.Path)); got != c.SHA256 {
				t.Errorf("digest in URL %q != SHA256 %q", got, c.SHA256)
			}
		})
	}
}

func TestLookupCaseInsensitive(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ViT-B/32", "ViT-B/32"},
		{"vit-b/32", "ViT-B/32"},
		{"VIT-L/14@336PX", "ViT-L/14@336px"},
		{"rn50x4", "RN50x4"},
		{"rn50", "RN50"},
	}
	for _, tc := range tests {
		c, ok := Lookup(tc.in)
		if !ok || c.Name != tc.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tc.in, c.Name, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "ViT-B-32", "RN50 ", "ViT-B/32.pt", "RN5"} {
		if c, ok := Lookup(bad); ok {
			t.Errorf("Lookup(%q) = %q, want not found", bad, c.Name)
		}
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"vit-b/32", "ViT-B/32"},
		{"vit-b-32", "ViT-B/32"},
		{"ViT-B-32.pt", "ViT-B/32"},
		{"ViT-B/23", "ViT-B/32"},
		{"ViT_B_16", "ViT-B/16"},
		{"rn5o", "RN50"},
		{"RN50x5", "RN50x4"},
		{"RN50x65", "RN50x64"},
		{"vit-l/14-336px", "ViT-L/14@336px"},
		{"ViT-L/14@224px", "ViT-L/14@336px"},
		{"resnet50", ""},
		{"ViT-H/14", "ViT-L/14"},
		{"/data/models/my-finetuned-clip.pt", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := Suggest(tc.in); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSourceURL(t *testing.T) {
	c, _ := Lookup("RN50")
	tests := []struct{ base, want string }{
		{"", c.URL},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/clip/models/" + c.SHA256 + "/RN50.pt"},
		{"http://mirror.example/pub/", "http://mirror.example/pub/clip/models/" + c.SHA256 + "/RN50.pt"},
	}
	for _, tc := range tests {
		got, err := Options{BaseURL: tc.base}.sourceURL(c)
		if err != nil || got != tc.want {
			t.Errorf("BaseURL %q: got %q, %v; want %q", tc.base, got, err, tc.want)
		}
	}
	if !strings.HasPrefix(c.URL, officialHost+"/") {
		t.Errorf("official URL %q not on %s", c.URL, officialHost)
	}
}
