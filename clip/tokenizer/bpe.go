package tokenizer

import (
	"fmt"
	"sync"

	stok "github.com/sugarme/tokenizer"
)

const (
	// cacheLimit bounds the per-tokenizer word cache; when it is full the
	// cache is emptied and refilled.
	cacheLimit = 1 << 16
	// maxCachedPiece is the longest pre-token (in bytes) that is cached, so
	// that a huge input word cannot pin a huge cache entry.
	maxCachedPiece = 128
)

// bpeModel is CLIP's byte-level BPE as a sugarme/tokenizer Model. It is used
// instead of that library's model/bpe because the library's BPE (v0.3.0) never
// appends the end-of-word suffix to the last symbol of a word (upstream issue
// #65), so it cannot reproduce CLIP's "</w>" tokens, and it panics on symbols
// missing from the vocabulary.
//
// Tokenize receives one pre-token (a match of CLIP's split regex, in UTF-8),
// maps its bytes to byte characters, appends "</w>" to the last one and
// applies the merges, lowest rank first. The two special-token strings are
// returned as the special ids, as CLIP's pre-seeded cache does.
type bpeModel struct {
	v     *vocabulary
	cache wordCache
}

var _ stok.Model = (*bpeModel)(nil)

func newBPEModel(v *vocabulary) *bpeModel {
	return &bpeModel{v: v, cache: wordCache{limit: cacheLimit}}
}

// Tokenize implements stok.Model. Offsets are byte offsets into sequence; a
// token may start or end inside a multi-byte character.
func (m *bpeModel) Tokenize(sequence string) ([]stok.Token, error) {
	ids := m.encodePiece(sequence)
	toks := make([]stok.Token, len(ids))
	off := 0
	for i, id := range ids {
		w := m.v.width[id]
		if id >= StartToken {
			w = len(sequence)
		}
		toks[i] = stok.Token{Id: id, Value: m.v.tokens[id], Offsets: []int{off, off + w}}
		off += w
	}
	if off != len(sequence) {
		return nil, fmt.Errorf("clip bpe: tokens of %q cover %d of %d bytes", sequence, off, len(sequence))
	}
	return toks, nil
}

// encodePiece returns the token ids of one pre-token.
func (m *bpeModel) encodePiece(piece string) []int {
	switch piece {
	case "":
		return nil
	case startText:
		return []int{StartToken}
	case endText:
		return []int{EndToken}
	}
	if ids, ok := m.cache.get(piece); ok {
		return ids
	}
	syms := make([]int32, len(piece))
	for i := 0; i < len(piece); i++ {
		syms[i] = m.v.byteID[piece[i]]
	}
	syms[len(syms)-1] += numByteChars // last symbol carries "</w>"
	for len(syms) > 1 {
		best, at := int32(-1), 0
		for i := 0; i+1 < len(syms); i++ {
			if r, ok := m.v.ranks[pairKey(syms[i], syms[i+1])]; ok && (best < 0 || r < best) {
				best, at = r, i
			}
		}
		if best < 0 {
			break
		}
		a, b, merged := syms[at], syms[at+1], firstMergeID+best
		// Replace every occurrence of (a, b), scanning left to right without
		// overlap; written in place since the write index never passes the
		// read index.
		w := 0
		for i := 0; i < len(syms); w++ {
			if i+1 < len(syms) && syms[i] == a && syms[i+1] == b {
				syms[w] = merged
				i += 2
			} else {
				syms[w] = syms[i]
				i++
			}
		}
		syms = syms[:w]
	}
	ids := make([]int, len(syms))
	for i, s := range syms {
		ids[i] = int(s)
	}
	if len(piece) <= maxCachedPiece {
		m.cache.put(piece, ids)
	}
	return ids
}

// TokenToId implements stok.Model.
func (m *bpeModel) TokenToId(token string) (int, bool) {
	id, ok := m.v.ids[token]
	return id, ok
}

// IdToToken implements stok.Model.
func (m *bpeModel) IdToToken(id int) (string, bool) {
	if id < 0 || id >= len(m.v.tokens) {
		return "", false
	}
	return m.v.tokens[id], true
}

// GetVocab implements stok.Model; it returns a copy.
func (m *bpeModel) GetVocab() map[string]int {
	out := make(map[string]int, len(m.v.ids))
	for k, v := range m.v.ids {
		out[k] = v
	}
	return out
}

// GetVocabSize implements stok.Model.
func (m *bpeModel) GetVocabSize() int { return len(m.v.tokens) }

// Save implements stok.Model. It is not supported: the vocabulary is the
// embedded CLIP file.
func (m *bpeModel) Save(path string, prefixOpt ...string) error {
	return fmt.Errorf("clip bpe: save to %s: not supported (the vocabulary is embedded)", path)
}

// wordCache memoises BPE results per pre-token. It is safe for concurrent
// use and bounded: when it holds limit entries it is emptied. Cached slices
// are never modified.
type wordCache struct {
	mu    sync.RWMutex
	m     map[string][]int
	limit int
}

func (c *wordCache) get(k string) ([]int, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *wordCache) put(k string, v []int) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.limit {
		c.m = make(map[string][]int)
	}
	c.m[k] = v
	c.mu.Unlock()
}
