package coop

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// toyTokenizer is a word-level stand-in for CLIP's BPE: lower case, split
// on white space, a trailing "." is a token of its own and a hyphenated word
// is one token per part. Ids come from vocab; the start and end tokens are
// the two largest ids, padding is 0.
type toyTokenizer struct {
	vocab    map[string]int64
	sot, eot int64
	length   int64
}

func (t *toyTokenizer) ids(text string) ([]int64, error) {
	var words []string
	for _, w := range strings.Fields(strings.ToLower(text)) {
		dot := len(w) > 1 && strings.HasSuffix(w, ".")
		w = strings.TrimSuffix(w, ".")
		words = append(words, strings.Split(w, "-")...)
		if dot {
			words = append(words, ".")
		}
	}
	ids := []int64{t.sot}
	for _, w := range words {
		id, ok := t.vocab[w]
		if !ok {
			return nil, fmt.Errorf("toy tokenizer: unknown word %q in %q", w, text)
		}
		ids = append(ids, id)
	}
	ids = append(ids, t.eot)
	if int64(len(ids)) > t.length {
		return nil, fmt.Errorf("toy tokenizer: %q has %d tokens, more than %d", text, len(ids), t.length)
	}
	return append(ids, make([]int64, t.length-int64(len(ids)))...), nil
}

// Tokenize returns the [len(texts), length] ids.
func (t *toyTokenizer) Tokenize(texts []string) (*ts.Tensor, error) {
	var all []int64
	for _, s := range texts {
		ids, err := t.ids(s)
		if err != nil {
			return nil, err
		}
		all = append(all, ids...)
	}
	return ts.MustOfSlice(all).MustView([]int64{int64(len(texts)), t.length}, true), nil
}

var toyVocab = map[string]int64{
	"x": 343, "a": 320, "photo": 1000, "of": 539, ".": 269, "close": 17, "up": 18,
	"cat": 700, "golden": 701, "retriever": 702, "sea": 703, "lion": 704, "pup": 705,
}

// fakeText is a tiny differentiable text encoder: token embeddings are
// fixed functions of the id, and the text feature of a sequence is
// P^T Σ_{j ≤ eot} (j+1)/L · x_j, so that the order of the rows matters and
// gradients reach the embeddings.
type fakeText struct {
	toyTokenizer
	width, dim  int64
	scale       float64
	encodeCalls int
}

func newFakeText(length, width int64) *fakeText {
	return &fakeText{
		toyTokenizer: toyTokenizer{vocab: toyVocab, sot: 1022, eot: 1023, length: length},
		width:        width, dim: 3, scale: 20,
	}
}

// embedding is the fake's token-embedding row of id.
func (f *fakeText) embedding(id int64) []float64 {
	row := make([]float64, f.width)
	for k := range row {
		row[k] = 0.5 * math.Sin(0.37*float64(id)+1.3*float64(k))
	}
	return row
}

// proj is the fake's projection P [width, dim].
func (f *fakeText) proj(k, d int64) float64 { return math.Cos(0.7*float64(k) - 0.9*float64(d) + 0.2) }

func (f *fakeText) TokenEmbedding(tokens *ts.Tensor) (*ts.Tensor, error) {
	s := tokens.MustSize()
	ids := tokens.Int64Values()
	var data []float32
	for _, id := range ids {
		for _, v := range f.embedding(id) {
			data = append(data, float32(v))
		}
	}
	return ts.MustOfSlice(data).MustView([]int64{s[0], s[1], f.width}, true), nil
}

func (f *fakeText) EncodeEmbeddings(x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	f.encodeCalls++
	s := x.MustSize()
	if len(s) != 3 || s[2] != f.width || int64(len(eot)) != s[0] {
		return nil, fmt.Errorf("fake: embeddings %v with %d eot positions", s, len(eot))
	}
	n, l := s[0], s[1]
	a := make([]float32, n*l)
	for i := range n {
		for j := int64(0); j <= eot[i]; j++ {
			a[i*l+j] = float32(j+1) / float32(l)
		}
	}
	p := make([]float32, f.width*f.dim)
	for k := range f.width {
		for d := range f.dim {
			p[k*f.dim+d] = float32(f.proj(k, d))
		}
	}
	at := ts.MustOfSlice(a).MustView([]int64{n, l, 1}, true)
	pt := ts.MustOfSlice(p).MustView([]int64{f.width, f.dim}, true)
	defer at.MustDrop()
	defer pt.MustDrop()
	y := x.MustTotype(gotch.Float, false).MustMul(at, true).MustSumDimIntlist([]int64{1}, false, gotch.Float, true)
	return y.MustMm(pt, true), nil
}

func (f *fakeText) EncodeTexts([]string) (*ts.Tensor, error) {
	return nil, errors.New("fake: EncodeTexts is not used by CoOp")
}

func (f *fakeText) LogitScale() (float64, error) { return f.scale, nil }

// refFeatures computes the fake's text features of prompts [C][L][W] in
// float64.
func (f *fakeText) refFeatures(prompts [][][]float64, eot []int64) [][]float64 {
	out := make([][]float64, len(prompts))
	for c, p := range prompts {
		l := int64(len(p))
		y := make([]float64, f.width)
		for j := int64(0); j <= eot[c]; j++ {
			for k := range y {
				y[k] += float64(j+1) / float64(l) * p[j][k]
			}
		}
		g := make([]float64, f.dim)
		for d := range f.dim {
			for k := range f.width {
				g[d] += y[k] * f.proj(k, d)
			}
		}
		out[c] = g
	}
	return out
}
