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
