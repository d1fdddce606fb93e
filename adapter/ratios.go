package adapter

import (
	"fmt"
	"strconv"
)

// RatioMode says how CLIP-Adapter's residual ratios α and β are set: the
// TOML key learn_ratios takes false (RatiosFixed), true (RatiosScalar) or
// "hypernet" (RatiosHypernet); "fixed" and "scalar" are accepted as well.
type RatioMode string

// Residual-ratio modes.
const (
	// RatiosFixed uses Alpha and Beta as given (learn_ratios = false; also
	// the zero value "").
	RatiosFixed RatioMode = "fixed"
	// RatiosScalar learns one α and one β, each the sigmoid of a trained
	// logit started at logit(Alpha), logit(Beta) (learn_ratios = true).
	RatiosScalar RatioMode = "scalar"
	// RatiosHypernet predicts α and β per image with a small network from
	// the image feature and the class text features (learn_ratios =
	// "hypernet"; see CLIPAdapter).
	RatiosHypernet RatioMode = "hypernet"
)

// LearnScalars returns RatiosScalar for true and RatiosFixed for false.
func LearnScalars(learn bool) RatioMode {
	if learn {
		return RatiosScalar
	}
	return RatiosFixed
}

// Learned says whether the ratios are trained (scalar or hypernet).
func (r RatioMode) Learned() bool { return r == RatiosScalar || r == RatiosHypernet }

// UnmarshalTOML implements toml.Unmarshaler: a boolean or one of the mode
// names.
func (r *RatioMode) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case bool:
		*r = LearnScalars(x)
		return nil
	case string:
		return r.UnmarshalText([]byte(x))
	}
	return fmt.Errorf("learn_ratios = %v: want false, true or \"hypernet\"", v)
}

// UnmarshalText accepts the mode names and "true"/"false" (for -set
// method.learn_ratios=hypernet and similar).
func (r *RatioMode) UnmarshalText(b []byte) error {
	switch s := RatioMode(b); s {
	case "", RatiosFixed, "false":
		*r = RatiosFixed
	case RatiosScalar, "true":
		*r = RatiosScalar
	case RatiosHypernet:
		*r = RatiosHypernet
	default:
		return fmt.Errorf("learn_ratios = %s: want false, true or \"hypernet\"", strconv.Quote(string(b)))
	}
	return nil
}

// MarshalTOML implements toml.Marshaler: false, true or "hypernet", so a
// resolved config.toml reads as the files do.
func (r RatioMode) MarshalTOML() ([]byte, error) {
	switch r {
	case "", RatiosFixed:
		return []byte("false"), nil
	case RatiosScalar:
		return []byte("true"), nil
	}
	return []byte(strconv.Quote(string(r))), nil
}
