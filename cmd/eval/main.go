// Command eval evaluates finished runs on other datasets (distribution
// shift: ImageNet-V2, -Sketch, -A, -R for ImageNet runs) and writes each
// result to RUN/eval/<dataset>.json, with the fields of result.json's test.
//
// Usage:
//
//	eval -run DIR [-run DIR ...] -dataset imagenet_sketch[,imagenet_a,...] -root DATA [-device ...] [-batch N] [-max-test N]
//	     [-retain-memory=false]
//
// ImageNet-A and -R hold 200 of ImageNet's classes, mapped through their
// WordNet ids: methods whose classifier is tied to the training labels
// (linear probe, Tip-Adapter's cache, CoOp with class-specific contexts)
// have their logits restricted to them; text-based methods (zero-shot,
// CoOp, CLIP-Adapter) classify among the target's class names, as CoOp
// does.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/predict"
	"github.com/clipadapter/clipgo/train"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) (code int) {
	defer cli.ReportPanic("eval", stderr, &code)
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	var runs cli.Strings
	fs.Var(&runs, "run", "finished run directory (repeatable; further directories may follow the flags)")
	dataset := fs.String("dataset", "", "dataset(s) to evaluate on, comma-separated (e.g. imagenetv2,imagenet_sketch,imagenet_a,imagenet_r)")
	root := fs.String("root", "", "data root holding the datasets in CoOp's layout")
	device := fs.String("device", "", "cpu, cuda, cuda:N or auto (default: the run's model.device)")
	batch := fs.Int("batch", 0, "images per batch (default: the run's train.eval_batch_size)")
	workers := fs.Int("workers", 0, "images decoded at once (default: the run's data.num_workers)")
	maxTest := fs.Int("max-test", 0, "evaluate the first N test images only (0: all)")
	cacheDir := fs.String("cache", "", `feature cache folder (default: the run's output.dir/.features; "-": none)`)
	verbose := fs.Bool("v", false, "debug logging")
	retain := fs.Bool("retain-memory", true, cli.RetainMemoryUsage)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: eval -run DIR [-run DIR ...] -dataset NAME[,NAME...] -root DATA [-device ...] [-batch N] [DIR...]")
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	dirs := append([]string(runs), fs.Args()...)
	var names []string
	for _, d := range strings.Split(*dataset, ",") {
		if d = strings.TrimSpace(d); d != "" {
			names = append(names, d)
		}
	}
	if len(dirs) == 0 || len(names) == 0 || *root == "" {
		fmt.Fprintln(stderr, "eval: -run, -dataset and -root are required")
		fs.Usage()
		return 2
	}
	for _, n := range names {
		if _, ok := datasets.CanonicalName(n); !ok {
			fmt.Fprintf(stderr, "eval: unknown dataset %q (known: %s)\n", n, strings.Join(datasets.Names(), ", "))
			return 2
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *retain {
		if err := torch.RetainFreedMemory(); err != nil {
			fmt.Fprintln(stderr, "eval: -retain-memory:", err)
			return 1
		}
	}
	// Ctrl-C or SIGTERM stops between batches; the exit status is then
	// 128 + the signal's number (130, 143).
	in := cli.OnSignals()
	defer in.Stop()
	ctx := in.Context()

	failed := 0
	for _, dir := range dirs {
		for _, n := range names {
			res, err := predict.Evaluate(ctx, dir, n, *root, predict.EvalOptions{
				Options: predict.Options{Device: *device, BatchSize: *batch, Workers: *workers, Progress: stderr, Log: log},
				MaxTest: *maxTest, CacheDir: *cacheDir,
			})
			if errors.Is(err, train.ErrInterrupted) {
				fmt.Fprintln(stderr, "eval:", cli.FirstLine(err))
				return in.Status(1)
			}
			if err != nil {
				fmt.Fprintln(stderr, "eval:", cli.FirstLine(err))
				failed++
				continue
			}
			how := "class names"
			if res.Restricted {
				how = "restricted logits"
			}
			fmt.Fprintf(stdout, "%s on %s (%d classes, %s): top-1 %.2f%%, top-5 %.2f%% (%d images)\n",
				dir, res.Dataset, res.Classes, how, res.Test.Top1, res.Test.Top5, res.Test.N)
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}
