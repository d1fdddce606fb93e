package methods

import (
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/config"
)

// Every registered method builds with its defaults and decodes its own
// keys strictly: an unknown key is an error naming it.
func TestEveryMethodDecodesStrictly(t *testing.T) {
	reg := All()
	for _, name := range reg.Names() {
		base := "[model]\nname = \"random:tiny\"\n[data]\ndataset = \"synthetic\"\n[method]\nname = \"" + name + "\"\n"
		cfg, err := config.Parse(base, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := reg.Build(cfg)
		if err != nil {
			t.Errorf("%s with defaults: %v", name, err)
			continue
		}
		b.Method.Drop()
		cfg, err = config.Parse(base, []string{"method.no_such_key=1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Build(cfg); err == nil || !strings.Contains(err.Error(), `"method.no_such_key"`) {
			t.Errorf("%s: method.no_such_key gave %v", name, err)
		}
	}
}

func TestLookupSuggests(t *testing.T) {
	_, _, err := All().Lookup("clip-adaptor")
	if err == nil || !strings.Contains(err.Error(), `did you mean "clip-adapter"`) {
		t.Errorf("err = %v", err)
	}
	if _, _, err := All().Lookup("x"); err == nil || !strings.Contains(err.Error(), "zeroshot, linear-probe") {
		t.Errorf("err = %v", err)
	}
}
