package experiment

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// meanEncoder maps images [B,3,R,R] to their per-channel means [B,3].
type meanEncoder struct{ calls int }

func (e *meanEncoder) EncodeImage(x *ts.Tensor) (*ts.Tensor, error) {
	e.calls++
	return x.MeanDim([]int64{2, 3}, false, gotch.Float, false)
}

type sliceBatches struct{ batches []*ImageBatch }

func (s *sliceBatches) Next() (*ImageBatch, error) {
	if len(s.batches) == 0 {
		return nil, io.EOF
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return b, nil
}
func (s *sliceBatches) Close() error { return nil }

func TestEncodeImagesAndCache(t *testing.T) {
	const r = 2
	mk := func(vals []float32, labels []int64) *ImageBatch {
		var px []float32
		for _, v := range vals {
			for i := 0; i < 3*r*r; i++ {
				px = append(px, v)
			}
		}
		return &ImageBatch{Pixels: px, Labels: labels, N: len(vals)}
	}
	enc := &meanEncoder{}
	it := &sliceBatches{batches: []*ImageBatch{mk([]float32{1, 2}, []int64{0, 1}), mk([]float32{3}, []int64{1})}}
	f, err := EncodeImages(context.Background(), enc, it, r, gotch.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.X.MustSize(); got[0] != 3 || got[1] != 3 || enc.calls != 2 {
		t.Fatalf("features %v after %d calls", got, enc.calls)
	}
	if v := f.X.Float64Values(); v[0] != 1 || v[3] != 2 || v[6] != 3 {
		t.Errorf("features %v", v)
	}
	cache := FeatureCache{Dir: t.TempDir()}
	key := FeatureKey{Model: "m", Dataset: "d", Split: "train", Items: ItemsHash([]string{"a", "b", "c"}, []int64{0, 1, 1}), View: 2}
	labels := []int64{0, 1, 1}
	if _, ok, err := cache.Load(key, labels, gotch.CPU); ok || err != nil {
		t.Fatalf("empty cache: ok=%v err=%v", ok, err)
	}
	if err := cache.Store(key, f); err != nil {
		t.Fatal(err)
	}
	g, ok, err := cache.Load(key, labels, gotch.CPU)
	if !ok || err != nil {
		t.Fatalf("cached load: ok=%v err=%v", ok, err)
	}
	if g.Len() != 3 || g.Y[2] != 1 || g.X.Float64Values()[6] != 3 {
		t.Errorf("cached features differ: %v %v", g.Y, g.X.Float64Values())
	}
	other := key
	other.View = 3
	if _, ok, _ := cache.Load(other, labels, gotch.CPU); ok {
		t.Error("a different view hit the cache")
	}

	// Fault injection: every kind of damage is reported by path, never
	// used, never a crash.
	path := cache.path(key)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		labels []int64
		want   string
	}{
		{"float bytes changed", func(b []byte) []byte { b[len(b)-40] ^= 0x01; return b }, labels, "corrupt"},
		{"shape in the header changed", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"shape":[3,3]`), []byte(`"shape":[9,3]`), 1)
		}, labels, "corrupt"},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, labels, "corrupt"},
		{"labels of other items", func(b []byte) []byte { return b }, []int64{0, 1, 0}, "want 3 rows with the items' labels"},
		{"fewer items", func(b []byte) []byte { return b }, []int64{0, 1}, "want 2 rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, tc.damage(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			f, ok, err := cache.Load(key, tc.labels, gotch.CPU)
			if ok || f != nil || err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ok=%v err=%v; want an error naming %s and %q", ok, err, path, tc.want)
			}
		})
	}
}
