package clip

import (
	"fmt"
	"runtime"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
)

// Classify returns the logits logitScale · f̂ · weightsᵀ [N, C] of image
// features f [N, D] (normalised here) against classifier rows weights [C, D]
// (used as given, e.g. from zeroshot.Classifier). It runs in the caller's grad
// mode; inputs must be on one device and of one dtype.
func Classify(imageFeatures, weights *ts.Tensor, logitScale float64) (*ts.Tensor, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fs, err := imageFeatures.Size()
	if err != nil {
		return nil, torch.Err("classify", err)
	}
	ws, err := weights.Size()
	if err != nil {
		return nil, torch.Err("classify", err)
	}
	if len(fs) != 2 || len(ws) != 2 || fs[1] != ws[1] {
		return nil, fmt.Errorf("clip: classify: features %v and classifier %v, want [N, D] and [C, D]", fs, ws)
	}
	var s torch.Scope
	defer s.Drop()
	f, err := nn.Normalize(imageFeatures)
	if err != nil {
		return nil, err
	}
	s.Keep(f)
	wt, err := s.Op("classify")(weights.Transpose(0, 1, false))
	if err != nil {
		return nil, err
	}
	sim, err := s.Op("classify")(f.Matmul(wt, false))
	if err != nil {
		return nil, err
	}
	k := ts.FloatScalar(logitScale)
	defer k.Drop()
	out, err := sim.MulScalar(k, false)
	return out, torch.Err("classify", err)
}
