package tokenizer

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sugarme/tokenizer/normalizer"
	"golang.org/x/text/unicode/norm"
)

// This file holds the text clean-up steps that sugarme/tokenizer v0.3.0 does
// not provide correctly for CLIP (see newNormalizer for the whole chain).
//
// Each step implements normalizer.Normalizer. A step that changes the text
// returns a fresh NormalizedString of the result, so offsets in the library's
// Encoding refer to the cleaned text, not to the caller's input; nothing in
// this package uses them.

// spaceRunPattern matches what Python's `re.sub(r"\s+", " ", s)` changes: a
// run of two or more white-space characters, or a single white-space
// character other than U+0020. White space is Python's str.isspace set:
// Unicode white space (Go's unicode.IsSpace) plus U+001C–U+001F, which Python
// counts (bidirectional class B or S) and Go does not. Go's regexp `\s` is
// ASCII-only and so not used.
const spaceRunPattern = `[\t-\r\x{1c}-\x{20}\x{85}\p{Z}]{2,}|[\t-\r\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]`

// newNormalizer returns CLIP's clean-up chain:
//
//  1. NFC normalisation (our stand-in for ftfy.fix_text, see the package
//     documentation);
//  2. HTML unescaping, twice, with Python's html.unescape rules;
//  3. every run of white space replaced by one space, then leading and
//     trailing spaces removed (CLIP strips, collapses and strips again; the
//     result is the same);
//  4. lower-casing with Python's str.lower rules.
//
// Step 3 is the library's normalizer.Replace and normalizer.Strip (the
// latter is only given U+0020 to strip, which it handles). The library's own
// NFC normalizer is not used because v0.3.0 decomposes instead (it iterates
// with norm.NFD, so "é" comes out as "e" + U+0301), and its Lowercase uses
// strings.ToLower, which differs from Python for U+0130 and for final sigma.
func newNormalizer() normalizer.Normalizer {
	return normalizer.NewSequence([]normalizer.Normalizer{
		nfcStep{},
		htmlStep{},
		htmlStep{},
		normalizer.NewReplace(normalizer.Regex, spaceRunPattern, " "),
		normalizer.NewStrip(true, true),
		lowerStep{},
	})
}

// stringStep adapts a string function to normalizer.Normalizer.
func stringStep(n *normalizer.NormalizedString, f func(string) string) *normalizer.NormalizedString {
	in := n.GetNormalized()
	out := f(in)
	if out == in {
		return n
	}
	return normalizer.NewNormalizedFrom(out)
}

// nfcStep applies Unicode NFC.
type nfcStep struct{}

func (nfcStep) Normalize(n *normalizer.NormalizedString) (*normalizer.NormalizedString, error) {
	return stringStep(n, norm.NFC.String), nil
}

// htmlStep applies one round of unescapeHTML.
type htmlStep struct{}

func (htmlStep) Normalize(n *normalizer.NormalizedString) (*normalizer.NormalizedString, error) {
	return stringStep(n, unescapeHTML), nil
}

// lowerStep applies pyLower.
type lowerStep struct{}

func (lowerStep) Normalize(n *normalizer.NormalizedString) (*normalizer.NormalizedString, error) {
	return stringStep(n, pyLower), nil
}

// unescapeHTML replaces HTML character references the way Python's
// html.unescape does (HTML5 rules): a reference is "&" followed by
// "#" and decimal digits, "#x"/"#X" and hex digits, or 1–32 characters other
// than tab, newline, form feed, space, "<", "&", "#" and ";"; each form may
// end with ";". Numeric references are decoded with the HTML5 replacement
// rules (see numericRef). Named references, including the longest-prefix rule
// for legacy names without ";", are resolved by the standard library's
// html.UnescapeString applied to the isolated reference, which uses the same
// HTML5 entity table and prefix rule. Anything else is left as is.
//
// html.UnescapeString is not applied to the whole text because its handling
// of numeric references differs from Python's (it keeps control and
// non-character code points that Python drops).
func unescapeHTML(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		s = s[i:]
		n, repl := matchCharRef(s)
		if n == 0 {
			b.WriteByte('&')
			s = s[1:]
			continue
		}
		b.WriteString(repl)
		s = s[n:]
	}
}

// matchCharRef matches a character reference at the start of s (s[0] is '&')
// and returns its length in bytes and its replacement; n is 0 when there is
// no reference.
func matchCharRef(s string) (n int, repl string) {
	if len(s) >= 2 && s[1] == '#' {
		j, base := 2, 10
		if len(s) > 2 && (s[2] == 'x' || s[2] == 'X') {
			j, base = 3, 16
		}
		start := j
		for j < len(s) && isDigit(s[j], base) {
			j++
		}
		if j == start {
			return 0, ""
		}
		digits := s[start:j]
		if j < len(s) && s[j] == ';' {
			j++
		}
		return j, numericRef(digits, base)
	}
	j, count := 1, 0
	for j < len(s) && count < 32 {
		r, size := utf8.DecodeRuneInString(s[j:])
		if r == '\t' || r == '\n' || r == '\f' || r == ' ' || r == '<' || r == '&' || r == '#' || r == ';' {
			break
		}
		j += size
		count++
	}
	if count == 0 {
		return 0, ""
	}
	if j < len(s) && s[j] == ';' {
		j++
	}
	return j, html.UnescapeString(s[:j])
}

func isDigit(c byte, base int) bool {
	if '0' <= c && c <= '9' {
		return true
	}
	return base == 16 && ('a' <= c && c <= 'f' || 'A' <= c && c <= 'F')
}

// windows1252 gives the HTML5 replacement for numeric references to
// 0x80–0x9F (Windows-1252 characters; the five undefined ones stay C1
// controls).
var windows1252 = [32]rune{
	0x20ac, 0x81, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8d, 0x017d, 0x8f,
	0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d, 0x017e, 0x0178,
}

// numericRef decodes the digits of a numeric character reference as Python's
// html.unescape does: 0 becomes U+FFFD; 0x80–0x9F use windows1252;
// surrogates and values above U+10FFFF become U+FFFD; the control characters
// 0x01–0x08, 0x0B, 0x0E–0x1F, 0x7F and the non-characters (U+FDD0–U+FDEF and
// U+xxFFFE/U+xxFFFF) are dropped; anything else is that code point.
func numericRef(digits string, base int) string {
	num := 0
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var d int
		switch {
		case c <= '9':
			d = int(c - '0')
		case c >= 'a':
			d = int(c-'a') + 10
		default:
			d = int(c-'A') + 10
		}
		num = num*base + d
		if num > unicode.MaxRune {
			num = unicode.MaxRune + 1 // saturate: only "too large" matters
		}
	}
	switch {
	case num == 0:
		return "\uFFFD"
	case 0x80 <= num && num <= 0x9f:
		return string(windows1252[num-0x80])
	case 0xd800 <= num && num <= 0xdfff || num > unicode.MaxRune:
		return "\uFFFD"
	case 0x01 <= num && num <= 0x08, num == 0x0b, 0x0e <= num && num <= 0x1f, num == 0x7f,
		0xfdd0 <= num && num <= 0xfdef, num&0xfffe == 0xfffe:
		return ""
	}
	return string(rune(num))
}

// pyLower lower-cases s as Python's str.lower does: the simple Unicode
// lower-case mapping of each character, except that U+0130 (İ) becomes
// "i" + U+0307 and a capital sigma becomes final sigma (ς) when it ends a
// word, i.e. it follows a cased letter and no cased letter follows it (case-
// ignorable characters in between are skipped on both sides). Go's
// strings.ToLower maps U+0130 to "i" and Σ always to σ.
func pyLower(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	runes := []rune(s)
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i, r := range runes {
		switch r {
		case 0x130:
			b.WriteString("i\u0307")
		case 0x3a3:
			if finalSigma(runes, i) {
				b.WriteRune(0x3c2)
			} else {
				b.WriteRune(0x3c3)
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma implements the Final_Sigma condition of Unicode's SpecialCasing
// for the capital sigma at runes[i], as CPython evaluates it.
func finalSigma(runes []rune, i int) bool {
	j := i - 1
	for j >= 0 && caseIgnorable(runes[j]) {
		j--
	}
	if j < 0 || !cased(runes[j]) {
		return false
	}
	j = i + 1
	for j < len(runes) && caseIgnorable(runes[j]) {
		j++
	}
	return j == len(runes) || !cased(runes[j])
}

// cased is Unicode's Cased property: Lowercase, Uppercase or Lt.
func cased(r rune) bool {
	return unicode.In(r, unicode.Ll, unicode.Lu, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// caseIgnorable is Unicode's Case_Ignorable property: categories Mn, Me, Cf,
// Lm and Sk, plus the characters whose Word_Break value is MidLetter,
// MidNumLet or Single_Quote (listed here, as Go's unicode package has no
// Word_Break tables).
func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xb7, 0x387, 0x55f, 0x5f4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xfe13, 0xfe52, 0xfe55, 0xff07, 0xff0e, 0xff1a:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// decodeUTF8 converts b to a string, replacing each ill-formed sequence with
// U+FFFD the way Python's bytes.decode("utf-8", errors="replace") does: one
// replacement per maximal subpart of an ill-formed sequence (Unicode's
// "substitution of maximal subparts"), where Go's utf8 package would emit
// one per byte.
func decodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			sb.WriteRune(r)
			i += size
			continue
		}
		sb.WriteRune(utf8.RuneError)
		i += maximalSubpart(b[i:])
	}
	return sb.String()
}

// maximalSubpart returns the length of the longest prefix of b (at least 1)
// that starts a well-formed UTF-8 sequence, b being known to start an
// ill-formed one.
func maximalSubpart(b []byte) int {
	c := b[0]
	need, lo, hi := 0, byte(0x80), byte(0xbf)
	switch {
	case 0xc2 <= c && c <= 0xdf:
		need = 1
	case c == 0xe0:
		need, lo = 2, 0xa0
	case 0xe1 <= c && c <= 0xec, c == 0xee, c == 0xef:
		need = 2
	case c == 0xed:
		need, hi = 2, 0x9f
	case c == 0xf0:
		need, lo = 3, 0x90
	case 0xf1 <= c && c <= 0xf3:
		need = 3
	case c == 0xf4:
		need, hi = 3, 0x8f
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if k > 0 {
			lo, hi = 0x80, 0xbf
		}
		if x < lo || x > hi {
			break
		}
		n++
	}
	return n
}
