// Command report gathers the run directories under a folder (result.json
// beside config.toml, at any depth) into the paper's comparison: mean ±
// std over seeds for each dataset, shot count and method, the average over
// datasets, and the published numbers beside them, as Markdown
// (results.md), CSV (results.csv) and accuracy-vs-shots plots (plots/, PNG
// and SVG).
//
// With a swept key (-x KEY, or the first [sweep.grid] key of the sweep file
// that cmd/sweep copied to DIR/sweep.toml) it writes the ablation instead:
// accuracy against that key per dataset and averaged, one line per method
// and value of the other grid keys (-series), as ablation.md, ablation.csv
// and plots/ablation_KEY_*.
//
// With -manifold it embeds the test features that runs saved
// (output.save_test_features) in 2-D with t-SNE, one panel per run
// coloured by class with its silhouette score: manifold.png, manifold.svg
// and manifold.csv.
//
// Usage:
//
//	report -runs DIR [-out DIR] [-x section.key] [-series section.key,...]
//	report -manifold [-space logits|features] [-points N] [-perplexity P] [-seed S] [-out DIR] RUNDIR...
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/clipadapter/clipgo/report"
	"github.com/clipadapter/clipgo/sweep"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.String("runs", "", "folder holding run directories (searched recursively)")
	out := fs.String("out", "", "output folder (default: RUNS/report)")
	xKey := fs.String("x", "", "ablation: the swept config key on the x axis (default: the first [sweep.grid] key of RUNS/sweep.toml)")
	seriesKeys := fs.String("series", "", "ablation: further swept keys that split the lines, comma-separated (default: the other grid keys)")
	noAblation := fs.Bool("no-ablation", false, "write the shots table even when RUNS/sweep.toml has a grid")
	manifold := fs.Bool("manifold", false, "embed the saved test features of the run directories given as arguments (t-SNE), one panel per run")
	space := fs.String("space", report.SpaceLogits, "manifold: logits (each image's class scores) or features (the image features as the classifier compares them)")
	points := fs.Int("points", 1000, "manifold: at most this many test images per run")
	perplexity := fs.Float64("perplexity", 30, "manifold: t-SNE perplexity")
	seed := fs.Uint64("seed", 1, "manifold: t-SNE seed")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: report -runs DIR [-out DIR] [-x KEY] [-series KEYS]\n       report -manifold [-space logits|features] [-out DIR] RUNDIR...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *manifold {
		if fs.NArg() == 0 || *runs != "" {
			fmt.Fprintln(stderr, "report: -manifold takes run directories as arguments (and no -runs)")
			fs.Usage()
			return 2
		}
		return writeManifold(fs.Args(), *out, report.ManifoldOptions{Space: *space, MaxPoints: *points,
			TSNE: report.TSNEOptions{Perplexity: *perplexity, Seed: *seed}}, stdout, stderr)
	}
	if *runs == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if *out == "" {
		*out = filepath.Join(*runs, "report")
	}
	collected, err := report.Collect(*runs)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	if len(collected) == 0 {
		fmt.Fprintf(stderr, "report: no finished runs (result.json) under %s\n", *runs)
		return 1
	}
	if o, ok, err := ablationOptions(*runs, *xKey, *seriesKeys, *noAblation); err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 2
	} else if ok {
		return writeAblation(collected, o, *runs, *out, stdout, stderr)
	}
	published, err := report.PublishedResults()
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	table := report.Aggregate(collected, published)
	paths, err := table.Write(*out, fmt.Sprintf("%d run directories under `%s`", len(collected), *runs))
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	compared := 0
	for _, s := range table.Stats {
		if s.Published != nil {
			compared++
		}
	}
	fmt.Fprintf(stdout, "report: %d runs in %d cells (%d with a published number) from %s\n", len(collected), len(table.Stats), compared, *runs)
	if len(table.Duplicates) > 0 {
		fmt.Fprintf(stdout, "report: ignored %d duplicate runs (listed in %s)\n", len(table.Duplicates), report.MarkdownFile)
	}
	if len(table.Shift) > 0 {
		fmt.Fprintf(stdout, "report: distribution shift of %d method rows:\n", len(table.Shift))
		if err := report.WriteShiftMarkdown(stdout, table.Shift, nil); err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return 1
		}
		fmt.Fprintln(stdout)
	}
	for _, p := range paths[:2] {
		fmt.Fprintln(stdout, "  ", p)
	}
	fmt.Fprintf(stdout, "   %d plots in %s\n", len(paths)-2, filepath.Join(*out, report.PlotDir))
	return 0
}

// ablationOptions decides whether to write an ablation: -x, or a grid in
// RUNS/sweep.toml (unless -no-ablation).
func ablationOptions(runs, x, series string, off bool) (report.AblationOptions, bool, error) {
	o := report.AblationOptions{X: x}
	for _, k := range strings.Split(series, ",") {
		if k = strings.TrimSpace(k); k != "" {
			o.Series = append(o.Series, k)
		}
	}
	if x == "" && len(o.Series) > 0 {
		return o, false, fmt.Errorf("-series needs -x")
	}
	if off {
		return o, false, nil
	}
	path := filepath.Join(runs, "sweep.toml")
	f, err := sweep.Load(path)
	if err != nil {
		if _, statErr := os.Stat(path); statErr == nil && x == "" {
			return o, false, err
		}
		return o, x != "", nil
	}
	keys := f.Sweep.GridKeys()
	if x == "" {
		if len(keys) == 0 {
			return o, false, nil
		}
		o.X = keys[0]
		if len(o.Series) == 0 {
			o.Series = keys[1:]
		}
	}
	o.Order = f.Sweep.GridLabels(o.X)
	return o, true, nil
}

func writeAblation(runs []report.Run, o report.AblationOptions, root, out string, stdout, stderr io.Writer) int {
	a, err := report.NewAblation(runs, o, func(r report.Run) (map[string]string, error) { return report.ConfigValues(r.Dir) })
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	paths, err := a.Write(out, fmt.Sprintf("%d run directories under `%s`", len(runs), root))
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	fmt.Fprintf(stdout, "report: ablation over %s: %d runs in %d points, x = %s\n", o.X, len(runs)-len(a.Duplicates)-len(a.Missing), len(a.Stats), strings.Join(a.XValues, ", "))
	if n := len(a.Duplicates) + len(a.Missing); n > 0 {
		fmt.Fprintf(stdout, "report: ignored %d runs (duplicates or without %s; listed in %s)\n", n, o.X, report.AblationMarkdownFile)
	}
	for _, p := range paths[:2] {
		fmt.Fprintln(stdout, "  ", p)
	}
	fmt.Fprintf(stdout, "   %d plots in %s\n", len(paths)-2, filepath.Join(out, report.PlotDir))
	return 0
}

func writeManifold(dirs []string, out string, o report.ManifoldOptions, stdout, stderr io.Writer) int {
	if out == "" {
		out = filepath.Join(filepath.Dir(filepath.Clean(dirs[0])), "report")
	}
	panels, err := report.Manifold(dirs, o)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	paths, err := report.WriteManifold(panels, o.Space, out)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	fmt.Fprintf(stdout, "report: manifold of %d runs (%s)\n", len(panels), o.Space)
	for _, p := range panels {
		fmt.Fprintf(stdout, "  %-40s %4d points  silhouette %.3f in 2-D, %.3f in %d-D\n", p.Label, p.N, p.Silhouette, p.SilhouetteInput, p.Dim)
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, "  ", p)
	}
	return 0
}
