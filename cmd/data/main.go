// Command data inspects and prepares datasets for the toolkit.
//
// Usage:
//
//	data fewshot -dataset NAME -root DIR -shots K [-seed S]
//	data synth -out DIR [-classes N] [-per-class M] [-seed S]
//	data check -dataset NAME -root DIR [-workers N]
//
// fewshot prints CoOp's few-shot split of a dataset as JSON,
// {"train": [{"path": P, "label": L, "classname": C}, ...], "val": [...]},
// with paths as in the split file. It reads CoOp's cache
// <dataset>/split_fewshot/shot_K-seed_S.pkl or this toolkit's .json when
// present, and otherwise draws the split exactly as CoOp's Python code
// would and caches it as JSON.
//
// synth writes a small synthetic dataset (coloured shapes) in Caltech101's
// layout under DIR, so that "-dataset caltech101 -root DIR" reads it.
//
// check decodes every image of every split in parallel and lists the
// images that are missing or do not decode; it exits with status 1 if
// there are any.
//
// Usage errors exit with status 2, other errors with status 1.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: data <command> [flags]

commands:
  fewshot -dataset NAME -root DIR -shots K [-seed S]
        print CoOp's few-shot split (train and val) as JSON
  synth -out DIR [-classes N] [-per-class M] [-seed S]
        write a synthetic dataset in Caltech101's layout under DIR
  check -dataset NAME -root DIR [-workers N]
        decode every image of every split and report the bad ones

Run "data <command> -h" for a command's flags.
`

// run is the command: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer cli.ReportPanic("data", stderr, &code)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "fewshot":
		err = runFewShot(args[1:], stdout, stderr)
	case "synth":
		err = runSynth(args[1:], stdout, stderr)
	case "check":
		err = runCheck(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "data: unknown command %q\n%s", args[0], usage)
		return 2
	}
	return cli.Exit("data", args[0], err, stderr)
}

// parse parses a subcommand's flags (see cli.Parse); none of them takes
// positional arguments.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// jsonItem is one item of fewshot's output.
type jsonItem struct {
	Path      string `json:"path"`
	Label     int    `json:"label"`
	ClassName string `json:"classname"`
}

func runFewShot(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("data fewshot", flag.ContinueOnError)
	name := fs.String("dataset", "", "dataset `name` (e.g. Caltech101, oxford_pets, ImageNet)")
	root := fs.String("root", "", "data root `folder` that holds the dataset folders")
	shots := fs.Int("shots", 0, "shots per class `K` (CoOp: 1, 2, 4, 8, 16)")
	seed := fs.Int("seed", 1, "random `seed` (CoOp: 1, 2, 3)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := cli.Required(fs, "dataset", "root", "shots"); err != nil {
		return err
	}
	if *shots < 1 {
		return cli.Usagef("-shots must be at least 1, got %d", *shots)
	}
	d, err := datasets.Load(*name, *root)
	if err != nil {
		return err
	}
	s, err := datasets.CachedFewShot(d, *shots, *seed)
	if err != nil {
		return err
	}
	if s.CacheErr != nil {
		fmt.Fprintf(stderr, "data: warning: %v (the split printed is still valid)\n", s.CacheErr)
	}
	if err := writeSplit(stdout, s.Train, s.Val); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeSplit writes {"train": [...], "val": [...]} with one item per line.
func writeSplit(w io.Writer, train, val []datasets.Item) error {
	bw := bufio.NewWriter(w)
	for k, part := range []struct {
		key   string
		items []datasets.Item
	}{{"train", train}, {"val", val}} {
		if k == 0 {
			fmt.Fprintf(bw, "{%q: [", part.key)
		} else {
			fmt.Fprintf(bw, ",\n%q: [", part.key)
		}
		for i, it := range part.items {
			b, err := json.Marshal(jsonItem{it.Path, it.Label, it.ClassName})
			if err != nil {
				return err
			}
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteString("\n ")
			bw.Write(b)
		}
		if len(part.items) > 0 {
			bw.WriteByte('\n')
		}
		bw.WriteByte(']')
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

func runSynth(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("data synth", flag.ContinueOnError)
	out := fs.String("out", "", "output data root `folder` (the dataset goes to its caltech-101/)")
	classes := fs.Int("classes", 10, fmt.Sprintf("number of classes `N` (1..%d)", datasets.MaxSynthClasses))
	perClass := fs.Int("per-class", 30, fmt.Sprintf("images per class `M` (1..%d; split 50/20/30 %% into train/val/test)", datasets.MaxSynthPerClass))
	seed := fs.Uint64("seed", 1, "random `seed`")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := cli.Required(fs, "out"); err != nil {
		return err
	}
	if *classes < 1 || *classes > datasets.MaxSynthClasses {
		return cli.Usagef("-classes must be 1..%d, got %d", datasets.MaxSynthClasses, *classes)
	}
	if *perClass < 1 || *perClass > datasets.MaxSynthPerClass {
		return cli.Usagef("-per-class must be 1..%d, got %d", datasets.MaxSynthPerClass, *perClass)
	}
	start := time.Now()
	if err := datasets.Synth(*out, *classes, *perClass, *seed); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "synth: wrote %d images of %d classes to %s in %.2fs; read it with -dataset %s -root %s\n",
		*classes**perClass, *classes, filepath.Join(*out, "caltech-101"), time.Since(start).Seconds(),
		datasets.SynthName, *out)
	return nil
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("data check", flag.ContinueOnError)
	name := fs.String("dataset", "", "dataset `name`")
	root := fs.String("root", "", "data root `folder`")
	workers := fs.Int("workers", runtime.NumCPU(), "images decoded in parallel")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := cli.Required(fs, "dataset", "root"); err != nil {
		return err
	}
	if *workers < 1 {
		return cli.Usagef("-workers must be at least 1, got %d", *workers)
	}
	d, err := datasets.Load(*name, *root)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	last := time.Now()
	start := last
	bad, err := datasets.Check(ctx, d, datasets.CheckOptions{
		Decode:  decodeImage,
		Workers: *workers,
		Progress: func(done, total int) {
			mu.Lock()
			defer mu.Unlock()
			if now := time.Now(); now.Sub(last) >= time.Second || done == total {
				last = now
				fmt.Fprintf(stderr, "check: %d/%d images (%.0f%%)\n", done, total, 100*float64(done)/float64(max(total, 1)))
			}
		},
		OnBad: func(path string, err error) {
			var b datasets.BadImages // formats "path: reason" without repeating the path
			b.Add(path, err)
			fmt.Fprintf(stdout, "bad: %s\n", b.First[0])
		},
	})
	if err != nil {
		return fmt.Errorf("%s: %w", d.Name, err)
	}
	total := countImages(d)
	fmt.Fprintf(stdout, "check: %s: %d images (train %d, val %d, test %d), %d bad, %.1fs\n",
		d.Name, total, len(d.Train), len(d.Val), len(d.Test), bad.Count, time.Since(start).Seconds())
	if bad.Count > 0 {
		return fmt.Errorf("%s: %d bad image(s)", d.Name, bad.Count)
	}
	return nil
}

// countImages counts distinct image paths (ImageNet's val is its test).
func countImages(d *datasets.Dataset) int {
	seen := map[string]bool{}
	for _, l := range [][]datasets.Item{d.Train, d.Val, d.Test} {
		for _, it := range l {
			seen[it.Path] = true
		}
	}
	return len(seen)
}
