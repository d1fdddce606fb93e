package probe

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

// drop frees tensors, skipping nil ones.
func drop(tensors ...*ts.Tensor) {
	for _, t := range tensors {
		if t != nil {
			t.Drop()
		}
	}
}

// item reads the value of a one-element tensor and frees the tensor.
func item(t *ts.Tensor, what string) (float64, error) {
	defer t.Drop()
	v, err := t.Float64Value([]int64{})
	return v, torch.Err(what, err)
}

// dot returns the inner product of two tensors of the same shape, seen as
// flat vectors.
func dot(a, b *ts.Tensor) (float64, error) {
	p, err := a.Mul(b, false)
	if err != nil {
		return 0, torch.Err("dot: multiply", err)
	}
	s, err := p.Sum(gotch.Double, true)
	if err != nil {
		return 0, torch.Err("dot: sum", err)
	}
	return item(s, "dot")
}

// axpy sets y = y + alpha*x in place.
func axpy(y *ts.Tensor, alpha float64, x *ts.Tensor) error {
	ax, err := x.MulScalar(ts.FloatScalar(alpha), false)
	if err != nil {
		return torch.Err("axpy", err)
	}
	defer ax.Drop()
	return torch.Err("axpy", y.Add_(ax))
}

// shape2 returns the sizes of a 2-D tensor.
func shape2(t *ts.Tensor, what string) (rows, cols int64, err error) {
	s, err := t.Size()
	if err != nil {
		return 0, 0, torch.Err(what+": size", err)
	}
	if len(s) != 2 {
		return 0, 0, fmt.Errorf("%s: want a 2-D tensor, got shape %v", what, s)
	}
	return s[0], s[1], nil
}
