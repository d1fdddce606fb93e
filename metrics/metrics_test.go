package metrics

import (
	"math"
	"testing"
)

func TestEvaluate(t *testing.T) {
	// 3 classes, 4 examples.
	logits := []float32{
		3, 1, 0, // pred 0, label 0
		0, 2, 1, // pred 1, label 2
		1, 0, 5, // pred 2, label 2
		2, 2, 0, // tie -> pred 0, label 1
	}
	m, err := Evaluate(logits, []int64{0, 2, 2, 1}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if m.Top1 != 50 || m.Top5 != 100 {
		t.Errorf("top1/top5 = %v/%v, want 50/100", m.Top1, m.Top5)
	}
	// Per-class recall: c0 1/1, c1 0/1, c2 1/2; precision c0 1/2, c2 1/1.
	wantF1 := 100 * (2*0.5*1/(1.5) + 0 + 2*1*0.5/1.5) / 3
	if math.Abs(m.MacroF1-wantF1) > 1e-9 || math.Abs(m.MeanPerClass-100*(1+0+0.5)/3) > 1e-9 {
		t.Errorf("macroF1 %v (want %v), mean per class %v", m.MacroF1, wantF1, m.MeanPerClass)
	}
	if _, err := Evaluate(logits, []int64{0, 2, 3, 1}, 3); err == nil {
		t.Error("out-of-range label accepted")
	}
}

func TestTopK(t *testing.T) {
	// softmax([1, 3, 3, 0]) computed by hand: e^(x-3) / sum.
	row := []float32{1, 3, 3, 0}
	sum := math.Exp(-2) + 1 + 1 + math.Exp(-3)
	tests := []struct {
		k       int
		classes []int
		probs   []float64
	}{
		{1, []int{1}, []float64{1 / sum}},
		{3, []int{1, 2, 0}, []float64{1 / sum, 1 / sum, math.Exp(-2) / sum}},
		{9, []int{1, 2, 0, 3}, []float64{1 / sum, 1 / sum, math.Exp(-2) / sum, math.Exp(-3) / sum}},
		{0, nil, nil},
	}
	for _, tc := range tests {
		c, p := TopK(row, tc.k)
		if len(c) != len(tc.classes) {
			t.Fatalf("k=%d: classes %v, want %v", tc.k, c, tc.classes)
		}
		for i := range c {
			if c[i] != tc.classes[i] || math.Abs(p[i]-tc.probs[i]) > 1e-12 {
				t.Errorf("k=%d: got %v %v, want %v %v", tc.k, c, p, tc.classes, tc.probs)
			}
		}
	}
	// Large logits do not overflow.
	if _, p := TopK([]float32{1000, 0}, 1); math.Abs(p[0]-1) > 1e-12 {
		t.Errorf("softmax of [1000, 0] = %v, want 1", p[0])
	}
}
