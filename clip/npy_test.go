package clip

import (
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/internal/npy"
)

// npyArray is a reference array from testdata, held as float64.
type npyArray struct {
	shape []int64
	data  []float64
}

// mustNpy reads testdata/<name>.npy (float32 or int64, as gen.py writes).
func mustNpy(t *testing.T, name string) *npyArray {
	t.Helper()
	return mustNpyFile(t, "testdata/"+name+".npy")
}

// mustNpyFile reads a float32 or int64 .npy file.
func mustNpyFile(t *testing.T, path string) *npyArray {
	t.Helper()
	a := &npyArray{}
	shape, f, err := npy.Read(path)
	if err != nil && strings.Contains(err.Error(), "not floating point") {
		var ints []int64
		if shape, ints, err = npy.ReadInt64(path); err == nil {
			for _, v := range ints {
				a.data = append(a.data, float64(v))
			}
		}
	} else {
		for _, v := range f {
			a.data = append(a.data, float64(v))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	a.shape = make([]int64, len(shape))
	for i, s := range shape {
		a.shape[i] = int64(s)
	}
	return a
}

func (a *npyArray) ints() []int64 {
	out := make([]int64, len(a.data))
	for i, v := range a.data {
		out[i] = int64(v)
	}
	return out
}

func (a *npyArray) float32s() []float32 {
	out := make([]float32, len(a.data))
	for i, v := range a.data {
		out[i] = float32(v)
	}
	return out
}
