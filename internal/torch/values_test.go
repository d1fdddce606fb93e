package torch

import (
	"slices"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestValues reads tensors of several dtypes, a non-contiguous view and an
// empty tensor into each supported Go element type.
func TestValues(t *testing.T) {
	base := ts.MustOfSlice([]float32{0, 1.5, 2, -3, 4, 5}).MustView([]int64{2, 3}, true)
	defer base.MustDrop()
	transposed := base.MustT(false) // [3, 2], not contiguous
	defer transposed.MustDrop()
	ints := ts.MustOfSlice([]int64{7, -2, 9})
	defer ints.MustDrop()
	empty := ts.MustZeros([]int64{0, 4}, gotch.Float, gotch.CPU)
	defer empty.MustDrop()

	f32, err := Values[float32](base)
	if err != nil || !slices.Equal(f32, []float32{0, 1.5, 2, -3, 4, 5}) {
		t.Errorf("float32 from float32: %v, %v", f32, err)
	}
	ft, err := Values[float32](transposed)
	if err != nil || !slices.Equal(ft, []float32{0, -3, 1.5, 4, 2, 5}) {
		t.Errorf("float32 from transposed float32: %v, %v; want row-major [0 -3 1.5 4 2 5]", ft, err)
	}
	f64, err := Values[float64](transposed)
	if err != nil || !slices.Equal(f64, []float64{0, -3, 1.5, 4, 2, 5}) {
		t.Errorf("float64 from transposed float32: %v, %v; want row-major [0 -3 1.5 4 2 5]", f64, err)
	}
	i64, err := Values[int64](base)
	if err != nil || !slices.Equal(i64, []int64{0, 1, 2, -3, 4, 5}) {
		t.Errorf("int64 from float32 (truncating): %v, %v", i64, err)
	}
	back, err := Values[float32](ints)
	if err != nil || !slices.Equal(back, []float32{7, -2, 9}) {
		t.Errorf("float32 from int64: %v, %v", back, err)
	}
	none, err := Values[float32](empty)
	if err != nil || len(none) != 0 {
		t.Errorf("empty tensor: %v, %v", none, err)
	}
	if base.DType() != gotch.Float || ints.DType() != gotch.Int64 {
		t.Errorf("inputs changed dtype: %v, %v", base.DType(), ints.DType())
	}
}
