package loader

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"

	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/datasets"
)

// TestLoaderOrder checks the two conversion orders through the loader on
// non-RGB images (RGBA, palette with transparency, CMYK, 16-bit gray):
// the zero Options.Order is Dassl's (convert to RGB on decoding, as the
// dataset pipeline needs) and gives what preprocess.Open + Apply give;
// OrderOpenAI gives what ApplyOrdered gives on the image in its own mode;
// and the two differ on these images.
func TestLoaderOrder(t *testing.T) {
	dir := filepath.Join("..", "..", "clip", "preprocess", "testdata", "modes")
	d := &datasets.Dataset{Name: "modes", ImageDir: dir}
	names := []string{"rgba.png", "p_trns.png", "cmyk.jpg", "gray16.png"}
	items := make([]datasets.Item, len(names))
	for i, n := range names {
		items[i] = datasets.Item{Path: n, Label: i}
	}
	tr := preprocess.Test(29)
	per := 3 * 29 * 29
	load := func(o preprocess.Order) []float32 {
		l, err := New(d, items, Options{Transform: tr, BatchSize: len(items), Workers: 2, Order: o})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		out := slices.Clone(b.Pixels[:b.N*per])
		if _, err := l.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("second Next: %v, want EOF", err)
		}
		return out
	}
	dassl, openai := load(preprocess.OrderDassl), load(preprocess.OrderOpenAI)
	for i, n := range names {
		path := filepath.Join(dir, n)
		img, err := preprocess.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, per)
		if err := tr.Apply(img, nil, want); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(dassl[i*per:(i+1)*per], want) {
			t.Errorf("%s: Dassl order differs from Open + Apply", n)
		}
		src, err := preprocess.OpenSource(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := preprocess.ApplyOrdered(tr, src, preprocess.OrderOpenAI, nil, want); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(openai[i*per:(i+1)*per], want) {
			t.Errorf("%s: OpenAI order differs from ApplyOrdered", n)
		}
		if slices.Equal(openai[i*per:(i+1)*per], dassl[i*per:(i+1)*per]) {
			t.Errorf("%s: the two orders give the same pixels", n)
		}
	}
}
