package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed" // for the vocabulary file
	"fmt"
	"io"
	"strings"
)

// embeddedVocab is OpenAI's BPE merge list (MIT licensed, see the LICENSE file
// in this directory), compressed exactly as shipped with CLIP.
//
//go:embed bpe_simple_vocab_16e6.txt.gz
var embeddedVocab []byte

const (
	// numMerges is the number of merge rules CLIP reads from the file
	// (49,152 - 256 - 2); the file holds more, which CLIP ignores.
	numMerges = VocabSize - 512 - 2
	// firstMergeID is the id of the result of the rank-0 merge.
	firstMergeID = 512
	// numByteChars is the number of printable characters bytes map to.
	numByteChars = 256
	// endOfWord marks the last symbol of a pre-token.
	endOfWord = "</w>"
	// startText and endText are the special tokens' strings.
	startText = "<|startoftext|>"
	endText   = "<|endoftext|>"
)

// byteTable maps every byte value to a printable character and back, as CLIP
// (after GPT-2) does: bytes 33–126, 161–172 and 174–255 stand for
// themselves; the other 68 bytes (0–32, 127–160, 173), in increasing order,
// map to U+0100, U+0101, … (so the space byte becomes U+0120 'Ġ').
type byteTable struct {
	char  [256]rune // byte -> character
	order [256]byte // vocabulary order: kept bytes ascending, then remapped ones
	// byteOf maps a character back to its byte; index = rune, valid when
	// isByte is set.
	byteOf [256 + 68]byte
	isByte [256 + 68]bool
}

func newByteTable() *byteTable {
	var t byteTable
	kept := func(b int) bool { return 33 <= b && b <= 126 || 161 <= b && b <= 172 || 174 <= b }
	n := 0
	for b := 0; b < 256; b++ {
		if kept(b) {
			t.char[b] = rune(b)
			t.order[n] = byte(b)
			n++
		}
	}
	next := rune(256)
	for b := 0; b < 256; b++ {
		if !kept(b) {
			t.char[b] = next
			next++
			t.order[n] = byte(b)
			n++
		}
	}
	for b := 0; b < 256; b++ {
		t.byteOf[t.char[b]] = byte(b)
		t.isByte[t.char[b]] = true
	}
	return &t
}

// vocabulary is the parsed BPE table: CLIP's 49,408 tokens and its merges.
type vocabulary struct {
	bytes  *byteTable
	tokens []string       // id -> token string
	ids    map[string]int // token string -> id
	// width is the number of input bytes a token stands for (0 for the two
	// special tokens).
	width []int
	// ranks maps a symbol pair (pairKey) to its merge rank; the merged
	// symbol's id is firstMergeID + rank.
	ranks map[uint64]int32
	// byteID is the id of the single-byte symbol for each byte value; add
	// numByteChars for the same symbol with the end-of-word marker.
	byteID [256]int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// loadVocabulary builds the vocabulary from a gzip-compressed merge list; name
// is used in error messages.
//
// Token ids: 0–255 are the 256 byte characters in byteTable order, 256–511
// the same characters followed by "</w>", 512–49,405 the results of the
// 48,894 merges (lines 1–48,894 of the file; line 0 is a header) in rank
// order, then "<|startoftext|>" and "<|endoftext|>".
func loadVocabulary(gz io.Reader, name string) (*vocabulary, error) {
	zr, err := gzip.NewReader(gz)
	if err != nil {
		return nil, fmt.Errorf("read vocabulary %s: %w", name, err)
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	if !sc.Scan() {
		return nil, fmt.Errorf("read vocabulary %s: missing header line: %w", name, scanErr(sc))
	}
	bt := newByteTable()
	v := &vocabulary{
		bytes:  bt,
		tokens: make([]string, 0, VocabSize),
		ids:    make(map[string]int, VocabSize),
		width:  make([]int, 0, VocabSize),
		ranks:  make(map[uint64]int32, numMerges),
	}
	add := func(tok string, width int) error {
		if _, dup := v.ids[tok]; dup {
			return fmt.Errorf("read vocabulary %s: duplicate token %q", name, tok)
		}
		v.ids[tok] = len(v.tokens)
		v.tokens = append(v.tokens, tok)
		v.width = append(v.width, width)
		return nil
	}
	for i, b := range bt.order {
		v.byteID[b] = int32(i)
		if err := add(string(bt.char[b]), 1); err != nil {
			return nil, err
		}
	}
	for _, b := range bt.order {
		if err := add(string(bt.char[b])+endOfWord, 1); err != nil {
			return nil, err
		}
	}
	pairs := make([][2]string, 0, numMerges)
	for line := 1; len(pairs) < numMerges; line++ {
		if !sc.Scan() {
			return nil, fmt.Errorf("read vocabulary %s: want %d merges, file ends after %d: %w", name, numMerges, len(pairs), scanErr(sc))
		}
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return nil, fmt.Errorf("read vocabulary %s: line %d: want two symbols, got %q", name, line, sc.Text())
		}
		pairs = append(pairs, [2]string{f[0], f[1]})
		// The width is filled in below, once every symbol has an id.
		if err := add(f[0]+f[1], 0); err != nil {
			return nil, err
		}
	}
	if err := add(startText, 0); err != nil {
		return nil, err
	}
	if err := add(endText, 0); err != nil {
		return nil, err
	}
	for r, p := range pairs {
		id := firstMergeID + r
		a, okA := v.ids[p[0]]
		b, okB := v.ids[p[1]]
		// Merge operands are always earlier tokens in CLIP's file; relying on
		// that lets the byte width of each merged token be summed in order.
		if !okA || !okB || a >= id || b >= id {
			return nil, fmt.Errorf("read vocabulary %s: merge %d (%q %q) uses a symbol that is not an earlier token", name, r+1, p[0], p[1])
		}
		v.ranks[pairKey(int32(a), int32(b))] = int32(r)
		v.width[id] = v.width[a] + v.width[b]
	}
	if len(v.tokens) != VocabSize {
		return nil, fmt.Errorf("read vocabulary %s: built %d tokens, want %d", name, len(v.tokens), VocabSize)
	}
	return v, nil
}

func scanErr(sc *bufio.Scanner) error {
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// loadEmbeddedVocabulary parses the vocabulary compiled into the package.
func loadEmbeddedVocabulary() (*vocabulary, error) {
	return loadVocabulary(bytes.NewReader(embeddedVocab), "bpe_simple_vocab_16e6.txt.gz (embedded)")
}
