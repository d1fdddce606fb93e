package coop

import (
	"fmt"
	"strings"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// ContextWords returns M, the number of learned context vectors, and the
// words that stand for them in a prompt's text: the words of ctxInit ("_"
// counts as a space) when it is set, otherwise nCtx placeholder words "X".
// CoOp and CoCoOp build their prompt skeletons from these words and
// replace the words' embeddings by the learned context.
func ContextWords(ctxInit string, nCtx int) (m int64, words string, err error) {
	if ctxInit == "" {
		if nCtx < 1 {
			return 0, "", fmt.Errorf("n_ctx = %d, want at least 1 without ctx_init", nCtx)
		}
		return int64(nCtx), strings.TrimSpace(strings.Repeat("X ", nCtx)), nil
	}
	f := strings.Fields(strings.ReplaceAll(ctxInit, "_", " "))
	if len(f) == 0 {
		return 0, "", fmt.Errorf("ctx_init %q has no words", ctxInit)
	}
	return int64(len(f)), strings.Join(f, " "), nil
}

// ContextRows returns the token embeddings of words (ContextWords of a
// ctx_init), the values a context initialized from words starts from:
// m rows of width values (the prompts' embedding width, which the token
// embedding must have), float32, row-major. Every word must be one token,
// so that each context vector replaces one word.
func ContextRows(text train.TextEncoder, words string, m, width int64) ([]float32, error) {
	var rows []float32
	err := torch.NoGrad(func() error {
		var s torch.Scope
		defer s.Drop()
		ids, err := s.Op("tokenize ctx_init")(text.Tokenize([]string{words}))
		if err != nil {
			return fmt.Errorf("tokenize ctx_init %q: %w", words, err)
		}
		shape, err := ids.Size()
		if err != nil || len(shape) != 2 || shape[0] != 1 {
			return fmt.Errorf("tokenizer returned shape %v for ctx_init %q", shape, words)
		}
		v, err := torch.Values[int64](ids)
		if err != nil {
			return fmt.Errorf("ctx_init tokens: %w", err)
		}
		if n := clip.EndOfTextPositions(v, shape[1])[0] - 1; n != m {
			return fmt.Errorf("ctx_init %q: %d words but %d tokens; every word must be one token", words, m, n)
		}
		e, err := s.Op("embed ctx_init")(text.TokenEmbedding(ids))
		if err != nil {
			return err
		}
		es, err := e.Size()
		if err != nil || len(es) != 3 {
			return fmt.Errorf("token embedding of ctx_init of shape %v", es)
		}
		if es[2] != width {
			return fmt.Errorf("ctx_init: token embedding width %d, prompts' %d", es[2], width)
		}
		r, err := s.Op("context rows of ctx_init")(e.Narrow(1, 1, m, false))
		if err != nil {
			return err
		}
		if rows, err = torch.Values[float32](r); err != nil {
			return fmt.Errorf("context rows of ctx_init: %w", err)
		}
		return nil
	})
	return rows, err
}
