package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/configs"
	"github.com/clipadapter/clipgo/train"
)

// TestShippedConfigsDecode decodes every configuration under configs/
// strictly, including its method's own keys, so a typo in a shipped file
// fails here.
func TestShippedConfigsDecode(t *testing.T) {
	var files []string
	filepath.WalkDir("../../configs", func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".toml") && !strings.Contains(p, "sweeps") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 67 {
		t.Fatalf("found %d configs, want 11 datasets x 6 methods + imagenet_16shot + demo", len(files))
	}
	m := methods()
	for _, f := range files {
		cfg, err := train.LoadConfig(f, nil)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		factory, ok := m[cfg.MethodName()]
		if !ok {
			t.Errorf("%s: unknown method %q", f, cfg.MethodName())
			continue
		}
		meth, _, _, err := factory(cfg)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		meth.Drop()
	}
	main, err := train.LoadConfig("../../configs/imagenet_16shot.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if main.MethodName() != "clip-adapter" || main.Data.Dataset != "imagenet" || main.Data.Shots != 16 {
		t.Errorf("imagenet_16shot.toml is %s on %s with %d shots", main.MethodName(), main.Data.Dataset, main.Data.Shots)
	}
	if _, err := train.ParseConfig(configs.Demo, nil); err != nil {
		t.Errorf("embedded demo: %v", err)
	}
}

func TestUnknownMethodKeyIsAnError(t *testing.T) {
	cfg, err := train.LoadConfig("../../configs/caltech101/clip-adapter.toml", []string{"method.alfa=0.3"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = methods()["clip-adapter"](cfg)
	if err == nil || !strings.Contains(err.Error(), `did you mean "method.alpha"`) {
		t.Errorf("err = %v", err)
	}
}
