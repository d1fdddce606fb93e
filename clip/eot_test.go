package clip

import (
	"slices"
	"testing"
)

func TestEndOfTextPositions(t *testing.T) {
	tests := []struct {
		ids    []int64
		length int64
		want   []int64
	}{
		{[]int64{49406, 320, 49407, 0, 49406, 49407, 0, 0}, 4, []int64{2, 1}},
		{[]int64{5, 9, 9, 1}, 4, []int64{1}},       // ties: the first
		{[]int64{1, 2, 3, 4, 5}, 2, []int64{1, 1}}, // a partial last row is ignored
		{[]int64{1, 2}, 0, nil},                    // no rows
		{nil, 3, []int64{}},
	}
	for _, tt := range tests {
		if got := EndOfTextPositions(tt.ids, tt.length); !slices.Equal(got, tt.want) {
			t.Errorf("EndOfTextPositions(%v, %d) = %v, want %v", tt.ids, tt.length, got, tt.want)
		}
	}
}
