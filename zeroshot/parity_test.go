package zeroshot

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/internal/torch"
)

// fixtureText is a train.TextEncoder over the clip package's fixture
// model whose "tokenizer" maps the text "tT cC" to the fixture's token row
// of class C, template T (clip/testdata/gen.py, write_zeroshot): the
// prompts PyTorch encoded.
type fixtureText struct {
	*clip.TextSide
	rows [][]int64 // [C*T][L]
	tmpl int
}

func (f *fixtureText) EncodeTexts(texts []string) (*ts.Tensor, error) {
	var ids []int64
	for _, s := range texts {
		var tt, c int
		if _, err := fmt.Sscanf(s, "t%d c%d", &tt, &c); err != nil {
			return nil, fmt.Errorf("fixture text %q: %w", s, err)
		}
		ids = append(ids, f.rows[c*f.tmpl+tt]...)
	}
	x, err := ts.OfSlice(ids)
	if err != nil {
		return nil, err
	}
	defer x.Drop()
	tok, err := x.View([]int64{int64(len(texts)), int64(len(f.rows[0]))}, false)
	if err != nil {
		return nil, err
	}
	defer tok.Drop()
	return f.Model.EncodeText(tok)
}

// TestClassifierMatchesPyTorch: the classifier of 3 classes x 2 templates
// equals PyTorch's normalised mean of normalised text features
// (docs/methods.md §2) within 1e-4 relative.
func TestClassifierMatchesPyTorch(t *testing.T) {
	lockThread(t)
	m, err := clip.Load("../clip/testdata/vit.pt", gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	shape, ids, err := npy.ReadInt64("../clip/testdata/zeroshot_tokens.npy")
	if err != nil {
		t.Fatal(err)
	}
	c, tmpl, l := shape[0], shape[1], shape[2]
	text := &fixtureText{TextSide: &clip.TextSide{Model: m, Device: gotch.CPU}, tmpl: tmpl}
	for r := 0; r < c*tmpl; r++ {
		text.rows = append(text.rows, ids[r*l:(r+1)*l])
	}
	names := make([]string, c)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
	}
	templates := make([]string, tmpl)
	for i := range templates {
		templates[i] = fmt.Sprintf("t%d {}", i)
	}
	w, err := Classifier(text, names, templates)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Drop()
	got, err := torch.Values[float32](w)
	if err != nil {
		t.Fatal(err)
	}
	wantShape, want, err := npy.Read("../clip/testdata/zeroshot_weights.npy")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || wantShape[0] != c {
		t.Fatalf("classifier has %d values, want %d (shape %v)", len(got), len(want), wantShape)
	}
	var maxDiff, maxRef float64
	for i := range got {
		maxDiff = math.Max(maxDiff, math.Abs(float64(got[i]-want[i])))
		maxRef = math.Max(maxRef, math.Abs(float64(want[i])))
	}
	if rel := maxDiff / maxRef; !(rel <= 1e-4) {
		t.Errorf("classifier relative error %.3g exceeds 1e-4", rel)
	}
	if _, err := Classifier(text, nil, templates); err == nil || !strings.Contains(err.Error(), "no class names") {
		t.Errorf("classifier without classes: %v", err)
	}
}
