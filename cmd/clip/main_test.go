package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/npy"
)

// Fixtures of other packages: the small CLIP archives of package clip and
// the test images of package clip/preprocess (with torchvision's output of
// CLIP's test transform for some of them).
var (
	vitPT   = filepath.Join("..", "..", "clip", "testdata", "vit.pt")
	rnPT    = filepath.Join("..", "..", "clip", "testdata", "rn.pt")
	imgDir  = filepath.Join("..", "..", "clip", "preprocess", "testdata", "img")
	testDir = filepath.Join("..", "..", "clip", "preprocess", "testdata", "test")
)

func img(name string) string { return filepath.Join(imgDir, name) }

// pngs are the images of testdata/gen.py's reference features, in order.
var pngs = []string{img("a_37x53.png"), img("b_211x157.png"), img("png_rgb.png")}

// result is one run of the command.
type result struct {
	code           int
	stdout, stderr string
}

func runCmd(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// mustRun runs the command and fails the test unless it exits with 0.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := runCmd(t, args...)
	if r.code != 0 {
		t.Fatalf("clip %s: exit %d\nstderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// readNpy reads a float32 .npy file written by the command and checks its
// header (format 1.0, '<f4', C order).
func readNpy(t *testing.T, path string) ([]int, []float32) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("\x93NUMPY\x01\x00")) {
		t.Fatalf("%s: not a version 1.0 .npy file: % x", path, raw[:min(8, len(raw))])
	}
	hdr := string(raw[10 : 10+int(raw[8])|int(raw[9])<<8])
	if !strings.Contains(hdr, "'descr': '<f4'") || !strings.Contains(hdr, "'fortran_order': False") {
		t.Fatalf("%s: header %q, want '<f4' in C order", path, hdr)
	}
	shape, data, err := npy.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return shape, data
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

func maxAbs(a []float32) float64 {
	m := 0.0
	for _, v := range a {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}

// testTransform applies preprocess.Test(size) to an image file.
func testTransform(t *testing.T, path string, size int) []float32 {
	t.Helper()
	im, err := preprocess.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 3*size*size)
	if err := preprocess.Test(size).Apply(im, nil, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTokenize(t *testing.T) {
	fox := []int64{49406, 320, 1125, 539, 320, 3240, 49407} // "a photo of a fox" in CLIP
	pad := func(ids []int64, n int) []int64 {
		return append(append([]int64(nil), ids...), make([]int64, n-len(ids))...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want [][]int64
	}{
		{"default context", []string{"a photo of a fox"}, [][]int64{pad(fox, 77)}},
		{"context 8", []string{"-context", "8", "a photo of a fox"}, [][]int64{pad(fox, 8)}},
		{"exact fit", []string{"-context", "7", "a photo of a fox"}, [][]int64{fox}},
		{"two texts", []string{"-context", "10", "a photo of a fox", "A  Photo of a FOX"}, [][]int64{pad(fox, 10), pad(fox, 10)}},
		// clip.tokenize(truncate=True) keeps the first context ids and
		// makes the last one the end token.
		{"truncate", []string{"-context", "5", "-truncate", "a photo of a fox"}, [][]int64{{49406, 320, 1125, 539, 49407}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, append([]string{"tokenize"}, tc.args...)...)
			var got struct {
				Tokens [][]int64 `json:"tokens"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("output %q: %v", r.stdout, err)
			}
			if !reflect.DeepEqual(got.Tokens, tc.want) {
				t.Errorf("tokens %v, want %v", got.Tokens, tc.want)
			}
		})
	}
}

// TestPreprocess checks the output against torchvision's CLIP transform
// (clip/preprocess/testdata/test, within 1e-6) where it exists and against
// clip/preprocess (exactly) everywhere, with R taken from the model.
func TestPreprocess(t *testing.T) {
	for _, tc := range []struct {
		name, model string
		res         int
		images      []string
		torchvision []string // reference per image, "" for none
	}{
		{"official name", "ViT-B/32", 224, []string{img("b_211x157.png"), img("a_37x53.png")}, []string{"b_211x157_224.npy", ""}},
		{"official name, other case", "rn50", 224, []string{img("b_211x157.png")}, []string{"b_211x157_224.npy"}},
		{"random arch", "random:tiny", 64, []string{img("a_37x53.png"), img("png_rgb.png")}, []string{"a_37x53_64.npy", ""}},
		{"archive", rnPT, 64, []string{img("a_37x53.png")}, []string{"a_37x53_64.npy"}},
		{"archive vit", vitPT, 32, []string{img("jpeg_444.jpg"), img("a_37x53.png")}, []string{"", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cache := filepath.Join(dir, "cache")
			if err := os.Mkdir(cache, 0o755); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "x.npy")
			args := append([]string{"preprocess", "-model", tc.model, "-cache", cache, "-batch", "1", "-out", out}, tc.images...)
			mustRun(t, args...)
			if ents, _ := os.ReadDir(cache); len(ents) != 0 {
				t.Errorf("the cache holds %d files: preprocess downloaded weights", len(ents))
			}
			shape, data := readNpy(t, out)
			if want := []int{len(tc.images), 3, tc.res, tc.res}; !reflect.DeepEqual(shape, want) {
				t.Fatalf("shape %v, want %v", shape, want)
			}
			per := 3 * tc.res * tc.res
			for i, p := range tc.images {
				got := data[i*per : (i+1)*per]
				if d := maxAbsDiff(got, testTransform(t, p, tc.res)); d != 0 {
					t.Errorf("%s: differs from preprocess.Test(%d) by up to %g", p, tc.res, d)
				}
				if tc.torchvision[i] == "" {
					continue
				}
				_, want, err := npy.Read(filepath.Join(testDir, tc.torchvision[i]))
				if err != nil {
					t.Fatal(err)
				}
				if d := maxAbsDiff(got, want); d > 1e-6 {
					t.Errorf("%s: differs from torchvision by up to %g > 1e-6", p, d)
				}
			}
		})
	}
}

// TestEncodeImage encodes PNG images with the fixture archives, in several
// batches, and compares with PyTorch's features (testdata/gen.py; relative
// tolerance 1e-4 as in package clip) and with clip.Model on the same
// preprocessed input (1e-5).
func TestEncodeImage(t *testing.T) {
	for _, tc := range []struct {
		name, model, ref string
		batch, threads   string
	}{
		{"vit", vitPT, "vit_png_features.npy", "2", "0"},
		{"rn", rnPT, "rn_png_features.npy", "2", "0"},
		{"rn one batch", rnPT, "rn_png_features.npy", "32", "0"},
		// Two libtorch threads: two batches at once, one thread each.
		{"vit two batches at once", vitPT, "vit_png_features.npy", "2", "2"},
		{"rn two batches at once", rnPT, "rn_png_features.npy", "1", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "f.npy")
			args := append([]string{"encode-image", "-model", tc.model, "-device", "cpu", "-batch", tc.batch, "-threads", tc.threads, "-out", out}, pngs...)
			mustRun(t, args...)
			shape, got := readNpy(t, out)
			if !reflect.DeepEqual(shape, []int{len(pngs), 32}) {
				t.Fatalf("shape %v, want [%d 32]", shape, len(pngs))
			}
			_, want, err := npy.Read(filepath.Join("testdata", tc.ref))
			if err != nil {
				t.Fatal(err)
			}
			rel := maxAbsDiff(got, want) / maxAbs(want)
			t.Logf("max |Go - PyTorch| / max |PyTorch| = %.3g", rel)
			if rel > 1e-4 {
				t.Errorf("differs from PyTorch by %.3g relative to the largest feature, want <= 1e-4", rel)
			}

			direct := encodeDirect(t, tc.model, pngs)
			d := maxAbsDiff(got, direct)
			t.Logf("max |command - clip.Model| = %.3g", d)
			if d > 1e-5 {
				t.Errorf("differs from clip.Model.EncodeImage by up to %g > 1e-5", d)
			}
		})
	}
}

// encodeDirect loads the model and encodes the preprocessed images in one
// batch through the clip package.
func encodeDirect(t *testing.T, model string, paths []string) []float32 {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m, err := clip.Load(model, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	r := m.Config().ImageResolution
	var pix []float32
	for _, p := range paths {
		pix = append(pix, testTransform(t, p, r)...)
	}
	x := ts.MustOfSlice(pix).MustView([]int64{int64(len(paths)), 3, int64(r), int64(r)}, true)
	defer x.MustDrop()
	f, err := m.EncodeImage(x)
	if err != nil {
		t.Fatal(err)
	}
	defer f.MustDrop()
	out := make([]float32, len(paths)*m.Config().EmbedDim)
	f.MustCopyData(out, uint(len(out)))
	return out
}

// TestEncodeText compares the features of random:tiny with clip.New's
// model (same seed) on the tokenizer's rows (1e-5), and checks that the
// seed matters.
func TestEncodeText(t *testing.T) {
	texts := []string{"a photo of a fox", "a diagram of a rocket", "hello world"}
	dir := t.TempDir()
	out7 := filepath.Join(dir, "seed7.npy")
	mustRun(t, append([]string{"encode-text", "-model", "random:tiny", "-seed", "7", "-batch", "2", "-device", "cpu", "-out", out7}, texts...)...)
	shape, got := readNpy(t, out7)
	if !reflect.DeepEqual(shape, []int{3, 64}) {
		t.Fatalf("shape %v, want [3 64]", shape)
	}
	want := encodeTextDirect(t, 7, texts)
	if d := maxAbsDiff(got, want); d > 1e-5 {
		t.Errorf("differs from clip.Model.EncodeText by up to %g > 1e-5", d)
	}

	out8 := filepath.Join(dir, "seed8.npy")
	mustRun(t, append([]string{"encode-text", "-model", "random:tiny", "-seed", "8", "-out", out8}, texts...)...)
	_, other := readNpy(t, out8)
	if d := maxAbsDiff(got, other); d < 1e-3 {
		t.Errorf("seeds 7 and 8 give features within %g of each other", d)
	}
}

func encodeTextDirect(t *testing.T, seed uint64, texts []string) []float32 {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cfg, err := clip.ArchConfig("tiny")
	if err != nil {
		t.Fatal(err)
	}
	m, err := clip.New(cfg, gotch.CPU, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	tok, err := tokenizer.New()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tok.Tokenize(texts, cfg.ContextLength, false)
	if err != nil {
		t.Fatal(err)
	}
	var flat []int64
	for _, r := range rows {
		flat = append(flat, r...)
	}
	x := ts.MustOfSlice(flat).MustView([]int64{int64(len(texts)), int64(cfg.ContextLength)}, true)
	defer x.MustDrop()
	f, err := m.EncodeText(x)
	if err != nil {
		t.Fatal(err)
	}
	defer f.MustDrop()
	out := make([]float32, len(texts)*cfg.EmbedDim)
	f.MustCopyData(out, uint(len(out)))
	return out
}

// TestZeroshot checks the printed top-5 against probabilities computed
// here, in float64, from the command's own image and text features:
// classifier row = normalized mean over templates of normalized text
// features, logits = logit scale · cosine, softmax over the classes.
func TestZeroshot(t *testing.T) {
	dir := t.TempDir()
	classes := []string{"fox", "dog", "red car", "tree", "house", "boat", "cat"}
	templates := []string{"a photo of a {}.", "a drawing of the {}"}
	tmpl := filepath.Join(dir, "templates.txt")
	if err := os.WriteFile(tmpl, []byte(templates[0]+"\n\n"+templates[1]+"\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	images := []string{img("a_37x53.png"), img("b_211x157.png")}
	common := []string{"-model", "random:tiny", "-seed", "3", "-device", "cpu", "-batch", "4"}
	r := mustRun(t, append(append([]string{"zeroshot"}, common...), append([]string{"-classes", strings.Join(classes, ", "), "-templates", tmpl}, images...)...)...)

	// The reference, from encode-image and encode-text.
	fimg := filepath.Join(dir, "img.npy")
	mustRun(t, append(append([]string{"encode-image"}, common...), append([]string{"-out", fimg}, images...)...)...)
	_, imgF := readNpy(t, fimg)
	var prompts []string
	for _, c := range classes {
		for _, tp := range templates {
			prompts = append(prompts, strings.Replace(tp, "{}", c, 1))
		}
	}
	ftxt := filepath.Join(dir, "txt.npy")
	mustRun(t, append(append([]string{"encode-text"}, common...), append([]string{"-out", ftxt}, prompts...)...)...)
	_, txtF := readNpy(t, ftxt)
	const D = 64
	scale := logitScale(t, 3)
	want := make([][]float64, len(images))
	for i := range images {
		f := unit(toF64(imgF[i*D : (i+1)*D]))
		logits := make([]float64, len(classes))
		for c := range classes {
			w := make([]float64, D)
			for k := range templates {
				g := unit(toF64(txtF[(c*len(templates)+k)*D : (c*len(templates)+k+1)*D]))
				for j := range w {
					w[j] += g[j] / float64(len(templates))
				}
			}
			w = unit(w)
			for j := range w {
				logits[c] += scale * f[j] * w[j]
			}
		}
		want[i] = softmax64(logits)
	}

	got := parseZeroshot(t, r.stdout)
	if len(got) != len(images) {
		t.Fatalf("%d images in the output, want %d:\n%s", len(got), len(images), r.stdout)
	}
	for i, g := range got {
		if g.image != images[i] {
			t.Errorf("image %d is %q, want %q", i, g.image, images[i])
		}
		if len(g.classes) != 5 {
			t.Fatalf("%s: %d lines, want 5:\n%s", g.image, len(g.classes), r.stdout)
		}
		sum := 0.0
		for k, c := range g.classes {
			sum += g.pct[k]
			if k > 0 && g.pct[k] > g.pct[k-1] {
				t.Errorf("%s: line %d (%.2f%%) above line %d (%.2f%%)", g.image, k+1, g.pct[k], k, g.pct[k-1])
			}
			ci := indexOf(classes, c)
			if ci < 0 {
				t.Fatalf("%s: unknown class %q", g.image, c)
			}
			if d := math.Abs(g.pct[k] - 100*want[i][ci]); d > 0.006 {
				t.Errorf("%s: %s at %.2f%%, want %.4f%%", g.image, c, g.pct[k], 100*want[i][ci])
			}
		}
		if sum > 100.005 {
			t.Errorf("%s: top-5 probabilities sum to %.2f%% > 100%%", g.image, sum)
		}
		// The five printed are the five most probable.
		sorted := append([]float64(nil), want[i]...)
		sortDesc(sorted)
		if got5 := g.pct[4]; math.Abs(got5-100*sorted[4]) > 0.006 {
			t.Errorf("%s: fifth line %.2f%%, want the fifth largest probability %.4f%%", g.image, got5, 100*sorted[4])
		}
	}

	// Default template and fewer than five classes.
	r = mustRun(t, append(append([]string{"zeroshot"}, common...), "-classes", "fox,dog", images[0])...)
	got = parseZeroshot(t, r.stdout)
	if len(got) != 1 || len(got[0].classes) != 2 {
		t.Fatalf("two classes: output\n%s", r.stdout)
	}
	if s := got[0].pct[0] + got[0].pct[1]; math.Abs(s-100) > 0.011 {
		t.Errorf("two classes: probabilities sum to %.2f%%, want 100%%", s)
	}
}

type zsImage struct {
	image   string
	classes []string
	pct     []float64
}

// parseZeroshot reads zeroshot's output: an image path, then indented
// "PP.PP%  class" lines.
func parseZeroshot(t *testing.T, out string) []zsImage {
	t.Helper()
	var res []zsImage
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") {
			res = append(res, zsImage{image: line})
			continue
		}
		if len(res) == 0 {
			t.Fatalf("class line before an image: %q", line)
		}
		pctText, name, ok := strings.Cut(strings.TrimSpace(line), "%  ")
		p, err := strconv.ParseFloat(pctText, 64)
		if !ok || err != nil {
			t.Fatalf("bad line %q", line)
		}
		last := &res[len(res)-1]
		last.classes = append(last.classes, name)
		last.pct = append(last.pct, p)
	}
	return res
}

func logitScale(t *testing.T, seed uint64) float64 {
	t.Helper()
	cfg, _ := clip.ArchConfig("tiny")
	m, err := clip.New(cfg, gotch.CPU, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	s, err := m.LogitScale()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func toF64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func unit(x []float64) []float64 {
	n := 0.0
	for _, v := range x {
		n += v * v
	}
	n = math.Sqrt(n)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v / n
	}
	return out
}

func softmax64(x []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = max(mx, v)
	}
	out := make([]float64, len(x))
	s := 0.0
	for i, v := range x {
		out[i] = math.Exp(v - mx)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func sortDesc(x []float64) {
	for i := 1; i < len(x); i++ {
		for j := i; j > 0 && x[j] > x[j-1]; j-- {
			x[j], x[j-1] = x[j-1], x[j]
		}
	}
}

func indexOf(xs []string, s string) int {
	for i, x := range xs {
		if x == s {
			return i
		}
	}
	return -1
}

// TestTiming checks the -timing report: one line per batch with the
// resident memory, then the totals.
func TestTiming(t *testing.T) {
	out := filepath.Join(t.TempDir(), "f.npy")
	r := mustRun(t, append([]string{"encode-image", "-model", vitPT, "-batch", "1", "-threads", "1", "-workers", "1", "-timing", "-out", out}, pngs...)...)
	for i := 1; i <= len(pngs); i++ {
		if want := "encode: batch " + strconv.Itoa(i) + "/3: 1 images in "; !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, want := range []string{"MiB", "encode: 3 images in ", "images/s; model ", "), peak RSS ", "RSS after each batch "} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "at once") {
		t.Errorf("one libtorch thread, yet batches at once:\n%s", r.stderr)
	}
	// Two threads and three batches: two batches at once, said in the totals.
	r = mustRun(t, append([]string{"encode-image", "-model", vitPT, "-batch", "1", "-threads", "2", "-workers", "1", "-timing", "-out", out}, pngs...)...)
	if want := "MiB; 2 batches at once, one libtorch thread each\n"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
}

// TestErrors checks the exit status and message of bad invocations, that
// no output file is left behind and that no Go stack trace is printed.
func TestErrors(t *testing.T) {
	dir := t.TempDir()
	badTmpl := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(badTmpl, []byte("a photo of a {}\nno placeholder here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.npy")
	tiny := []string{"-model", "random:tiny", "-device", "cpu", "-out", out}
	with := func(cmd string, flags []string, rest ...string) []string {
		return append(append([]string{cmd}, flags...), rest...)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // substrings of stderr
		cuda bool     // skip when CUDA is available
	}{
		{"missing image", with("encode-image", tiny, img("a_37x53.png"), img("nope.png")), 1, []string{"nope.png", "no such file"}, false},
		{"missing image, preprocess", with("preprocess", tiny, img("nope.png")), 1, []string{"nope.png"}, false},
		{"corrupt image", with("encode-image", append([]string{"-batch", "1"}, tiny...), img("a_37x53.png"), img("bad_garbage.jpg")), 1, []string{"bad_garbage.jpg"}, false},
		{"truncated image", with("preprocess", tiny, img("bad_truncated.png")), 1, []string{"bad_truncated.png"}, false},
		{"not an image", with("encode-image", tiny, img("bad_unknown.bin")), 1, []string{"bad_unknown.bin"}, false},
		{"unknown model name", with("encode-image", []string{"-model", "vit-b-32", "-out", out}, img("a_37x53.png")), 1, []string{`"vit-b-32"`, `did you mean "ViT-B/32"`}, false},
		{"unknown model name, preprocess", with("preprocess", []string{"-model", "RN5O", "-out", out}, img("a_37x53.png")), 1, []string{`did you mean "RN50"`}, false},
		{"unknown architecture", with("encode-text", []string{"-model", "random:ViT-X", "-out", out}, "hi"), 1, []string{"ViT-X"}, false},
		{"cuda without CUDA", with("encode-image", []string{"-model", "random:tiny", "-device", "cuda", "-out", out}, img("a_37x53.png")), 1, []string{"cuda", "no CUDA device"}, true},
		{"fp16 on cpu", with("encode-image", []string{"-model", "random:tiny", "-device", "cpu", "-precision", "fp16", "-out", out}, img("a_37x53.png")), 1, []string{"fp16", "CUDA"}, false},
		{"text outside the vocabulary", with("encode-text", []string{"-model", vitPT, "-out", out}, "a photo"), 1, []string{"outside the vocabulary"}, false},
		{"text too long", with("encode-text", tiny, strings.Repeat("fox ", 80)), 1, []string{"too long"}, false},
		{"output folder missing", with("encode-image", []string{"-model", "random:tiny", "-out", filepath.Join(dir, "no", "x.npy")}, img("a_37x53.png")), 1, []string{"no such file"}, false},
		{"bad template", with("zeroshot", []string{"-model", "random:tiny", "-classes", "a,b", "-templates", badTmpl}, img("a_37x53.png")), 1, []string{"bad.txt:2", "{}"}, false},
		{"missing template file", with("zeroshot", []string{"-model", "random:tiny", "-classes", "a,b", "-templates", filepath.Join(dir, "none.txt")}, img("a_37x53.png")), 1, []string{"none.txt"}, false},
		{"zeroshot missing image", with("zeroshot", []string{"-model", "random:tiny", "-classes", "a,b"}, img("nope.png")), 1, []string{"nope.png"}, false},

		{"no command", nil, 2, []string{"usage"}, false},
		{"unknown command", []string{"encode"}, 2, []string{`unknown command "encode"`}, false},
		{"no model", with("encode-image", []string{"-out", out}, img("a_37x53.png")), 2, []string{"-model is required"}, false},
		{"no output", with("encode-image", []string{"-model", "random:tiny"}, img("a_37x53.png")), 2, []string{"-out is required"}, false},
		{"no images", with("encode-image", tiny), 2, []string{"no image given"}, false},
		{"no texts", with("encode-text", tiny), 2, []string{"no text given"}, false},
		{"no classes", with("zeroshot", []string{"-model", "random:tiny", "-classes", " , "}, img("a_37x53.png")), 2, []string{"-classes"}, false},
		{"bad precision", with("encode-image", append([]string{"-precision", "fp8"}, tiny...), img("a_37x53.png")), 2, []string{"-precision"}, false},
		{"bad device", with("encode-image", append(append([]string{}, tiny...), "-device", "tpu"), img("a_37x53.png")), 2, []string{"-device"}, false},
		{"bad batch", with("encode-image", append([]string{"-batch", "0"}, tiny...), img("a_37x53.png")), 2, []string{"-batch"}, false},
		{"unknown flag", with("encode-image", append([]string{"-colour"}, tiny...), img("a_37x53.png")), 2, []string{"-colour"}, false},
		{"tokenize context", []string{"tokenize", "-context", "1", "hi"}, 2, []string{"-context"}, false},
		{"tokenize nothing", []string{"tokenize"}, 2, []string{"no text given"}, false},
		{"tokenize too long", []string{"tokenize", "-context", "4", "a photo of a fox"}, 1, []string{"too long"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cuda && gotch.CUDA.IsAvailable() {
				t.Skip("CUDA is available")
			}
			r := runCmd(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", r.code, tc.code, r.stderr)
			}
			for _, s := range tc.want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr does not mention %q:\n%s", s, r.stderr)
				}
			}
			for _, s := range []string{"panic", "goroutine ", ".go:"} {
				if strings.Contains(r.stderr, s) {
					t.Errorf("stderr holds %q (a Go trace?):\n%s", s, r.stderr)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output file left behind (stat: %v)", err)
				os.Remove(out)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if e.Name() != "bad.txt" {
					t.Errorf("stray file %s in the output folder", e.Name())
				}
			}
		})
	}
}

// TestVersion checks that `clip version` names the libtorch the process
// really runs on: the libc10 mapped into it (/proc/self/maps) must lie under
// the root the printed description names; and that it names OpenBLAS's
// kernels exactly when an OpenBLAS is mapped.
func TestVersion(t *testing.T) {
	r := runCmd(t, "version")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	m := regexp.MustCompile(`^libtorch (\d+\.\d+(\.\d+)?)(?: \([^)]*\))? at (\S+), (CPU|CUDA); gotch v\S+ \(\d+ wrappers stubbed\)\n((?:BLAS: OpenBLAS, \S+ kernels\n)?)((?:warning: OpenBLAS chose .*OPENBLAS_CORETYPE=\w+\n)?)$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("clip version printed %q", r.stdout)
	}
	root := m[3]
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	var loaded string
	libc10 := regexp.MustCompile(`/libc10\.so(\.[0-9.]+)?$`)
	for _, line := range strings.Split(string(maps), "\n") {
		if f := strings.Fields(line); len(f) == 6 && libc10.MatchString(f[5]) {
			loaded = f[5]
		}
	}
	if loaded == "" {
		t.Fatal("libc10.so is not mapped into the test binary")
	}
	openblas := strings.Contains(string(maps), "/libopenblas")
	if printed := m[5] != ""; printed != openblas {
		t.Errorf("OpenBLAS mapped: %v, but clip version printed %q", openblas, r.stdout)
	}
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	if real, err := filepath.EvalSymlinks(loaded); err == nil {
		loaded = real
	}
	if !strings.HasPrefix(loaded, root+"/") {
		t.Errorf("clip version names libtorch at %s, but the process loaded %s", m[3], loaded)
	}
	if r := runCmd(t, "version", "extra"); r.code != 2 {
		t.Errorf("clip version extra: exit %d, want 2 (usage)", r.code)
	}
}

// TestSignalExitStatus: a SIGINT or SIGTERM stops encode-image before its
// next batch; the exit status is 128 + the signal (130, 143), and no output
// file is written. Without a signal the same command succeeds.
func TestSignalExitStatus(t *testing.T) {
	for _, tc := range []struct {
		sig  os.Signal
		want int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}, {nil, 0}} {
		out := filepath.Join(t.TempDir(), "f.npy")
		ch := make(chan os.Signal, 1)
		in := cli.FromSignals(ch, nil)
		if tc.sig != nil {
			ch <- tc.sig
			<-in.Context().Done()
		}
		var stdout, stderr bytes.Buffer
		args := append([]string{"encode-image", "-model", rnPT, "-device", "cpu", "-batch", "1", "-out", out}, pngs...)
		code := runInterruptible(in, args, &stdout, &stderr)
		if code != tc.want || strings.Contains(stderr.String(), "goroutine") {
			t.Errorf("signal %v: exit %d, want %d\n%s", tc.sig, code, tc.want, stderr.String())
		}
		_, err := os.Stat(out)
		if tc.sig != nil && (err == nil || !strings.Contains(stderr.String(), "interrupted")) {
			t.Errorf("signal %v: output written (%v) or no message: %q", tc.sig, err, stderr.String())
		}
	}
}

// TestPreprocessModes checks that the clip commands follow OpenAI's order
// (resize and crop in the image's own Pillow mode, then convert to RGB):
// on RGBA, LA, palette (with transparency), CMYK and 16-bit images,
// `clip preprocess` must give exactly the pixels of CLIP's transform on the
// PIL image as Image.open returns it (clip/preprocess/testdata/gen.py,
// "modes", size 32 = the test ViT's resolution).
func TestPreprocessModes(t *testing.T) {
	dir := filepath.Join("..", "..", "clip", "preprocess", "testdata")
	srcs := []string{"rgba.png", "la.png", "p.gif", "p_trns.png", "cmyk.jpg", "gray16.png"}
	var paths []string
	for _, s := range srcs {
		paths = append(paths, filepath.Join(dir, "modes", s))
	}
	out := filepath.Join(t.TempDir(), "x.npy")
	mustRun(t, append([]string{"preprocess", "-model", vitPT, "-batch", "2", "-out", out}, paths...)...)
	shape, data := readNpy(t, out)
	if want := []int{len(srcs), 3, 32, 32}; !reflect.DeepEqual(shape, want) {
		t.Fatalf("shape %v, want %v", shape, want)
	}
	per := 3 * 32 * 32
	for i, s := range srcs {
		ref := filepath.Join(dir, "modes", strings.ReplaceAll(s, ".", "_")+"_openai_32_shortest_bicubic.npy")
		shape, v, err := npy.ReadInt64(ref)
		if err != nil {
			t.Fatal(err)
		}
		im := preprocess.NewImage(shape[1], shape[0])
		for j, x := range v {
			im.Pix[j] = uint8(x)
		}
		want := make([]float32, per)
		preprocess.Normalize(im, want)
		if d := maxAbsDiff(data[i*per:(i+1)*per], want); d != 0 {
			t.Errorf("%s: differs from OpenAI's preprocess by up to %g", s, d)
		}
	}
}
