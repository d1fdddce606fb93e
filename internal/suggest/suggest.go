// Package suggest finds the valid name nearest to a mistyped one, for
// "did you mean ...?" hints in error messages.
package suggest

// Distance is the Levenshtein edit distance between a and b counted in
// runes: the fewest single-rune insertions, deletions and substitutions
// that turn a into b.
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// Nearest returns the index in candidates of the string closest to s by
// Distance (the first of equally close ones) and that distance, or -1, -1
// when there are no candidates. Whether the nearest is close enough to
// suggest is the caller's decision.
func Nearest(s string, candidates []string) (index, dist int) {
	index, dist = -1, -1
	for i, c := range candidates {
		if d := Distance(s, c); index < 0 || d < dist {
			index, dist = i, d
		}
	}
	return index, dist
}
