package torch

import (
	"runtime"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestStubbedMatchesTheLibrary checks Stubbed against what the library
// does: scaled_dot_product_attention is stubbed exactly when calling it
// fails with the stub's error (libtorch 1.13 lacks it, 2.x has it).
func TestStubbedMatchesTheLibrary(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q := ts.MustOnes([]int64{1, 1, 2, 4}, gotch.Float, gotch.CPU)
	defer q.MustDrop()
	y, err := ts.ScaledDotProductAttention(q, q, q, &ts.Tensor{}, 0, false, nil)
	missing := err != nil && strings.Contains(err.Error(), "is not available in libtorch")
	if err != nil && !missing {
		t.Fatalf("scaled_dot_product_attention failed otherwise: %v", err)
	}
	if y != nil {
		y.MustDrop()
	}
	if got := Stubbed("atg_scaled_dot_product_attention"); got != missing {
		t.Errorf("Stubbed(atg_scaled_dot_product_attention) = %v, but calling it says missing = %v", got, missing)
	}
	if Stubbed("atg_no_such_wrapper") {
		t.Error("a name that is no wrapper reported as stubbed")
	}
}
