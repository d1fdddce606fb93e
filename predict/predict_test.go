package predict

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/experiment"
	"github.com/clipadapter/clipgo/metrics"
	"github.com/clipadapter/clipgo/rundir"
)

// testRuns are the runs every test here uses: each registered method (and
// CoOp with a class-specific context) trained briefly on a 4-class
// synthetic dataset with a small random CLIP.
var testRuns = []struct {
	name string
	sets []string
}{
	{"zeroshot", []string{"method.name=zeroshot"}},
	{"linear-probe", []string{"method.name=linear-probe"}},
	{"coop", []string{"method.name=coop", "method.n_ctx=4"}},
	{"coop-csc", []string{"method.name=coop", "method.n_ctx=4", "method.class_specific=true"}},
	{"clip-adapter", []string{"method.name=clip-adapter", "method.alpha=0.8", "train.optimizer=adamw"}},
	{"clip-adapter-layer", []string{"method.name=clip-adapter", "method.alpha=0.8", "method.layer=1", "train.optimizer=adamw"}},
	{"tip-adapter", []string{"method.name=tip-adapter", "method.augment_views=2", "method.search_steps=[20, 10]"}},
	{"tip-adapter-f", []string{"method.name=tip-adapter-f", "method.augment_views=2", "method.search_steps=[20, 10]", "train.optimizer=adamw"}},
	{"cocoop", []string{"method.name=cocoop", "train.epochs=2", "train.batch_size=4"}},
	{"gda", []string{"method.name=gda", "method.augment_views=2"}},
	{"prolip", []string{"method.name=prolip", "method.augment_views=2", "train.optimizer=adamw", "train.weight_decay=0"}},
	// An OpenCLIP checkpoint (exact GELU, its own preprocessing from
	// open_clip_config.json; OPENCLIP is clip/testdata/openclip). Its text
	// tower has a 1,000-token vocabulary, too small for CLIP's BPE, so the
	// method is one without text.
	{"openclip-linear-probe", []string{"model.name=OPENCLIP/gelu/open_clip_model.safetensors", "method.name=linear-probe"}},
}

const testConfig = `
[model]
name = "random:tiny"
device = "cpu"
seed = 1
[data]
dataset = "synthetic"
root = "ROOT/data"
synth_classes = 4
synth_per_class = 10
shots = 2
seed = 1
num_workers = 2
[train]
epochs = 2
batch_size = 4
lr = 0.01
eval_batch_size = 5
augment_views = 2
cache_features = true
[output]
dir = "ROOT/runs"
`

var (
	trainOnce sync.Once
	trainRoot string
	trainErr  error
)

// trainedRuns trains the test runs once for the package's tests and returns
// their directories by name.
func trainedRuns(t *testing.T) map[string]string {
	t.Helper()
	trainOnce.Do(func() {
		trainRoot, trainErr = os.MkdirTemp("", "clipgo-predict-")
		if trainErr != nil {
			return
		}
		openclip, err := filepath.Abs(filepath.Join("..", "clip", "testdata", "openclip"))
		if err != nil {
			trainErr = err
			return
		}
		for _, r := range testRuns {
			sets := []string{"output.name=" + r.name}
			for _, s := range r.sets {
				sets = append(sets, strings.ReplaceAll(s, "OPENCLIP", openclip))
			}
			cfg, err := config.Parse(strings.ReplaceAll(testConfig, "ROOT", trainRoot), sets)
			if err != nil {
				trainErr = fmt.Errorf("%s: %w", r.name, err)
				return
			}
			if _, err := experiment.Run(context.Background(), experiment.Options{Config: cfg, Progress: io.Discard, Log: quiet()}); err != nil {
				trainErr = fmt.Errorf("%s: %w", r.name, err)
				return
			}
		}
	})
	if trainErr != nil {
		t.Fatal(trainErr)
	}
	dirs := map[string]string{}
	for _, r := range testRuns {
		dirs[r.name] = filepath.Join(trainRoot, "runs", r.name)
	}
	return dirs
}

func TestMain(m *testing.M) {
	code := m.Run()
	if trainRoot != "" {
		os.RemoveAll(trainRoot)
	}
	os.Exit(code)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestPredictReproducesRun: a run reloaded from its directory predicts
// every test image exactly as the run recorded it (same top 5 classes,
// same probabilities to the 9 digits recorded).
func TestPredictReproducesRun(t *testing.T) {
	for name, dir := range trainedRuns(t) {
		t.Run(name, func(t *testing.T) {
			recorded, err := rundir.ReadPredictions(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(recorded) == 0 {
				t.Fatal("no recorded predictions")
			}
			c, err := Load(context.Background(), dir, Options{Log: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The adapter after layer 1 is given that layer's tokens, ProLIP
			// pre-projection features.
			if wantExtra := map[string][]string{"clip-adapter-layer": {"layer:1"}, "prolip": {"pre-projection"}}[name]; !slices.Equal(c.keyExtra, wantExtra) {
				t.Errorf("features cached as %q, want %q", c.keyExtra, wantExtra)
			}
			paths := make([]string, len(recorded))
			for i, p := range recorded {
				paths[i] = p.File
			}
			got := make([]FileResult, 0, len(paths))
			if err := c.PredictFiles(context.Background(), paths, 5, func(r FileResult) error {
				got = append(got, r)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recorded) {
				t.Fatalf("%d predictions, the run recorded %d", len(got), len(recorded))
			}
			res, err := rundir.ReadResult(dir)
			if err != nil {
				t.Fatal(err)
			}
			correct := 0
			for i, r := range got {
				want := recorded[i]
				if r.Err != nil || r.Index != i || r.Path != want.File {
					t.Fatalf("result %d: %+v", i, r)
				}
				if !slices.Equal(r.Classes, want.Classes) {
					t.Errorf("%s: top classes %v, the run recorded %v", want.File, r.Classes, want.Classes)
				}
				for j := range r.Probs {
					if math.Abs(r.Probs[j]-want.Probs[j]) > 1e-8*max(want.Probs[j], 1e-3) {
						t.Errorf("%s: probabilities %v, the run recorded %v", want.File, r.Probs, want.Probs)
						break
					}
				}
				if r.Classes[0] == want.Label {
					correct++
				}
				if r.Names[0] != c.Classes()[r.Classes[0]] {
					t.Errorf("name %q for class %d", r.Names[0], r.Classes[0])
				}
			}
			// The recorded predictions are those the run's test metrics
			// come from.
			if top1 := 100 * float64(correct) / float64(len(got)); math.Abs(top1-res.Test.Top1) > 1e-9 {
				t.Errorf("top-1 of the predictions %.4f, result.json %.4f", top1, res.Test.Top1)
			}
		})
	}
}

// TestPredictImages: Predict on images decoded in Go agrees with
// PredictFiles on the same pixels (PNG files decode identically).
func TestPredictImages(t *testing.T) {
	dir := trainedRuns(t)["linear-probe"]
	c, err := Load(context.Background(), dir, Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tmp := t.TempDir()
	var imgs []image.Image
	var paths []string
	for i := range 3 {
		img := image.NewRGBA(image.Rect(0, 0, 40+i*7, 50))
		for y := range 50 {
			for x := range img.Bounds().Dx() {
				img.Set(x, y, color.RGBA{uint8(x * 5 * (i + 1)), uint8(y * 4), uint8(90 * i), 255})
			}
		}
		p := filepath.Join(tmp, fmt.Sprintf("%d.png", i))
		writePNG(t, p, img)
		imgs, paths = append(imgs, img), append(paths, p)
	}
	preds, err := c.Predict(imgs, 3)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	if err := c.PredictFiles(context.Background(), paths, 3, func(r FileResult) error {
		if r.Err != nil || !slices.Equal(r.Classes, preds[i].Classes) || math.Abs(r.Probs[0]-preds[i].Probs[0]) > 1e-6 {
			t.Errorf("image %d: files %+v, images %+v", i, r, preds[i])
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestPredictBadImages: unreadable files are reported in order, by path,
// and the others are predicted.
func TestPredictBadImages(t *testing.T) {
	dir := trainedRuns(t)["zeroshot"]
	c, err := Load(context.Background(), dir, Options{Log: quiet(), BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tmp := t.TempDir()
	good := filepath.Join(tmp, "good.png")
	writePNG(t, good, image.NewRGBA(image.Rect(0, 0, 30, 30)))
	garbage := filepath.Join(tmp, "garbage.jpg")
	os.WriteFile(garbage, []byte("not an image"), 0o644)
	missing := filepath.Join(tmp, "missing.jpg")
	// A whole batch of bad images, and bad ones before and after good ones.
	paths := []string{garbage, good, missing, garbage, good, missing}
	var got []FileResult
	if err := c.PredictFiles(context.Background(), paths, 2, func(r FileResult) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(paths) {
		t.Fatalf("%d results for %d paths", len(got), len(paths))
	}
	for i, r := range got {
		bad := paths[i] != good
		if r.Index != i || r.Path != paths[i] || (r.Err != nil) != bad || (!bad && len(r.Classes) != 2) {
			t.Errorf("result %d: %+v", i, r)
		}
		if bad && !strings.Contains(r.Err.Error(), filepath.Base(paths[i])) {
			t.Errorf("result %d: error %v does not name the file", i, r.Err)
		}
	}
}

// TestLoadErrors: each unusable run directory is a clear error naming the
// file or class.
func TestLoadErrors(t *testing.T) {
	runs := trainedRuns(t)
	copyRun := func(t *testing.T, name string) string {
		dst := filepath.Join(t.TempDir(), name)
		if err := os.CopyFS(dst, os.DirFS(runs[name])); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	tests := []struct {
		name   string
		prep   func(t *testing.T) (dir string, o Options)
		want   []string
		wantIn string // file or class the error must name
	}{
		{"older version", func(t *testing.T) (string, Options) {
			d := copyRun(t, "tip-adapter")
			os.Remove(filepath.Join(d, rundir.ModelFile))
			return d, Options{}
		}, []string{"older version"}, rundir.ModelFile},
		{"unfinished", func(t *testing.T) (string, Options) {
			d := copyRun(t, "tip-adapter")
			os.Remove(filepath.Join(d, rundir.ModelFile))
			os.Remove(filepath.Join(d, rundir.ResultFile))
			return d, Options{}
		}, []string{"not a finished run"}, rundir.ModelFile},
		{"corrupt", func(t *testing.T) (string, Options) {
			d := copyRun(t, "tip-adapter")
			p := filepath.Join(d, rundir.ModelFile)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.WriteFile(p, b, 0o644)
			return d, Options{}
		}, []string{"corrupt"}, rundir.ModelFile},
		{"truncated", func(t *testing.T) (string, Options) {
			d := copyRun(t, "linear-probe")
			p := filepath.Join(d, rundir.ModelFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
			return d, Options{}
		}, []string{"read checkpoint"}, rundir.ModelFile},
		{"other backbone", func(t *testing.T) (string, Options) {
			return runs["coop"], Options{Backbone: "random:small"}
		}, []string{"SHA-256", "random:tiny"}, "random:small"},
		{"unmapped class", func(t *testing.T) (string, Options) {
			return runs["linear-probe"], Options{Target: &Target{Names: []string{"purple_unicorn"}}}
		}, []string{"not one of the run's 4 classes"}, "purple_unicorn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, o := tc.prep(t)
			o.Log = quiet()
			c, err := Load(context.Background(), dir, o)
			if err == nil {
				c.Close()
				t.Fatal("no error")
			}
			for _, w := range append(tc.want, tc.wantIn) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// shiftedCopy writes an ImageNet-R-like dataset (imagenet-rendition/ with
// classnames.txt and one folder per class) holding the synthetic test
// images of the classes keep, colour-inverted, and returns the data root
// and the file of each image with its label in the copy (sorted folders).
func shiftedCopy(t *testing.T, keep []string) (root string, files []string, labels []int) {
	t.Helper()
	ds, err := datasets.Load(datasets.SynthName, filepath.Join(trainRoot, "data"))
	if err != nil {
		t.Fatal(err)
	}
	root = t.TempDir()
	sorted := slices.Clone(keep)
	sort.Strings(sorted)
	var cn strings.Builder
	for _, k := range sorted {
		fmt.Fprintf(&cn, "%s %s\n", k, strings.ReplaceAll(k, "_", " "))
	}
	base := filepath.Join(root, "imagenet-rendition")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(base, "classnames.txt"), []byte(cn.String()), 0o644)
	for label, k := range sorted {
		n := 0
		for _, it := range ds.Test {
			if it.ClassName != k {
				continue
			}
			img, err := preprocess.Open(ds.File(it))
			if err != nil {
				t.Fatal(err)
			}
			rgba := img.ToRGBA()
			for i := 0; i < len(rgba.Pix); i += 4 {
				rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2] = 255-rgba.Pix[i], 255-rgba.Pix[i+1], 255-rgba.Pix[i+2]
			}
			p := filepath.Join(base, "imagenet-r", k, fmt.Sprintf("%02d.png", n))
			os.MkdirAll(filepath.Dir(p), 0o755)
			writePNG(t, p, rgba)
			files, labels = append(files, p), append(labels, label)
			n++
		}
	}
	return root, files, labels
}

// TestEvaluateShiftedSubset: a run evaluated on a shifted copy of its test
// set restricted to 3 of its 4 classes gives the metrics computed by hand
// from the run's full predictions (all 4 probabilities) restricted to the
// 3 classes: the same for every method, since the text-based ones,
// rebuilt with the 3 names, score each class independently of the others.
func TestEvaluateShiftedSubset(t *testing.T) {
	runs := trainedRuns(t)
	ds, err := datasets.Load(datasets.SynthName, filepath.Join(trainRoot, "data"))
	if err != nil {
		t.Fatal(err)
	}
	keep := []string{ds.ClassNames[3], ds.ClassNames[0], ds.ClassNames[2]}
	root, files, labels := shiftedCopy(t, keep)
	sorted := slices.Clone(keep)
	sort.Strings(sorted)
	var cols []int // the run's class of each class of the copy
	for _, k := range sorted {
		cols = append(cols, slices.Index(ds.ClassNames, k))
	}
	for name, dir := range runs {
		t.Run(name, func(t *testing.T) {
			c, err := Load(context.Background(), dir, Options{Log: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			// By hand: the log-probabilities of all 4 classes, restricted.
			var logp []float32
			y := make([]int64, len(labels))
			err = c.PredictFiles(context.Background(), files, 4, func(r FileResult) error {
				if r.Err != nil {
					return r.Err
				}
				full := make([]float64, 4)
				for j, k := range r.Classes {
					full[k] = r.Probs[j]
				}
				for _, k := range cols {
					logp = append(logp, float32(math.Log(full[k])))
				}
				y[r.Index] = int64(labels[r.Index])
				return nil
			})
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			want, err := metrics.Evaluate(logp, y, len(cols))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Evaluate(context.Background(), dir, "imagenet_r", root, EvalOptions{Options: Options{Log: quiet()}, CacheDir: "-"})
			if err != nil {
				t.Fatal(err)
			}
			if got.Test.N != len(files) || got.Classes != 3 || got.Dataset != "ImageNetR" {
				t.Errorf("evaluated %d images of %d classes of %s, want %d of 3 of ImageNetR", got.Test.N, got.Classes, got.Dataset, len(files))
			}
			for _, f := range []struct {
				what      string
				got, want float64
			}{{"top1", got.Test.Top1, want.Top1}, {"top5", got.Test.Top5, want.Top5},
				{"mean_per_class", got.Test.MeanPerClass, want.MeanPerClass}, {"macro_f1", got.Test.MacroF1, want.MacroF1}} {
				if math.Abs(f.got-f.want) > 1e-9 {
					t.Errorf("%s = %.4f, by hand %.4f", f.what, f.got, f.want)
				}
			}
			textBased := map[string]bool{"zeroshot": true, "coop": true, "clip-adapter": true, "clip-adapter-layer": true}[name]
			if got.Restricted == textBased {
				t.Errorf("restricted = %v for %s", got.Restricted, name)
			}
			// Written to the run directory with the fields of result.json's test.
			evals, err := rundir.ReadEvals(dir)
			if err != nil {
				t.Fatal(err)
			}
			if e, ok := evals["imagenet_r"]; !ok || e.Test.Top1 != got.Test.Top1 || e.Source != "Caltech101" {
				t.Errorf("eval/imagenet_r.json: %+v (have %v)", e, evals)
			}
		})
	}
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}
