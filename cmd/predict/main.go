// Command predict classifies images with a finished run: the run directory
// holds everything its method needs (model.ckpt, config.toml), so the
// training data is not needed again.
//
// Usage:
//
//	predict -run DIR [-top 5] [-out FILE.jsonl|FILE.csv] [-device cpu|cuda|auto] [-batch N] [-ext .jpg,.png]
//	        [-retain-memory=false] IMAGE_OR_FOLDER...
//
// Folders are searched recursively for files with the -ext extensions.
// Each image's top classes and probabilities are written as one JSON line
// (or CSV row) as soon as its batch is done: to stdout, or to -out, which
// appears complete when predict ends (a temporary file renamed at the
// end). Images that cannot be read are reported on stderr by path; the
// others go on, and the exit status is then 1.
package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/fsutil"
	"github.com/clipadapter/clipgo/internal/progress"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/predict"
	"github.com/clipadapter/clipgo/train"
)

func main() {
	os.Exit(runIn(cli.OnSignals(), os.Args[1:], os.Stdout, os.Stderr))
}

// defaultExt are the image extensions searched in folders.
const defaultExt = ".jpg,.jpeg,.png,.bmp,.gif,.webp,.tif,.tiff"

// run is the command with the process's SIGINT/SIGTERM handling.
func run(args []string, stdout, stderr io.Writer) int {
	return runIn(cli.OnSignals(), args, stdout, stderr)
}

// runIn runs the command under in: the first SIGINT or SIGTERM stops it
// between batches, with exit status 128 + the signal's number.
func runIn(in *cli.Interrupts, args []string, stdout, stderr io.Writer) (code int) {
	defer cli.ReportPanic("predict", stderr, &code)
	fs := flag.NewFlagSet("predict", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runDir := fs.String("run", "", "finished run directory (required)")
	top := fs.Int("top", 5, "number of classes per image")
	out := fs.String("out", "", "output file, .jsonl or .csv (default: JSON lines on stdout)")
	device := fs.String("device", "", "cpu, cuda, cuda:N or auto (default: the run's model.device)")
	batch := fs.Int("batch", 0, "images per batch (default: the run's train.eval_batch_size)")
	workers := fs.Int("workers", 0, "images decoded at once (default: the run's data.num_workers)")
	backbone := fs.String("backbone", "", "the run's CLIP weights under another name or path (checked by SHA-256)")
	exts := fs.String("ext", defaultExt, "extensions of the images searched in folders, comma-separated")
	verbose := fs.Bool("v", false, "debug logging")
	retain := fs.Bool("retain-memory", true, cli.RetainMemoryUsage)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: predict -run DIR [-top 5] [-out FILE.jsonl|.csv] [-device ...] [-batch N] IMAGE_OR_FOLDER...")
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *runDir == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "predict: -run and at least one image or folder are required")
		fs.Usage()
		return 2
	}
	if *top < 1 {
		fmt.Fprintln(stderr, "predict: -top must be at least 1")
		return 2
	}
	format := "jsonl"
	if *out != "" {
		switch strings.ToLower(filepath.Ext(*out)) {
		case ".jsonl", ".json":
		case ".csv":
			format = "csv"
		default:
			fmt.Fprintf(stderr, "predict: -out %s: want a .jsonl or .csv file\n", *out)
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
			fmt.Fprintln(stderr, "predict: -retain-memory:", err)
			return 1
		}
	}

	// Ctrl-C or SIGTERM stops between batches; the exit status is then
	// 128 + the signal's number (130, 143).
	defer in.Stop()
	ctx := in.Context()

	paths, err := collect(fs.Args(), splitExt(*exts))
	if err != nil {
		fmt.Fprintln(stderr, "predict:", err)
		return 1
	}
	if len(paths) == 0 {
		fmt.Fprintf(stderr, "predict: no images (extensions %s) in %s\n", *exts, strings.Join(fs.Args(), " "))
		return 1
	}
	c, err := predict.Load(ctx, *runDir, predict.Options{Device: *device, Backbone: *backbone, BatchSize: *batch, Workers: *workers, Progress: stderr, Log: log})
	if err != nil {
		fmt.Fprintln(stderr, "predict:", cli.FirstLine(err))
		return 1
	}
	defer c.Close()

	var w io.Writer = stdout
	var file *fsutil.AtomicFile
	if *out != "" {
		if file, err = fsutil.Create(*out, 0o644); err != nil {
			fmt.Fprintln(stderr, "predict:", err)
			return 1
		}
		defer file.Abort()
		w = file
	}
	bw := bufio.NewWriter(w)
	enc := newEncoder(bw, format)
	bar := progress.New(stderr, "predict", len(paths), "img")
	if *out == "" {
		bar = nil // the predictions go to the terminal
	}
	bad := 0
	err = c.PredictFiles(ctx, paths, *top, func(r predict.FileResult) error {
		if bar != nil {
			bar.Add(1)
		}
		if r.Err != nil {
			bad++
			fmt.Fprintf(stderr, "predict: %s: %s\n", r.Path, cli.FirstLine(r.Err))
			return nil
		}
		if err := enc.write(r); err != nil {
			return err
		}
		if *out == "" {
			return bw.Flush() // streamed
		}
		return nil
	})
	if bar != nil {
		bar.Finish()
	}
	if err == nil {
		err = enc.flush()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && file != nil {
		err = file.Commit()
	}
	if err != nil {
		fmt.Fprintln(stderr, "predict:", cli.FirstLine(err))
		if errors.Is(err, train.ErrInterrupted) {
			return in.Status(1)
		}
		return 1
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "predict: %d of %d images could not be read\n", bad, len(paths))
		return 1
	}
	return 0
}

// splitExt parses -ext into lower-case extensions with a dot.
func splitExt(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if !strings.HasPrefix(e, ".") {
			e = "." + e
		}
		out = append(out, e)
	}
	return out
}

// collect expands the arguments: files as given, folders recursively
// (files with one of exts, in lexical order).
func collect(args, exts []string) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Reported like any unreadable image.
				out = append(out, a)
				continue
			}
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && slices.Contains(exts, strings.ToLower(filepath.Ext(p))) {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", a, err)
		}
	}
	return out, nil
}

// encoder writes predictions as JSON lines or CSV.
type encoder struct {
	format string
	w      io.Writer
	csv    *csv.Writer
	header bool
}

func newEncoder(w io.Writer, format string) *encoder {
	e := &encoder{format: format, w: w}
	if format == "csv" {
		e.csv = csv.NewWriter(w)
	}
	return e
}

// record is one JSON line.
type record struct {
	Path   string   `json:"path"`
	Labels []string `json:"labels"`
	Scores []prob   `json:"probs"`
	Index  []int    `json:"classes"`
}

// prob prints a probability with 6 significant digits.
type prob float64

func (p prob) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(p), 'g', 6, 64)), nil
}

func (e *encoder) write(r predict.FileResult) error {
	if e.format == "csv" {
		if !e.header {
			e.header = true
			if err := e.csv.Write([]string{"path", "rank", "class", "label", "prob"}); err != nil {
				return err
			}
		}
		for i, c := range r.Classes {
			if err := e.csv.Write([]string{r.Path, strconv.Itoa(i + 1), strconv.Itoa(c), r.Names[i], strconv.FormatFloat(r.Probs[i], 'g', 6, 64)}); err != nil {
				return err
			}
		}
		e.csv.Flush()
		return e.csv.Error()
	}
	rec := record{Path: r.Path, Labels: r.Names, Index: r.Classes}
	for _, p := range r.Probs {
		rec.Scores = append(rec.Scores, prob(p))
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = e.w.Write(append(b, '\n'))
	return err
}

func (e *encoder) flush() error {
	if e.csv != nil {
		e.csv.Flush()
		return e.csv.Error()
	}
	return nil
}
