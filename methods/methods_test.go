package methods

import (
	"slices"
	"sort"
	"testing"

	"github.com/clipadapter/clipgo/train"
)

func TestNamesMatchFactories(t *testing.T) {
	var keys []string
	for k := range Factories() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	names := slices.Clone(Names())
	sort.Strings(names)
	if !slices.Equal(keys, names) {
		t.Errorf("Names() %v, Factories() keys %v", Names(), keys)
	}
}

// Every factory decodes its own keys strictly and builds with defaults.
func TestFactoriesDecodeStrictly(t *testing.T) {
	for _, name := range Names() {
		cfg, err := train.ParseConfig("[model]\nname = \"random:tiny\"\n[data]\ndataset = \"synthetic\"\n[method]\nname = \""+name+"\"\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		m, _, _, err := Factories()[name](cfg)
		if err != nil {
			t.Errorf("%s with defaults: %v", name, err)
			continue
		}
		m.Drop()
		cfg.Method["no_such_key"] = 1
		if _, _, _, err := Factories()[name](cfg); err == nil {
			t.Errorf("%s accepted method.no_such_key", name)
		}
	}
}
