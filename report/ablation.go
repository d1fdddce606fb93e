package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/clipadapter/clipgo/rundir"
)

// Files written by Ablation.Write.
const (
	AblationMarkdownFile = "ablation.md"
	AblationCSVFile      = "ablation.csv"
)

// ConfigValues reads a run's config.toml and returns every scalar key as
// section.key → its value as a label (numbers in shortest form, strings
// bare, arrays in TOML-like brackets).
func ConfigValues(dir string) (map[string]string, error) {
	path := filepath.Join(dir, rundir.ConfigFile)
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]string{}
	for sec, v := range raw {
		table, ok := v.(map[string]any)
		if !ok {
			continue
		}
		for k, x := range table {
			out[sec+"."+k] = valueLabel(x)
		}
	}
	return out, nil
}

func valueLabel(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = valueLabel(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// AblationOptions says what an ablation plots.
type AblationOptions struct {
	// X is the swept config key on the x axis (method.alpha).
	X string
	// Series are further swept keys whose values split the lines (one
	// line per method and combination of their values).
	Series []string
	// Order gives the x values' order (a sweep file's grid order); values
	// not in it follow, numerically when all are numbers, else sorted.
	Order []string
}

// AblationStat is one point of an ablation: the mean ± std over seeds of
// the runs with one backbone, dataset, method, shot count, series and x
// value.
type AblationStat struct {
	Backbone string
	// Dataset is a dataset name or AverageDataset.
	Dataset    string
	Method     string
	MethodInfo MethodInfo
	Shots      int
	// Series labels the other swept keys' values ("variant=both"), empty
	// without Series keys.
	Series string
	// X is the swept key's value.
	X      string
	Seeds  []int
	Values []float64
	// Mean and Std as in Stat (Std over seeds; for an average, the std of
	// the per-seed averages when every dataset has the same seeds, else
	// NaN).
	Mean, Std float64
	Datasets  int
}

// line is what one plotted line holds fixed.
func (s AblationStat) line() string {
	return fmt.Sprintf("%s\x00%d\x00%s", s.Method, s.Shots, s.Series)
}

// Ablation is accuracy against one swept key.
type Ablation struct {
	Options AblationOptions
	// XValues are the x values in plotting order.
	XValues []string
	Stats   []AblationStat
	// Duplicates lists run directories ignored because an earlier one
	// has the same cell and seed.
	Duplicates []string
	// Missing lists run directories whose config has no value for X.
	Missing []string
	// multiShots: the runs have several shot counts, so lines are split by
	// them as well.
	multiShots bool
}

// NewAblation groups runs by backbone, dataset, method, shots, the series
// keys' values and the x value, averages over seeds and over datasets
// (for every combination present on at least two). values returns a run's
// config values (ConfigValues of its directory).
func NewAblation(runs []Run, o AblationOptions, values func(Run) (map[string]string, error)) (*Ablation, error) {
	if o.X == "" {
		return nil, fmt.Errorf("ablation: no swept key")
	}
	runs = slices.Clone(runs)
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Dir < runs[j].Dir })
	a := &Ablation{Options: o}
	type key struct {
		backbone, dataset, method, series, x string
		shots                                int
	}
	cells := map[key]*AblationStat{}
	seen := map[string]bool{}
	shots := map[int]bool{}
	var xs []string
	for _, r := range runs {
		vals, err := values(r)
		if err != nil {
			return nil, err
		}
		x, ok := vals[o.X]
		if !ok {
			a.Missing = append(a.Missing, r.Dir)
			continue
		}
		var series []string
		for _, k := range o.Series {
			v, ok := vals[k]
			if !ok {
				v = "–"
			}
			_, short, _ := strings.Cut(k, ".")
			series = append(series, short+"="+v)
		}
		k := key{r.Backbone, r.Dataset, r.Method, strings.Join(series, ", "), x, r.Shots}
		sk := fmt.Sprintf("%v\x00%d", k, r.Seed)
		if seen[sk] {
			a.Duplicates = append(a.Duplicates, r.Dir)
			continue
		}
		seen[sk] = true
		shots[r.Shots] = true
		if !slices.Contains(xs, x) {
			xs = append(xs, x)
		}
		s := cells[k]
		if s == nil {
			s = &AblationStat{Backbone: k.backbone, Dataset: k.dataset, Method: k.method, MethodInfo: methodInfoOf(r),
				Shots: k.shots, Series: k.series, X: x, Datasets: 1}
			cells[k] = s
		}
		s.Seeds = append(s.Seeds, r.Seed)
		s.Values = append(s.Values, r.Top1)
	}
	if len(cells) == 0 {
		return nil, fmt.Errorf("ablation: no run's config.toml has %s", o.X)
	}
	a.multiShots = len(shots) > 1
	a.XValues = orderValues(xs, o.Order)
	for _, s := range cells {
		sortBySeed(&s.Seeds, &s.Values)
		s.Mean, s.Std = meanStd(s.Values)
	}
	// Averages over datasets.
	groups := map[key][]*AblationStat{}
	for k, s := range cells {
		k.dataset = ""
		groups[k] = append(groups[k], s)
	}
	for k, ss := range groups {
		if len(ss) < 2 {
			continue
		}
		sort.Slice(ss, func(i, j int) bool { return datasetLess(ss[i].Dataset, ss[j].Dataset) })
		avg := &AblationStat{Backbone: k.backbone, Dataset: AverageDataset, Method: k.method, MethodInfo: ss[0].MethodInfo,
			Shots: k.shots, Series: k.series, X: k.x, Datasets: len(ss)}
		seeds, values := make([][]int, len(ss)), make([][]float64, len(ss))
		for i, s := range ss {
			avg.Values = append(avg.Values, s.Mean)
			seeds[i], values[i] = s.Seeds, s.Values
		}
		avg.Mean, avg.Seeds, avg.Std = averageOverDatasets(avg.Values, seeds, values)
		k.dataset = AverageDataset
		cells[k] = avg
	}
	for _, s := range cells {
		a.Stats = append(a.Stats, *s)
	}
	sort.Slice(a.Stats, func(i, j int) bool {
		x, y := a.Stats[i], a.Stats[j]
		switch {
		case x.Backbone != y.Backbone:
			return x.Backbone < y.Backbone
		case x.Dataset != y.Dataset:
			return datasetLess(x.Dataset, y.Dataset)
		case x.Method != y.Method:
			return x.MethodInfo.less(y.MethodInfo)
		case x.Shots != y.Shots:
			return x.Shots < y.Shots
		case x.Series != y.Series:
			return x.Series < y.Series
		}
		return slices.Index(a.XValues, x.X) < slices.Index(a.XValues, y.X)
	})
	return a, nil
}

func sortBySeed(seeds *[]int, values *[]float64) {
	idx := make([]int, len(*seeds))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return (*seeds)[idx[a]] < (*seeds)[idx[b]] })
	s2, v2 := make([]int, len(idx)), make([]float64, len(idx))
	for i, j := range idx {
		s2[i], v2[i] = (*seeds)[j], (*values)[j]
	}
	*seeds, *values = s2, v2
}

// orderValues puts xs in order's order, then the rest numerically when
// they all parse as numbers, else sorted.
func orderValues(xs, order []string) []string {
	var out, rest []string
	for _, v := range order {
		if slices.Contains(xs, v) && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	for _, v := range xs {
		if !slices.Contains(out, v) {
			rest = append(rest, v)
		}
	}
	numeric := true
	for _, v := range rest {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			numeric = false
		}
	}
	sort.SliceStable(rest, func(i, j int) bool {
		if numeric {
			a, _ := strconv.ParseFloat(rest[i], 64)
			b, _ := strconv.ParseFloat(rest[j], 64)
			return a < b
		}
		return rest[i] < rest[j]
	})
	return append(out, rest...)
}

// Backbones returns the ablation's backbones in order.
func (a *Ablation) Backbones() []string { return backbonesOf(a.Stats) }

// Datasets returns a backbone's datasets in order (the average last).
func (a *Ablation) Datasets(backbone string) []string { return datasetsOf(a.Stats, backbone) }

// Select returns the stats of one backbone and dataset.
func (a *Ablation) Select(backbone, dataset string) []AblationStat {
	return selectCell(a.Stats, backbone, dataset)
}

// lineLabel names a line: the method's label, the shots when the runs
// have several shot counts, and the series values.
func (a *Ablation) lineLabel(s AblationStat) string {
	parts := []string{s.MethodInfo.Label}
	if a.multiShots {
		parts = append(parts, fmt.Sprintf("%d-shot", s.Shots))
	}
	if s.Series != "" {
		parts = append(parts, s.Series)
	}
	return strings.Join(parts, ", ")
}

// lines returns the stats grouped into lines, in order.
func (a *Ablation) lines(stats []AblationStat) [][]AblationStat {
	var order []string
	by := map[string][]AblationStat{}
	for _, s := range stats {
		l := s.line()
		if _, ok := by[l]; !ok {
			order = append(order, l)
		}
		by[l] = append(by[l], s)
	}
	out := make([][]AblationStat, len(order))
	for i, l := range order {
		out[i] = by[l]
	}
	return out
}

// WriteMarkdown writes one table per backbone and dataset: a row per line
// (method, shots, series) and a column per x value, each cell mean ± std
// over seeds with the number of runs.
func (a *Ablation) WriteMarkdown(w io.Writer, source string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Ablation: test top-1 accuracy (%%) against `%s`\n\n", a.Options.X)
	if source != "" {
		fmt.Fprintf(&b, "Runs: %s.\n\n", source)
	}
	b.WriteString("Each cell: mean ± std over seeds (population std), the number of runs in parentheses. " +
		"An average is the mean over datasets of the per-dataset means; its std is that of the per-seed averages.\n")
	for _, bb := range a.Backbones() {
		fmt.Fprintf(&b, "\n## %s\n", bb)
		for _, ds := range a.Datasets(bb) {
			stats := a.Select(bb, ds)
			title := ds
			if ds == AverageDataset {
				n := 0
				for _, s := range stats {
					n = max(n, s.Datasets)
				}
				title = fmt.Sprintf("Average over %d datasets", n)
			}
			fmt.Fprintf(&b, "\n### %s\n\n| %s |", title, a.Options.X)
			for _, x := range a.XValues {
				fmt.Fprintf(&b, " %s |", x)
			}
			b.WriteString("\n|---|" + strings.Repeat("--:|", len(a.XValues)) + "\n")
			for _, line := range a.lines(stats) {
				cells := make([]string, len(a.XValues))
				for _, s := range line {
					i := slices.Index(a.XValues, s.X)
					if ds == AverageDataset {
						cells[i] = fmt.Sprintf("%.2f ± %s", s.Mean, fmtStd(s.Std))
					} else {
						cells[i] = fmt.Sprintf("%.2f ± %s (%d)", s.Mean, fmtStd(s.Std), len(s.Values))
					}
				}
				fmt.Fprintf(&b, "| %s | %s |\n", a.lineLabel(line[0]), strings.Join(cells, " | "))
			}
		}
	}
	for _, l := range []struct {
		title string
		dirs  []string
	}{{"Ignored duplicate runs", a.Duplicates}, {"Runs without " + a.Options.X, a.Missing}} {
		if len(l.dirs) > 0 {
			fmt.Fprintf(&b, "\n## %s\n\n", l.title)
			for _, d := range l.dirs {
				fmt.Fprintf(&b, "- %s\n", d)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCSV writes one line per point.
func (a *Ablation) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"backbone", "dataset", "method", "shots", "series", a.Options.X, "runs", "seeds", "mean", "std", "datasets"})
	for _, s := range a.Stats {
		seeds := make([]string, len(s.Seeds))
		for i, x := range s.Seeds {
			seeds[i] = strconv.Itoa(x)
		}
		cw.Write([]string{s.Backbone, s.Dataset, s.Method, strconv.Itoa(s.Shots), s.Series, s.X, strconv.Itoa(len(s.Values)),
			strings.Join(seeds, " "), fmtFloat(s.Mean, 4), fmtFloat(s.Std, 4), strconv.Itoa(s.Datasets)})
	}
	cw.Flush()
	return cw.Error()
}

// Write writes ablation.md, ablation.csv and the plots (plots/ablation_KEY_*)
// into dir and returns the paths written.
func (a *Ablation) Write(dir, source string) ([]string, error) {
	return writeReport(dir, AblationMarkdownFile, AblationCSVFile, source, a.WriteMarkdown, a.WriteCSV, a.WritePlots)
}
