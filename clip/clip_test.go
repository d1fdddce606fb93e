package clip

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/clip/internal/torchfile"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// The fixtures in testdata are written by testdata/gen.py with PyTorch 1.13:
// small CLIP models in the released format (fp16 weights) and the outputs of
// an fp32 PyTorch model holding the same fp16-rounded weights.

// relTol bounds max|Go − PyTorch| / max|PyTorch| for every output.
const relTol = 1e-4

var (
	vitConfig = Config{EmbedDim: 32, ImageResolution: 32, VisionLayers: []int{2}, VisionWidth: 64, VisionPatchSize: 8,
		ContextLength: 77, VocabSize: 1024, TransformerWidth: 128, TransformerHeads: 2, TransformerLayers: 2}
	rnConfig = Config{EmbedDim: 32, ImageResolution: 64, VisionLayers: []int{1, 1, 1, 1}, VisionWidth: 16,
		ContextLength: 77, VocabSize: 1024, TransformerWidth: 64, TransformerHeads: 1, TransformerLayers: 2}
)

func lockThread(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

// tensorFrom builds a tensor from a reference array.
func tensorFrom(t *testing.T, a *npyArray, int64s bool) *ts.Tensor {
	t.Helper()
	var x *ts.Tensor
	var err error
	if int64s {
		x, err = ts.OfSlice(a.ints())
	} else {
		x, err = ts.OfSlice(a.float32s())
	}
	if err != nil {
		t.Fatal(err)
	}
	y, err := x.View(a.shape, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Drop() })
	return y
}

// valuesOf returns x's shape and values (as float64).
func valuesOf(t *testing.T, x *ts.Tensor) ([]int64, []float64) {
	t.Helper()
	shape, err := x.Size()
	if err != nil {
		t.Fatal(err)
	}
	d, err := x.Totype(gotch.Double, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Drop()
	v := make([]float64, d.Numel())
	if err := d.CopyData(v, uint(len(v))); err != nil {
		t.Fatal(err)
	}
	return shape, v
}

// compare checks got against the reference and returns the relative error.
func compare(t *testing.T, what string, got *ts.Tensor, want *npyArray, tol float64) float64 {
	t.Helper()
	shape, v := valuesOf(t, got)
	if !reflect.DeepEqual(shape, want.shape) {
		t.Errorf("%s: shape %v, want %v", what, shape, want.shape)
		return math.Inf(1)
	}
	var maxDiff, maxRef float64
	for i := range v {
		maxDiff = math.Max(maxDiff, math.Abs(v[i]-want.data[i]))
		maxRef = math.Max(maxRef, math.Abs(want.data[i]))
	}
	rel := maxDiff / maxRef
	t.Logf("%s: max |diff| %.3g, max |ref| %.3g, relative %.3g", what, maxDiff, maxRef, rel)
	if !(rel <= tol) {
		t.Errorf("%s: relative error %.3g exceeds %.0e", what, rel, tol)
	}
	return rel
}

func loadModel(t *testing.T, path string) *Model {
	t.Helper()
	m, err := Load(path, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Drop)
	return m
}

func TestLoadMatchesPyTorch(t *testing.T) {
	lockThread(t)
	for _, tc := range []struct {
		file, ref string
		cfg       Config
	}{
		{"vit.pt", "vit", vitConfig},
		{"vit_sd.pt", "vit", vitConfig},
		{"rn.pt", "rn", rnConfig},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m := loadModel(t, filepath.Join("testdata", tc.file))
			if !reflect.DeepEqual(m.Config(), tc.cfg) {
				t.Fatalf("config %+v, want %+v", m.Config(), tc.cfg)
			}
			images := tensorFrom(t, mustNpy(t, tc.ref+"_images"), false)
			tokens := tensorFrom(t, mustNpy(t, tc.ref+"_tokens"), true)

			f, err := m.EncodeImage(images)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Drop()
			compare(t, "EncodeImage", f, mustNpy(t, tc.ref+"_image_features"), relTol)

			g, err := m.EncodeText(tokens)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Drop()
			compare(t, "EncodeText", g, mustNpy(t, tc.ref+"_text_features"), relTol)

			perImage, perText, err := m.Forward(images, tokens)
			if err != nil {
				t.Fatal(err)
			}
			defer perImage.Drop()
			defer perText.Drop()
			compare(t, "logits per image", perImage, mustNpy(t, tc.ref+"_logits_per_image"), relTol)
			_, pi := valuesOf(t, perImage)
			ptShape, pt := valuesOf(t, perText)
			for i := range ptShape[0] {
				for j := range ptShape[1] {
					if pt[i*ptShape[1]+j] != pi[j*ptShape[0]+i] {
						t.Fatalf("logits per text is not the transpose of logits per image at %d,%d", i, j)
					}
				}
			}

			x := tensorFrom(t, mustNpy(t, tc.ref+"_embeddings"), false)
			eot := mustNpy(t, tc.ref+"_embeddings_eot").ints()
			h, err := m.EncodeTextEmbeddings(x, eot)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Drop()
			compare(t, "EncodeTextEmbeddings", h, mustNpy(t, tc.ref+"_embeddings_features"), relTol)

			got, err := m.EOTPositions(tokens)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, eot) {
				t.Errorf("EOTPositions = %v, want %v", got, eot)
			}
			scale, err := m.LogitScale()
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(scale-100) > 1e-4 {
				t.Errorf("LogitScale = %v, want 100 (the fixture stores ln 100)", scale)
			}
		})
	}
}

// TestLoadKeepsStoredValues checks fp16 and fp32 archive tensors, BatchNorm
// running statistics included, against values recomputed from the file's
// raw bytes here.
func TestLoadKeepsStoredValues(t *testing.T) {
	lockThread(t)
	m := loadModel(t, "testdata/rn.pt")
	zr, err := zip.OpenReader("testdata/rn.pt")
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, tc := range []struct {
		name string
		half bool
	}{
		{"visual.layer2.0.bn1.running_var", false},
		{"visual.layer2.0.bn1.running_mean", false},
		{"visual.attnpool.q_proj.weight", true},
		{"token_embedding.weight", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := m.Params().Lookup(tc.name)
			if q == nil {
				t.Fatal("no such parameter")
			}
			_, got := valuesOf(t, q.Tensor)
			want := rawValues(t, zr, "rn", tc.name, tc.half, len(got))
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("element %d = %v, want %v", i, got[i], want[i])
				}
			}
			if q.DType != gotch.Float {
				t.Errorf("dtype %v, want float (fp16 weights become fp32 on CPU)", q.DType)
			}
		})
	}
}

// rawValues decodes a storage of rn.pt by hand (the fixture's tensors are
// contiguous with offset 0), locating it through the model's own pickle
// reader only for the storage key.
func rawValues(t *testing.T, zr *zip.ReadCloser, prefix, name string, half bool, n int) []float64 {
	t.Helper()
	key := storageKey(t, "testdata/rn.pt", name)
	f, err := zr.Open(prefix + "/data/" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := 4
	if half {
		size = 2
	}
	b := make([]byte, size*n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, n)
	for i := range out {
		if half {
			out[i] = halfToFloat(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
		} else {
			out[i] = float64(math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24))
		}
	}
	return out
}

// halfToFloat decodes an IEEE 754 binary16 value.
func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * frac * math.Pow(2, -24)
	case 31:
		if frac == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * (1 + frac/1024) * math.Pow(2, float64(exp-15))
}

func TestLoadNamesMismatch(t *testing.T) {
	_, err := Load("testdata/tiny_keys.pt", gotch.CPU)
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("err = %v, want a *KeyError", err)
	}
	if !reflect.DeepEqual(ke.Report.Missing, []string{"ln_final.bias"}) ||
		!reflect.DeepEqual(ke.Report.Unexpected, []string{"visual.extra.weight"}) {
		t.Errorf("report %+v, want missing [ln_final.bias], unexpected [visual.extra.weight]", ke.Report)
	}
	for _, s := range []string{"tiny_keys.pt", "ln_final.bias", "visual.extra.weight"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	vit, err := os.ReadFile("testdata/vit.pt")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Flip one byte inside the storage of visual.conv1.weight.
	corrupt := append([]byte(nil), vit...)
	key := storageKey(t, "testdata/vit.pt", "visual.conv1.weight")
	off := dataOffset(t, "testdata/vit.pt", "vit/data/"+key)
	corrupt[off+5] ^= 0x40

	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"wrong shape", "testdata/tiny_shape.pt", []string{"tiny_shape.pt", "transformer.resblocks.0.mlp.c_fc.weight", "[64 256]", "[256 64]"}},
		{"truncated", write("truncated.pt", vit[:len(vit)/2]), []string{"truncated.pt", "not a PyTorch zip archive"}},
		{"corrupt storage", write("corrupt.pt", corrupt), []string{"corrupt.pt", "visual.conv1.weight", "checksum"}},
		{"not an archive", write("text.pt", []byte("hello, world\n")), []string{"text.pt", "not a PyTorch zip archive"}},
		{"not CLIP", "testdata/notclip.pt", []string{"notclip.pt", "not a CLIP state dict", "text_projection"}},
		{"missing file", filepath.Join(dir, "nope.pt"), []string{"nope.pt", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(tc.path, gotch.CPU)
			if err == nil {
				m.Drop()
				t.Fatal("Load succeeded")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestFP16NeedsCUDA(t *testing.T) {
	if _, err := Load("testdata/vit.pt", gotch.CPU, WithPrecision(FP16)); err == nil || !strings.Contains(err.Error(), "CUDA") {
		t.Errorf("Load FP16 on CPU: err = %v, want an error about CUDA", err)
	}
	if _, err := New(vitConfig, gotch.CPU, 1, WithPrecision(FP16)); err == nil {
		t.Error("New FP16 on CPU succeeded")
	}
}

// storageKey returns the storage record name of tensor name in an archive.
func storageKey(t *testing.T, path, name string) string {
	t.Helper()
	a, err := torchfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	x := a.Lookup(name)
	if x == nil {
		t.Fatalf("%s: no tensor %s", path, name)
	}
	return x.StorageKey
}

// dataOffset returns where record name's bytes start in the zip file.
func dataOffset(t *testing.T, path, name string) int64 {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if f.Name == name {
			off, err := f.DataOffset()
			if err != nil {
				t.Fatal(err)
			}
			return off
		}
	}
	t.Fatalf("%s: no record %s", path, name)
	return 0
}

func TestEncodeRejectsBadInput(t *testing.T) {
	lockThread(t)
	m := loadModel(t, "testdata/vit.pt")
	img, err := ts.Zeros([]int64{1, 3, 16, 16}, gotch.Float, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Drop()
	if _, err := m.EncodeImage(img); err == nil || !strings.Contains(err.Error(), "[N, 3, 32, 32]") {
		t.Errorf("EncodeImage(16x16): err = %v", err)
	}
	bad, err := ts.OfSlice([]int64{1022, 5, 1024, 1023})
	if err != nil {
		t.Fatal(err)
	}
	bad2, err := bad.View([]int64{1, 4}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer bad2.Drop()
	if _, err := m.EncodeText(bad2); err == nil || !strings.Contains(err.Error(), "token id 1024") {
		t.Errorf("EncodeText(out-of-vocabulary id): err = %v", err)
	}
	x, err := ts.Zeros([]int64{2, 5, 128}, gotch.Float, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Drop()
	for _, eot := range [][]int64{{1}, {1, 5}, {-1, 0}} {
		if _, err := m.EncodeTextEmbeddings(x, eot); err == nil {
			t.Errorf("EncodeTextEmbeddings with eot %v succeeded", eot)
		}
	}
}

// TestTextEmbeddingsCarryGradients checks CoOp's path: gradients reach the
// token embeddings, the frozen weights get none, and EncodeImage restores
// the caller's grad mode.
func TestTextEmbeddingsCarryGradients(t *testing.T) {
	lockThread(t)
	m := loadModel(t, "testdata/vit.pt")
	tokens := tensorFrom(t, mustNpy(t, "vit_tokens"), true)
	e, err := m.TokenEmbedding(tokens)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Drop()
	x, err := e.SetRequiresGrad(true, false)
	if err != nil {
		t.Fatal(err)
	}
	eot, err := m.EOTPositions(tokens)
	if err != nil {
		t.Fatal(err)
	}
	h, err := m.EncodeTextEmbeddings(x, eot)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Drop()
	loss, err := h.Sum(gotch.Float, false)
	if err != nil {
		t.Fatal(err)
	}
	defer loss.Drop()
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	g, err := x.Grad(false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Drop()
	_, gv := valuesOf(t, g)
	var norm float64
	for _, v := range gv {
		norm += v * v
	}
	if !(norm > 0) {
		t.Error("no gradient reached the token embeddings")
	}
	for _, q := range m.Params().List() {
		if rg, _ := q.Tensor.RequiresGrad(); rg {
			t.Fatalf("weight %s requires grad", q.Name)
		}
	}

	images := tensorFrom(t, mustNpy(t, "vit_images"), false)
	for _, on := range []bool{true, false} {
		if _, err := torch.SetGradEnabled(on); err != nil {
			t.Fatal(err)
		}
		f, err := m.EncodeImage(images)
		if err != nil {
			t.Fatal(err)
		}
		rg, _ := f.RequiresGrad()
		f.Drop()
		if rg {
			t.Error("EncodeImage output requires grad")
		}
		if torch.GradEnabled() != on {
			t.Errorf("grad mode %v after EncodeImage, want %v", !on, on)
		}
	}
	torch.SetGradEnabled(true)
}

// TestClassify checks the zero-shot head on the fixture's classifier
// (built by zeroshot.Classifier; its parity is tested there).
func TestClassify(t *testing.T) {
	lockThread(t)
	m := loadModel(t, "testdata/vit.pt")
	w := tensorFrom(t, mustNpy(t, "zeroshot_weights"), false)
	defer w.Drop()
	f, err := m.EncodeImage(tensorFrom(t, mustNpy(t, "vit_images"), false))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Drop()
	logits, err := Classify(f, w, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer logits.Drop()
	compare(t, "Classify", logits, mustNpy(t, "zeroshot_logits"), relTol)
}

// TestEncodeImageMemoryIsFlat runs 200 EncodeImage calls and checks that
// anonymous memory (torch.AnonymousBytes) stops growing after a warm-up.
func TestEncodeImageMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("long loop")
	}
	lockThread(t)
	for _, tc := range []struct{ file, ref string }{{"vit.pt", "vit"}, {"rn.pt", "rn"}} {
		t.Run(tc.file, func(t *testing.T) {
			m := loadModel(t, filepath.Join("testdata", tc.file))
			images := tensorFrom(t, mustNpy(t, tc.ref+"_images"), false)
			run := func(n int) {
				for i := 0; i < n; i++ {
					f, err := m.EncodeImage(images)
					if err != nil {
						t.Fatal(err)
					}
					f.Drop()
				}
			}
			const warmup, calls = 50, 200
			run(warmup)
			debug.FreeOSMemory()
			before, err := torch.AnonymousBytes()
			if err != nil {
				t.Skip("no RssAnon/VmSwap in /proc/self/status:", err)
			}
			run(calls)
			debug.FreeOSMemory()
			after, _ := torch.AnonymousBytes()
			growth := after - before
			t.Logf("anonymous %.1f MiB; growth over %d EncodeImage calls: %.2f MiB", float64(after)/(1<<20), calls, float64(growth)/(1<<20))
			const bound = 8 << 20
			if growth > bound {
				t.Errorf("anonymous memory grew by %.1f MiB over %d calls; want < %d MiB", float64(growth)/(1<<20), calls, bound>>20)
			}
		})
	}
}

// TestPromptStepMemoryIsFlat runs 100 CoOp-like steps (learned embeddings
// through EncodeTextEmbeddings, backward) and checks anonymous memory;
// then 100 steps of the packed encoding (EncodeTextWithPrefix: two
// prefixes, two groups of prompts after them).
func TestPromptStepMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("long loop")
	}
	lockThread(t)
	m := loadModel(t, "testdata/vit.pt")
	tokens := tensorFrom(t, mustNpy(t, "vit_tokens"), true)
	e, err := m.TokenEmbedding(tokens)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Drop()
	ctx, err := e.SetRequiresGrad(true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Drop()
	eot, err := m.EOTPositions(tokens)
	if err != nil {
		t.Fatal(err)
	}
	// The packed inputs: prefixes = rows 0 and 1's first 3 positions; group
	// 1 = the rest of rows 0 and 1, group 2 = the rest of rows 2 and 3.
	packedInputs := func() (*ts.Tensor, []*ts.Tensor, [][]int64) {
		pre := ctx.MustNarrow(0, 0, 2, false).MustNarrow(1, 0, 3, true)
		g1 := ctx.MustNarrow(0, 0, 2, false).MustNarrow(1, 3, 74, true)
		g2 := ctx.MustNarrow(0, 2, 2, false).MustNarrow(1, 3, 74, true)
		return pre, []*ts.Tensor{g1, g2}, [][]int64{eot[0:2], eot[2:4]}
	}
	checkFlat(t, "whole prompts", func() (*ts.Tensor, error) { return m.EncodeTextEmbeddings(ctx, eot) }, ctx)
	checkFlat(t, "packed prompts", func() (*ts.Tensor, error) {
		pre, groups, eots := packedInputs()
		defer pre.Drop()
		for _, g := range groups {
			defer g.Drop()
		}
		return m.EncodeTextWithPrefix(pre, groups, eots)
	}, ctx)
}

// checkFlat runs 20 then 100 steps of encode, sum, backward (zeroing
// leaf's gradient) and checks that anonymous memory grew by less than
// 8 MiB over the 100.
func checkFlat(t *testing.T, what string, encode func() (*ts.Tensor, error), leaf *ts.Tensor) {
	t.Helper()
	ctx := leaf
	step := func() {
		h, err := encode()
		if err != nil {
			t.Fatal(err)
		}
		loss, err := h.Sum(gotch.Float, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		loss.Drop()
		g, err := ctx.Grad(false)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Zero_(); err != nil {
			t.Fatal(err)
		}
		g.Drop()
	}
	const warmup, steps = 20, 100
	for i := 0; i < warmup; i++ {
		step()
	}
	debug.FreeOSMemory()
	before, err := torch.AnonymousBytes()
	if err != nil {
		t.Skip("no RssAnon/VmSwap in /proc/self/status:", err)
	}
	for i := 0; i < steps; i++ {
		step()
	}
	debug.FreeOSMemory()
	after, _ := torch.AnonymousBytes()
	growth := after - before
	t.Logf("%s: anonymous %.1f MiB; growth over %d forward/backward steps: %.2f MiB", what, float64(after)/(1<<20), steps, float64(growth)/(1<<20))
	if growth > 8<<20 {
		t.Errorf("%s: anonymous memory grew by %.1f MiB over %d steps; want < 8 MiB", what, float64(growth)/(1<<20), steps)
	}
}

// TestTextCutAfterLastEOTIsExact compares the text tower cut after the
// batch's last end-of-text token (the default) with the full 77 positions
// (WithFullTextContext), for batches of prompts of different lengths (the
// fixture rows end at positions 6, 4, 11 and 76): features within 2e-6
// relative (fp32 rounding of products of other lengths; 8.1e-7 measured
// on libtorch 1.13 and 2.11), and the gradients reaching the token
// embeddings within 2e-6 relative, zero after the last end-of-text token
// in both.
func TestTextCutAfterLastEOTIsExact(t *testing.T) {
	lockThread(t)
	all := tensorFrom(t, mustNpy(t, "vit_tokens"), true)
	for _, file := range []string{"vit.pt", "rn.pt"} {
		cut := loadModel(t, filepath.Join("testdata", file))
		full, err := Load(filepath.Join("testdata", file), gotch.CPU, WithFullTextContext())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(full.Drop)
		for _, rows := range [][]int64{{1}, {0, 1, 2}, {2, 0}, {0, 1, 2, 3}} {
			name := fmt.Sprintf("%s/rows%v", file, rows)
			tokens := all.MustIndexSelect(0, ts.MustOfSlice(rows), false)
			fc, err := cut.EncodeText(tokens)
			if err != nil {
				t.Fatal(err)
			}
			ff, err := full.EncodeText(tokens)
			if err != nil {
				t.Fatal(err)
			}
			_, want := valuesOf(t, ff)
			_, got := valuesOf(t, fc)
			d := relDiff(got, want)
			t.Logf("%s: features differ by %.3g relative", name, d)
			if d > 2e-6 {
				t.Errorf("%s: features differ by %.3g relative (> 2e-6)", name, d)
			}

			grad := func(m *Model) []float64 {
				e, err := m.TokenEmbedding(tokens)
				if err != nil {
					t.Fatal(err)
				}
				x := e.MustSetRequiresGrad(true, true)
				eot, err := m.EOTPositions(tokens)
				if err != nil {
					t.Fatal(err)
				}
				h, err := m.EncodeTextEmbeddings(x, eot)
				if err != nil {
					t.Fatal(err)
				}
				// A fixed weight per output, so that every feature counts.
				n := h.MustSize()
				w := make([]float32, n[0]*n[1])
				for i := range w {
					w[i] = float32(i%13) - 6
				}
				wt := ts.MustOfSlice(w).MustView(n, true)
				loss := h.MustMul(wt, true).MustSum(gotch.Double, true)
				loss.MustBackward()
				_, g := valuesOf(t, x.MustGrad(false))
				return g
			}
			gc, gf := grad(cut), grad(full)
			dg := relDiff(gc, gf)
			t.Logf("%s: gradients differ by %.3g relative", name, dg)
			if dg > 2e-6 {
				t.Errorf("%s: gradients differ by %.3g relative (> 2e-6)", name, dg)
			}
			eot, _ := cut.EOTPositions(tokens)
			last := slices.Max(eot)
			width := len(gc) / (len(rows) * 77)
			for r := range rows {
				for p := last + 1; p < 77; p++ {
					for k := 0; k < width; k++ {
						if i := (r*77+int(p))*width + k; gc[i] != 0 || gf[i] != 0 {
							t.Fatalf("%s: gradient at row %d position %d (after the last end-of-text %d) is %g cut, %g full", name, r, p, last, gc[i], gf[i])
						}
					}
				}
			}
		}
	}
}
