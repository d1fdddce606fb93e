package coop

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

var cpu = gotch.CPU

// pyReference is testdata/reference.json, written by testdata/gen.py.
type pyReference struct {
	Classes       []string    `json:"classes"`
	Labels        []int64     `json:"labels"`
	ImageFeatures [][]float64 `json:"image_features"`
	LogitScale    float64     `json:"logit_scale"`
	LR            float64     `json:"lr"`
	Momentum      float64     `json:"momentum"`
	WeightDecay   float64     `json:"weight_decay"`
	Cases         []struct {
		Name          string      `json:"name"`
		Position      string      `json:"position"`
		NCtx          int         `json:"n_ctx"`
		ClassSpecific bool        `json:"class_specific"`
		CtxInit       string      `json:"ctx_init"`
		EOT           []int64     `json:"eot"`
		NameLens      []int64     `json:"name_lens"`
		PromptRows    int64       `json:"prompt_rows"`
		TextFeatures  [][]float64 `json:"text_features"`
		Logits        [][]float64 `json:"logits"`
		Loss          float64     `json:"loss"`
	} `json:"cases"`
}

func readNpy(t *testing.T, name string) *ts.Tensor {
	t.Helper()
	x, err := ts.ReadNpy(filepath.Join("testdata", name+".npy"))
	if err != nil {
		t.Fatalf("read %s.npy: %v", name, err)
	}
	return x
}

func flat(rows [][]float64) []float64 {
	var out []float64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// closeTo reports the first index where got and want differ by more than
// tol times the largest |want| (plus a floor of tol for all-zero data).
func closeTo(got, want []float64, tol float64) (int, bool) {
	if len(got) != len(want) {
		return -1, false
	}
	scale := 0.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol*math.Max(scale, 1e-3) {
			return i, false
		}
	}
	return 0, true
}

func check(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) == len(want) {
		scale, dev := 0.0, 0.0
		for i := range want {
			scale = math.Max(scale, math.Abs(want[i]))
			dev = math.Max(dev, math.Abs(got[i]-want[i]))
		}
		t.Logf("%s: max |Go - PyTorch| = %.2g (%.2g of the largest value %.3g)", what, dev, dev/math.Max(scale, 1e-3), scale)
	}
	if i, ok := closeTo(got, want, tol); !ok {
		if i < 0 {
			t.Errorf("%s: %d values, want %d", what, len(got), len(want))
			return
		}
		t.Errorf("%s[%d] = %.7g, PyTorch %.7g (tolerance %g of the largest value)", what, i, got[i], want[i], tol)
	}
}

// TestMatchesPyTorch runs CoOp on the clip package's small ViT fixture and
// compares every stage with PyTorch (testdata/gen.py).
func TestMatchesPyTorch(t *testing.T) {
	lockThread(t)
	b, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref pyReference
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	text, err := newClipText("../clip/testdata/vit.pt", "testdata/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	defer text.model.Drop()
	if s, err := text.LogitScale(); err != nil || math.Abs(s-ref.LogitScale) > 1e-5 {
		t.Errorf("logit scale %g (%v), PyTorch %g", s, err, ref.LogitScale)
	}
	images := ts.MustOfSlice(float32s(flat(ref.ImageFeatures))).MustView([]int64{int64(len(ref.ImageFeatures)), -1}, true)
	defer images.MustDrop()
	labels := ts.MustOfSlice(ref.Labels)
	defer labels.MustDrop()

	for _, pc := range ref.Cases {
		t.Run(pc.Name, func(t *testing.T) {
			lockThread(t)
			o := Options{NCtx: pc.NCtx, ClassSpecific: pc.ClassSpecific, ClassTokenPosition: pc.Position, CtxInit: pc.CtxInit}
			m := New(o)
			ctx := &train.Context{Text: text, ClassNames: ref.Classes, FeatureDim: 32, Device: cpu, Seed: 1}
			if err := m.Init(ctx, nil); err != nil {
				t.Fatal(err)
			}
			defer m.Drop()
			if pc.CtxInit != "" {
				want := readNpy(t, "ctx_words")
				check(t, "word-initialized ctx", m.ctx.Float64Values(), want.Float64Values(), 1e-6)
				want.MustDrop()
			} else {
				name := "ctx_rand16"
				if pc.ClassSpecific {
					name = "ctx_csc5"
				}
				v := readNpy(t, name)
				if err := m.SetParameters(map[string]*ts.Tensor{ParamName: v}); err != nil {
					t.Fatal(err)
				}
				v.MustDrop()
			}
			if fmt.Sprint(m.eot) != fmt.Sprint(pc.EOT) || fmt.Sprint(m.nameLens) != fmt.Sprint(pc.NameLens) {
				t.Errorf("eot %v, name lengths %v; PyTorch %v, %v", m.eot, m.nameLens, pc.EOT, pc.NameLens)
			}

			// Prompts: the first K rows as stored, the rest repeat row K-1.
			p, err := m.prompts()
			if err != nil {
				t.Fatal(err)
			}
			want := readNpy(t, pc.Name+"_prompts")
			k := pc.PromptRows
			head := p.MustNarrow(1, 0, k, false)
			check(t, "prompts", head.Float64Values(), want.Float64Values(), 1e-6)
			head.MustDrop()
			want.MustDrop()
			last := p.MustNarrow(1, k-1, 1, false)
			tail := p.MustNarrow(1, k-1, m.length-k+1, false)
			same, err := tail.Equal(last.MustExpandAs(tail, true), false)
			if err != nil || !same {
				t.Errorf("prompt rows %d.. are not all padding (err %v)", k, err)
			}
			tail.MustDrop()

			// Raw text features of the assembled prompts.
			err = torch.NoGrad(func() error {
				g, err := text.EncodeEmbeddings(p, m.eot)
				if err != nil {
					return err
				}
				check(t, "text features", g.Float64Values(), flat(pc.TextFeatures), 1e-4)
				g.MustDrop()
				return nil
			})
			p.MustDrop()
			if err != nil {
				t.Fatal(err)
			}

			// Logits, loss and gradient of a training call.
			logits, err := m.Logits(images, true)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "logits", logits.Float64Values(), flat(pc.Logits), 1e-4)
			loss := logits.CrossEntropyForLogits(labels)
			if got := loss.Float64Values()[0]; math.Abs(got-pc.Loss) > 1e-4*math.Max(1, pc.Loss) {
				t.Errorf("loss = %.7g, PyTorch %.7g", got, pc.Loss)
			}
			if err := loss.Backward(); err != nil {
				t.Fatal(err)
			}
			loss.MustDrop()
			logits.MustDrop()
			g := m.ctx.MustGrad(false)
			wantGrad := readNpy(t, pc.Name+"_grad")
			check(t, "d loss/d ctx", g.Float64Values(), wantGrad.Float64Values(), 1e-4)
			g.MustDrop()
			wantGrad.MustDrop()

			// One SGD step with CoOp's settings.
			opt := train.NewSGD(m.Parameters(), ref.Momentum, ref.WeightDecay)
			if err := opt.Step(ref.LR); err != nil {
				t.Fatal(err)
			}
			wantStep := readNpy(t, pc.Name+"_ctx_step")
			check(t, "ctx after one SGD step", m.ctx.Float64Values(), wantStep.Float64Values(), 1e-5)
			wantStep.MustDrop()

			// Evaluation after the step sees the new context.
			ev, err := m.Logits(images, false)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := m.Logits(images, true)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "evaluation logits after the step", ev.Float64Values(), tr.Float64Values(), 1e-6)
			ev.MustDrop()
			tr.MustDrop()
		})
	}
}

func float32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
