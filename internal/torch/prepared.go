package torch

import (
	"slices"

	"github.com/sugarme/gotch"
)

// Libtorch describes the libtorch the build links against, as `make setup`
// (gotchprep) found it, e.g. "libtorch 2.11.0 at .../torch, CPU". It is
// written into the prepared gotch copy, so each preparation (go.work or a
// GOWORK of its own) reports its own libtorch.
const Libtorch = gotch.PreparedLibtorch

// GotchVersion is the gotch release the prepared copy was made from.
const GotchVersion = gotch.PreparedGotchVersion

// StubbedWrappers is the number of gotch wrappers replaced by stubs because
// they do not compile or link against this libtorch.
const StubbedWrappers = gotch.PreparedStubbedWrappers

// Stubbed reports whether gotch's C wrapper of that name (such as
// "atg_scaled_dot_product_attention") was replaced by a stub because this
// libtorch lacks the operation, so that callers can take another path
// without trying it.
func Stubbed(wrapper string) bool {
	_, found := slices.BinarySearch(gotch.PreparedStubs(), wrapper)
	return found
}
