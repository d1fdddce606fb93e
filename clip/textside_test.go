package clip

import (
	"testing"

	"github.com/sugarme/gotch"

	"github.com/clipadapter/clipgo/clip/tokenizer"
)

// TestEncodeTextsKeepsOrder encodes texts of 2 to 20 tokens with
// EncodeTexts (sorted by length, two texts per batch) and checks each
// feature row against the text encoded alone, within 2e-6 relative (fp32
// rounding of sums over other lengths), in the texts' order.
func TestEncodeTextsKeepsOrder(t *testing.T) {
	lockThread(t)
	m, err := New(Config{
		EmbedDim: 16, ImageResolution: 32, VisionLayers: []int{1}, VisionWidth: 64, VisionPatchSize: 16,
		ContextLength: 77, VocabSize: 49408, TransformerWidth: 64, TransformerHeads: 2, TransformerLayers: 2,
	}, gotch.CPU, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	tok, err := tokenizer.New()
	if err != nil {
		t.Fatal(err)
	}
	side := &TextSide{Model: m, Tokenizer: tok, Device: m.Device(), Batch: 2}
	texts := []string{
		"a photo of a yellow lady's slipper orchid growing in the wet forest of the mountains.",
		"a dog.",
		"a photo of a golden retriever.",
		"cat",
		"itap of a hot-air balloon over the valley.",
	}
	got, err := side.EncodeTexts(texts)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Drop()
	shape, all := valuesOf(t, got)
	if len(shape) != 2 || shape[0] != int64(len(texts)) {
		t.Fatalf("features of shape %v for %d texts", shape, len(texts))
	}
	d := int(shape[1])
	for i, text := range texts {
		tk, err := side.Tokenize([]string{text})
		if err != nil {
			t.Fatal(err)
		}
		alone, err := m.EncodeText(tk)
		tk.Drop()
		if err != nil {
			t.Fatal(err)
		}
		_, want := valuesOf(t, alone)
		alone.Drop()
		if r := relDiff(all[i*d:(i+1)*d], want); r > 2e-6 {
			t.Errorf("text %d (%q): features differ from the text alone by %.3g relative (> 2e-6)", i, text, r)
		} else {
			t.Logf("text %d: %.3g relative", i, r)
		}
	}
	if _, err := side.EncodeTexts(nil); err == nil {
		t.Error("EncodeTexts accepted no texts")
	}
}
