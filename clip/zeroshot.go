package clip

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/sugarme/gotch/ts"
)

// ClassifierWeights builds the zero-shot classifier of docs/methods.md §2: for
// each class c, prompts[c] holds the token ids [T_c, L] of its prompts (one
// row per template); their text features are L2-normalised, averaged and
// normalised again. The result is [C, EmbedDim] fp32 on the model's device.
// With one template per class this is the single-template classifier. It
// runs with gradients off.
func ClassifierWeights(m *Model, prompts []*ts.Tensor) (*ts.Tensor, error) {
	if len(prompts) == 0 {
		return nil, errors.New("clip: zero-shot classifier: no classes")
	}
	var out *ts.Tensor
	err := inference(func() error {
		var s torch.Scope
		defer s.Drop()
		rows := make([]*ts.Tensor, len(prompts))
		for c, p := range prompts {
			if p == nil {
				return fmt.Errorf("clip: zero-shot classifier: class %d has no prompts", c)
			}
			g, err := m.EncodeText(p)
			if err != nil {
				return fmt.Errorf("clip: zero-shot classifier: class %d: %w", c, err)
			}
			s.Keep(g)
			gn, err := nn.Normalize(g)
			if err != nil {
				return err
			}
			s.Keep(gn)
			mean, err := s.Op("mean")(gn.MeanDim([]int64{0}, true, gn.DType(), false))
			if err != nil {
				return err
			}
			if rows[c], err = nn.Normalize(mean); err != nil {
				return err
			}
			s.Keep(rows[c])
		}
		var err error
		out, err = ts.Cat(rows, 0)
		return torch.Err("zero-shot classifier", err)
	})
	return out, err
}

// Classify returns the logits logitScale · f̂ · weightsᵀ [N, C] of image
// features f [N, D] (normalised here) against classifier rows weights [C, D]
// (used as given, e.g. from ClassifierWeights). It runs in the caller's grad
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
