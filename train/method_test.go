package train

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// scaleText is a TextEncoder whose only working method is LogitScale.
type scaleText struct {
	TextEncoder
	scale float64
	err   error
}

func (s scaleText) LogitScale() (float64, error) { return s.scale, s.err }

// TestLogitScaleOf checks that a logit scale that cannot be read, or is
// not a positive finite number, is an error naming it, and that a good
// one is returned as it is.
func TestLogitScaleOf(t *testing.T) {
	for _, c := range []struct {
		text scaleText
		want string // "" for success
	}{
		{scaleText{scale: 100}, ""},
		{scaleText{scale: 1.5}, ""},
		{scaleText{err: errors.New("tensor gone")}, "tensor gone"},
		{scaleText{scale: 0}, "logit scale is 0"},
		{scaleText{scale: -3}, "logit scale is -3"},
		{scaleText{scale: math.NaN()}, "logit scale is NaN"},
		{scaleText{scale: math.Inf(1)}, "logit scale is +Inf"},
	} {
		got, err := LogitScaleOf(c.text)
		switch {
		case c.want == "" && (err != nil || got != c.text.scale):
			t.Errorf("LogitScaleOf(%g) = %g, %v; want %g", c.text.scale, got, err, c.text.scale)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("LogitScaleOf(%g, %v) error %v, want one containing %q", c.text.scale, c.text.err, err, c.want)
		}
	}
}
