package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/sugarme/gotch"

	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/internal/progress"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/zeroshot"
)

// defaultTemplate is zeroshot's prompt when no -templates file is given.
const defaultTemplate = "a photo of a {}."

// topK is how many classes zeroshot prints per image.
const topK = 5

func runTokenize(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clip tokenize", flag.ContinueOnError)
	ctxLen := fs.Int("context", tokenizer.ContextLength, "ids per row (the model's context length)")
	truncate := fs.Bool("truncate", false, "cut texts that are too long instead of failing")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clip tokenize [-context 77] [-truncate] TEXT...")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr, 1, "text"); err != nil {
		return err
	}
	if *ctxLen < 2 {
		return cli.Usagef("-context must be at least 2 (the start and end tokens), got %d", *ctxLen)
	}
	tok, err := tokenizer.New()
	if err != nil {
		return err
	}
	rows, err := tok.Tokenize(fs.Args(), *ctxLen, *truncate)
	if err != nil {
		return err
	}
	b, err := json.Marshal(struct {
		Tokens [][]int64 `json:"tokens"`
	}{rows})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

// modelCommand parses the flags common to the commands that take a model,
// plus -out when withOut is set and the flags extra declares. The
// positional arguments (at least one) are what: "image" or "text".
func modelCommand(name, argsUsage, what string, args []string, stderr io.Writer, withOut bool, extra func(*flag.FlagSet)) (*modelFlags, *string, []string, error) {
	fs := flag.NewFlagSet("clip "+name, flag.ContinueOnError)
	var f modelFlags
	f.register(fs)
	out := new(string)
	if withOut {
		fs.StringVar(out, "out", "", "output `file` (.npy)")
	}
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: clip %s %s\n", name, argsUsage)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr, 1, what); err != nil {
		return nil, nil, nil, err
	}
	if err := f.check(fs); err != nil {
		return nil, nil, nil, err
	}
	if withOut {
		if err := cli.Required(fs, "out"); err != nil {
			return nil, nil, nil, err
		}
		if err := checkOutput(*out); err != nil {
			return nil, nil, nil, err
		}
	}
	return &f, out, fs.Args(), nil
}

func runPreprocess(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, out, paths, err := modelCommand("preprocess", "-model M -out FILE.npy IMG...", "image", args, stderr, true, nil)
	if err != nil {
		return err
	}
	if err := checkImages(paths); err != nil {
		return err
	}
	res, err := f.resolution(ctx)
	if err != nil {
		return err
	}
	pre, err := f.preprocessing()
	if err != nil {
		return err
	}
	per := 3 * res * res
	pixels := make([]float32, 0, len(paths)*per)
	bar := progress.New(stderr, "preprocess", len(paths), "img")
	err = forEachImageBatch(ctx, paths, res, pre, f, func(p []float32, n int) error {
		pixels = append(pixels, p[:n*per]...)
		bar.Add(n)
		return nil
	})
	if err != nil {
		return err
	}
	bar.Finish()
	return npy.Write(*out, []int{len(paths), 3, res, res}, pixels)
}

func runEncodeImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, out, paths, err := modelCommand("encode-image", "-model M -out FILE.npy IMG...", "image", args, stderr, true, nil)
	if err != nil {
		return err
	}
	if err := checkImages(paths); err != nil {
		return err
	}
	m, device, err := f.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Drop()
	feats, err := encodeImages(ctx, m, device, paths, f, stderr)
	if err != nil {
		return err
	}
	return npy.Write(*out, []int{len(paths), m.Config().EmbedDim}, feats)
}

func runEncodeText(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var truncate bool
	f, out, texts, err := modelCommand("encode-text", "-model M -out FILE.npy TEXT...", "text", args, stderr, true, func(fs *flag.FlagSet) {
		fs.BoolVar(&truncate, "truncate", false, "cut texts that are too long instead of failing")
	})
	if err != nil {
		return err
	}
	m, device, err := f.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Drop()
	feats, err := encodeTexts(ctx, m, device, texts, truncate, f, stderr)
	if err != nil {
		return err
	}
	return npy.Write(*out, []int{len(texts), m.Config().EmbedDim}, feats)
}

func runZeroshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var classList, templateFile string
	f, _, paths, err := modelCommand("zeroshot", `-model M -classes "a,b,c" [-templates FILE] IMG...`, "image", args, stderr, false, func(fs *flag.FlagSet) {
		fs.StringVar(&classList, "classes", "", "comma-separated class `names`")
		fs.StringVar(&templateFile, "templates", "", "prompt templates `file`, one per line with {} for the class name (default \""+defaultTemplate+"\")")
	})
	if err != nil {
		return err
	}
	classes := splitClasses(classList)
	if len(classes) == 0 {
		return cli.Usagef("-classes must name at least one class")
	}
	templates := []string{defaultTemplate}
	if templateFile != "" {
		if templates, err = readTemplates(templateFile); err != nil {
			return err
		}
	}
	if err := checkImages(paths); err != nil {
		return err
	}
	m, device, err := f.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Drop()
	probs, err := zeroshotProbabilities(ctx, m, device, classes, templates, paths, f, stderr)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	for i, p := range paths {
		fmt.Fprintln(w, p)
		row := probs[i*len(classes) : (i+1)*len(classes)]
		for _, c := range topClasses(row, topK) {
			fmt.Fprintf(w, "  %6.2f%%  %s\n", 100*row[c], classes[c])
		}
	}
	return w.Flush()
}

// zeroshotProbabilities returns the softmax over the classes of each
// image's zero-shot logits, [len(paths), len(classes)] row by row.
func zeroshotProbabilities(ctx context.Context, m *clip.Model, device gotch.Device, classes, templates, paths []string, f *modelFlags, stderr io.Writer) ([]float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	text, err := textSide(m, device, f.batch)
	if err != nil {
		return nil, err
	}
	w, err := zeroshot.Classifier(text, classes, templates)
	if err != nil {
		return nil, err
	}
	defer w.Drop()
	scale, err := m.LogitScale()
	if err != nil {
		return nil, err
	}
	feats, err := encodeImages(ctx, m, device, paths, f, stderr)
	if err != nil {
		return nil, err
	}
	dim := m.Config().EmbedDim
	x, err := tensorOf(feats, []int64{int64(len(paths)), int64(dim)})
	if err != nil {
		return nil, err
	}
	defer x.Drop()
	xd, err := x.To(device, false)
	if err != nil {
		return nil, torch.Err("features to "+torch.DeviceName(device), err)
	}
	defer xd.Drop()
	var logits []float32
	err = torch.NoGrad(func() error {
		l, err := clip.Classify(xd, w, scale)
		if err != nil {
			return err
		}
		defer l.Drop()
		logits, err = copyFeatures(l, len(paths), len(classes))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("zero-shot logits: %w", err)
	}
	return softmaxRows(logits, len(classes)), nil
}

// softmaxRows returns the softmax of each row of c values, in float64.
func softmaxRows(x []float32, c int) []float64 {
	out := make([]float64, len(x))
	for lo := 0; lo < len(x); lo += c {
		row := x[lo : lo+c]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = max(mx, float64(v))
		}
		sum := 0.0
		for j, v := range row {
			e := math.Exp(float64(v) - mx)
			out[lo+j] = e
			sum += e
		}
		for j := range row {
			out[lo+j] /= sum
		}
	}
	return out
}

// topClasses returns the indices of the k largest values of p (all of them
// if there are fewer), largest first; ties keep the class order.
func topClasses(p []float64, k int) []int {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	return idx[:min(k, len(idx))]
}

// splitClasses splits a comma-separated list, trimming spaces and dropping
// empty names.
func splitClasses(s string) []string {
	var out []string
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// readTemplates reads a prompt template file: one template per line, each
// holding exactly one "{}"; blank lines are skipped.
func readTemplates(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	var out []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" {
			continue
		}
		if strings.Count(line, "{}") != 1 {
			return nil, fmt.Errorf("templates %s:%d: %q must contain exactly one {}", path, i+1, line)
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("templates %s: no templates", path)
	}
	return out, nil
}
