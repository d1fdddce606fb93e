package report

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/clipadapter/clipgo/rundir"
)

// shiftDatasets are the distribution-shift targets of ImageNet, in the
// order of the papers' tables.
var shiftDatasets = []string{"ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"}

// ShiftRow is one line of the distribution-shift table: the runs of one
// method (backbone, shots) trained on Source, evaluated on Source's test
// set and on other datasets (cmd/eval, RUN/eval/<dataset>.json).
type ShiftRow struct {
	Backbone   string
	Source     string
	Method     string
	MethodInfo MethodInfo
	Shots      int
	// Columns are Source then the evaluated datasets (ImageNet's variants
	// in the papers' order, then others by name); Cells[i] summarizes the
	// runs' top-1 on Columns[i] over seeds, with the published number for
	// that dataset, method, backbone and shots.
	Columns []string
	Cells   []Stat
}

// evalsOf reads the evaluations of run dir, keyed by the evaluated
// dataset's canonical name.
func evalsOf(dir string) (map[string]rundir.EvalResult, error) {
	byFile, err := rundir.ReadEvals(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string]rundir.EvalResult, len(byFile))
	for _, e := range byFile {
		out[e.Dataset] = e
	}
	return out, nil
}

// Shift builds the distribution-shift table from the runs that were
// evaluated on other datasets: one row per backbone, source dataset,
// method and shots, ordered like the main table.
func Shift(runs []Run, published []Published) []ShiftRow {
	type key struct {
		backbone, source, method string
		shots                    int
	}
	type col struct {
		seeds  []int
		values []float64
	}
	rows := map[key]map[string]*col{}
	infos := map[key]MethodInfo{}
	for _, r := range runs {
		if len(r.Evals) == 0 {
			continue
		}
		k := key{r.Backbone, r.Dataset, r.Method, r.Shots}
		if slices.Contains(shotFree, r.Method) {
			k.shots = 0
		}
		if rows[k] == nil {
			rows[k] = map[string]*col{}
			infos[k] = methodInfoOf(r)
		}
		add := func(ds string, top1 float64) {
			c := rows[k][ds]
			if c == nil {
				c = &col{}
				rows[k][ds] = c
			}
			if slices.Contains(c.seeds, r.Seed) {
				return // a duplicate run (reported by Aggregate)
			}
			c.seeds = append(c.seeds, r.Seed)
			c.values = append(c.values, top1)
		}
		add(r.Dataset, r.Top1)
		for ds, e := range r.Evals {
			add(ds, e.Test.Top1)
		}
	}
	pub := map[pubKey]*Published{}
	for i := range published {
		p := &published[i]
		pub[pubKey{p.Dataset, p.Method, p.Backbone, p.Shots}] = p
	}
	var out []ShiftRow
	for k, cols := range rows {
		row := ShiftRow{Backbone: k.backbone, Source: k.source, Method: k.method, MethodInfo: infos[k], Shots: k.shots}
		row.Columns = []string{k.source}
		var others []string
		for ds := range cols {
			if ds != k.source && !slices.Contains(shiftDatasets, ds) {
				others = append(others, ds)
			}
		}
		sort.Strings(others)
		for _, ds := range append(slices.Clone(shiftDatasets), others...) {
			if cols[ds] != nil {
				row.Columns = append(row.Columns, ds)
			}
		}
		for _, ds := range row.Columns {
			c := cols[ds]
			s := Stat{Backbone: k.backbone, Dataset: ds, Method: k.method, MethodInfo: row.MethodInfo, Shots: k.shots,
				Seeds: c.seeds, Values: c.values, Datasets: 1}
			s.Mean, s.Std = meanStd(c.values)
			s.Published = pub[publishedKey(ds, k.method, k.backbone, k.shots)]
			row.Cells = append(row.Cells, s)
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.Backbone != b.Backbone:
			return a.Backbone < b.Backbone
		case a.Source != b.Source:
			return datasetLess(a.Source, b.Source)
		case a.Shots != b.Shots:
			return a.Shots > b.Shots
		case a.Method != b.Method:
			return a.MethodInfo.less(b.MethodInfo)
		}
		return false
	})
	return out
}

// WriteShiftMarkdown writes the distribution-shift table: per backbone and
// source dataset, a row per method and shots with the mean ± std over
// seeds on each dataset, and below it the published numbers. sourceRef
// numbers the sources of the published numbers (see WriteMarkdown); nil
// prints them inline.
func WriteShiftMarkdown(w io.Writer, rows []ShiftRow, sourceRef func(string) int) error {
	var b strings.Builder
	var refs []string
	if sourceRef == nil {
		sourceRef = func(s string) int {
			if i := slices.Index(refs, s); i >= 0 {
				return i + 1
			}
			refs = append(refs, s)
			return len(refs)
		}
	}
	b.WriteString("\n## Distribution shift: test top-1 accuracy (%) of runs evaluated on other datasets\n")
	b.WriteString("\nTrained on the first column's dataset; each cell: mean ± std over seeds (runs). Methods built on text " +
		"(zero-shot CLIP, CoOp, CLIP-Adapter) use the target's class names; the others have their logits restricted to the " +
		"target's classes (ImageNet-A and -R hold 200 of ImageNet's).\n")
	type group struct{ backbone, source string }
	var groups []group
	for _, r := range rows {
		g := group{r.Backbone, r.Source}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		var cols []string
		for _, r := range rows {
			if r.Backbone != g.backbone || r.Source != g.source {
				continue
			}
			for _, c := range r.Columns {
				if !slices.Contains(cols, c) {
					cols = append(cols, c)
				}
			}
		}
		// The source first, then the papers' order.
		sort.SliceStable(cols, func(i, j int) bool { return shiftRank(cols[i], g.source) < shiftRank(cols[j], g.source) })
		fmt.Fprintf(&b, "\n### %s, trained on %s\n\n| method | shots | %s |\n|---|--:|%s\n", g.backbone, g.source,
			strings.Join(cols, " | "), strings.Repeat("--:|", len(cols)))
		for _, r := range rows {
			if r.Backbone != g.backbone || r.Source != g.source {
				continue
			}
			ours := make([]string, len(cols))
			pub := make([]string, len(cols))
			hasPub := false
			for i, ds := range r.Columns {
				s := r.Cells[i]
				j := slices.Index(cols, ds)
				ours[j] = fmt.Sprintf("%.2f ± %s (%d)", s.Mean, fmtStd(s.Std), len(s.Values))
				if s.Published != nil {
					hasPub = true
					pub[j] = fmt.Sprintf("%.2f [%d]", s.Published.Top1, sourceRef(s.Published.Source))
				}
			}
			fmt.Fprintf(&b, "| %s | %d | %s |\n", r.MethodInfo.Label, r.Shots, strings.Join(ours, " | "))
			if hasPub {
				fmt.Fprintf(&b, "| ↳ published | | %s |\n", strings.Join(pub, " | "))
			}
		}
	}
	if len(refs) > 0 {
		b.WriteString("\nSources:\n\n")
		for i, s := range refs {
			fmt.Fprintf(&b, "%d. %s\n", i+1, s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shiftRank orders the columns of a shift table.
func shiftRank(ds, source string) int {
	if ds == source {
		return -1
	}
	if i := slices.Index(shiftDatasets, ds); i >= 0 {
		return i
	}
	return len(shiftDatasets)
}
