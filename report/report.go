// Package report turns run directories into the paper's comparison: it
// gathers finished runs (result.json beside config.toml), aggregates the
// test top-1 accuracy over seeds (mean ± std) for each backbone, dataset,
// method and shot count, averages over datasets, puts the published
// numbers (published.csv) beside them, and writes Markdown, CSV and
// accuracy-vs-shots plots.
package report

import (
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/rundir"
)

// publishedKey is the key of a table cell's published number: a method
// selected on other data (SelectionSuffix) is compared with its method's
// published number.
func publishedKey(dataset, method, backbone string, shots int) pubKey {
	base, _, _ := strings.Cut(method, SelectionSuffix)
	return pubKey{dataset, base, backbone, shots}
}

// SelectionSuffix joins a method's name and its train.select_on in the
// method key of runs selected on other data than the few-shot validation
// split (gda@full_val).
const SelectionSuffix = "@"

// Run is one finished run directory.
type Run struct {
	Dir string
	// Dataset is the canonical name of the config's data.dataset
	// (datasets.CanonicalName), or data.dataset itself for other names
	// such as "synthetic".
	Dataset  string
	Method   string
	Backbone string
	Shots    int
	Seed     int
	// Top1 is the test top-1 accuracy in percent.
	Top1   float64
	Result rundir.Result
	// Evals are the run's evaluations on other datasets (cmd/eval), keyed
	// by the evaluated dataset's canonical name.
	Evals map[string]rundir.EvalResult
}

// Collect finds the run directories under root (any depth; directories
// whose names start with "." are skipped) that hold result.json and reads
// them. The dataset comes from config.toml, since result.json names the
// dataset as loaded (a synthetic dataset loads as Caltech101).
func Collect(root string) ([]Run, error) {
	var runs []Run
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || d.Name() != rundir.ResultFile {
			return nil
		}
		r, err := readRun(filepath.Dir(path))
		if err != nil {
			return err
		}
		runs = append(runs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("collect runs in %s: %w", root, err)
	}
	return runs, nil
}

func readRun(dir string) (Run, error) {
	res, err := rundir.ReadResult(dir)
	if err != nil {
		return Run{}, err
	}
	// Only data.dataset is needed; the rest of the file is not checked, so
	// runs of other toolkit versions can be reported.
	var cfg struct {
		Data struct {
			Dataset string `toml:"dataset"`
		} `toml:"data"`
	}
	cpath := filepath.Join(dir, rundir.ConfigFile)
	if _, err := toml.DecodeFile(cpath, &cfg); err != nil {
		return Run{}, fmt.Errorf("%s: %w", cpath, err)
	}
	ds := cfg.Data.Dataset
	if ds == "" {
		return Run{}, fmt.Errorf("%s: no data.dataset", cpath)
	}
	if c, ok := datasets.CanonicalName(ds); ok {
		ds = c
	}
	if res.Method == "" || res.Backbone == "" {
		return Run{}, fmt.Errorf("%s: no method or backbone", filepath.Join(dir, rundir.ResultFile))
	}
	method := res.Method
	if res.SelectOn != "" {
		// A run selected on other data than the few-shot validation split
		// is a variant of its method, reported beside it.
		method += SelectionSuffix + res.SelectOn
		if res.MethodLabel != "" {
			res.MethodLabel += " (selected on " + strings.ReplaceAll(res.SelectOn, "_", " ") + ")"
		}
	}
	evals, err := evalsOf(dir)
	if err != nil {
		return Run{}, err
	}
	return Run{Dir: dir, Dataset: ds, Method: method, Backbone: res.Backbone, Shots: res.Shots, Seed: res.Seed, Top1: res.Test.Top1, Result: res, Evals: evals}, nil
}

// shotFree lists the methods whose result does not depend on the shots:
// their runs are pooled into one cell with Shots 0.
var shotFree = []string{"zeroshot"}

// Stat is the aggregate of one table cell.
type Stat struct {
	Backbone string
	// Dataset is a dataset name or AverageDataset.
	Dataset string
	Method  string
	// MethodInfo labels and ranks Method.
	MethodInfo MethodInfo
	// Shots is 0 for shot-free methods (zero-shot CLIP).
	Shots int
	// Seeds are the seeds of the runs, ascending (with repeats for a
	// shot-free method run at several shot counts).
	Seeds []int
	// Values are the runs' test top-1 accuracies; for an average, the
	// per-dataset means.
	Values []float64
	// Mean and Std summarize Values; Std is the population standard
	// deviation over seeds (numpy's np.std, as CoOp's parse_test_res.py),
	// NaN where it is undefined (an average over datasets whose seeds
	// differ).
	Mean, Std float64
	// Datasets is the number of datasets an average covers (1 otherwise).
	Datasets int
	// Published is the published number for the cell, if any.
	Published *Published
}

// Delta returns Mean minus the published number (NaN without one).
func (s Stat) Delta() float64 {
	if s.Published == nil {
		return math.NaN()
	}
	return s.Mean - s.Published.Top1
}

// Table is the aggregated results.
type Table struct {
	// Stats are ordered by backbone, dataset (the paper's order, then
	// others, then the average), method (the paper's order) and shots.
	Stats []Stat
	// Duplicates lists run directories ignored because an earlier one
	// (in path order) has the same backbone, dataset, method, shots and
	// seed.
	Duplicates []string
	// Shift is the distribution-shift table of the runs evaluated on other
	// datasets (see Shift).
	Shift []ShiftRow
}

// paperDatasets are the 11 datasets of the paper, in its order.
var paperDatasets = []string{"ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101",
	"FGVCAircraft", "SUN397", "DescribableTextures", "EuroSAT", "UCF101"}

// MethodInfo is how a report names and orders a method: the label and
// rank its runs recorded from the method registry (result.json's
// method_label and method_rank), or the bare name, after the ranked ones,
// for runs that recorded neither.
type MethodInfo struct {
	Name  string
	Label string
	// Rank is the method's place in the registry, -1 when unknown.
	Rank int
}

func methodInfoOf(r Run) MethodInfo {
	mi := MethodInfo{Name: r.Method, Label: r.Result.MethodLabel, Rank: -1}
	if mi.Label == "" {
		mi.Label = r.Method
	}
	if r.Result.MethodRank != nil {
		mi.Rank = *r.Result.MethodRank
	}
	return mi
}

// less orders ranked methods by rank, then the others by name.
func (a MethodInfo) less(b MethodInfo) bool {
	switch {
	case a.Rank != b.Rank && a.Rank >= 0 && b.Rank >= 0:
		return a.Rank < b.Rank
	case (a.Rank >= 0) != (b.Rank >= 0):
		return a.Rank >= 0
	}
	return a.Name < b.Name
}

type cellKey struct {
	backbone, dataset, method string
	shots                     int
}

// Aggregate groups the runs into cells, computes their mean and std, adds
// the averages over datasets (for each backbone, method and shots present
// on at least two datasets) and attaches the published numbers. An
// average is compared with the published one only when it covers exactly
// the paper's 11 datasets.
func Aggregate(runs []Run, published []Published) *Table {
	runs = slices.Clone(runs)
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Dir < runs[j].Dir })
	t := &Table{}
	type seedKey struct {
		cellKey
		runShots, seed int
	}
	seen := map[seedKey]bool{}
	cells := map[cellKey]*Stat{}
	for _, r := range runs {
		k := cellKey{r.Backbone, r.Dataset, r.Method, r.Shots}
		if slices.Contains(shotFree, r.Method) {
			k.shots = 0
		}
		sk := seedKey{k, r.Shots, r.Seed}
		if seen[sk] {
			t.Duplicates = append(t.Duplicates, r.Dir)
			continue
		}
		seen[sk] = true
		s := cells[k]
		if s == nil {
			s = &Stat{Backbone: k.backbone, Dataset: k.dataset, Method: k.method, MethodInfo: methodInfoOf(r), Shots: k.shots, Datasets: 1}
			cells[k] = s
		}
		s.Seeds = append(s.Seeds, r.Seed)
		s.Values = append(s.Values, r.Top1)
	}
	// Sort each cell's values by seed, then summarize.
	for _, s := range cells {
		idx := make([]int, len(s.Seeds))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return s.Seeds[idx[a]] < s.Seeds[idx[b]] })
		seeds, values := make([]int, len(idx)), make([]float64, len(idx))
		for i, j := range idx {
			seeds[i], values[i] = s.Seeds[j], s.Values[j]
		}
		s.Seeds, s.Values = seeds, values
		s.Mean, s.Std = meanStd(values)
	}

	// Averages over datasets.
	type avgKey struct {
		backbone, method string
		shots            int
	}
	groups := map[avgKey][]*Stat{}
	notPaper := map[cellKey]bool{} // averages over other datasets than the paper's 11
	for _, s := range cells {
		k := avgKey{s.Backbone, s.Method, s.Shots}
		groups[k] = append(groups[k], s)
	}
	for k, ss := range groups {
		if len(ss) < 2 {
			continue
		}
		sort.Slice(ss, func(i, j int) bool { return datasetLess(ss[i].Dataset, ss[j].Dataset) })
		a := &Stat{Backbone: k.backbone, Dataset: AverageDataset, Method: k.method, MethodInfo: ss[0].MethodInfo, Shots: k.shots, Datasets: len(ss)}
		seeds, values := make([][]int, len(ss)), make([][]float64, len(ss))
		for i, s := range ss {
			a.Values = append(a.Values, s.Mean)
			seeds[i], values[i] = s.Seeds, s.Values
		}
		a.Mean, a.Seeds, a.Std = averageOverDatasets(a.Values, seeds, values)
		ak := cellKey{k.backbone, AverageDataset, k.method, k.shots}
		cells[ak] = a
		paper := len(ss) == len(paperDatasets)
		for _, s := range ss {
			paper = paper && slices.Contains(paperDatasets, s.Dataset)
		}
		if !paper {
			notPaper[ak] = true
		}
	}

	pub := map[pubKey]*Published{}
	for i := range published {
		p := &published[i]
		pub[pubKey{p.Dataset, p.Method, p.Backbone, p.Shots}] = p
	}
	for k, s := range cells {
		if !notPaper[k] {
			s.Published = pub[publishedKey(s.Dataset, s.Method, s.Backbone, s.Shots)]
		}
	}

	for _, s := range cells {
		t.Stats = append(t.Stats, *s)
	}
	t.Shift = Shift(runs, published)
	sort.Slice(t.Stats, func(i, j int) bool { return statLess(t.Stats[i], t.Stats[j]) })
	return t
}

// averageOverDatasets returns the mean of the datasets' means and, when
// every dataset has the same seeds once each (seeds[d], with the run
// values values[d] in the same order), those seeds and the standard
// deviation over seeds of the per-seed averages; otherwise no seeds and
// NaN.
func averageOverDatasets(means []float64, seeds [][]int, values [][]float64) (mean float64, avgSeeds []int, std float64) {
	mean, _ = meanStd(means)
	first := seeds[0]
	if hasRepeats(first) {
		return mean, nil, math.NaN()
	}
	for _, s := range seeds[1:] {
		if !slices.Equal(s, first) {
			return mean, nil, math.NaN()
		}
	}
	perSeed := make([]float64, len(first))
	for i := range first {
		for _, v := range values {
			perSeed[i] += v[i] / float64(len(values))
		}
	}
	_, std = meanStd(perSeed)
	return mean, slices.Clone(first), std
}

func hasRepeats(xs []int) bool {
	for i := 1; i < len(xs); i++ {
		if xs[i] == xs[i-1] {
			return true
		}
	}
	return false
}

// meanStd returns the mean and the population standard deviation.
func meanStd(xs []float64) (mean, std float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)))
}

func datasetRank(d string) int {
	if d == AverageDataset {
		return len(paperDatasets) + 1
	}
	if i := slices.Index(paperDatasets, d); i >= 0 {
		return i
	}
	return len(paperDatasets)
}

func datasetLess(a, b string) bool {
	ra, rb := datasetRank(a), datasetRank(b)
	if ra != rb {
		return ra < rb
	}
	return a < b
}

func statLess(a, b Stat) bool {
	switch {
	case a.Backbone != b.Backbone:
		return a.Backbone < b.Backbone
	case a.Dataset != b.Dataset:
		return datasetLess(a.Dataset, b.Dataset)
	case a.Method != b.Method:
		return a.MethodInfo.less(b.MethodInfo)
	}
	return a.Shots < b.Shots
}

// Backbones returns the table's backbones in order.
func (t *Table) Backbones() []string { return backbonesOf(t.Stats) }

// Datasets returns the datasets of a backbone in order (the average last).
func (t *Table) Datasets(backbone string) []string { return datasetsOf(t.Stats, backbone) }

// Select returns the stats of one backbone and dataset.
func (t *Table) Select(backbone, dataset string) []Stat {
	return selectCell(t.Stats, backbone, dataset)
}

// cell is what backbonesOf, datasetsOf and selectCell read of a table's
// rows (Stat and AblationStat).
type cell interface {
	cellOf() (backbone, dataset string)
}

func (s Stat) cellOf() (string, string)         { return s.Backbone, s.Dataset }
func (s AblationStat) cellOf() (string, string) { return s.Backbone, s.Dataset }

// backbonesOf returns the backbones of rows in order of appearance.
func backbonesOf[S cell](rows []S) []string {
	var out []string
	for _, r := range rows {
		if bb, _ := r.cellOf(); !slices.Contains(out, bb) {
			out = append(out, bb)
		}
	}
	return out
}

// datasetsOf returns a backbone's datasets in order of appearance.
func datasetsOf[S cell](rows []S, backbone string) []string {
	var out []string
	for _, r := range rows {
		if bb, ds := r.cellOf(); bb == backbone && !slices.Contains(out, ds) {
			out = append(out, ds)
		}
	}
	return out
}

// selectCell returns the rows of one backbone and dataset.
func selectCell[S cell](rows []S, backbone, dataset string) []S {
	var out []S
	for _, r := range rows {
		if bb, ds := r.cellOf(); bb == backbone && ds == dataset {
			out = append(out, r)
		}
	}
	return out
}
