package train

import (
	"fmt"
	"testing"
)

// groupsCost is the cost LengthGroups minimizes: Σ over groups of size ×
// longest (the last, lens being ascending) + overhead.
func groupsCost(lens []int64, groups [][2]int, overhead int64) int64 {
	var c int64
	for _, g := range groups {
		c += int64(g[1]-g[0])*lens[g[1]-1] + overhead
	}
	return c
}

// bruteForceCost enumerates every split of n prompts into consecutive
// groups of at most max (2^(n−1) splits) and returns the least cost.
func bruteForceCost(lens []int64, max int, overhead int64) int64 {
	n := len(lens)
	best := int64(-1)
	for mask := 0; mask < 1<<(n-1); mask++ {
		var groups [][2]int
		lo, ok := 0, true
		for i := 1; i <= n; i++ {
			if i == n || mask&(1<<(i-1)) != 0 {
				if max > 0 && i-lo > max {
					ok = false
					break
				}
				groups = append(groups, [2]int{lo, i})
				lo = i
			}
		}
		if c := groupsCost(lens, groups, overhead); ok && (best < 0 || c < best) {
			best = c
		}
	}
	return best
}

// TestLengthGroupsIsOptimal checks LengthGroups against every possible
// split: its groups cover the prompts in order, none is larger than max,
// and their cost is the least of all splits.
func TestLengthGroupsIsOptimal(t *testing.T) {
	cases := []struct {
		lens     []int64
		max      int
		overhead int64
	}{
		{[]int64{5}, 0, 6},
		{[]int64{3, 3, 4, 5, 5, 5, 6, 6, 6, 8}, 0, 6},
		{[]int64{3, 3, 4, 5, 5, 5, 6, 6, 6, 8}, 0, 48},
		{[]int64{3, 3, 4, 5, 5, 5, 6, 6, 6, 8}, 3, 6},
		{[]int64{1, 2, 3, 10, 11, 30, 31, 60}, 0, 1},
		{[]int64{1, 2, 3, 10, 11, 30, 31, 60}, 2, 100},
		{[]int64{2, 2, 2, 2, 2, 2, 2}, 0, 0},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%v/max=%d/overhead=%d", c.lens, c.max, c.overhead)
		groups := LengthGroups(c.lens, c.max, c.overhead)
		next := 0
		for _, g := range groups {
			if g[0] != next || g[1] <= g[0] || (c.max > 0 && g[1]-g[0] > c.max) {
				t.Fatalf("%s: groups %v do not split the prompts in order into groups of at most %d", name, groups, c.max)
			}
			next = g[1]
		}
		if next != len(c.lens) {
			t.Fatalf("%s: groups %v cover %d of %d prompts", name, groups, next, len(c.lens))
		}
		if got, want := groupsCost(c.lens, groups, c.overhead), bruteForceCost(c.lens, c.max, c.overhead); got != want {
			t.Errorf("%s: groups %v cost %d, the best split costs %d", name, groups, got, want)
		}
	}
}
