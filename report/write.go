package report

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/clipadapter/clipgo/rundir"
)

// Files written by Write.
const (
	MarkdownFile = "results.md"
	CSVFile      = "results.csv"
	PlotDir      = "plots"
)

// WriteMarkdown writes the table as Markdown: per backbone, one table per
// dataset (the paper's order, the average last) with a row per method for
// our mean ± std over seeds (runs in parentheses), and below it the
// published number and the difference where one exists. source names the
// runs in the heading.
func (t *Table) WriteMarkdown(w io.Writer, source string) error {
	var b strings.Builder
	b.WriteString("# Few-shot results: test top-1 accuracy (%)\n\n")
	if source != "" {
		fmt.Fprintf(&b, "Runs: %s.\n\n", source)
	}
	b.WriteString("Each cell: mean ± std over seeds (population std, as CoOp's `parse_test_res.py`), the number of runs in " +
		"parentheses. Below a method, *published* is the number from the source listed at the end (marked [n]) and " +
		"*Δ* = ours − published. Zero-shot CLIP does not use the training shots: all its runs are pooled in column 0. " +
		"An average is the mean over datasets of the per-dataset means; its std is that of the per-seed averages.\n")
	var sources []string
	sourceRef := func(s string) int {
		if i := slices.Index(sources, s); i >= 0 {
			return i + 1
		}
		sources = append(sources, s)
		return len(sources)
	}
	for _, bb := range t.Backbones() {
		fmt.Fprintf(&b, "\n## %s\n", bb)
		for _, ds := range t.Datasets(bb) {
			stats := t.Select(bb, ds)
			shots := shotColumns(stats)
			title := ds
			maxDatasets := 0
			if ds == AverageDataset {
				for _, s := range stats {
					maxDatasets = max(maxDatasets, s.Datasets)
				}
				title = fmt.Sprintf("Average over %d datasets", maxDatasets)
			}
			fmt.Fprintf(&b, "\n### %s\n\n| method |", title)
			for _, k := range shots {
				fmt.Fprintf(&b, " %d |", k)
			}
			b.WriteString("\n|---|")
			b.WriteString(strings.Repeat("--:|", len(shots)))
			b.WriteString("\n")
			for _, mi := range methodsOf(stats) {
				m := mi.Name
				ours := make([]string, len(shots))
				pub := make([]string, len(shots))
				delta := make([]string, len(shots))
				hasPub := false
				for _, s := range stats {
					if s.Method != m {
						continue
					}
					i := slices.Index(shots, s.Shots)
					ours[i] = fmt.Sprintf("%.2f ± %s (%d)", s.Mean, fmtStd(s.Std), len(s.Values))
					if ds == AverageDataset {
						ours[i] = fmt.Sprintf("%.2f ± %s", s.Mean, fmtStd(s.Std))
						if s.Datasets != maxDatasets {
							ours[i] += fmt.Sprintf(" (%d datasets)", s.Datasets)
						}
					}
					if s.Published != nil {
						hasPub = true
						pub[i] = fmt.Sprintf("%.2f [%d]", s.Published.Top1, sourceRef(s.Published.Source))
						delta[i] = fmt.Sprintf("%+.2f", s.Delta())
					}
				}
				fmt.Fprintf(&b, "| %s | %s |\n", mi.Label, strings.Join(ours, " | "))
				if hasPub {
					fmt.Fprintf(&b, "| ↳ published | %s |\n", strings.Join(pub, " | "))
					fmt.Fprintf(&b, "| ↳ Δ | %s |\n", strings.Join(delta, " | "))
				}
			}
		}
	}
	if len(t.Shift) > 0 {
		if err := WriteShiftMarkdown(&b, t.Shift, sourceRef); err != nil {
			return err
		}
	}
	if len(sources) > 0 {
		b.WriteString("\n## Sources of the published numbers\n\n")
		for i, s := range sources {
			fmt.Fprintf(&b, "%d. %s\n", i+1, s)
		}
	}
	if len(t.Duplicates) > 0 {
		fmt.Fprintf(&b, "\n## Ignored duplicate runs\n\nThese repeat the backbone, dataset, method, shots and seed of an earlier directory:\n\n")
		for _, d := range t.Duplicates {
			fmt.Fprintf(&b, "- %s\n", d)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtStd(std float64) string {
	if math.IsNaN(std) {
		return "–"
	}
	return fmt.Sprintf("%.2f", std)
}

// shotColumns returns the shot counts of stats, ascending.
func shotColumns(stats []Stat) []int {
	var out []int
	for _, s := range stats {
		if !slices.Contains(out, s.Shots) {
			out = append(out, s.Shots)
		}
	}
	slices.Sort(out)
	return out
}

// methodsOf returns the methods of stats in the registry's order (see
// MethodInfo).
func methodsOf(stats []Stat) []MethodInfo {
	var out []MethodInfo
	for _, s := range stats {
		if !slices.ContainsFunc(out, func(m MethodInfo) bool { return m.Name == s.Method }) {
			out = append(out, s.MethodInfo)
		}
	}
	slices.SortStableFunc(out, func(a, b MethodInfo) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	return out
}

// csvHeader is the header of WriteCSV's output.
var csvHeader = []string{"backbone", "dataset", "method", "shots", "runs", "seeds", "mean", "std", "datasets", "published", "delta", "source"}

// WriteCSV writes one line per cell: our mean and std with four decimals
// (empty where undefined), the seeds space-separated, and the published
// number, the difference and the source where one exists.
func (t *Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(csvHeader)
	for _, s := range t.Stats {
		seeds := make([]string, len(s.Seeds))
		for i, x := range s.Seeds {
			seeds[i] = strconv.Itoa(x)
		}
		rec := []string{s.Backbone, s.Dataset, s.Method, strconv.Itoa(s.Shots), strconv.Itoa(len(s.Values)),
			strings.Join(seeds, " "), fmtFloat(s.Mean, 4), fmtFloat(s.Std, 4), strconv.Itoa(s.Datasets), "", "", ""}
		if s.Published != nil {
			rec[9], rec[10], rec[11] = fmtFloat(s.Published.Top1, 2), fmtFloat(s.Delta(), 4), s.Published.Source
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

func fmtFloat(x float64, prec int) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

// Write writes results.md, results.csv and the plots (PNG and SVG) into
// dir, each file atomically, and returns the paths written.
func (t *Table) Write(dir, source string) ([]string, error) {
	return writeReport(dir, MarkdownFile, CSVFile, source, t.WriteMarkdown, t.WriteCSV, t.WritePlots)
}

// writeReport writes a Markdown file, a CSV file (each atomically) and
// the plots under dir/PlotDir, and returns the paths written.
func writeReport(dir, mdName, csvName, source string, markdown func(io.Writer, string) error,
	csv func(io.Writer) error, plots func(string) ([]string, error)) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var md, cb bytes.Buffer
	if err := markdown(&md, source); err != nil {
		return nil, err
	}
	if err := csv(&cb); err != nil {
		return nil, err
	}
	paths := []string{filepath.Join(dir, mdName), filepath.Join(dir, csvName)}
	if err := rundir.WriteFileAtomic(paths[0], md.Bytes()); err != nil {
		return nil, err
	}
	if err := rundir.WriteFileAtomic(paths[1], cb.Bytes()); err != nil {
		return nil, err
	}
	written, err := plots(filepath.Join(dir, PlotDir))
	if err != nil {
		return nil, err
	}
	return append(paths, written...), nil
}
