package torch

import (
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Values copies the elements of t, converted to T, into a new Go slice in
// row-major order. t may live on any device and need not be contiguous; it
// is left unchanged. This is the toolkit's one way to read tensor values.
func Values[T float32 | float64 | int64](t *ts.Tensor) ([]T, error) {
	var want gotch.DType
	switch any(*new(T)).(type) {
	case float32:
		want = gotch.Float
	case float64:
		want = gotch.Double
	case int64:
		want = gotch.Int64
	}
	src := t
	if t.DType() != want {
		c, err := t.Totype(want, false)
		if err != nil {
			return nil, Err("read values", err)
		}
		defer c.Drop()
		src = c
	}
	// Not src.Numel(): it ends the process when the shape cannot be read.
	shape, err := src.Size()
	if err != nil {
		return nil, Err("read values", err)
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	out := make([]T, n)
	if len(out) == 0 {
		return out, nil
	}
	if err := src.CopyData(out, uint(len(out))); err != nil {
		return nil, Err("read values", err)
	}
	return out, nil
}
