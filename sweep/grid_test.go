package sweep

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGridExpandAndNames(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.toml")
	if err := os.WriteFile(base, []byte("[model]\nname = \"random:tiny\"\n[data]\ndataset = \"x\"\n[method]\nname = \"x\"\n[train]\nepochs = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	f, err := Parse(`[sweep]
methods  = ["clip-adapter"]
datasets = ["synthetic", "dtd"]
shots    = [4]
seeds    = [1, 2]
base     = "` + base + `"
out      = "` + out + `"

[sweep.grid]
"method.reduction" = [2, 32]
"method.alpha"     = [0, 0.25, 1.0]
"method.variant"   = ["visual", "both"]
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Sweep.GridKeys(); !slices.Equal(got, []string{"method.reduction", "method.alpha", "method.variant"}) {
		t.Fatalf("grid keys %q: want file order", got)
	}
	cells, err := f.Expand()
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 2*2*3*2*2 {
		t.Fatalf("%d cells, want 48", len(cells))
	}
	// Nesting: dataset > method > grid (first key slowest) > shots > seeds.
	var first []string
	for _, c := range cells[:6] {
		first = append(first, strings.TrimPrefix(c.Dir, out+"/"))
	}
	want := []string{
		"synthetic_clip-adapter_random-tiny_4shot_seed1_reduction2_alpha0_variantvisual",
		"synthetic_clip-adapter_random-tiny_4shot_seed2_reduction2_alpha0_variantvisual",
		"synthetic_clip-adapter_random-tiny_4shot_seed1_reduction2_alpha0_variantboth",
		"synthetic_clip-adapter_random-tiny_4shot_seed2_reduction2_alpha0_variantboth",
		"synthetic_clip-adapter_random-tiny_4shot_seed1_reduction2_alpha0.25_variantvisual",
		"synthetic_clip-adapter_random-tiny_4shot_seed2_reduction2_alpha0.25_variantvisual",
	}
	if !slices.Equal(first, want) {
		t.Errorf("first cells:\n got %q\nwant %q", first, want)
	}
	seen := map[string]bool{}
	for _, c := range cells {
		seen[c.Dir] = true
		var keys struct {
			Alpha     float64 `toml:"alpha"`
			Reduction int64   `toml:"reduction"`
			Variant   string  `toml:"variant"`
		}
		if err := c.Config.Method.Decode(&keys); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		got := fmt.Sprintf("reduction%d_alpha%g_variant%s", keys.Reduction, keys.Alpha, keys.Variant)
		if !strings.HasSuffix(c.Dir, got) {
			t.Errorf("%s: config has %s, dir %s", c, got, c.Dir)
		}
		if len(c.Grid) != 3 || c.Grid[1].Key != "method.alpha" {
			t.Errorf("%s: grid %v", c, c.Grid)
		}
		// The float 1.0 goes to the override as 1.0 (a TOML float) and
		// into the name as 1; the integer 0 stays 0.
		if g := c.Grid[1]; (g.Label == "1" && g.Value != "1.0") || (g.Label == "0" && g.Value != "0") {
			t.Errorf("alpha %s passed as %q", g.Label, g.Value)
		}
		if !strings.Contains(c.String(), "method.alpha=") {
			t.Errorf("cell name %q lacks the grid values", c)
		}
	}
	if len(seen) != len(cells) {
		t.Errorf("%d distinct directories for %d cells", len(seen), len(cells))
	}
}

func TestGridSuffixSharedShortKey(t *testing.T) {
	p := gridPoint{{Key: "train.lr", Label: "0.001"}, {Key: "method.lr", Label: "1e-05"}, {Key: "data.templates", Label: "a b/c"}}
	if got, want := gridSuffix(p), "_train-lr0.001_method-lr1e-05_templatesa-b-c"; got != want {
		t.Errorf("suffix %q, want %q", got, want)
	}
}

func TestGridErrors(t *testing.T) {
	dir := t.TempDir()
	writeBases(t, dir, []string{"dtd"}, []string{"coop"})
	head := "[sweep]\nmethods = [\"coop\"]\ndatasets = [\"dtd\"]\nbase = \"" + dir + "/{dataset}/{method}.toml\"\nout = \"" + dir + "/out\"\n"
	tests := []parseErrorCase{
		{"reserved", head + "[sweep.grid]\n\"data.shots\" = [1, 2]\n", `data.shots is set by the sweep (use sweep.shots)`, false},
		{"not section.key", head + "[sweep.grid]\nalpha = [1, 2]\n", `want a config key section.key`, false},
		{"empty", head + "[sweep.grid]\n\"method.n_ctx\" = []\n", `is empty`, false},
		{"duplicate", head + "[sweep.grid]\n\"method.n_ctx\" = [4, 4]\n", `lists 4 twice`, false},
		{"table value", head + "[sweep.grid]\n\"method.n_ctx\" = [{a = 1}]\n", `sweep.grid.\"method.n_ctx\"`, false},
		{"also set", head + "set = [\"method.n_ctx=4\"]\n[sweep.grid]\n\"method.n_ctx\" = [8, 16]\n", `also given in a set list`, false},
		{"epochs rule", head + "epochs_by_shots = {1 = 1, 2 = 1, 4 = 1, 8 = 1, 16 = 1}\n[sweep.grid]\n\"train.epochs\" = [8, 16]\n", `conflicts with the sweep's epochs rule`, true},
		{"unknown key", head + "[sweep.grid]\n\"train.epoch\" = [8, 16]\n", `did you mean "train.epochs"`, true},
	}
	checkParseErrors(t, tests)
}

// The paper's ablation sweeps expand from the repository root, and each
// demo twin under configs/sweeps/demo sweeps exactly the same grid.
func TestShippedAblationSweeps(t *testing.T) {
	t.Chdir("..")
	tests := []struct {
		name       string
		cells      int
		key        string
		demoValues int
	}{
		{"alpha", 4 * 3 * 6, "method.alpha", 6},
		{"reduction", 4 * 3 * 6, "method.reduction", 6},
		{"variant", 4 * 5 * 3 * 3, "method.variant", 3},
		{"ratios", 4 * 3 * 3, "method.learn_ratios", 3},
	}
	for _, tt := range tests {
		paper, err := Load("configs/sweeps/ablation_" + tt.name + ".toml")
		if err != nil {
			t.Fatal(err)
		}
		cells, err := paper.Expand()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(cells) != tt.cells {
			t.Errorf("%s: %d cells, want %d", tt.name, len(cells), tt.cells)
		}
		demo, err := Load("configs/sweeps/demo/ablation_" + tt.name + ".toml")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(paper.Sweep.GridKeys(), []string{tt.key}) || !slices.Equal(demo.Sweep.GridKeys(), []string{tt.key}) {
			t.Errorf("%s: grid keys %q and %q, want %q", tt.name, paper.Sweep.GridKeys(), demo.Sweep.GridKeys(), tt.key)
		}
		if p, d := paper.Sweep.GridLabels(tt.key), demo.Sweep.GridLabels(tt.key); !slices.Equal(p, d) || len(p) != tt.demoValues {
			t.Errorf("%s: paper grid %q, demo grid %q", tt.name, p, d)
		}
		dcells, err := demo.Expand()
		if err != nil {
			t.Fatalf("demo %s: %v", tt.name, err)
		}
		if len(dcells) != 2*tt.demoValues {
			t.Errorf("demo %s: %d cells", tt.name, len(dcells))
		}
	}
}
