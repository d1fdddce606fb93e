package coop

import (
	"math"
	"strings"
	"testing"
)

func TestContextWords(t *testing.T) {
	tests := []struct {
		ctxInit string
		nCtx    int
		m       int64
		words   string
		errSub  string
	}{
		{ctxInit: "", nCtx: 4, m: 4, words: "X X X X"},
		{ctxInit: "", nCtx: 1, m: 1, words: "X"},
		{ctxInit: "a photo of a", nCtx: 16, m: 4, words: "a photo of a"}, // nCtx ignored
		{ctxInit: "a_photo  of_a", m: 4, words: "a photo of a"},
		{ctxInit: " _ ", errSub: `ctx_init " _ " has no words`},
		{ctxInit: "", nCtx: 0, errSub: "n_ctx = 0"},
	}
	for _, tc := range tests {
		m, words, err := ContextWords(tc.ctxInit, tc.nCtx)
		if tc.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Errorf("ContextWords(%q, %d): error %v, want one containing %q", tc.ctxInit, tc.nCtx, err, tc.errSub)
			}
			continue
		}
		if err != nil || m != tc.m || words != tc.words {
			t.Errorf("ContextWords(%q, %d) = %d, %q, %v; want %d, %q", tc.ctxInit, tc.nCtx, m, words, err, tc.m, tc.words)
		}
	}
}

// ContextRows must return the embedding rows of the words' own tokens, in
// order, which the fake text encoder computes in closed form.
func TestContextRows(t *testing.T) {
	lockThread(t)
	f := newFakeText(16, 6)
	rows, err := ContextRows(f, "a photo of a", 4, 6)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4*6 {
		t.Fatalf("got %d values, want 4 rows of 6", len(rows))
	}
	for i, w := range []string{"a", "photo", "of", "a"} {
		for k, want := range f.embedding(toyVocab[w]) {
			if got := float64(rows[i*6+k]); math.Abs(got-want) > 1e-7 {
				t.Errorf("row %d (%q) [%d] = %g, want %g", i, w, k, got, want)
			}
		}
	}
	if _, err := ContextRows(f, "a photo of a", 4, 8); err == nil || !strings.Contains(err.Error(), "token embedding width 6, prompts' 8") {
		t.Errorf("prompts of width 8: error %v, want one naming both widths", err)
	}
	if _, err := ContextRows(f, "a close-up photo", 3, 6); err == nil || !strings.Contains(err.Error(), "3 words but 4 tokens") {
		t.Errorf("a hyphenated word (two tokens): error %v, want one naming 3 words but 4 tokens", err)
	}
	if _, err := ContextRows(f, "a dog", 2, 6); err == nil || !strings.Contains(err.Error(), "ctx_init") {
		t.Errorf("an unknown word: error %v, want one naming ctx_init", err)
	}
}
