package suggest

import "testing"

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"", "ab", 2},
		{"kitten", "sitting", 3},
		{"flaw", "lawn", 2},
		{"rn50", "rn101", 2},
		{"ab", "ba", 2},
		{"épochs", "epochs", 1}, // runes, not bytes
		{"vit-b/32", "vit-b/32", 0},
	}
	for _, tc := range tests {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Distance(tc.b, tc.a); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetry)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestNearest(t *testing.T) {
	tests := []struct {
		s          string
		candidates []string
		index      int
		dist       int
	}{
		{"epoch", []string{"lr", "epochs", "batch_size"}, 1, 1},
		{"x", nil, -1, -1},
		{"ab", []string{"ax", "xb", "ab"}, 2, 0},
		{"ab", []string{"ax", "xb"}, 0, 1}, // tie: the first wins
		{"zzzz", []string{"a"}, 0, 4},      // far, but still the nearest
	}
	for _, tc := range tests {
		i, d := Nearest(tc.s, tc.candidates)
		if i != tc.index || d != tc.dist {
			t.Errorf("Nearest(%q, %q) = %d, %d, want %d, %d", tc.s, tc.candidates, i, d, tc.index, tc.dist)
		}
	}
}
