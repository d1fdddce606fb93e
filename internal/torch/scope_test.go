package torch

import (
	"errors"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func dropped(t *ts.Tensor) bool { return t.Ctensor() == nil }

// scoped runs a small computation that fails at step failAt (0: never)
// and returns the tensors it created, its result and its error.
func scoped(t *testing.T, failAt int) (made []*ts.Tensor, out *ts.Tensor, err error) {
	t.Helper()
	x, err := ts.Ones([]int64{2, 3}, gotch.Float, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	made = append(made, x)
	var s Scope
	defer s.Drop()
	s.Keep(x)
	step := func(i int, what string) func(*ts.Tensor, error) (*ts.Tensor, error) {
		return func(y *ts.Tensor, err error) (*ts.Tensor, error) {
			if y != nil {
				made = append(made, y)
			}
			if i == failAt {
				// An op that failed: gotch returns no tensor.
				if y != nil {
					y.Drop()
				}
				return s.Op(what)(nil, errors.New("boom\nC++ backtrace line\nmore"))
			}
			return s.Op(what)(y, err)
		}
	}
	a, err := step(1, "double")(x.MulScalar(ts.FloatScalar(2), false))
	if err != nil {
		return made, nil, err
	}
	b, err := step(2, "transpose")(a.Transpose(0, 1, false))
	if err != nil {
		return made, nil, err
	}
	c, err := step(3, "sum")(b.Sum(gotch.Float, false))
	if err != nil {
		return made, nil, err
	}
	return made, s.Release(c), nil
}

func TestScopeDropsOnEveryReturnPath(t *testing.T) {
	for failAt := 0; failAt <= 3; failAt++ {
		made, out, err := scoped(t, failAt)
		if failAt == 0 {
			if err != nil {
				t.Fatalf("no failure: %v", err)
			}
			if dropped(out) {
				t.Fatal("the released result was dropped")
			}
			v, err := Values[float64](out)
			if err != nil || len(v) != 1 || v[0] != 12 {
				t.Errorf("result = %v, %v; want [12]", v, err)
			}
			out.Drop()
			made = made[:len(made)-1] // the result, checked above
		} else if err == nil || out != nil {
			t.Fatalf("failure at step %d: got %v, %v; want an error and no tensor", failAt, out, err)
		}
		for i, m := range made {
			if !dropped(m) {
				t.Errorf("failure at step %d: tensor %d was not dropped", failAt, i)
			}
		}
	}
}

func TestScopeOpWrapsTheError(t *testing.T) {
	var s Scope
	defer s.Drop()
	cause := errors.New("shape mismatch\nException raised from ...\n#0 frame")
	y, err := s.Op("transpose keys")(nil, cause)
	if y != nil || err == nil {
		t.Fatalf("Op on a failed call = %v, %v; want nil and an error", y, err)
	}
	if got := err.Error(); !strings.HasPrefix(got, "transpose keys: ") || strings.Contains(got, "\n") {
		t.Errorf("error = %q, want one line starting with the operation", got)
	}
	if !errors.Is(err, cause) {
		t.Error("the wrapped error does not unwrap to the cause")
	}
	if s.Len() != 0 {
		t.Errorf("a failed op recorded %d tensors", s.Len())
	}
}

func TestScopeKeepReleaseAndReuse(t *testing.T) {
	var s Scope
	if s.Keep(nil) != nil || s.Len() != 0 {
		t.Fatal("Keep(nil) recorded something")
	}
	a, err := ts.Zeros([]int64{2}, gotch.Float, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts.Zeros([]int64{2}, gotch.Float, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	s.Keep(a)
	s.Keep(b)
	if s.Release(a) != a || s.Len() != 1 {
		t.Fatalf("after Release the scope holds %d tensors, want 1", s.Len())
	}
	s.Release(a) // not held any more: no effect
	s.Drop()
	if dropped(a) || !dropped(b) {
		t.Fatalf("after Drop: released dropped = %v, kept dropped = %v; want false, true", dropped(a), dropped(b))
	}
	s.Keep(a)
	s.Drop()
	if !dropped(a) || s.Len() != 0 {
		t.Error("a scope used again after Drop did not drop its new tensor")
	}
	s.Drop() // dropping twice is harmless
}

func TestCopyIntoReturnsErrors(t *testing.T) {
	dst, err := ts.Zeros([]int64{2, 2}, gotch.Float, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Drop()
	src, err := ts.Ones([]int64{2, 2}, gotch.Double, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Drop()
	if err := CopyInto("copy", dst, src); err != nil {
		t.Fatal(err)
	}
	if v, _ := Values[float32](dst); v[0] != 1 || v[3] != 1 {
		t.Errorf("after CopyInto dst = %v, want ones", v)
	}
	bad, err := ts.Ones([]int64{3}, gotch.Float, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Drop()
	err = CopyInto("copy parameter w", dst, bad)
	if err == nil || !strings.HasPrefix(err.Error(), "copy parameter w: ") {
		t.Errorf("CopyInto with a mismatched shape: err = %v, want an error naming the copy", err)
	}
}
