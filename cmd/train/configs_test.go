package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/configs"
	"github.com/clipadapter/clipgo/methods"
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
	reg := methods.All()
	for _, f := range files {
		cfg, err := config.Load(f, nil)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if err := reg.Check(cfg); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	main, err := config.Load("../../configs/imagenet_16shot.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if main.Method.Name != "clip-adapter" || main.Data.Dataset != "imagenet" || main.Data.Shots != 16 {
		t.Errorf("imagenet_16shot.toml is %s on %s with %d shots", main.Method.Name, main.Data.Dataset, main.Data.Shots)
	}
	if _, err := config.Parse(configs.Demo, nil); err != nil {
		t.Errorf("embedded demo: %v", err)
	}
}

func TestUnknownMethodKeyIsAnError(t *testing.T) {
	cfg, err := config.Load("../../configs/caltech101/clip-adapter.toml", []string{"method.alfa=0.3"})
	if err != nil {
		t.Fatal(err)
	}
	err = methods.All().Check(cfg)
	if err == nil || !strings.Contains(err.Error(), `did you mean "method.alpha"`) {
		t.Errorf("err = %v", err)
	}
}
