// Package metrics computes classification metrics (top-1, top-5, mean
// per-class accuracy, macro F1) from logits and labels. It has no cgo, so
// the run-directory and report packages use it without libtorch.
package metrics

import (
	"fmt"
	"math"
	"sort"
)

// Metrics are classification metrics in percent.
type Metrics struct {
	Top1 float64 `json:"top1"`
	Top5 float64 `json:"top5"`
	// MeanPerClass is the mean of the per-class accuracies.
	MeanPerClass float64 `json:"mean_per_class"`
	// MacroF1 is the unweighted mean of the per-class F1 scores.
	MacroF1 float64 `json:"macro_f1"`
	// PerClass holds each class's accuracy (recall); NaN-free: classes
	// without examples get -1.
	PerClass []float64 `json:"per_class,omitempty"`
	N        int       `json:"n"`
}

// Evaluate computes metrics from row-major logits [n, classes] and labels.
func Evaluate(logits []float32, labels []int64, classes int) (Metrics, error) {
	n := len(labels)
	if classes <= 0 || len(logits) != n*classes {
		return Metrics{}, fmt.Errorf("evaluate: %d logits for %d labels and %d classes", len(logits), n, classes)
	}
	m := Metrics{N: n, PerClass: make([]float64, classes)}
	if n == 0 {
		return m, nil
	}
	k := min(5, classes)
	support := make([]int, classes)
	truePos := make([]int, classes)
	predicted := make([]int, classes)
	idx := make([]int, classes)
	top1, top5 := 0, 0
	for i := 0; i < n; i++ {
		row := logits[i*classes : (i+1)*classes]
		y := int(labels[i])
		if y < 0 || y >= classes {
			return Metrics{}, fmt.Errorf("evaluate: label %d out of range [0,%d)", y, classes)
		}
		for j := range idx {
			idx[j] = j
		}
		// Stable: ties go to the lower class index, like argmax.
		sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
		support[y]++
		predicted[idx[0]]++
		if idx[0] == y {
			top1++
			truePos[y]++
		}
		for _, j := range idx[:k] {
			if j == y {
				top5++
				break
			}
		}
	}
	m.Top1 = 100 * float64(top1) / float64(n)
	m.Top5 = 100 * float64(top5) / float64(n)
	var accSum, f1Sum float64
	present := 0
	for c := 0; c < classes; c++ {
		if support[c] == 0 {
			m.PerClass[c] = -1
			continue
		}
		present++
		recall := float64(truePos[c]) / float64(support[c])
		m.PerClass[c] = 100 * recall
		accSum += recall
		if predicted[c] > 0 && truePos[c] > 0 {
			precision := float64(truePos[c]) / float64(predicted[c])
			f1Sum += 2 * precision * recall / (precision + recall)
		}
	}
	if present > 0 {
		m.MeanPerClass = 100 * accSum / float64(present)
		m.MacroF1 = 100 * f1Sum / float64(present)
	}
	if math.IsNaN(m.MacroF1) {
		m.MacroF1 = 0
	}
	return m, nil
}

// TopK returns the k highest-scoring classes of one row of logits, best
// first (ties go to the lower class index, like Evaluate), with their
// softmax probabilities over the whole row, computed in float64 with the
// row's maximum subtracted. k is capped at len(row).
func TopK(row []float32, k int) (classes []int, probs []float64) {
	k = min(k, len(row))
	if k <= 0 {
		return nil, nil
	}
	idx := make([]int, len(row))
	for j := range idx {
		idx[j] = j
	}
	sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
	hi := float64(row[idx[0]])
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v) - hi)
	}
	classes = idx[:k:k]
	probs = make([]float64, k)
	for i, j := range classes {
		probs[i] = math.Exp(float64(row[j])-hi) / sum
	}
	return classes, probs
}
