package torch

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// FromFloats returns data as a float32 tensor of the given shape on dev.
// This is the toolkit's one way to make a tensor from Go values.
func FromFloats(data []float32, shape []int64, dev gotch.Device) (*ts.Tensor, error) {
	x, err := ts.OfSlice(data)
	if err != nil {
		return nil, Err("create tensor", err)
	}
	y, err := x.View(shape, true)
	if err != nil {
		return nil, Err(fmt.Sprintf("view as %v", shape), err)
	}
	if dev == gotch.CPU {
		return y, nil
	}
	z, err := y.To(dev, true)
	return z, Err("move to "+DeviceName(dev), err)
}

// NewParam returns a learned parameter: a float32 leaf tensor of data
// with the given shape on dev, with its own storage, that requires
// gradients.
func NewParam(data []float32, shape []int64, dev gotch.Device) (*ts.Tensor, error) {
	x, err := FromFloats(data, shape, dev)
	if err != nil {
		return nil, err
	}
	defer x.Drop()
	z, err := ts.Zeros(shape, gotch.Float, dev)
	if err != nil {
		return nil, Err("allocate parameter", err)
	}
	// Neither tensor requires gradients: the copy records none.
	if err := CopyInto("initialize parameter", z, x); err != nil {
		z.Drop()
		return nil, err
	}
	p, err := z.SetRequiresGrad(true, false)
	z.Drop() // p is a second handle on the same storage
	return p, Err("require gradients", err)
}

// Copy returns a copy of x with its own storage (not a view of x's), on
// x's device with x's dtype. Called with gradients disabled it has no
// autograd history; what names the copy in errors.
func Copy(what string, x *ts.Tensor) (*ts.Tensor, error) {
	z, err := x.ZerosLike(false)
	if err != nil {
		return nil, Err(what, err)
	}
	if err := CopyInto(what, z, x); err != nil {
		z.Drop()
		return nil, err
	}
	return z, nil
}
