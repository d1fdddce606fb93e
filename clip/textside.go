package clip

import (
	"fmt"
	"runtime"

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
	ctxLen := t.Model.Config().ContextLength
	rows, err := t.Tokenizer.Tokenize(texts, ctxLen, false)
	if err != nil {
		return nil, err
	}
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

// EncodeTexts implements train.TextEncoder.
func (t *TextSide) EncodeTexts(texts []string) (*ts.Tensor, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	batch := t.Batch
	if batch <= 0 {
		batch = 256
	}
	var parts torch.Scope
	defer parts.Drop()
	var feats []*ts.Tensor
	for lo := 0; lo < len(texts); lo += batch {
		hi := min(lo+batch, len(texts))
		tok, err := t.Tokenize(texts[lo:hi])
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
	switch len(feats) {
	case 0:
		return nil, fmt.Errorf("encode texts: no texts")
	case 1:
		return parts.Release(feats[0]), nil
	}
	out, err := ts.Cat(feats, 0)
	return out, torch.Err("concatenate text features", err)
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
