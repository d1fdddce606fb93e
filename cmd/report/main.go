// Command report gathers the run directories under a folder (result.json
// beside config.toml, at any depth) into the paper's comparison: mean ±
// std over seeds for each dataset, shot count and method, the average over
// datasets, and the published numbers beside them, as Markdown
// (results.md), CSV (results.csv) and accuracy-vs-shots plots (plots/, PNG
// and SVG).
//
// Usage:
//
//	report -runs DIR [-out DIR]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/clipadapter/clipgo/report"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.String("runs", "", "folder holding run directories (searched recursively)")
	out := fs.String("out", "", "output folder (default: RUNS/report)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: report -runs DIR [-out DIR]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
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
