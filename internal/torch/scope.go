package torch

import (
	"runtime"
	"slices"

	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// Scope owns the intermediate tensors of one computation, so that a single
// deferred Drop frees them on every return path, error or not:
//
//	var s torch.Scope
//	defer s.Drop()
//	y, err := s.Op("scale")(x.MulScalar(k, false))
//	if err != nil {
//		return nil, err // y's predecessors are freed by the deferred Drop
//	}
//	out, err := y.Add(x, false) // the result is not kept: the caller owns it
//	return out, Err("add", err)
//
// Record tensors with Keep or through the function Op returns; hand one
// over to the caller with Release. Calls that take del = true drop their
// receiver themselves, so pass del = false for tensors held by a scope.
// The zero value is ready to use; a Scope is not safe for concurrent use.
type Scope struct{ held []*ts.Tensor }

// Keep records t, to be dropped by Drop, and returns it. A nil t is
// ignored.
func (s *Scope) Keep(t *ts.Tensor) *ts.Tensor {
	if t != nil {
		s.held = append(s.held, t)
	}
	return t
}

// Op returns a function that takes the two results of a gotch call: it
// records the tensor and passes it on, or, when the call failed, returns
// the error wrapped by Err with what (the operation, in words):
//
//	h, err := s.Op("transpose keys")(k.Transpose(0, 1, false))
func (s *Scope) Op(what string) func(*ts.Tensor, error) (*ts.Tensor, error) {
	return func(t *ts.Tensor, err error) (*ts.Tensor, error) {
		if err != nil {
			if t != nil {
				t.Drop()
			}
			return nil, Err(what, err)
		}
		return s.Keep(t), nil
	}
}

// Release stops recording t (when it was recorded) and returns it: the
// caller now owns it, and Drop leaves it alone.
func (s *Scope) Release(t *ts.Tensor) *ts.Tensor {
	if i := slices.Index(s.held, t); i >= 0 {
		s.held = slices.Delete(s.held, i, i+1)
	}
	return t
}

// Drop frees every recorded tensor and forgets them; the scope can be used
// again.
func (s *Scope) Drop() {
	for _, t := range s.held {
		t.Drop()
	}
	s.held = nil
}

// Len returns how many tensors the scope holds.
func (s *Scope) Len() int { return len(s.held) }

// CopyInto copies src into dst in place (converting dtype and device; the
// shapes must be broadcastable), like gotch's Tensor.Copy_, but returns
// libtorch's error, wrapped with what, instead of ending the process.
// Gradients are recorded when grad mode is on: copy parameters inside
// NoGrad.
func CopyInto(what string, dst, src *ts.Tensor) error {
	defer runtime.KeepAlive(dst)
	defer runtime.KeepAlive(src)
	lib.AtCopy_(lib.Ctensor(dst.Ctensor()), lib.Ctensor(src.Ctensor()))
	return Err(what, ts.TorchErr())
}
