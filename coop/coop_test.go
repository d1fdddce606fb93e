package coop

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

var testClasses = []string{"cat", "golden retriever", "sea lion pup"}

func newContext(text train.TextEncoder, classes []string, seed uint64) *train.Context {
	return &train.Context{Text: text, ClassNames: classes, FeatureDim: 3, Device: gotch.CPU, Seed: seed}
}

func mustInit(t *testing.T, o Options, text train.TextEncoder, seed uint64) *CoOp {
	t.Helper()
	m := New(o)
	if err := m.Init(newContext(text, testClasses, seed), nil); err != nil {
		t.Fatal(err)
	}
	return m
}

// rows3 reshapes flat values into [a][b][c].
func rows3(v []float64, a, b, c int) [][][]float64 {
	out := make([][][]float64, a)
	for i := range out {
		out[i] = make([][]float64, b)
		for j := range out[i] {
			out[i][j] = v[(i*b+j)*c : (i*b+j+1)*c]
		}
	}
	return out
}

// refPrompts assembles the prompts literally as docs/methods.md §3 tabulates,
// from the skeleton embeddings E[c] and the context rows ctx[c] of each
// class.
func refPrompts(E [][][]float64, ctx [][][]float64, position string, m int, nameLens []int64) [][][]float64 {
	out := make([][][]float64, len(E))
	for c := range E {
		prefix, suffix, cc, n := E[c][:1], E[c][1+m:], ctx[c], int(nameLens[c])
		var p [][]float64
		switch position {
		case PositionEnd:
			p = concat(prefix, cc, suffix)
		case PositionMiddle:
			h := m / 2
			p = concat(prefix, cc[:h], suffix[:n], cc[h:], suffix[n:])
		case PositionFront:
			p = concat(prefix, suffix[:n], cc, suffix[n:])
		}
		out[c] = p
	}
	return out
}

func concat(parts ...[][]float64) [][]float64 {
	var out [][]float64
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// skeletonEmbeddings embeds the skeleton of every class with the fake.
func skeletonEmbeddings(t *testing.T, f *fakeText, placeholder string) [][][]float64 {
	t.Helper()
	var out [][][]float64
	for _, name := range testClasses {
		ids, err := f.ids(placeholder + " " + name + ".")
		if err != nil {
			t.Fatal(err)
		}
		var rows [][]float64
		for _, id := range ids {
			rows = append(rows, f.embedding(id))
		}
		out = append(out, rows)
	}
	return out
}

// contextRows returns the context rows of each class as float64.
func contextRows(m *CoOp) [][][]float64 {
	v := m.ctx.Float64Values()
	M, W := int(m.m), int(m.width)
	if m.classSpecific {
		return rows3(v, int(m.classes), M, W)
	}
	shared := rows3(v, 1, M, W)[0]
	out := make([][][]float64, m.classes)
	for c := range out {
		out[c] = shared
	}
	return out
}

type coopCase struct {
	name        string
	opts        Options
	placeholder string
}

func coopCases() []coopCase {
	var cases []coopCase
	for _, pos := range []string{PositionEnd, PositionMiddle, PositionFront} {
		cases = append(cases,
			coopCase{"shared4_" + pos, Options{NCtx: 4, ClassTokenPosition: pos}, "X X X X"},
			coopCase{"shared5_" + pos, Options{NCtx: 5, ClassTokenPosition: pos}, "X X X X X"},
			coopCase{"csc3_" + pos, Options{NCtx: 3, ClassSpecific: true, ClassTokenPosition: pos}, "X X X"},
			coopCase{"words_" + pos, Options{CtxInit: "a_photo of a", ClassTokenPosition: pos}, "a photo of a"},
		)
	}
	return cases
}

func TestPromptsFollowTheTable(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, tc := range coopCases() {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t)
			f := newFakeText(24, 6)
			m := mustInit(t, tc.opts, f, 7)
			defer m.Drop()
			M := m.NumContext()
			if want := len(strings.Fields(tc.placeholder)); M != want {
				t.Fatalf("M = %d, want %d", M, want)
			}
			// Names have 1, 2 and 3 tokens; the end token follows the ".".
			if got := fmt.Sprint(m.nameLens); got != "[1 2 3]" {
				t.Errorf("name lengths %s, want [1 2 3]", got)
			}
			wantEOT := fmt.Sprint([]int{M + 3, M + 4, M + 5})
			if got := fmt.Sprint(m.eot); got != wantEOT {
				t.Errorf("end-of-text positions %s, want %s", got, wantEOT)
			}
			p, err := m.prompts()
			if err != nil {
				t.Fatal(err)
			}
			defer p.MustDrop()
			if s := p.MustSize(); fmt.Sprint(s) != "[3 24 6]" {
				t.Fatalf("prompts shape %v, want [3 24 6]", s)
			}
			got := rows3(p.Float64Values(), 3, 24, 6)
			want := refPrompts(skeletonEmbeddings(t, f, tc.placeholder), contextRows(m), tc.opts.ClassTokenPosition, M, m.nameLens)
			for c := range want {
				for j := range want[c] {
					for k := range want[c][j] {
						// Copies of float32 values: exact.
						if got[c][j][k] != float64(float32(want[c][j][k])) {
							t.Fatalf("prompt %d row %d col %d = %g, want %g", c, j, k, got[c][j][k], want[c][j][k])
						}
					}
				}
			}
		})
	}
}

// refLoss is the fake pipeline in float64: logits of images f with labels y
// for prompts built from ctx.
func refLogits(f *fakeText, prompts [][][]float64, eot []int64, images [][]float64) [][]float64 {
	g := f.refFeatures(prompts, eot)
	for _, r := range g {
		normalize(r)
	}
	out := make([][]float64, len(images))
	for b, x := range images {
		xn := append([]float64(nil), x...)
		normalize(xn)
		out[b] = make([]float64, len(g))
		for c := range g {
			for d := range xn {
				out[b][c] += f.scale * xn[d] * g[c][d]
			}
		}
	}
	return out
}

func refLoss(logits [][]float64, labels []int64) float64 {
	var sum float64
	for b, row := range logits {
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, v)
		}
		var z float64
		for _, v := range row {
			z += math.Exp(v - mx)
		}
		sum += mx + math.Log(z) - row[labels[b]]
	}
	return sum / float64(len(logits))
}

func normalize(v []float64) {
	var n float64
	for _, x := range v {
		n += x * x
	}
	n = math.Sqrt(n)
	for i := range v {
		v[i] /= n
	}
}

var (
	testImages = [][]float64{{1, 0.5, -0.2}, {-0.3, 1, 0.4}, {0.2, -0.1, 1}, {0.7, 0.7, 0.1}}
	testLabels = []int64{0, 1, 2, 1}
)

func imageTensor() *ts.Tensor {
	var v []float32
	for _, r := range testImages {
		for _, x := range r {
			v = append(v, float32(x))
		}
	}
	return ts.MustOfSlice(v).MustView([]int64{int64(len(testImages)), 3}, true)
}

func TestLogitsAndGradientMatchReference(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, tc := range coopCases() {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t)
			f := newFakeText(24, 6)
			m := mustInit(t, tc.opts, f, 11)
			defer m.Drop()
			M := m.NumContext()
			E := skeletonEmbeddings(t, f, tc.placeholder)
			ctx := contextRows(m)

			x := imageTensor()
			defer x.MustDrop()
			labels := ts.MustOfSlice(testLabels)
			defer labels.MustDrop()
			logits, err := m.Logits(x, true)
			if err != nil {
				t.Fatal(err)
			}
			loss := logits.CrossEntropyForLogits(labels)
			if err := loss.Backward(); err != nil {
				t.Fatal(err)
			}
			wantLogits := refLogits(f, refPrompts(E, ctx, tc.opts.ClassTokenPosition, M, m.nameLens), m.eot, testImages)
			got := logits.Float64Values()
			for b := range wantLogits {
				for c, w := range wantLogits[b] {
					if g := got[b*3+c]; math.Abs(g-w) > 1e-4*(1+math.Abs(w)) {
						t.Errorf("logits[%d,%d] = %g, want %g", b, c, g, w)
					}
				}
			}
			wantLoss := refLoss(wantLogits, testLabels)
			if g := loss.Float64Values()[0]; math.Abs(g-wantLoss) > 1e-5*(1+wantLoss) {
				t.Errorf("loss = %g, want %g", g, wantLoss)
			}
			logits.MustDrop()
			loss.MustDrop()

			// Central differences of the float64 reference, entry by entry
			// of the learned tensor (shared rows are one entry for all
			// classes).
			grad := m.ctx.MustGrad(false)
			defer grad.MustDrop()
			gv := grad.Float64Values()
			flat := m.ctx.Float64Values()
			fd := make([]float64, len(flat))
			const h = 1e-5
			lossAt := func(v []float64) float64 {
				var rows [][][]float64
				if m.classSpecific {
					rows = rows3(v, int(m.classes), M, int(m.width))
				} else {
					shared := rows3(v, 1, M, int(m.width))[0]
					rows = [][][]float64{shared, shared, shared}
				}
				return refLoss(refLogits(f, refPrompts(E, rows, tc.opts.ClassTokenPosition, M, m.nameLens), m.eot, testImages), testLabels)
			}
			maxFD := 0.0
			for i := range flat {
				v := append([]float64(nil), flat...)
				v[i] += h
				up := lossAt(v)
				v[i] -= 2 * h
				fd[i] = (up - lossAt(v)) / (2 * h)
				maxFD = math.Max(maxFD, math.Abs(fd[i]))
			}
			if maxFD == 0 {
				t.Fatal("the reference loss does not depend on the context")
			}
			for i := range fd {
				if math.Abs(gv[i]-fd[i]) > 1e-3*maxFD {
					t.Fatalf("d loss/d ctx[%d] = %g, finite differences give %g (max |grad| %g)", i, gv[i], fd[i], maxFD)
				}
			}
		})
	}
}

func TestEvaluationReusesClassFeatures(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f := newFakeText(24, 6)
	m := mustInit(t, Options{NCtx: 4}, f, 3)
	defer m.Drop()
	x := imageTensor()
	defer x.MustDrop()
	logits := func(training bool) []float64 {
		t.Helper()
		l, err := m.Logits(x, training)
		if err != nil {
			t.Fatal(err)
		}
		defer l.MustDrop()
		return l.Float64Values()
	}
	calls := func(want int, when string) {
		t.Helper()
		if f.encodeCalls != want {
			t.Errorf("%s: %d calls of EncodeEmbeddings, want %d", when, f.encodeCalls, want)
		}
	}
	first := logits(false)
	logits(false)
	calls(1, "two evaluation calls")
	train1 := logits(true)
	calls(2, "a training call")
	if fmt.Sprint(first) != fmt.Sprint(train1) {
		t.Errorf("evaluation logits %v differ from training logits %v for the same context", first, train1)
	}
	logits(false)
	calls(3, "evaluation after training")
	logits(false)
	calls(3, "second evaluation after training")

	// Changing the context in place (as a checkpoint restore does) must
	// not leave stale class features behind.
	ones := m.ctx.MustOnesLike(false)
	noGrad(t, func() { m.ctx.Copy_(ones) })
	ones.MustDrop()
	changed := logits(false)
	calls(4, "evaluation after an in-place change of the context")
	if fmt.Sprint(changed) == fmt.Sprint(first) {
		t.Error("logits did not change with the context")
	}
	// SetParameters likewise.
	v := m.ctx.MustMulScalar(ts.FloatScalar(-0.5), false)
	if err := m.SetParameters(map[string]*ts.Tensor{ParamName: v}); err != nil {
		t.Fatal(err)
	}
	v.MustDrop()
	logits(false)
	calls(5, "evaluation after SetParameters")
	if got := m.ctx.Float64Values()[0]; got != -0.5 {
		t.Errorf("ctx[0] after SetParameters = %g, want -0.5", got)
	}
}

func noGrad(t *testing.T, fn func()) {
	t.Helper()
	if err := torch.NoGrad(func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestParametersAndSetParameters(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f := newFakeText(24, 6)
	m := New(Options{NCtx: 3, ClassSpecific: true})
	if ps := m.Parameters(); ps != nil {
		t.Errorf("Parameters before Init = %v, want nil", ps)
	}
	if err := m.SetParameters(nil); err == nil {
		t.Error("SetParameters before Init succeeded")
	}
	if err := m.Init(newContext(f, testClasses, 5), nil); err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	ps := m.Parameters()
	if len(ps) != 1 || ps[0].Name != "ctx" {
		t.Fatalf("Parameters = %v, want one named ctx", ps)
	}
	if s := ps[0].Tensor.MustSize(); fmt.Sprint(s) != "[3 3 6]" {
		t.Errorf("ctx shape %v, want [3 3 6] (classes, M, width)", s)
	}
	if !ps[0].Tensor.MustRequiresGrad() {
		t.Error("ctx does not require gradients")
	}
	good := ts.MustZeros([]int64{3, 3, 6}, gotch.Float, gotch.CPU)
	bad := ts.MustZeros([]int64{3, 6}, gotch.Float, gotch.CPU)
	defer good.MustDrop()
	defer bad.MustDrop()
	tests := []struct {
		name   string
		values map[string]*ts.Tensor
		errSub string
	}{
		{"missing", map[string]*ts.Tensor{}, `missing "ctx"`},
		{"wrong shape", map[string]*ts.Tensor{"ctx": bad}, "[3 6], want [3 3 6]"},
		{"unknown name", map[string]*ts.Tensor{"ctx": good, "token_prefix": good}, `unknown parameter "token_prefix"`},
	}
	for _, tc := range tests {
		err := m.SetParameters(tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.errSub) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.errSub)
		}
	}
	if err := m.SetParameters(map[string]*ts.Tensor{"ctx": good}); err != nil {
		t.Fatal(err)
	}
	for i, v := range m.ctx.Float64Values() {
		if v != 0 {
			t.Fatalf("ctx[%d] = %g after setting zeros", i, v)
		}
	}
	if !m.ctx.MustRequiresGrad() {
		t.Error("ctx stopped requiring gradients after SetParameters")
	}
}

func TestRandomInit(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f := newFakeText(40, 64)
	values := func(o Options, seed uint64) []float64 {
		m := mustInit(t, o, f, seed)
		defer m.Drop()
		return m.ctx.Float64Values()
	}
	o := Options{ClassSpecific: true} // M = 16 by default
	a, b, c := values(o, 1), values(o, 1), values(o, 2)
	if len(a) != 3*16*64 {
		t.Fatalf("%d context values, want 3·16·64", len(a))
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("the same seed gave different contexts")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Error("different seeds gave the same context")
	}
	var sum, sq float64
	for _, v := range a {
		sum += v
		sq += v * v
	}
	n := float64(len(a))
	mean, std := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
	// 3072 draws: the mean's standard error is 0.02/√3072 ≈ 3.6e-4 and
	// the std's about 1.3%.
	if math.Abs(mean) > 2e-3 || math.Abs(std-0.02) > 0.002 {
		t.Errorf("context mean %g std %g, want about 0 and 0.02", mean, std)
	}
	s := values(Options{NCtx: 8, InitStd: 0.5}, 1)
	var sq2 float64
	for _, v := range s {
		sq2 += v * v
	}
	if std := math.Sqrt(sq2 / float64(len(s))); math.Abs(std-0.5) > 0.05 {
		t.Errorf("InitStd 0.5: std %g", std)
	}
}

func TestWordInit(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f := newFakeText(24, 6)
	// NCtx and ClassSpecific are ignored with words.
	m := mustInit(t, Options{CtxInit: "a photo_of  a", NCtx: 9, ClassSpecific: true}, f, 1)
	defer m.Drop()
	if s := m.ctx.MustSize(); fmt.Sprint(s) != "[4 6]" {
		t.Fatalf("ctx shape %v, want [4 6]", s)
	}
	got := m.ctx.Float64Values()
	for i, w := range []string{"a", "photo", "of", "a"} {
		want := f.embedding(toyVocab[w])
		for k := range want {
			if got[i*6+k] != float64(float32(want[k])) {
				t.Fatalf("ctx row %d (%q) col %d = %g, want %g", i, w, k, got[i*6+k], want[k])
			}
		}
	}
}

func TestInitErrors(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tests := []struct {
		name    string
		opts    Options
		classes []string
		length  int64
		noText  bool
		scale   float64
		errSub  string
	}{
		// 1 + 11 + 3 + 2 = 17 > 16 for "sea lion pup" only.
		{name: "prompt too long", opts: Options{NCtx: 11}, classes: testClasses, length: 16, errSub: `class "sea lion pup": the prompt needs 17 tokens`},
		{name: "fits exactly", opts: Options{NCtx: 10}, classes: testClasses, length: 16},
		{name: "unknown position", opts: Options{ClassTokenPosition: "back"}, classes: testClasses, length: 24, errSub: `unknown class token position "back"`},
		{name: "negative NCtx", opts: Options{NCtx: -1}, classes: testClasses, length: 24, errSub: "NCtx = -1"},
		{name: "negative std", opts: Options{InitStd: -1}, classes: testClasses, length: 24, errSub: "InitStd"},
		{name: "untokenizable name", opts: Options{NCtx: 2}, classes: []string{"cat", "dog"}, length: 24, errSub: `class "dog"`},
		{name: "multi-token word", opts: Options{CtxInit: "a close-up photo"}, classes: testClasses, length: 24, errSub: "3 words but 4 tokens"},
		{name: "blank words", opts: Options{CtxInit: " _ "}, classes: testClasses, length: 24, errSub: "no words"},
		{name: "no classes", opts: Options{}, length: 24, errSub: "no class names"},
		{name: "no text encoder", opts: Options{}, classes: testClasses, noText: true, errSub: "no text encoder"},
		{name: "bad logit scale", opts: Options{NCtx: 2}, classes: testClasses, length: 24, scale: -1, errSub: "logit scale is -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t)
			var text train.TextEncoder
			if !tc.noText {
				f := newFakeText(tc.length, 6)
				if tc.scale != 0 {
					f.scale = tc.scale
				}
				text = f
			}
			m := New(tc.opts)
			defer m.Drop()
			err := m.Init(newContext(text, tc.classes, 1), nil)
			if tc.errSub == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Fatalf("Init error = %v, want one containing %q", err, tc.errSub)
			}
			if m.Parameters() != nil {
				t.Error("a failed Init left parameters behind")
			}
		})
	}
	m := New(Options{})
	x := imageTensor()
	defer x.MustDrop()
	if _, err := m.Logits(x, false); err == nil {
		t.Error("Logits before Init succeeded")
	}
}

// lockThread pins the test's goroutine to its OS thread (libtorch's grad
// mode is per thread) until the test ends.
func lockThread(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}
