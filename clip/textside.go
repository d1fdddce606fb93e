package clip

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/internal/torch"
)

// TextSide is CLIP's frozen text side as few-shot methods use it (it
// implements train.TextEncoder): a Model and its BPE tokenizer.
type TextSide struct {
	Model     *Model
	Tokenizer *tokenizer.Tokenizer
	Device    gotch.Device
	// Batch bounds how many texts are encoded at once (0: 256).
	Batch int
}

// Tokenize implements train.TextEncoder. A text longer than the context is an
// error naming it.
func (t *TextSide) Tokenize(texts []string) (*ts.Tensor, error) {
	rows, err := t.Tokenizer.Tokenize(texts, t.Model.Config().ContextLength, false)
	if err != nil {
		return nil, err
	}
	return t.tokenTensor(rows)
}

// tokenTensor returns token rows as a tensor [N, ContextLength] on the
// text side's device.
func (t *TextSide) tokenTensor(rows [][]int64) (*ts.Tensor, error) {
	ctxLen := t.Model.Config().ContextLength
	flat := make([]int64, 0, len(rows)*ctxLen)
	for _, r := range rows {
		flat = append(flat, r...)
	}
	var s torch.Scope
	defer s.Drop()
	x, err := s.Op("tokens")(ts.OfSlice(flat))
	if err != nil {
		return nil, err
	}
	x2, err := s.Op("tokens")(x.View([]int64{int64(len(rows)), int64(ctxLen)}, false))
	if err != nil {
		return nil, err
	}
	out, err := x2.To(t.Device, false)
	return out, torch.Err("tokens to device", err)
}

// EncodeTexts implements train.TextEncoder. The texts are encoded Batch at
// a time in order of token length (each batch is cut after its last
// end-of-text token, so batches of similar lengths compute little
// padding); the features come back in the texts' order.
func (t *TextSide) EncodeTexts(texts []string) (*ts.Tensor, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if len(texts) == 0 {
		return nil, fmt.Errorf("encode texts: no texts")
	}
	batch := t.Batch
	if batch <= 0 {
		batch = 256
	}
	rows, err := t.Tokenizer.Tokenize(texts, t.Model.Config().ContextLength, false)
	if err != nil {
		return nil, err
	}
	order := make([]int, len(rows))
	eot := make([]int, len(rows))
	for i, r := range rows {
		order[i], eot[i] = i, tokenizer.EOTIndex(r)
	}
	slices.SortStableFunc(order, func(a, b int) int { return eot[a] - eot[b] })
	var parts torch.Scope
	defer parts.Drop()
	var feats []*ts.Tensor
	for lo := 0; lo < len(order); lo += batch {
		hi := min(lo+batch, len(order))
		sel := make([][]int64, 0, hi-lo)
		for _, i := range order[lo:hi] {
			sel = append(sel, rows[i])
		}
		tok, err := t.tokenTensor(sel)
		if err != nil {
			return nil, err
		}
		f, err := t.Model.EncodeText(tok)
		tok.Drop()
		if err != nil {
			return nil, err
		}
		feats = append(feats, parts.Keep(f))
	}
	all := feats[0]
	if len(feats) > 1 {
		if all, err = parts.Op("concatenate text features")(ts.Cat(feats, 0)); err != nil {
			return nil, err
		}
	}
	inv := make([]int64, len(order))
	for pos, i := range order {
		inv[i] = int64(pos)
	}
	idx, err := parts.Op("text order")(ts.OfSlice(inv))
	if err != nil {
		return nil, err
	}
	if idx, err = parts.Op("text order")(idx.To(t.Device, false)); err != nil {
		return nil, err
	}
	out, err := all.IndexSelect(0, idx, false)
	return out, torch.Err("text order", err)
}

// TokenEmbedding implements train.TextEncoder.
func (t *TextSide) TokenEmbedding(tokens *ts.Tensor) (*ts.Tensor, error) {
	return t.Model.TokenEmbedding(tokens)
}

// EncodeEmbeddings implements train.TextEncoder.
func (t *TextSide) EncodeEmbeddings(x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	return t.Model.EncodeTextEmbeddings(x, eot)
}

// LogitScale implements train.TextEncoder.
func (t *TextSide) LogitScale() (float64, error) { return t.Model.LogitScale() }

// EncodePrefix implements train.PrefixEncoder: the state is
// TextPrefix.Tensors of Model.EncodeTextPrefix.
func (t *TextSide) EncodePrefix(x *ts.Tensor) ([]*ts.Tensor, error) {
	p, err := t.Model.EncodeTextPrefix(x)
	if err != nil {
		return nil, err
	}
	return p.Tensors(), nil
}

// EncodeAfterPrefix implements train.PrefixEncoder.
func (t *TextSide) EncodeAfterPrefix(state []*ts.Tensor, x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	p, err := t.Model.TextPrefixOf(state)
	if err != nil {
		return nil, err
	}
	return t.Model.EncodeTextAfterPrefix(p, x, eot)
}

// EncodeWithPrefix implements train.PrefixEncoder.
func (t *TextSide) EncodeWithPrefix(prefix *ts.Tensor, groups []*ts.Tensor, eot [][]int64) (*ts.Tensor, error) {
	return t.Model.EncodeTextWithPrefix(prefix, groups, eot)
}
