// Package sweep expands a sweep file (methods x datasets x shots x seeds
// over base run configurations) into cells, each an ordinary train run
// directory, and runs them: locally with a bounded pool of workers that
// skips finished cells and resumes interrupted ones, or on a Slurm cluster
// as a job array (WriteSlurm).
//
// A sweep file is TOML with a [sweep] table and an optional [slurm] table:
//
//	[sweep]
//	methods  = ["zeroshot", "coop", "clip-adapter"]
//	datasets = ["imagenet", "dtd"]
//	shots    = [1, 2, 4, 8, 16]         # default
//	seeds    = [1, 2, 3]                # default
//	base     = "configs/{dataset}/{method}.toml"
//	out      = "runs/paper"
//	workers  = 2
//	devices  = ["cuda:0", "cuda:1"]     # worker i uses devices[i mod len]
//	epochs_by_shots = {1 = 50, 2 = 100, 4 = 100, 8 = 200, 16 = 200}
//	epochs_methods  = ["coop", "clip-adapter"]  # default
//	set = ["data.root=/data"]
//
//	eval = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]  # ImageNet cells, once finished
//
//	[sweep.per_method.coop]
//	epochs_by_dataset = {imagenet = 50}
//
//	# Protocol comparison: these methods also run selected the way their
//	# published numbers were (train.select_on), beside the few-shot runs.
//	[sweep.compare_selection]
//	gda = "full_val"
//	tip-adapter-f = "test"
//
//	[sweep.per_method.zeroshot]
//	shots = [1]
//	seeds = [1]
//
//	[sweep.grid]                        # any config keys, crossed with the rest
//	"method.alpha"     = [0, 0.2, 0.4]
//	"method.reduction" = [2, 4]
//
// A grid's cells are named by their values: the run directory is
// RunName() + "_alpha0.2_reduction4" (see GridValue).
//
// Relative paths (base, out, and paths inside set values) are relative to
// the directory the sweep is started from, as for cmd/train.
package sweep

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/datasets"
)

// defaultShots and defaultSeeds are the paper's shot counts and CoOp's seeds.
var (
	defaultShots = []int{1, 2, 4, 8, 16}
	defaultSeeds = []int{1, 2, 3}
)

// defaultEpochsMethods are the methods that follow CoOp's schedule, to which
// epochs_by_shots applies unless epochs_methods says otherwise.
var defaultEpochsMethods = []string{"coop", "clip-adapter"}

// File is a sweep file.
type File struct {
	Sweep Spec      `toml:"sweep"`
	Slurm SlurmSpec `toml:"slurm"`
}

// Spec is the [sweep] table.
type Spec struct {
	// Methods and Datasets are crossed with Shots and Seeds. A dataset is
	// the name that fills {dataset} in Base (configs/<dataset>/...), or a
	// data.dataset value when Base has no {dataset}. Shots default to
	// 1, 2, 4, 8, 16 and Seeds to 1, 2, 3.
	Methods  []string `toml:"methods"`
	Datasets []string `toml:"datasets"`
	Shots    []int    `toml:"shots"`
	Seeds    []int    `toml:"seeds"`
	// Base is the run configuration of a cell; {dataset} and {method} are
	// replaced. Without {method}, method.name is set to the cell's method;
	// without {dataset}, data.dataset is set to the cell's dataset.
	Base string `toml:"base"`
	// Out is the parent directory of the cells' run directories.
	Out string `toml:"out"`
	// Workers bounds the cells run at once locally (default: the number
	// of Devices, else 1).
	Workers int `toml:"workers"`
	// Devices gives worker i the device Devices[i mod len] (model.device).
	Devices []string `toml:"devices"`
	// EpochsByShots sets train.epochs by shot count for EpochsMethods.
	// TOML keys are strings: {1 = 50, 2 = 100}.
	EpochsByShots map[string]int `toml:"epochs_by_shots"`
	// EpochsMethods lists the methods EpochsByShots applies to (default
	// coop and clip-adapter, which follow CoOp's schedule).
	EpochsMethods []string `toml:"epochs_methods"`
	// Set holds overrides (section.key=value) applied to every cell.
	Set []string `toml:"set"`
	// PerMethod refines the sweep for one method.
	PerMethod map[string]MethodSpec `toml:"per_method"`
	// Grid maps config keys (section.key) to the values to sweep; every
	// combination is crossed with the methods, datasets, shots and seeds
	// (nested inside methods, outside shots). Keys vary in file order, the
	// first slowest.
	Grid map[string][]any `toml:"grid"`
	// gridOrder is the order of Grid's keys in the file.
	gridOrder []string
	// Eval lists datasets that every finished cell trained on one of
	// EvalFrom is evaluated on, as cmd/eval does (RUN/eval/<dataset>.json),
	// e.g. ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"].
	Eval []string `toml:"eval"`
	// EvalFrom lists the sweep datasets whose cells are evaluated
	// (default ["imagenet"]).
	EvalFrom []string `toml:"eval_from"`
	// EvalRoot is the data root of the Eval datasets (default: each
	// cell's data.root).
	EvalRoot string `toml:"eval_root"`
	// CompareSelection runs each listed method a second time per cell with
	// train.select_on set to the value ("full_val" or "test"): how its
	// published number selected epochs and hyper-parameters, so that a
	// report shows the honest few-shot number beside the original one.
	CompareSelection map[string]string `toml:"compare_selection"`
}

// EvalDatasets returns the datasets cell c is evaluated on once finished
// (Eval when c's dataset is in EvalFrom).
func (s Spec) EvalDatasets(c Cell) []string {
	from := s.EvalFrom
	if len(from) == 0 {
		from = []string{"imagenet"}
	}
	if !slices.Contains(from, c.Dataset) {
		return nil
	}
	return s.Eval
}

// MethodSpec is a [sweep.per_method.NAME] table.
type MethodSpec struct {
	// Shots and Seeds replace the sweep's for this method (zero-shot CLIP
	// does not depend on either, so one cell per dataset suffices).
	Shots []int `toml:"shots"`
	Seeds []int `toml:"seeds"`
	// Set holds overrides applied after the sweep's own.
	Set []string `toml:"set"`
	// EpochsByShots replaces the sweep's rule for this method (and makes
	// it apply even when the method is not in epochs_methods).
	EpochsByShots map[string]int `toml:"epochs_by_shots"`
	// EpochsByDataset fixes train.epochs on a dataset, whatever the shots
	// (CoOp: 50 epochs on ImageNet).
	EpochsByDataset map[string]int `toml:"epochs_by_dataset"`
}

// Cell is one run of a sweep.
type Cell struct {
	// Index is the cell's position in the expansion (the Slurm array index).
	Index   int
	Method  string
	Dataset string
	Shots   int
	Seed    int
	// Epochs is the train.epochs the sweep set, 0 when the base config's
	// value is kept.
	Epochs int
	// SelectOn is the train.select_on of a compare_selection cell, empty
	// for the sweep's own cells.
	SelectOn string
	// Base is the run configuration file and Sets the overrides applied to
	// it, in order: config.Load(Base, Sets) is the cell's config.
	Base string
	Sets []string
	// Grid holds the cell's values of the sweep's grid keys, in GridKeys
	// order (empty without a grid).
	Grid []GridValue
	// Dir is the run directory: Out/config.RunName(), followed by the
	// grid values (gridSuffix).
	Dir string
	// Config is the resolved configuration.
	Config *config.Config
}

// String names the cell for progress lines.
func (c Cell) String() string {
	s := fmt.Sprintf("%s %s %d-shot seed %d", c.Method, c.Dataset, c.Shots, c.Seed)
	for _, g := range c.Grid {
		s += fmt.Sprintf(" %s=%s", g.Key, g.Label)
	}
	if c.SelectOn != "" {
		s += " selected on " + c.SelectOn
	}
	return s
}

// Load reads and checks a sweep file. Unknown keys are errors.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	f, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("sweep file %s: %w", path, err)
	}
	return f, nil
}

// Parse is Load on TOML text.
func Parse(text string) (*File, error) {
	var f File
	md, err := toml.Decode(text, &f)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		var msgs []string
		for _, k := range und {
			msgs = append(msgs, fmt.Sprintf("unknown key %q%s", k.String(), validHint(k)))
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	s := &f.Sweep
	s.gridOrder = gridKeys(md, s.Grid)
	if len(s.Shots) == 0 {
		s.Shots = slices.Clone(defaultShots)
	}
	if len(s.Seeds) == 0 {
		s.Seeds = slices.Clone(defaultSeeds)
	}
	if s.EpochsMethods == nil {
		s.EpochsMethods = slices.Clone(defaultEpochsMethods)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// validHint lists the valid keys of the table an unknown key is in.
func validHint(k toml.Key) string {
	var t reflect.Type
	switch {
	case len(k) == 2 && k[0] == "sweep":
		t = reflect.TypeOf(Spec{})
	case len(k) == 4 && k[0] == "sweep" && k[1] == "per_method":
		t = reflect.TypeOf(MethodSpec{})
	case len(k) == 2 && k[0] == "slurm":
		t = reflect.TypeOf(SlurmSpec{})
	case len(k) == 1:
		t = reflect.TypeOf(File{})
	default:
		return ""
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if !t.Field(i).IsExported() {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		keys = append(keys, name)
	}
	sort.Strings(keys)
	return " (valid: " + strings.Join(keys, ", ") + ")"
}

// Validate checks the sweep file's values; Parse calls it, and callers
// that change a File afterwards (command-line flags) call it again.
func (f *File) Validate() error {
	s := f.Sweep
	var errs []string
	if len(s.Methods) == 0 {
		errs = append(errs, "sweep.methods is empty")
	}
	if len(s.Datasets) == 0 {
		errs = append(errs, "sweep.datasets is empty")
	}
	if s.Base == "" {
		errs = append(errs, `sweep.base is required (e.g. "configs/{dataset}/{method}.toml")`)
	}
	if s.Out == "" {
		errs = append(errs, `sweep.out is required (e.g. "runs/paper")`)
	}
	if s.Workers < 0 {
		errs = append(errs, fmt.Sprintf("sweep.workers = %d must be >= 0", s.Workers))
	}
	if dup := duplicate(s.Methods); dup != "" {
		errs = append(errs, fmt.Sprintf("sweep.methods lists %q twice", dup))
	}
	if dup := duplicate(s.Datasets); dup != "" {
		errs = append(errs, fmt.Sprintf("sweep.datasets lists %q twice", dup))
	}
	for _, e := range s.Eval {
		if _, ok := datasets.CanonicalName(e); !ok {
			errs = append(errs, fmt.Sprintf("sweep.eval: unknown dataset %q (known: %s)", e, strings.Join(datasets.Names(), ", ")))
		}
	}
	check := func(where string, shots, seeds []int) {
		for _, k := range shots {
			if k < 0 {
				errs = append(errs, fmt.Sprintf("%s.shots: %d must be >= 0", where, k))
			}
		}
		if dup := duplicate(ints(shots)); dup != "" {
			errs = append(errs, fmt.Sprintf("%s.shots lists %s twice", where, dup))
		}
		for _, k := range seeds {
			if k < 0 {
				errs = append(errs, fmt.Sprintf("%s.seeds: %d must be >= 0", where, k))
			}
		}
		if dup := duplicate(ints(seeds)); dup != "" {
			errs = append(errs, fmt.Sprintf("%s.seeds lists %s twice", where, dup))
		}
	}
	check("sweep", s.Shots, s.Seeds)
	if _, err := epochsTable(s.EpochsByShots); err != nil {
		errs = append(errs, "sweep.epochs_by_shots: "+err.Error())
	}
	for _, name := range sortedKeys(s.PerMethod) {
		m := s.PerMethod[name]
		where := "sweep.per_method." + name
		if !slices.Contains(s.Methods, name) {
			errs = append(errs, fmt.Sprintf("%s: %q is not in sweep.methods", where, name))
		}
		check(where, m.Shots, m.Seeds)
		if _, err := epochsTable(m.EpochsByShots); err != nil {
			errs = append(errs, where+".epochs_by_shots: "+err.Error())
		}
		for _, d := range sortedKeys(m.EpochsByDataset) {
			if e := m.EpochsByDataset[d]; e < 0 {
				errs = append(errs, fmt.Sprintf("%s.epochs_by_dataset.%s = %d must be >= 0", where, d, e))
			}
		}
	}
	for _, set := range allSets(s) {
		if _, _, ok := strings.Cut(set, "="); !ok {
			errs = append(errs, fmt.Sprintf("set %q: want section.key=value", set))
			continue
		}
		if k := setKey(set); reservedKeys[k] != "" {
			errs = append(errs, fmt.Sprintf("set %q: %s is set by the sweep (%s)", set, k, reservedKeys[k]))
		}
	}
	errs = append(errs, checkGrid(s)...)
	for _, name := range sortedKeys(s.CompareSelection) {
		if !slices.Contains(s.Methods, name) {
			errs = append(errs, fmt.Sprintf("sweep.compare_selection.%s: %q is not in sweep.methods", name, name))
		}
		switch v := s.CompareSelection[name]; v {
		case config.SelectOnFullVal, config.SelectOnTest:
		default:
			errs = append(errs, fmt.Sprintf("sweep.compare_selection.%s = %q: want %q or %q", name, v, config.SelectOnFullVal, config.SelectOnTest))
		}
	}
	if err := f.Slurm.check(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// reservedKeys are the config keys each cell gets from the sweep.
var reservedKeys = map[string]string{
	"method.name":     "use sweep.methods",
	"data.dataset":    "use sweep.datasets",
	"data.shots":      "use sweep.shots",
	"data.seed":       "use sweep.seeds",
	"output.dir":      "use sweep.out",
	"output.name":     "run directories are named by the config (config.RunName)",
	"train.select_on": "use sweep.compare_selection",
}

func allSets(s Spec) []string {
	out := slices.Clone(s.Set)
	for _, name := range sortedKeys(s.PerMethod) {
		out = append(out, s.PerMethod[name].Set...)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// setKey returns the section.key of an override.
func setKey(set string) string {
	k, _, _ := strings.Cut(set, "=")
	return strings.TrimSpace(k)
}

func duplicate(xs []string) string {
	seen := map[string]bool{}
	for _, x := range xs {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return ""
}

func ints(xs []int) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strconv.Itoa(x)
	}
	return out
}

// epochsTable parses an epochs_by_shots table's string keys.
func epochsTable(m map[string]int) (map[int]int, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[int]int, len(m))
	for k, v := range m {
		shots, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil || shots < 0 {
			return nil, fmt.Errorf("key %q is not a shot count", k)
		}
		if v < 0 {
			return nil, fmt.Errorf("%d shots: epochs %d must be >= 0", shots, v)
		}
		out[shots] = v
	}
	return out, nil
}

// Expand crosses the sweep's datasets, methods, grid points, shots and
// seeds, in that nesting order, and resolves every cell's configuration with
// config.Load, so a missing base file or a bad override fails before
// anything runs.
func (f *File) Expand() ([]Cell, error) {
	s := f.Sweep
	globalEpochs, _ := epochsTable(s.EpochsByShots)
	points, err := s.gridPoints()
	if err != nil {
		return nil, err
	}
	var cells []Cell
	dirs := map[string]Cell{}
	for _, ds := range s.Datasets {
		for _, m := range s.Methods {
			pm := s.PerMethod[m]
			shots, seeds := s.Shots, s.Seeds
			if len(pm.Shots) > 0 {
				shots = pm.Shots
			}
			if len(pm.Seeds) > 0 {
				seeds = pm.Seeds
			}
			rule, _ := epochsTable(pm.EpochsByShots)
			if rule == nil && slices.Contains(s.EpochsMethods, m) {
				rule = globalEpochs
			}
			fixed, hasFixed := pm.EpochsByDataset[ds]
			base := strings.ReplaceAll(strings.ReplaceAll(s.Base, "{dataset}", ds), "{method}", m)
			variants := []string{""}
			if v, ok := s.CompareSelection[m]; ok {
				variants = append(variants, v)
			}
			for _, point := range points {
				for _, k := range shots {
					for _, seed := range seeds {
						for _, selectOn := range variants {
							c := Cell{Index: len(cells), Method: m, Dataset: ds, Shots: k, Seed: seed, Base: base, Grid: point, SelectOn: selectOn}
							if !strings.Contains(s.Base, "{method}") {
								c.Sets = append(c.Sets, "method.name="+strconv.Quote(m))
							}
							if !strings.Contains(s.Base, "{dataset}") {
								c.Sets = append(c.Sets, "data.dataset="+strconv.Quote(ds))
							}
							c.Sets = append(c.Sets, fmt.Sprintf("data.shots=%d", k), fmt.Sprintf("data.seed=%d", seed))
							switch {
							case hasFixed:
								c.Epochs = fixed
							case rule != nil:
								e, ok := rule[k]
								if !ok {
									return nil, fmt.Errorf("%s: epochs_by_shots has no entry for %d shots", c, k)
								}
								c.Epochs = e
							}
							for _, g := range point {
								if g.Key == "train.epochs" && (hasFixed || rule != nil) {
									return nil, fmt.Errorf("%s: sweep.grid.\"train.epochs\" conflicts with the sweep's epochs rule for %s", c, m)
								}
								c.Sets = append(c.Sets, g.Key+"="+g.Value)
							}
							if hasFixed || rule != nil {
								for _, set := range append(slices.Clone(s.Set), pm.Set...) {
									if setKey(set) == "train.epochs" {
										return nil, fmt.Errorf("%s: set %q conflicts with the sweep's epochs rule for %s", c, set, m)
									}
								}
								c.Sets = append(c.Sets, fmt.Sprintf("train.epochs=%d", c.Epochs))
							}
							c.Sets = append(c.Sets, "output.dir="+strconv.Quote(s.Out))
							c.Sets = append(c.Sets, s.Set...)
							c.Sets = append(c.Sets, pm.Set...)
							if selectOn != "" {
								c.Sets = append(c.Sets, "train.select_on="+strconv.Quote(selectOn))
							}
							cfg, err := config.Load(base, c.Sets)
							if err != nil {
								return nil, fmt.Errorf("cell %s: %w", c, err)
							}
							if cfg.Method.Name != m {
								return nil, fmt.Errorf("cell %s: %s has method.name = %q, want %q", c, base, cfg.Method.Name, m)
							}
							c.Config = cfg
							c.Dir = filepath.Join(s.Out, cfg.RunName()+gridSuffix(point))
							if prev, ok := dirs[c.Dir]; ok {
								return nil, fmt.Errorf("cells %s and %s share the run directory %s", prev, c, c.Dir)
							}
							dirs[c.Dir] = c
							cells = append(cells, c)
						}
					}
				}
			}
		}
	}
	return cells, nil
}

// Filter selects cells; an empty list selects every value.
type Filter struct {
	Methods  []string
	Datasets []string
	Shots    []int
	Seeds    []int
}

// Apply returns the cells the filter selects, renumbered from 0 (the
// Slurm array indices of the selection).
func (f Filter) Apply(cells []Cell) []Cell {
	var out []Cell
	for _, c := range cells {
		if (len(f.Methods) > 0 && !slices.Contains(f.Methods, c.Method)) ||
			(len(f.Datasets) > 0 && !slices.Contains(f.Datasets, c.Dataset)) ||
			(len(f.Shots) > 0 && !slices.Contains(f.Shots, c.Shots)) ||
			(len(f.Seeds) > 0 && !slices.Contains(f.Seeds, c.Seed)) {
			continue
		}
		c.Index = len(out)
		out = append(out, c)
	}
	return out
}

// CheckCells checks every cell's method configuration with check (the
// method registry's Check, as the cell's run would build it): an unknown
// method name or a per-method key that the method rejects fails the whole
// sweep before the first cell starts, instead of when that cell's turn
// comes. The error lists up to ten cells.
func CheckCells(cells []Cell, check func(*config.Config) error) error {
	var errs []string
	for _, c := range cells {
		if err := check(c.Config); err != nil {
			errs = append(errs, fmt.Sprintf("cell %d (%s): %v", c.Index, c, err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	n, more := len(errs), ""
	if n > 10 {
		more = fmt.Sprintf("; and %d more", n-10)
		errs = errs[:10]
	}
	return fmt.Errorf("%d of %d cells have a bad method configuration: %s%s", n, len(cells), strings.Join(errs, "; "), more)
}
