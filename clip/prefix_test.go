package clip

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// prefixCase is a batch of sequences sharing their first p positions,
// with the end-of-text positions eot.
type prefixCase struct {
	p   int64
	eot []int64
}

// TestTextPrefixSharingIsExact runs batches of sequences that share their
// first P positions (P = 1, 5, 17) two ways: whole (77 positions, one
// row each, WithFullTextContext) and split (the prefix once, batch of one,
// then the rest attending to its keys and values, cut after the last
// end-of-text token). Rows of different lengths share a batch. Features
// agree within 4e-6 relative (max |difference| / max |value|), and so do
// the gradients reaching the shared prefix (in the whole run: the sum over
// rows of each row's gradient at those positions) and the rest: fp32
// rounding of sums taken in another order (6e-7 for features and 1.6e-6
// for gradients at most measured on libtorch 1.13).
func TestTextPrefixSharingIsExact(t *testing.T) {
	lockThread(t)
	cases := []prefixCase{
		{1, []int64{1, 7, 76}},
		{5, []int64{9, 5, 30, 12}},
		{17, []int64{20, 17, 25}},
		{17, []int64{40}},
	}
	for _, file := range []string{"vit.pt", "rn.pt"} {
		split := loadModel(t, filepath.Join("testdata", file))
		whole, err := Load(filepath.Join("testdata", file), gotch.CPU, WithFullTextContext())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(whole.Drop)
		W := int64(split.Config().TransformerWidth)
		for ci, c := range cases {
			name := fmt.Sprintf("%s/P=%d/eot%v", file, c.p, c.eot)
			n := int64(len(c.eot))
			gen := make([]float32, (1+n)*77*W)
			for i := range gen {
				gen[i] = float32(((i*7919)%1000))/1000*0.2 - 0.1 + float32(ci)*1e-3
			}
			base := ts.MustOfSlice(gen).MustView([]int64{1 + n, 77, W}, true)
			pre := base.MustNarrow(0, 0, 1, false).MustNarrow(1, 0, c.p, true).MustContiguous(true)
			rest := base.MustNarrow(0, 1, n, false).MustNarrow(1, c.p, 77-c.p, true).MustContiguous(true)
			weights := func(h *ts.Tensor) *ts.Tensor {
				s := h.MustSize()
				w := make([]float32, s[0]*s[1])
				for i := range w {
					w[i] = float32(i%13) - 6
				}
				return ts.MustOfSlice(w).MustView(s, true)
			}

			// Whole: the prefix repeated on every row.
			preL := pre.MustDetach(false).MustSetRequiresGrad(true, true)
			restL := rest.MustDetach(false).MustSetRequiresGrad(true, true)
			x := ts.MustCat([]*ts.Tensor{preL.MustExpand([]int64{n, c.p, W}, false, false), restL}, 1)
			hw, err := whole.EncodeTextEmbeddings(x, c.eot)
			if err != nil {
				t.Fatal(err)
			}
			hw.MustMul(weights(hw), false).MustSum(gotch.Double, true).MustBackward()
			_, fw := valuesOf(t, hw)
			_, gpw := valuesOf(t, preL.MustGrad(false))
			_, grw := valuesOf(t, restL.MustGrad(false))

			// Split.
			preS := pre.MustDetach(false).MustSetRequiresGrad(true, true)
			restS := rest.MustDetach(false).MustSetRequiresGrad(true, true)
			state, err := split.EncodeTextPrefix(preS)
			if err != nil {
				t.Fatal(err)
			}
			if state.Len != c.p {
				t.Fatalf("%s: prefix state of %d positions, want %d", name, state.Len, c.p)
			}
			hs, err := split.EncodeTextAfterPrefix(state, restS, c.eot)
			if err != nil {
				t.Fatal(err)
			}
			state.Drop()
			hs.MustMul(weights(hs), false).MustSum(gotch.Double, true).MustBackward()
			_, fs := valuesOf(t, hs)
			_, gps := valuesOf(t, preS.MustGrad(false))
			_, grs := valuesOf(t, restS.MustGrad(false))

			for _, d := range []struct {
				what      string
				got, want []float64
			}{{"features", fs, fw}, {"prefix gradient", gps, gpw}, {"rest gradient", grs, grw}} {
				r := relDiff(d.got, d.want)
				t.Logf("%s: %s differ by %.3g relative", name, d.what, r)
				if r > 4e-6 {
					t.Errorf("%s: %s differ by %.3g relative (> 4e-6)", name, d.what, r)
				}
			}
			nz := 0
			for _, v := range gps {
				if v != 0 {
					nz++
				}
			}
			if nz == 0 {
				t.Errorf("%s: the prefix gradient is zero", name)
			}
		}
	}
}

// TestTextPrefixRejectsBadInput checks the errors of the split encoding.
func TestTextPrefixRejectsBadInput(t *testing.T) {
	lockThread(t)
	m := loadModel(t, filepath.Join("testdata", "vit.pt"))
	W := int64(m.Config().TransformerWidth)
	two := ts.MustZeros([]int64{2, 3, W}, gotch.Float, gotch.CPU)
	if _, err := m.EncodeTextPrefix(two); err == nil {
		t.Error("a prefix of two sequences was accepted")
	}
	all := ts.MustZeros([]int64{1, 77, W}, gotch.Float, gotch.CPU)
	if _, err := m.EncodeTextPrefix(all); err == nil {
		t.Error("a prefix of all 77 positions was accepted")
	}
	one := ts.MustZeros([]int64{1, 4, W}, gotch.Float, gotch.CPU)
	p, err := m.EncodeTextPrefix(one)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Drop()
	rest := ts.MustZeros([]int64{2, 74, W}, gotch.Float, gotch.CPU)
	if _, err := m.EncodeTextAfterPrefix(p, rest, []int64{5, 6}); err == nil {
		t.Error("4 + 74 positions (more than 77) were accepted")
	}
	rest = ts.MustZeros([]int64{2, 10, W}, gotch.Float, gotch.CPU)
	if _, err := m.EncodeTextAfterPrefix(p, rest, []int64{3, 6}); err == nil {
		t.Error("an end-of-text position inside the prefix was accepted")
	}
	if _, err := m.TextPrefixOf(p.Tensors()[1:]); err == nil {
		t.Error("a state with a tensor missing was accepted")
	}
	q, err := m.TextPrefixOf(p.Tensors())
	if err != nil || q.Len != 4 {
		t.Errorf("TextPrefixOf(Tensors()) = %v, %v; want a state of 4 positions", q, err)
	}
}
