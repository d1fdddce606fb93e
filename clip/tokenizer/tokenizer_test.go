package tokenizer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// shared builds one tokenizer for all tests (parsing the vocabulary takes a
// while).
var shared = sync.OnceValues(New)

func newTestTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := shared()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tok
}

// fixture is testdata/tokens.json, written by testdata/gen.py.
type fixture struct {
	VocabSHA256 string `json:"vocab_sha256"`
	Cases       []struct {
		Text    string `json:"text"`
		IDs     []int  `json:"ids"`
		Decoded string `json:"decoded"`
	} `json:"cases"`
	Tokenize []struct {
		Texts    []string  `json:"texts"`
		Context  int       `json:"context"`
		Truncate bool      `json:"truncate"`
		Error    bool      `json:"error"`
		Rows     [][]int64 `json:"rows"`
		EOTIndex []int     `json:"eot_index"`
	} `json:"tokenize"`
	Decode []struct {
		IDs  []int  `json:"ids"`
		Text string `json:"text"`
	} `json:"decode"`
	PythonUnicode struct {
		Version string            `json:"unicode_version"`
		Space   []rune            `json:"space"`
		Lower   map[string][]rune `json:"lower"`
	} `json:"python_unicode"`
}

var loadFixture = sync.OnceValues(func() (*fixture, error) {
	b, err := os.ReadFile("testdata/tokens.json")
	if err != nil {
		return nil, err
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse testdata/tokens.json: %w", err)
	}
	return &f, nil
})

func mustFixture(t *testing.T) *fixture {
	t.Helper()
	f, err := loadFixture()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func row(ids ...int64) []int64 {
	r := make([]int64, ContextLength)
	copy(r, ids)
	return r
}

// TestKnownAnswers checks hand-recorded CLIP outputs (the brief's known answer
// and the test vectors of docs/models.md §6).
func TestKnownAnswers(t *testing.T) {
	tok := newTestTokenizer(t)

	rows, err := tok.Tokenize([]string{"a photo of a fox", "a photo of a dog."}, ContextLength, false)
	if err != nil {
		t.Fatal(err)
	}
	wantRows := [][]int64{
		row(49406, 320, 1125, 539, 320, 3240, 49407),
		row(49406, 320, 1125, 539, 320, 1929, 269, 49407),
	}
	if !slices.EqualFunc(rows, wantRows, slices.Equal) {
		t.Errorf("Tokenize = %v, want %v", rows, wantRows)
	}
	if got := EOTIndex(rows[0]); got != 6 {
		t.Errorf("EOTIndex = %d, want 6", got)
	}

	tests := []struct {
		text string
		want []int
	}{
		{"a photo of a fox", []int{320, 1125, 539, 320, 3240}},
		{"a photo of a dog.", []int{320, 1125, 539, 320, 1929, 269}},
		{"a photo of a", []int{320, 1125, 539, 320}},
		{"X", []int{343}},
		{"itap of a tench.", []int{529, 2728, 539, 320, 1149, 634, 269}},
		{"Hello, World!", []int{3306, 267, 1002, 256}},
		{"a centered satellite photo of Annual Crop Land.", []int{320, 24584, 10316, 1125, 539, 2906, 9955, 973, 269}},
		{"1999 Chevrolet", []int{272, 280, 280, 280, 13240}},
		{"don't", []int{847, 713}},
		{"hen of the woods mushroom", []int{8047, 539, 518, 6267, 13011}},
		{"", nil},
	}
	for _, tt := range tests {
		got, err := tok.Encode(tt.text)
		if err != nil {
			t.Errorf("Encode(%q): %v", tt.text, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}

// TestFixtureEncode compares Encode and Decode with the Python reference for
// every fixture string.
func TestFixtureEncode(t *testing.T) {
	tok := newTestTokenizer(t)
	f := mustFixture(t)
	if len(f.Cases) < 300 {
		t.Fatalf("fixture has %d cases, want at least 300", len(f.Cases))
	}
	for _, c := range f.Cases {
		got, err := tok.Encode(c.Text)
		if err != nil {
			t.Errorf("Encode(%q): %v", c.Text, err)
			continue
		}
		if !slices.Equal(got, c.IDs) && !(len(got) == 0 && len(c.IDs) == 0) {
			t.Errorf("Encode(%q)\n got  %v\n want %v", c.Text, got, c.IDs)
		}
		if d := tok.Decode(c.IDs); d != c.Decoded {
			t.Errorf("Decode(%v) = %q, want %q", c.IDs, d, c.Decoded)
		}
	}
}

// TestFixtureTokenize compares Tokenize (context length, truncation, errors)
// and EOTIndex with the Python reference.
func TestFixtureTokenize(t *testing.T) {
	tok := newTestTokenizer(t)
	f := mustFixture(t)
	for _, c := range f.Tokenize {
		name := fmt.Sprintf("%.20q/ctx%d/trunc=%v", c.Texts[0], c.Context, c.Truncate)
		rows, err := tok.Tokenize(c.Texts, c.Context, c.Truncate)
		if c.Error {
			if err == nil {
				t.Errorf("%s: no error, want one", name)
			} else if !strings.Contains(err.Error(), "too long") || !strings.Contains(err.Error(), strconv.Quote(c.Texts[0])[:10]) {
				t.Errorf("%s: error %q does not say the text is too long or does not name it", name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.EqualFunc(rows, c.Rows, slices.Equal) {
			t.Errorf("%s:\n got  %v\n want %v", name, rows, c.Rows)
			continue
		}
		for i, r := range rows {
			if got := EOTIndex(r); got != c.EOTIndex[i] {
				t.Errorf("%s: EOTIndex(row %d) = %d, want %d", name, i, got, c.EOTIndex[i])
			}
		}
	}
}

// TestFixtureDecode decodes id sequences chosen to split UTF-8 characters
// across tokens (Python's errors="replace" behaviour) and to contain special
// tokens and padding.
func TestFixtureDecode(t *testing.T) {
	tok := newTestTokenizer(t)
	for _, c := range mustFixture(t).Decode {
		if got := tok.Decode(c.IDs); got != c.Text {
			t.Errorf("Decode(%v) = %+q, want %+q", c.IDs, got, c.Text)
		}
	}
}

func TestDecodeSkipsUnknownIDs(t *testing.T) {
	tok := newTestTokenizer(t)
	if got, want := tok.Decode([]int{-1, 320, VocabSize, 3240}), "a fox "; got != want {
		t.Errorf("Decode = %q, want %q", got, want)
	}
}

// TestVocabulary checks the vocabulary layout of docs/models.md §6 and that the
// embedded file is the one the fixture was generated from.
func TestVocabulary(t *testing.T) {
	sum := sha256.Sum256(embeddedVocab)
	const wantSum = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
	if got := hex.EncodeToString(sum[:]); got != wantSum {
		t.Errorf("embedded vocabulary SHA-256 = %s, want %s", got, wantSum)
	}
	if f := mustFixture(t); f.VocabSHA256 != wantSum {
		t.Errorf("fixture generated from vocabulary %s, want %s", f.VocabSHA256, wantSum)
	}
	tok := newTestTokenizer(t)
	m := tok.model
	if got := m.GetVocabSize(); got != VocabSize {
		t.Errorf("GetVocabSize = %d, want %d", got, VocabSize)
	}
	tests := []struct {
		id  int
		tok string
	}{
		{0, "!"},
		{93, "~"},       // last of 33–126
		{94, "¡"},       // 161
		{187, "ÿ"},      // 255, last printable byte
		{188, "\u0100"}, // byte 0
		{220, "\u0120"}, // byte 32 (space)
		{255, "\u0143"}, // byte 173
		{256, "!</w>"},
		{511, "\u0143</w>"},
		{512, "in"}, // first merge "i n"
		{320, "a</w>"},
		{3240, "fox</w>"},
		{49405, "jekyll</w>"}, // last merge used
		{StartToken, "<|startoftext|>"},
		{EndToken, "<|endoftext|>"},
	}
	for _, tt := range tests {
		if got, ok := m.IdToToken(tt.id); !ok || got != tt.tok {
			t.Errorf("IdToToken(%d) = %q, %v; want %q", tt.id, got, ok, tt.tok)
		}
		if got, ok := m.TokenToId(tt.tok); !ok || got != tt.id {
			t.Errorf("TokenToId(%q) = %d, %v; want %d", tt.tok, got, ok, tt.id)
		}
	}
	if _, ok := m.IdToToken(VocabSize); ok {
		t.Errorf("IdToToken(%d) ok, want not found", VocabSize)
	}
	if err := m.Save(t.TempDir()); err == nil {
		t.Error("Save: no error, want not supported")
	}
}

// TestModelOffsets checks the library Model contract: token offsets are byte
// offsets that tile the piece.
func TestModelOffsets(t *testing.T) {
	tok := newTestTokenizer(t)
	for _, piece := range []string{"fox", "日本語", "🦊🦊", "<|endoftext|>", "supercalifragilisticexpialidocious"} {
		toks, err := tok.model.Tokenize(piece)
		if err != nil {
			t.Fatalf("Tokenize(%q): %v", piece, err)
		}
		off := 0
		for _, tk := range toks {
			if tk.Offsets[0] != off || tk.Offsets[1] <= off {
				t.Errorf("Tokenize(%q): token %q has offsets %v, want to start at %d", piece, tk.Value, tk.Offsets, off)
			}
			off = tk.Offsets[1]
		}
		if off != len(piece) {
			t.Errorf("Tokenize(%q): offsets end at %d, want %d", piece, off, len(piece))
		}
	}
}

func TestTokenizeErrors(t *testing.T) {
	tok := newTestTokenizer(t)
	long := strings.Repeat("a photo of a very long caption ", 20)
	tests := []struct {
		name    string
		texts   []string
		context int
		want    string // substring of the error
	}{
		{"context 1", []string{"a"}, 1, "context length 1 is too small"},
		{"context 0", nil, 0, "context length 0 is too small"},
		{"too long", []string{"ok", long}, ContextLength, `text 1 "a photo of a very long caption a photo of a very long captio…" is too long for context length 77`},
		{"3 ids in 4", []string{"a photo of"}, 4, `text 0 "a photo of" is too long for context length 4 (5 tokens with start and end)`},
	}
	for _, tt := range tests {
		_, err := tok.Tokenize(tt.texts, tt.context, false)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	rows, err := tok.Tokenize(nil, ContextLength, false)
	if err != nil || len(rows) != 0 {
		t.Errorf("Tokenize(nil) = %v, %v; want no rows", rows, err)
	}
}

func TestEOTIndex(t *testing.T) {
	tests := []struct {
		row  []int64
		want int
	}{
		{nil, -1},
		{[]int64{0}, 0},
		{[]int64{49406, 320, 49407, 0}, 2},
		{[]int64{49406, 49407, 5, 49407}, 1}, // first maximum, like torch.argmax
	}
	for _, tt := range tests {
		if got := EOTIndex(tt.row); got != tt.want {
			t.Errorf("EOTIndex(%v) = %d, want %d", tt.row, got, tt.want)
		}
	}
}

// TestInvalidUTF8 checks that ill-formed input behaves like U+FFFD (the
// fixture's "&#0;" unescapes to U+FFFD), one per maximal subpart.
func TestInvalidUTF8(t *testing.T) {
	tok := newTestTokenizer(t)
	var fffd []int
	for _, c := range mustFixture(t).Cases {
		if c.Text == "&#0;" {
			fffd = c.IDs
		}
	}
	if fffd == nil {
		t.Fatal(`fixture lacks "&#0;"`)
	}
	for _, in := range []string{"\xff", "\xe6\x97", "\xf0\x9f\xa6"} {
		got, err := tok.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, fffd) {
			t.Errorf("Encode(%+q) = %v, want %v (one U+FFFD)", in, got, fffd)
		}
	}
	got, _ := tok.Encode("\xc0\x80") // two maximal subparts
	if want, _ := tok.Encode("\uFFFD\uFFFD"); !slices.Equal(got, want) {
		t.Errorf("Encode(%+q) = %v, want %v (two U+FFFD)", "\xc0\x80", got, want)
	}
}

// TestPythonWhitespace checks spaceRunPattern against Python's str.isspace
// set recorded by gen.py.
func TestPythonWhitespace(t *testing.T) {
	f := mustFixture(t)
	py := make(map[rune]bool)
	for _, r := range f.PythonUnicode.Space {
		py[r] = true
	}
	if len(py) != 29 {
		t.Fatalf("fixture lists %d Python white-space characters, want 29", len(py))
	}
	run := regexp.MustCompile(`^(?:` + spaceRunPattern + `)$`)
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if 0xd800 <= r && r <= 0xdfff {
			continue
		}
		s := string(r)
		// A single character is changed iff it is white space other than
		// U+0020; a pair of white space is always collapsed.
		if got, want := run.MatchString(s), py[r] && r != ' '; got != want {
			t.Errorf("pattern matches %U alone = %v, want %v", r, got, want)
		}
		if py[r] && !run.MatchString(s+" ") {
			t.Errorf("pattern does not match %U followed by a space", r)
		}
	}
}

// TestPythonLower checks pyLower on every single character against Python's
// str.lower recorded by gen.py (final sigma is covered by fixture strings).
// Go's tables (Unicode 15.0 in Go 1.26) are newer than the recording Python's
// (14.0); should a later Go add case pairs for newly assigned letters, this
// test flags them, and the fixture needs regenerating with a newer Python.
func TestPythonLower(t *testing.T) {
	f := mustFixture(t)
	if len(f.PythonUnicode.Lower) < 1000 {
		t.Fatalf("fixture lists %d lower-case mappings, want more than 1000", len(f.PythonUnicode.Lower))
	}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if 0xd800 <= r && r <= 0xdfff {
			continue
		}
		want := string(r)
		if m, ok := f.PythonUnicode.Lower[strconv.Itoa(int(r))]; ok {
			want = string(m)
		}
		if got := pyLower(string(r)); got != want {
			t.Errorf("pyLower(%U) = %+q, want %+q (Python %s tables)", r, got, want, f.PythonUnicode.Version)
		}
	}
}

func TestUnescapeHTML(t *testing.T) {
	tests := []struct{ in, want string }{
		{"&amp;", "&"},
		{"&amp;amp;", "&amp;"},
		{"&#39;", "'"},
		{"&#x27;&#X27;", "''"},
		{"&#65", "A"},
		{"&#0;", "\uFFFD"},
		{"&#1;x", "x"},
		{"&#128;", "€"},
		{"&#x10FFFF;", ""}, // non-character: dropped
		{"&#x110000;", "\uFFFD"},
		{"&#xD800;", "\uFFFD"},
		{"&#;&#x;&;", "&#;&#x;&;"},
		{"&ampx", "&x"},
		{"&notit;", "¬it;"},
		{"&notin;", "∉"},
		{"& amp;", "& amp;"},
	}
	for _, tt := range tests {
		if got := unescapeHTML(tt.in); got != tt.want {
			t.Errorf("unescapeHTML(%q) = %+q, want %+q", tt.in, got, tt.want)
		}
	}
}

// TestConcurrent encodes the fixture from several goroutines at once (run
// with -race to check the cache).
func TestConcurrent(t *testing.T) {
	tok, err := New() // a fresh, empty cache
	if err != nil {
		t.Fatal(err)
	}
	f := mustFixture(t)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range f.Cases {
				got, err := tok.Encode(c.Text)
				if err != nil || !slices.Equal(got, c.IDs) && len(got)+len(c.IDs) > 0 {
					t.Errorf("Encode(%q) = %v, %v; want %v", c.Text, got, err, c.IDs)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// prompts returns n class-name prompts for benchmarks.
func prompts(n int) []string {
	adj := []string{"red", "small", "large", "wild", "domestic", "striped", "spotted", "old", "young", "giant",
		"tiny", "fluffy", "wet", "dry", "wooden", "metal", "plastic", "golden", "silver", "dark",
		"bright", "ancient", "modern", "broken", "shiny"}
	noun := []string{"fox", "dog", "tench", "goldfish", "great white shark", "jack-o'-lantern", "airplane",
		"Boeing 747-400", "apple pie", "crème brûlée", "pink primrose", "Annual Crop Land", "yin yang",
		"Apply Eye Makeup", "Granny Smith", "sea lion", "mountain bike", "espresso maker", "volcano",
		"church", "bee eater", "ice cream", "tabby cat", "harvestman", "red wine", "teapot", "guacamole",
		"lighthouse", "Chihuahua", "Saint Bernard", "snowmobile", "park bench", "hummingbird", "sundial",
		"tree frog", "cheeseburger", "hot air balloon", "accordion", "alarm clock", "scuba diver"}
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		out = append(out, fmt.Sprintf("a photo of a %s %s.", adj[i%len(adj)], noun[(i/len(adj))%len(noun)]))
	}
	return out
}

// BenchmarkTokenize tokenizes 1000 class-name prompts per iteration, with
// the word cache warm ("warm") and emptied before each iteration ("cold").
func BenchmarkTokenize(b *testing.B) {
	texts := prompts(1000)
	tok, err := New()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) {
		if _, err := tok.Tokenize(texts, ContextLength, false); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if _, err := tok.Tokenize(texts, ContextLength, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			tok.model.cache.reset()
			b.StartTimer()
			if _, err := tok.Tokenize(texts, ContextLength, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkNew measures parsing the embedded vocabulary.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(); err != nil {
			b.Fatal(err)
		}
	}
}

// reset empties the cache.
func (c *wordCache) reset() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}
