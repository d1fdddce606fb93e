package train

import (
	"fmt"
	"strings"

	"github.com/sugarme/gotch/ts"
)

// Restorer is implemented by methods whose inference state holds tensors
// that are neither Parameters nor rebuilt by Init from the Context alone:
// what Init or Fit computed from the training features (Tip-Adapter's
// cache, the linear probe's fitted classifier). A finished run saves them
// (WriteModel) so that it classifies without its training data.
type Restorer interface {
	// Frozen returns those tensors, named (shared, not copies).
	Frozen() []Param
	// Restore sets the method up for inference from ctx and the tensors
	// Frozen returned, in place of Init and Fit. It copies what it keeps;
	// the caller frees frozen. Parameters are copied in afterwards.
	Restore(ctx *Context, frozen map[string]*ts.Tensor) error
}

// TextBased is implemented by methods whose classifier is built from the
// class names by the text encoder (zero-shot CLIP, CoOp with a shared
// context, CLIP-Adapter): set up with other class names, they classify
// among those, which is how CoOp evaluates on ImageNet's variants. Methods
// that do not implement it, or return false, are tied to the labels they
// were trained on; on another dataset their logits are restricted to the
// classes the two share.
type TextBased interface {
	TextBased() bool
}

// IsTextBased reports whether m implements TextBased and returns true.
func IsTextBased(m Method) bool {
	t, ok := m.(TextBased)
	return ok && t.TextBased()
}

// Prefixes of the tensor names in a model file.
const (
	modelParamPrefix  = "param."
	modelFrozenPrefix = "frozen."
)

// WriteModel writes what m needs at inference to path, atomically: its
// Parameters ("param.<name>"), the Frozen tensors of a Restorer
// ("frozen.<name>") and meta, a JSON-encodable header (the caller's
// description: classes, backbone, the Saver's Extra).
func WriteModel(path string, meta any, m Method) error {
	tensors := prefixed(modelParamPrefix, m.Parameters())
	if r, ok := m.(Restorer); ok {
		tensors = append(tensors, prefixed(modelFrozenPrefix, r.Frozen())...)
	}
	return WriteTensors(path, meta, tensors)
}

// RestoreMethod sets up m, freshly built, for inference from the tensors
// of a model file (ReadTensors of a WriteModel file): Restore for a
// Restorer, otherwise Init without training views; then the parameters are
// copied in and, for a Saver, extra is restored. A missing tensor or a
// shape that differs from the method's is an error naming it. The caller
// frees tensors.
func RestoreMethod(m Method, ctx *Context, tensors map[string]*ts.Tensor, extra map[string]float64) error {
	if r, ok := m.(Restorer); ok {
		frozen := map[string]*ts.Tensor{}
		for name, t := range tensors {
			if rest, ok := strings.CutPrefix(name, modelFrozenPrefix); ok {
				frozen[rest] = t
			}
		}
		if err := r.Restore(ctx, frozen); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	} else if err := m.Init(ctx, nil); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := CopyParameters(m.Parameters(), tensors, modelParamPrefix); err != nil {
		return err
	}
	if s, ok := m.(Saver); ok && extra != nil {
		if err := s.SetExtra(extra); err != nil {
			return err
		}
	}
	return nil
}
