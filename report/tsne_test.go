package report

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

type tsneReference struct {
	X               []float64 `json:"x"`
	N               int       `json:"n"`
	D               int       `json:"d"`
	Labels          []int     `json:"labels"`
	NoisyLabels     []int     `json:"noisy_labels"`
	P5              []float64 `json:"p_perplexity_5"`
	P12             []float64 `json:"p_perplexity_12"`
	Silhouette      float64   `json:"silhouette"`
	SilhouetteNoisy float64   `json:"silhouette_noisy"`
}

func loadTSNEReference(t *testing.T) tsneReference {
	t.Helper()
	b, err := os.ReadFile("testdata/tsne_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var r tsneReference
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// The joint probabilities equal scikit-learn's (testdata/gen_tsne.py) to
// 1e-6 relative when given the float32 distances scikit-learn bisects on
// (on float64 distances the bandwidths differ within the 1e-5-nat
// tolerance, about 2e-4 relative on the smallest entries).
func TestJointProbabilitiesMatchScikitLearn(t *testing.T) {
	r := loadTSNEReference(t)
	for _, tt := range []struct {
		perp float64
		want []float64
	}{{5, r.P5}, {12, r.P12}} {
		// scikit-learn bisects on float32 distances.
		dist := SquaredDistances(r.X, r.N, r.D)
		for i := range dist {
			dist[i] = float64(float32(dist[i]))
		}
		got := JointProbabilities(dist, r.N, tt.perp)
		worst := 0.0
		for i := range got {
			if i/r.N == i%r.N {
				continue
			}
			worst = max(worst, math.Abs(got[i]-tt.want[i])/max(tt.want[i], 1e-12))
		}
		if worst > 1e-6 {
			t.Errorf("perplexity %g: joint P differs from scikit-learn by %.2g relative", tt.perp, worst)
		}
	}
}

func TestSilhouetteMatchesScikitLearn(t *testing.T) {
	r := loadTSNEReference(t)
	for _, tt := range []struct {
		labels []int
		want   float64
	}{{r.Labels, r.Silhouette}, {r.NoisyLabels, r.SilhouetteNoisy}} {
		got, err := Silhouette(r.X, r.N, r.D, tt.labels)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("silhouette %.15f, scikit-learn %.15f", got, tt.want)
		}
	}
	if _, err := Silhouette(r.X, r.N, r.D, make([]int, r.N)); err == nil {
		t.Error("one class: no error")
	}
}

// The embedding keeps well separated clusters apart (its silhouette stays
// high), is the same for the same seed, and a random labelling of the same
// points scores near zero.
func TestTSNEEmbedsClusters(t *testing.T) {
	r := loadTSNEReference(t)
	o := TSNEOptions{Perplexity: 10, Iterations: 500, Seed: 7}
	y, err := TSNE(r.X, r.N, r.D, o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Silhouette(y, r.N, 2, r.Labels)
	if err != nil {
		t.Fatal(err)
	}
	noisy, _ := Silhouette(y, r.N, 2, r.NoisyLabels)
	t.Logf("silhouette in the input %.3f, in the embedding %.3f; noisy labels %.3f", r.Silhouette, s, noisy)
	if s < r.Silhouette || s < 0.5 {
		t.Errorf("embedding silhouette %.3f, want at least the input's %.3f and 0.5", s, r.Silhouette)
	}
	if noisy > 0.2 {
		t.Errorf("noisy labelling scores %.3f in the embedding", noisy)
	}
	y2, _ := TSNE(r.X, r.N, r.D, o)
	for i := range y {
		if y[i] != y2[i] {
			t.Fatal("two runs with the same seed differ")
		}
	}
	if _, err := TSNE([]float64{1, math.NaN()}, 2, 1, o); err == nil {
		t.Error("NaN input: no error")
	}
}
