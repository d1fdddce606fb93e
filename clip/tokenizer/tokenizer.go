// Package tokenizer implements the text tokenizer of OpenAI's CLIP models
// (CLIP's simple_tokenizer.py and clip.tokenize) on top of the pipeline of
// github.com/sugarme/tokenizer.
//
// Encoding a text follows CLIP:
//
//  1. clean-up: Unicode NFC, HTML unescaping twice (Python's html.unescape
//     rules), white-space runs collapsed to one space and the ends stripped,
//     lower-casing with Python's str.lower rules;
//  2. pre-tokenization with CLIP's regular expression (case-insensitive)
//     <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//     — runs of letters, single digits, runs of other symbols, English
//     contractions; white space between matches is dropped;
//  3. byte-level BPE on each piece: its UTF-8 bytes as byte characters, the
//     last one marked with the end-of-word suffix "</w>", merged with the
//     48,894 ranked merges of CLIP's bpe_simple_vocab_16e6.txt.gz (embedded
//     in this package; MIT licensed, see the LICENSE file next to it).
//
// A literal "<|startoftext|>" or "<|endoftext|>" in the cleaned text encodes
// to the special id, as in CLIP.
//
// Difference from CLIP: CLIP starts the clean-up with ftfy.fix_text, which has
// no Go counterpart. This package applies Unicode NFC normalisation instead,
// which is one of the things ftfy's default run does. Text that ftfy would
// change in other ways can tokenize differently: mojibake ("cafÃ©"), curly
// quotes and apostrophes (“ ” ‘ ’, so "don’t" does not split like "don't"),
// ligatures (ﬁ), full-width characters (ＡＢＣ), control characters, and
// HTML entities escaped three times (ftfy unescapes once more). Invalid UTF-8
// in the input is first replaced by U+FFFD. For prompts and class names of
// printable ASCII the result is CLIP's, unless they hold HTML entities
// escaped three or more times. The test fixtures (testdata/gen.py, a
// Python implementation of CLIP's algorithm with the same NFC stand-in) pin
// the behaviour.
//
// Pipeline pieces: the library's Tokenizer (which runs normalizer,
// pre-tokenizer and model), its normalizer.Sequence, normalizer.Replace and
// normalizer.Strip, its pretokenizer.Split with a regexp pattern, its
// BertProcessing post-processor (configured with CLIP's start and end tokens)
// and TruncateEncodings. Replaced by code here, because v0.3.0 gets them wrong
// for CLIP: the BPE model (no "</w>" suffix, upstream issue #65; panics on
// unknown symbols), the NFC normalizer (it decomposes), lower-casing
// (strings.ToLower, not Python's rules), HTML unescaping (none in the
// library) and the decoder (its BPE decoder drops the last suffix and its
// byte-level decoder turns characters it does not know, such as the spaces
// the BPE decoder inserts, into NUL bytes).
package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	stok "github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/normalizer"
	"github.com/sugarme/tokenizer/pretokenizer"
	"github.com/sugarme/tokenizer/processor"
)

const (
	// StartToken is the id of "<|startoftext|>", the first token of a row.
	StartToken = 49406
	// EndToken is the id of "<|endoftext|>", the token whose feature CLIP's
	// text encoder reads.
	EndToken = 49407
	// ContextLength is the number of positions of CLIP's text encoder.
	ContextLength = 77
	// VocabSize is the number of token ids (0 … VocabSize-1).
	VocabSize = 49408
)

// splitPattern is CLIP's pre-tokenization regular expression.
const splitPattern = `(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`

// Tokenizer converts text to CLIP token ids and back. Create it with New. It
// is safe for concurrent use; it caches the BPE result of each word it sees
// (bounded).
type Tokenizer struct {
	pipe  *stok.Tokenizer
	model *bpeModel
	post  *processor.BertProcessing
}

// New returns a tokenizer using the vocabulary embedded in the package.
func New() (*Tokenizer, error) {
	v, err := loadEmbeddedVocabulary()
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %w", err)
	}
	return newTokenizer(v), nil
}

func newTokenizer(v *vocabulary) *Tokenizer {
	model := newBPEModel(v)
	pipe := stok.NewTokenizer(model)
	pipe.WithNormalizer(newNormalizer())
	// Keep the regexp's matches (inverted pattern, so the matches are the
	// pieces) and drop what lies between them, which after the clean-up is
	// single spaces.
	pipe.WithPreTokenizer(pretokenizer.NewSplit(normalizer.NewRegexpPattern(splitPattern), normalizer.RemovedBehavior, true))
	post := processor.NewBertProcessing(
		processor.PostToken{Value: endText, Id: EndToken},
		processor.PostToken{Value: startText, Id: StartToken},
	)
	pipe.WithPostProcessor(post)
	pipe.WithDecoder(&byteDecoder{bytes: v.bytes})
	return &Tokenizer{pipe: pipe, model: model, post: post}
}

// Encode returns the BPE token ids of text, without the start and end
// tokens and without any length limit.
func (t *Tokenizer) Encode(text string) ([]int, error) {
	enc, err := t.encoding(text)
	if err != nil {
		return nil, err
	}
	return append([]int(nil), enc.Ids...), nil
}

// encoding runs the library pipeline (normalizer, pre-tokenizer, model)
// without special tokens.
func (t *Tokenizer) encoding(text string) (enc *stok.Encoding, err error) {
	if !utf8.ValidString(text) {
		text = decodeUTF8([]byte(text))
	}
	// The library reports some failures by panicking; keep them inside.
	defer func() {
		if r := recover(); r != nil {
			enc, err = nil, fmt.Errorf("clip tokenizer: encode %q: internal error: %v", abbreviate(text), r)
		}
	}()
	enc, err = t.pipe.EncodeSingle(text, false)
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: encode %q: %w", abbreviate(text), err)
	}
	return enc, nil
}

// Tokenize is clip.tokenize: for each text a row of exactly contextLength
// ids, StartToken, the text's ids, EndToken, then zeros. A text whose row
// would be longer is an error naming it, unless truncate is set; then the row
// keeps the first contextLength-1 ids (StartToken included) and ends with
// EndToken. contextLength must be at least 2; CLIP uses ContextLength.
func (t *Tokenizer) Tokenize(texts []string, contextLength int, truncate bool) ([][]int64, error) {
	if contextLength < 2 {
		return nil, fmt.Errorf("clip tokenizer: context length %d is too small: it must hold the start and end tokens", contextLength)
	}
	rows := make([][]int64, len(texts))
	for i, text := range texts {
		enc, err := t.encoding(text)
		if err != nil {
			return nil, fmt.Errorf("text %d: %w", i, err)
		}
		if n := len(enc.Ids) + 2; n > contextLength {
			if !truncate {
				return nil, fmt.Errorf("clip tokenizer: text %d %q is too long for context length %d (%d tokens with start and end)",
					i, abbreviate(text), contextLength, n)
			}
			enc = truncateEncoding(enc, contextLength-2)
		}
		enc = t.post.Process(enc, nil, true)
		if len(enc.Ids) > contextLength {
			return nil, fmt.Errorf("clip tokenizer: text %d: internal error: row has %d ids, want at most %d", i, len(enc.Ids), contextLength)
		}
		// Zero padding is written directly: the library's Encoding.Pad
		// appends position by position to seven slices, a tenth of the time.
		row := make([]int64, contextLength)
		for j, id := range enc.Ids {
			row[j] = int64(id)
		}
		rows[i] = row
	}
	return rows, nil
}

// truncateEncoding keeps the first maxLen tokens of enc.
func truncateEncoding(enc *stok.Encoding, maxLen int) *stok.Encoding {
	if maxLen == 0 {
		// TruncateEncodings treats a maximum length of 0 as "no limit".
		return stok.DefaultEncoding()
	}
	enc, _ = stok.TruncateEncodings(enc, nil, &stok.TruncationParams{MaxLength: maxLen, Strategy: stok.LongestFirst})
	enc.Overflowing = nil // the dropped tail is not needed
	return enc
}

// Decode turns ids back into text as CLIP's decoder does: the tokens' bytes
// are concatenated, decoded as UTF-8 (each ill-formed sequence becomes
// U+FFFD) and every "</w>" becomes a space, so words come out lower-cased and
// space-separated, with a trailing space. Special tokens appear as their
// strings and padding zeros as "!", so cut a row at its end token first (see
// EOTIndex). Ids outside 0 … VocabSize-1 are skipped.
func (t *Tokenizer) Decode(ids []int) string {
	return t.pipe.Decode(ids, false)
}

// EOTIndex returns the position of the end token in a row from Tokenize: the
// index of the largest id (the first one if it occurs more than once), which
// is where CLIP reads the text feature. It returns -1 for an empty row.
func EOTIndex(row []int64) int {
	best := -1
	for i, id := range row {
		if best < 0 || id > row[best] {
			best = i
		}
	}
	return best
}

// abbreviate shortens s for error messages.
func abbreviate(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "…"
}

// byteDecoder is CLIP's decoder as a sugarme/tokenizer Decoder.
type byteDecoder struct {
	bytes *byteTable
}

var _ stok.Decoder = (*byteDecoder)(nil)

// Decode implements stok.Decoder.
func (d *byteDecoder) Decode(tokens []string) string {
	var buf []byte
	for _, tok := range tokens {
		buf = d.appendBytes(buf, tok)
	}
	return strings.ReplaceAll(decodeUTF8(buf), endOfWord, " ")
}

// DecodeChain implements stok.Decoder, decoding each token on its own.
func (d *byteDecoder) DecodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, tok := range tokens {
		out[i] = d.Decode([]string{tok})
	}
	return out
}

// appendBytes appends the bytes the byte characters of tok stand for.
// Characters that are not byte characters (none occur in CLIP's vocabulary)
// are appended as UTF-8.
func (d *byteDecoder) appendBytes(buf []byte, tok string) []byte {
	for _, r := range tok {
		if 0 <= r && int(r) < len(d.bytes.isByte) && d.bytes.isByte[r] {
			buf = append(buf, d.bytes.byteOf[r])
		} else {
			buf = utf8.AppendRune(buf, r)
		}
	}
	return buf
}
