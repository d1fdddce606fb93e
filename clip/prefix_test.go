package clip

import (
	"fmt"
	"path/filepath"
	"slices"
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
			pre, rest := sharedPrefixInputs(ci, c.p, int64(len(c.eot)), W)
			fw, gpw, grw := encodeWhole(t, whole, pre, rest, c.eot, nil)

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
			hs.MustMul(gradWeights(hs), false).MustSum(gotch.Double, true).MustBackward()
			_, fs := valuesOf(t, hs)
			_, gps := valuesOf(t, preS.MustGrad(false))
			_, grs := valuesOf(t, restS.MustGrad(false))
			checkAgainstWhole(t, name, []float64{4e-6, 4e-6, 4e-6}, fs, fw, gps, gpw, grs, grw)
		}
	}
}

// sharedPrefixInputs returns deterministic embeddings of a prefix [1, p,
// W] and of the rest [n, 77-p, W] of n sequences.
func sharedPrefixInputs(ci int, p, n, W int64) (pre, rest *ts.Tensor) {
	gen := make([]float32, (1+n)*77*W)
	for i := range gen {
		gen[i] = float32(((i*7919)%1000))/1000*0.2 - 0.1 + float32(ci)*1e-3
	}
	base := ts.MustOfSlice(gen).MustView([]int64{1 + n, 77, W}, true)
	pre = base.MustNarrow(0, 0, 1, false).MustNarrow(1, 0, p, true).MustContiguous(true)
	rest = base.MustNarrow(0, 1, n, false).MustNarrow(1, p, 77-p, true).MustContiguous(true)
	return pre, rest
}

// gradWeights returns fixed weights of h's shape: the backward pass
// starts from Σ h·w.
func gradWeights(h *ts.Tensor) *ts.Tensor {
	s := h.MustSize()
	w := make([]float32, s[0]*s[1])
	for i := range w {
		w[i] = float32(i%13) - 6
	}
	return ts.MustOfSlice(w).MustView(s, true)
}

// encodeWhole runs every sequence whole (row i's prefix is pre[of[i]],
// pre[0] for every row when of is nil; all 77 positions with a
// full-context model) and returns the features and the gradients of Σ
// features·gradWeights with respect to the prefixes (summed over the rows
// that share one) and the rest.
func encodeWhole(t *testing.T, whole *Model, pre, rest *ts.Tensor, eot, of []int64) (feats, gradPre, gradRest []float64) {
	t.Helper()
	if of == nil {
		of = make([]int64, len(eot))
	}
	preL := pre.MustDetach(false).MustSetRequiresGrad(true, true)
	restL := rest.MustDetach(false).MustSetRequiresGrad(true, true)
	x := ts.MustCat([]*ts.Tensor{preL.MustIndexSelect(0, ts.MustOfSlice(of), false), restL}, 1)
	hw, err := whole.EncodeTextEmbeddings(x.MustTo(whole.Device(), true), eot)
	if err != nil {
		t.Fatal(err)
	}
	hw = hw.MustTo(gotch.CPU, true)
	hw.MustMul(gradWeights(hw), false).MustSum(gotch.Double, true).MustBackward()
	_, feats = valuesOf(t, hw)
	_, gradPre = valuesOf(t, preL.MustGrad(false))
	_, gradRest = valuesOf(t, restL.MustGrad(false))
	return feats, gradPre, gradRest
}

// checkAgainstWhole compares features, prefix gradient and rest gradient
// (got, want pairs) within the relative tolerances tol, and checks that
// the prefix gradient is not zero.
func checkAgainstWhole(t *testing.T, name string, tol []float64, fs, fw, gps, gpw, grs, grw []float64) {
	t.Helper()
	for i, d := range []struct {
		what      string
		got, want []float64
	}{{"features", fs, fw}, {"prefix gradient", gps, gpw}, {"rest gradient", grs, grw}} {
		r := relDiff(d.got, d.want)
		t.Logf("%s: %s differ by %.3g relative", name, d.what, r)
		if r > tol[i] {
			t.Errorf("%s: %s differ by %.3g relative (> %g)", name, d.what, r, tol[i])
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

// TestTextWithPrefixPackedIsExact encodes sequences sharing their first P
// positions the packed way (EncodeTextWithPrefix: the prefix and several
// groups of different lengths in one pass of rows, each group cut after
// its own last end-of-text token, group sizes 1 to 3) and checks the
// features and the gradients reaching the prefix and every group against
// the whole sequences (77 positions each, one row per sequence), with the
// same tolerance as the split encoding (4e-6 relative): only the order of
// fp32 sums differs.
func TestTextWithPrefixPackedIsExact(t *testing.T) {
	checkPackedIsExact(t, gotch.CPU, 4e-6)
}

// TestCUDATextWithPrefixPackedIsExact is TestTextWithPrefixPackedIsExact
// on CUDA (fp32), within 1e-4: the two computations may pick different
// attention and matrix kernels there. Skipped without a CUDA device;
// scripts/gpu-check.sh runs it on a GPU.
func TestCUDATextWithPrefixPackedIsExact(t *testing.T) {
	if !gotch.CUDA.IsAvailable() {
		t.Skip("no CUDA device")
	}
	checkPackedIsExact(t, gotch.CudaBuilder(0), 1e-4)
}

// checkPackedIsExact runs the packed encoding's cases on dev against the
// whole sequences, features and gradients within tol relative.
func checkPackedIsExact(t *testing.T, dev gotch.Device, tol float64) {
	lockThread(t)
	cases := []struct {
		p, prefixes int64
		groups      [][]int64 // end-of-text positions of each group's rows
	}{
		{1, 1, [][]int64{{1}, {7, 3}, {76, 40, 12}}},
		{5, 1, [][]int64{{9, 5, 30, 12}}},
		{17, 1, [][]int64{{17, 18}, {20}, {25, 22, 24}, {60}}},
		// Two prefixes (CoCoOp: one per image), each followed by half of
		// every group's rows.
		{5, 2, [][]int64{{6, 9}, {12, 7, 8, 30}}},
	}
	for _, file := range []string{"vit.pt", "rn.pt"} {
		packed, err := Load(filepath.Join("testdata", file), dev)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(packed.Drop)
		whole, err := Load(filepath.Join("testdata", file), dev, WithFullTextContext())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(whole.Drop)
		W := int64(packed.Config().TransformerWidth)
		for ci, c := range cases {
			var eot, of []int64
			for _, g := range c.groups {
				eot = append(eot, g...)
				for j := range g {
					of = append(of, int64(j)/(int64(len(g))/c.prefixes))
				}
			}
			name := fmt.Sprintf("%s/P=%d/prefixes=%d/groups%v", file, c.p, c.prefixes, c.groups)
			pre, rest := sharedPrefixInputs(ci, c.p, int64(len(eot)), W)
			if c.prefixes > 1 {
				// Distinct prefixes: pre's rows come from the rest's first rows.
				pre = rest.MustNarrow(0, 0, c.prefixes, false).MustNarrow(1, 0, c.p, false).MustContiguous(false)
			}
			fw, gpw, grw := encodeWhole(t, whole, pre, rest, eot, of)

			preS := pre.MustDetach(false).MustSetRequiresGrad(true, true)
			restS := rest.MustDetach(false).MustSetRequiresGrad(true, true)
			var groups []*ts.Tensor
			row := int64(0)
			for gi, g := range c.groups {
				n := int64(len(g))
				// Each group carries a different number of positions past
				// its last end-of-text token (cut by the encoder).
				l := min(77-c.p, slices.Max(g)-c.p+1+int64(gi))
				groups = append(groups, restS.MustNarrow(0, row, n, false).MustNarrow(1, 0, l, true).MustTo(dev, true))
				row += n
			}
			hs, err := packed.EncodeTextWithPrefix(preS.MustTo(dev, false), groups, c.groups)
			if err != nil {
				t.Fatal(err)
			}
			hs = hs.MustTo(gotch.CPU, true)
			hs.MustMul(gradWeights(hs), false).MustSum(gotch.Double, true).MustBackward()
			_, fs := valuesOf(t, hs)
			_, gps := valuesOf(t, preS.MustGrad(false))
			_, grs := valuesOf(t, restS.MustGrad(false))
			checkAgainstWhole(t, name, []float64{tol, tol, tol}, fs, fw, gps, gpw, grs, grw)
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
	pre := ts.MustZeros([]int64{1, 4, W}, gotch.Float, gotch.CPU)
	for _, c := range []struct {
		what   string
		groups []*ts.Tensor
		eot    [][]int64
	}{
		{"no groups", nil, nil},
		{"end-of-text positions for one group of two", []*ts.Tensor{rest, rest}, [][]int64{{5, 6}}},
		{"an end-of-text position inside the prefix", []*ts.Tensor{rest}, [][]int64{{3, 6}}},
		{"4 + 74 positions", []*ts.Tensor{ts.MustZeros([]int64{1, 74, W}, gotch.Float, gotch.CPU)}, [][]int64{{5}}},
	} {
		if _, err := m.EncodeTextWithPrefix(pre, c.groups, c.eot); err == nil {
			t.Errorf("EncodeTextWithPrefix accepted %s", c.what)
		}
	}
	two = ts.MustZeros([]int64{2, 4, W}, gotch.Float, gotch.CPU)
	three := ts.MustZeros([]int64{3, 10, W}, gotch.Float, gotch.CPU)
	if _, err := m.EncodeTextWithPrefix(two, []*ts.Tensor{three}, [][]int64{{5, 6, 7}}); err == nil {
		t.Error("EncodeTextWithPrefix accepted 3 sequences after 2 prefixes")
	}
	if _, err := m.TextPrefixOf(p.Tensors()[1:]); err == nil {
		t.Error("a state with a tensor missing was accepted")
	}
	q, err := m.TextPrefixOf(p.Tensors())
	if err != nil || q.Len != 4 {
		t.Errorf("TextPrefixOf(Tensors()) = %v, %v; want a state of 4 positions", q, err)
	}
}
