package torch

import (
	"slices"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestNewParam checks that a parameter holds the given values in the given
// shape, requires gradients, is a leaf (backward fills its gradient), and
// that FromFloats rejects a shape that does not fit the values.
func TestNewParam(t *testing.T) {
	data := []float32{1, 2, 3, 4, 5, 6}
	p, err := NewParam(data, []int64{2, 3}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Drop()
	shape, err := p.Size()
	if err != nil || !slices.Equal(shape, []int64{2, 3}) {
		t.Fatalf("shape %v (%v), want [2 3]", shape, err)
	}
	got, err := Values[float32](p)
	if err != nil || !slices.Equal(got, data) {
		t.Fatalf("values %v (%v), want %v", got, err, data)
	}
	if rg, err := p.RequiresGrad(); err != nil || !rg {
		t.Fatalf("requires grad %v (%v), want true", rg, err)
	}
	sq, err := p.Mul(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Drop()
	sum, err := sq.Sum(gotch.Float, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sum.Drop()
	if err := sum.Backward(); err != nil {
		t.Fatal(err)
	}
	g, err := p.Grad(false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Drop()
	gv, err := Values[float32](g)
	if err != nil || !slices.Equal(gv, []float32{2, 4, 6, 8, 10, 12}) {
		t.Errorf("gradient of Σp² %v (%v), want 2p = [2 4 6 8 10 12]", gv, err)
	}
	if _, err := FromFloats([]float32{1, 2, 3}, []int64{2, 2}, gotch.CPU); err == nil {
		t.Error("FromFloats accepted 3 values for shape [2 2]")
	}
}

// TestCopy checks that a copy has the values, shape and dtype of its
// source and its own storage: changing the source in place leaves it as it
// was.
func TestCopy(t *testing.T) {
	x, err := FromFloats([]float32{1, 2, 3, 4}, []int64{2, 2}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Drop()
	c, err := Copy("copy", x)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Drop()
	if err := x.Fill_(ts.FloatScalar(9)); err != nil {
		t.Fatal(err)
	}
	got, err := Values[float32](c)
	shape, _ := c.Size()
	if err != nil || !slices.Equal(got, []float32{1, 2, 3, 4}) || !slices.Equal(shape, []int64{2, 2}) || c.DType() != gotch.Float {
		t.Errorf("copy %v %v %v (%v) after the source was filled with 9, want [1 2 3 4] [2 2] float32", got, shape, c.DType(), err)
	}
}
