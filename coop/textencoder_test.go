package coop

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/train"
)

// clipText is a train.TextEncoder over a clip.Model for the tests. The
// fixture model has a 1024-token vocabulary, so it tokenizes with the toy
// word-level tokenizer of testdata/tokenizer.json (written by gen.py)
// instead of CLIP's BPE.
type clipText struct {
	toyTokenizer
	model *clip.Model
}

var (
	_ train.TextEncoder   = (*clipText)(nil)
	_ train.PrefixEncoder = (*clipText)(nil)
)

func newClipText(modelPath, tokenizerPath string) (*clipText, error) {
	b, err := os.ReadFile(tokenizerPath)
	if err != nil {
		return nil, err
	}
	var tj struct {
		Vocab         map[string]int64 `json:"vocab"`
		SOT           int64            `json:"sot"`
		EOT           int64            `json:"eot"`
		ContextLength int64            `json:"context_length"`
	}
	if err := json.Unmarshal(b, &tj); err != nil {
		return nil, fmt.Errorf("%s: %w", tokenizerPath, err)
	}
	m, err := clip.Load(modelPath, cpu)
	if err != nil {
		return nil, err
	}
	return &clipText{
		toyTokenizer: toyTokenizer{vocab: tj.Vocab, sot: tj.SOT, eot: tj.EOT, length: tj.ContextLength},
		model:        m,
	}, nil
}

func (c *clipText) EncodeTexts(texts []string) (*ts.Tensor, error) {
	ids, err := c.Tokenize(texts)
	if err != nil {
		return nil, err
	}
	defer ids.MustDrop()
	return c.model.EncodeText(ids)
}

func (c *clipText) TokenEmbedding(tokens *ts.Tensor) (*ts.Tensor, error) {
	return c.model.TokenEmbedding(tokens)
}

func (c *clipText) EncodeEmbeddings(x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	return c.model.EncodeTextEmbeddings(x, eot)
}

func (c *clipText) LogitScale() (float64, error) { return c.model.LogitScale() }

func (c *clipText) EncodePrefix(x *ts.Tensor) ([]*ts.Tensor, error) {
	p, err := c.model.EncodeTextPrefix(x)
	if err != nil {
		return nil, err
	}
	return p.Tensors(), nil
}

func (c *clipText) EncodeAfterPrefix(state []*ts.Tensor, x *ts.Tensor, eot []int64) (*ts.Tensor, error) {
	p, err := c.model.TextPrefixOf(state)
	if err != nil {
		return nil, err
	}
	return c.model.EncodeTextAfterPrefix(p, x, eot)
}

func (c *clipText) EncodeWithPrefix(prefix *ts.Tensor, groups []*ts.Tensor, eot [][]int64) (*ts.Tensor, error) {
	return c.model.EncodeTextWithPrefix(prefix, groups, eot)
}
