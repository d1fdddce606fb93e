package sweep

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeBases writes minimal base configurations dir/<dataset>/<method>.toml
// with train.epochs = 7.
func writeBases(t *testing.T, dir string, datasets, methods []string) {
	t.Helper()
	for _, ds := range datasets {
		for _, m := range methods {
			p := filepath.Join(dir, ds, m+".toml")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			text := fmt.Sprintf("[model]\nname = \"random:tiny\"\n[data]\ndataset = %q\nroot = \"data\"\n[method]\nname = %q\n[train]\nepochs = 7\n", ds, m)
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestExpand(t *testing.T) {
	dir := t.TempDir()
	writeBases(t, filepath.Join(dir, "cfg"), []string{"imagenet", "dtd"}, []string{"zeroshot", "coop", "tip-adapter-f"})
	out := filepath.Join(dir, "out")
	f, err := Parse(`
[sweep]
methods  = ["zeroshot", "coop", "tip-adapter-f"]
datasets = ["imagenet", "dtd"]
shots    = [1, 2, 16]
seeds    = [1, 2]
base     = "` + filepath.Join(dir, "cfg") + `/{dataset}/{method}.toml"
out      = "` + out + `"
epochs_by_shots = {1 = 50, 2 = 100, 16 = 200}
set = ["data.root=/data/coop", "train.batch_size=8"]

[sweep.per_method.coop]
epochs_by_dataset = {imagenet = 50}
set = ["method.n_ctx=4"]

[sweep.per_method.zeroshot]
shots = [16]
seeds = [1]
`)
	if err != nil {
		t.Fatal(err)
	}
	cells, err := f.Expand()
	if err != nil {
		t.Fatal(err)
	}
	// Per dataset: zero-shot once, coop and tip-adapter-f 3 shots x 2 seeds.
	if len(cells) != 2*(1+2*3*2) {
		t.Fatalf("%d cells, want 26", len(cells))
	}
	var got []string
	for i, c := range cells {
		if c.Index != i {
			t.Errorf("cell %d has index %d", i, c.Index)
		}
		got = append(got, fmt.Sprintf("%s/%s/%d/%d/%d", c.Dataset, c.Method, c.Shots, c.Seed, c.Config.Train.Epochs))
		if c.Config.Data.Root != "/data/coop" || c.Config.Train.BatchSize != 8 {
			t.Errorf("%s: root %q batch %d: the sweep's set was not applied", c, c.Config.Data.Root, c.Config.Train.BatchSize)
		}
		if c.Config.Data.Shots != c.Shots || c.Config.Data.Seed != c.Seed || c.Config.Method.Name != c.Method || c.Config.Data.Dataset != c.Dataset {
			t.Errorf("%s: config has %s %s %d-shot seed %d", c, c.Config.Method.Name, c.Config.Data.Dataset, c.Config.Data.Shots, c.Config.Data.Seed)
		}
		if c.Config.Output.Dir != out {
			t.Errorf("%s: output.dir %q", c, c.Config.Output.Dir)
		}
		wantDir := filepath.Join(out, fmt.Sprintf("%s_%s_random-tiny_%dshot_seed%d", c.Dataset, c.Method, c.Shots, c.Seed))
		if c.Dir != wantDir {
			t.Errorf("dir %s, want %s", c.Dir, wantDir)
		}
		var keys struct {
			NCtx *int64 `toml:"n_ctx"`
		}
		if err := c.Config.Method.Decode(&keys); err != nil && !strings.Contains(err.Error(), "unknown key") {
			t.Fatalf("%s: %v", c, err)
		}
		hasNCtx := keys.NCtx != nil
		if (c.Method == "coop") != hasNCtx || (hasNCtx && *keys.NCtx != 4) {
			t.Errorf("%s: method.n_ctx = %v (per-method set)", c, keys.NCtx)
		}
	}
	want := []string{
		"imagenet/zeroshot/16/1/7",
		// ImageNet CoOp: 50 epochs whatever the shots.
		"imagenet/coop/1/1/50", "imagenet/coop/1/2/50", "imagenet/coop/2/1/50", "imagenet/coop/2/2/50", "imagenet/coop/16/1/50", "imagenet/coop/16/2/50",
		// Tip-Adapter-F is not in epochs_methods: the base's 7 epochs.
		"imagenet/tip-adapter-f/1/1/7", "imagenet/tip-adapter-f/1/2/7", "imagenet/tip-adapter-f/2/1/7", "imagenet/tip-adapter-f/2/2/7", "imagenet/tip-adapter-f/16/1/7", "imagenet/tip-adapter-f/16/2/7",
		"dtd/zeroshot/16/1/7",
		"dtd/coop/1/1/50", "dtd/coop/1/2/50", "dtd/coop/2/1/100", "dtd/coop/2/2/100", "dtd/coop/16/1/200", "dtd/coop/16/2/200",
		"dtd/tip-adapter-f/1/1/7", "dtd/tip-adapter-f/1/2/7", "dtd/tip-adapter-f/2/1/7", "dtd/tip-adapter-f/2/2/7", "dtd/tip-adapter-f/16/1/7", "dtd/tip-adapter-f/16/2/7",
	}
	if !slices.Equal(got, want) {
		t.Errorf("cells (dataset/method/shots/seed/epochs):\n got %q\nwant %q", got, want)
	}

	sel := Filter{Methods: []string{"coop"}, Shots: []int{16}}.Apply(cells)
	if len(sel) != 4 || sel[0].Index != 0 || sel[3].Index != 3 || sel[3].Dataset != "dtd" || sel[3].Seed != 2 {
		t.Errorf("filter coop 16-shot: %v", sel)
	}
}

// A base without {dataset} and {method}: the sweep sets both, and the
// defaults (shots 1-16, seeds 1-3, epochs rule for coop and clip-adapter)
// apply.
func TestExpandSingleBaseAndDefaults(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.toml")
	if err := os.WriteFile(base, []byte("[model]\nname = \"random:tiny\"\n[data]\ndataset = \"x\"\n[method]\nname = \"x\"\n[train]\nepochs = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(`[sweep]
methods = ["clip-adapter", "linear-probe"]
datasets = ["synthetic"]
base = "` + base + `"
out = "` + dir + `"
epochs_by_shots = {1 = 50, 2 = 100, 4 = 100, 8 = 200, 16 = 200}
`)
	if err != nil {
		t.Fatal(err)
	}
	cells, err := f.Expand()
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 2*5*3 {
		t.Fatalf("%d cells, want 30", len(cells))
	}
	wantEpochs := map[int]int{1: 50, 2: 100, 4: 100, 8: 200, 16: 200}
	for _, c := range cells {
		if c.Config.Method.Name != c.Method || c.Config.Data.Dataset != "synthetic" {
			t.Errorf("%s: config has method %q dataset %q", c, c.Config.Method.Name, c.Config.Data.Dataset)
		}
		want := 3
		if c.Method == "clip-adapter" {
			want = wantEpochs[c.Shots]
		}
		if c.Config.Train.Epochs != want {
			t.Errorf("%s: %d epochs, want %d", c, c.Config.Train.Epochs, want)
		}
	}
}

// parseErrorCase is a sweep file that Parse (or, with expand, Expand)
// must reject with an error containing want.
type parseErrorCase struct {
	name, text, want string
	expand           bool
}

// checkParseErrors runs the cases as subtests.
func checkParseErrors(t *testing.T, cases []parseErrorCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(tt.text)
			if err == nil && tt.expand {
				_, err = f.Expand()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	writeBases(t, dir, []string{"dtd"}, []string{"coop"})
	head := "[sweep]\nmethods = [\"coop\"]\ndatasets = [\"dtd\"]\nbase = \"" + dir + "/{dataset}/{method}.toml\"\nout = \"" + dir + "/out\"\n"
	tests := []parseErrorCase{
		{"unknown key", head + "worker = 2\n", `unknown key "sweep.worker" (valid: base, compare_selection, datasets, devices`, false},
		{"unknown table", head + "[slurm]\ngpus = 1\n", `unknown key "slurm.gpus"`, false},
		{"reserved set", head + "set = [\"data.shots=4\"]\n", `data.shots is set by the sweep (use sweep.shots)`, false},
		{"reserved per-method set", head + "[sweep.per_method.coop]\nset = [\"output.dir=x\"]\n", `output.dir is set by the sweep`, false},
		{"bad set", head + "set = [\"train.epochs\"]\n", `want section.key=value`, false},
		{"per-method not swept", head + "[sweep.per_method.zeroshot]\nshots = [1]\n", `"zeroshot" is not in sweep.methods`, false},
		{"duplicate shots", head + "shots = [1, 1]\n", `sweep.shots lists 1 twice`, false},
		{"bad epochs key", head + "epochs_by_shots = {one = 50}\n", `key "one" is not a shot count`, false},
		{"missing base", "[sweep]\nmethods = [\"coop\"]\ndatasets = [\"dtd\"]\nout = \"x\"\n", `sweep.base is required`, false},
		{"bad slurm time", head + "[slurm]\ntime = \"1 day\"\n", `slurm.time = "1 day"`, false},
		{"epochs rule misses shots", head + "shots = [1, 3]\nepochs_by_shots = {1 = 50}\n", `epochs_by_shots has no entry for 3 shots`, true},
		{"epochs set conflicts", head + "epochs_by_shots = {1 = 50, 2 = 1, 4 = 1, 8 = 1, 16 = 1}\nset = [\"train.epochs=3\"]\n", `conflicts with the sweep's epochs rule`, true},
		{"missing base file", "[sweep]\nmethods = [\"coop\"]\ndatasets = [\"eurosat\"]\nbase = \"" + dir + "/{dataset}/{method}.toml\"\nout = \"x\"\n", dir + "/eurosat/coop.toml", true},
		{"bad override", head + "set = [\"train.epoch=3\"]\n", `did you mean "train.epochs"`, true},
	}
	checkParseErrors(t, tests)
}

func TestShippedSweeps(t *testing.T) {
	// The shipped sweep files expand from the repository root.
	t.Chdir("..")
	tests := []struct {
		file  string
		cells int
	}{
		// 8 methods trained on the shots, zero-shot once, and 3 methods
		// again selected as published (compare_selection).
		{"configs/sweeps/paper.toml", 11 * (1 + 8*5*3 + 3*5*3)},
		{"configs/sweeps/demo.toml", 6 * 4 * 2},
		// The same comparison with the ViT-B/16 backbone.
		{"configs/sweeps/vitb16.toml", 11 * (1 + 8*5*3 + 3*5*3)},
	}
	for _, tt := range tests {
		f, err := Load(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		cells, err := f.Expand()
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if len(cells) != tt.cells {
			t.Errorf("%s: %d cells, want %d", tt.file, len(cells), tt.cells)
		}
	}
	f, _ := Load("configs/sweeps/paper.toml")
	cells, _ := f.Expand()
	epochs := map[string]int{}
	for _, c := range cells {
		if c.Seed == 1 {
			epochs[fmt.Sprintf("%s/%s/%d", c.Dataset, c.Method, c.Shots)] = c.Config.Train.Epochs
		}
	}
	// CoOp's rule (docs/hyperparameters.md §1), Tip-Adapter-F's own epochs (§5).
	for key, want := range map[string]int{
		"dtd/coop/1": 50, "dtd/coop/2": 100, "dtd/coop/4": 100, "dtd/coop/8": 200, "dtd/coop/16": 200,
		"imagenet/coop/16": 50, "imagenet/coop/1": 50, "imagenet/clip-adapter/16": 200, "sun397/clip-adapter/1": 50,
		"eurosat/tip-adapter-f/16": 100, "dtd/tip-adapter-f/1": 20, "dtd/zeroshot/16": 0,
		// CoCoOp's 10 epochs at every shot count (§7), ProLIP's 300 (§8), GDA trains nothing.
		"dtd/cocoop/1": 10, "imagenet/cocoop/16": 10, "dtd/prolip/4": 300, "dtd/gda/16": 0,
	} {
		if got, ok := epochs[key]; !ok || got != want {
			t.Errorf("paper sweep %s: %d epochs (present %v), want %d", key, got, ok, want)
		}
	}
}

// TestViTB16Sweep: the ViT-B/16 sweep runs the RN50 protocol with the
// ViT-B/16 backbone and evaluates its ImageNet cells on the four variants.
func TestViTB16Sweep(t *testing.T) {
	t.Chdir("..")
	vit, err := Load("configs/sweeps/vitb16.toml")
	if err != nil {
		t.Fatal(err)
	}
	rn, err := Load("configs/sweeps/paper.toml")
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := vit.Expand()
	rc, _ := rn.Expand()
	if len(vc) != len(rc) {
		t.Fatalf("%d ViT-B/16 cells, %d RN50 cells", len(vc), len(rc))
	}
	for i := range vc {
		v, r := vc[i].Config, rc[i].Config
		if v.Model.Name != "ViT-B/16" || r.Model.Name != "RN50" {
			t.Fatalf("%s: backbones %q and %q", vc[i], v.Model.Name, r.Model.Name)
		}
		// Everything but the backbone (and the output folder) is the same.
		v2 := *v
		v2.Model.Name, v2.Output = r.Model.Name, r.Output
		if fmt.Sprint(v2.Data, v2.Train, v2.Model) != fmt.Sprint(r.Data, r.Train, r.Model) || vc[i].Method != rc[i].Method {
			t.Errorf("%s: the ViT-B/16 cell differs from the RN50 one beyond the backbone", vc[i])
		}
		evals := vit.Sweep.EvalDatasets(vc[i])
		if (vc[i].Dataset == "imagenet") != (len(evals) == 4) {
			t.Errorf("%s: evaluated on %v", vc[i], evals)
		}
	}
}

// TestCompareSelection: a compare_selection method runs twice per cell,
// the second time with train.select_on set and a run directory of its own;
// bad values and unknown methods are errors.
func TestCompareSelection(t *testing.T) {
	dir := t.TempDir()
	writeBases(t, filepath.Join(dir, "cfg"), []string{"dtd"}, []string{"zeroshot", "tip-adapter-f"})
	head := `
[sweep]
methods  = ["zeroshot", "tip-adapter-f"]
datasets = ["dtd"]
shots    = [1, 16]
seeds    = [1]
base     = "` + filepath.Join(dir, "cfg") + `/{dataset}/{method}.toml"
out      = "` + filepath.Join(dir, "out") + `"
`
	f, err := Parse(head + "[sweep.compare_selection]\n\"tip-adapter-f\" = \"test\"\n")
	if err != nil {
		t.Fatal(err)
	}
	cells, err := f.Expand()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cells {
		got = append(got, fmt.Sprintf("%s/%d/%s/%s", c.Method, c.Shots, c.Config.Train.SelectOn, filepath.Base(c.Dir)))
	}
	want := []string{
		"zeroshot/1/fewshot_val/dtd_zeroshot_random-tiny_1shot_seed1",
		"zeroshot/16/fewshot_val/dtd_zeroshot_random-tiny_16shot_seed1",
		"tip-adapter-f/1/fewshot_val/dtd_tip-adapter-f_random-tiny_1shot_seed1",
		"tip-adapter-f/1/test/dtd_tip-adapter-f_random-tiny_1shot_seed1_select-test",
		"tip-adapter-f/16/fewshot_val/dtd_tip-adapter-f_random-tiny_16shot_seed1",
		"tip-adapter-f/16/test/dtd_tip-adapter-f_random-tiny_16shot_seed1_select-test",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("cells:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, tc := range []struct{ table, want string }{
		{"[sweep.compare_selection]\n\"tip-adapter-f\" = \"val\"\n", `want "full_val" or "test"`},
		{"[sweep.compare_selection]\ngda = \"test\"\n", `"gda" is not in sweep.methods`},
		{"set = [\"train.select_on=test\"]\n", "use sweep.compare_selection"},
	} {
		text := head + tc.table
		if strings.HasPrefix(tc.table, "set") {
			text = strings.Replace(head, "[sweep]\n", "[sweep]\n"+tc.table, 1)
		}
		if _, err := Parse(text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.table, err, tc.want)
		}
	}
}
