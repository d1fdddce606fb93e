package report

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// TSNEOptions configures TSNE. The defaults (zero values) are
// scikit-learn's for method="exact", init="random",
// learning_rate="auto": perplexity 30, 1000 iterations of which the first
// 250 use early exaggeration 12 and momentum 0.5 (then 0.8), learning rate
// max(N/12/4, 50), adaptive gains (+0.2, ×0.8, at least 0.01).
type TSNEOptions struct {
	Perplexity float64
	Iterations int
	// Seed seeds the initial embedding (N(0, 1e-4²) per coordinate).
	Seed uint64
}

// machineEpsilon is float64's, the floor of the joint probabilities as in
// scikit-learn.
const machineEpsilon = 2.220446049250313e-16

// TSNE embeds the rows of x (n × d, row-major) in two dimensions with exact
// t-SNE (van der Maaten and Hinton, 2008): squared Euclidean affinities with
// a per-point bandwidth found by binary search for the perplexity, the
// symmetrized joint P, Student-t similarities in the embedding, and
// gradient descent on KL(P‖Q) with momentum and gains. It is written here
// rather than taken from github.com/danaugrs/go-tsne because that package
// draws its start from the global math/rand, which cannot be seeded since
// Go 1.24, so its plots could not be reproduced. Cost: O(n²) memory and
// O(n²) work per iteration; keep n in the low thousands.
func TSNE(x []float64, n, d int, o TSNEOptions) ([]float64, error) {
	if n < 2 || d < 1 || len(x) != n*d {
		return nil, fmt.Errorf("t-SNE: %d values for %d points of dimension %d", len(x), n, d)
	}
	for _, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("t-SNE: the features hold a non-finite value")
		}
	}
	if o.Perplexity == 0 {
		o.Perplexity = 30
	}
	if o.Iterations == 0 {
		o.Iterations = 1000
	}
	if o.Perplexity <= 0 || o.Iterations < 0 {
		return nil, fmt.Errorf("t-SNE: perplexity %g and iterations %d must be positive", o.Perplexity, o.Iterations)
	}
	// Like scikit-learn, a perplexity of at least n is not usable: cap it.
	perp := math.Min(o.Perplexity, float64(n-1)/3)
	p := JointProbabilities(SquaredDistances(x, n, d), n, perp)

	const (
		exaggeration = 12.0
		exaggerated  = 250
		minGain      = 0.01
	)
	lr := math.Max(float64(n)/exaggeration/4, 50)
	rng := rand.New(rand.NewPCG(o.Seed, 0x7473_6e65))
	y := make([]float64, 2*n)
	for i := range y {
		y[i] = 1e-4 * rng.NormFloat64()
	}
	update := make([]float64, 2*n)
	gains := make([]float64, 2*n)
	for i := range gains {
		gains[i] = 1
	}
	grad := make([]float64, 2*n)
	num := make([]float64, n*n)
	for it := 0; it < o.Iterations; it++ {
		ex, momentum := 1.0, 0.8
		if it < exaggerated {
			ex, momentum = exaggeration, 0.5
		}
		// Student-t kernel and its sum.
		sum := 0.0
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				dx, dy := y[2*i]-y[2*j], y[2*i+1]-y[2*j+1]
				v := 1 / (1 + dx*dx + dy*dy)
				num[i*n+j], num[j*n+i] = v, v
				sum += 2 * v
			}
		}
		for i := range grad {
			grad[i] = 0
		}
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				if i == j {
					continue
				}
				q := math.Max(num[i*n+j]/sum, machineEpsilon)
				m := 4 * (ex*p[i*n+j] - q) * num[i*n+j]
				grad[2*i] += m * (y[2*i] - y[2*j])
				grad[2*i+1] += m * (y[2*i+1] - y[2*j+1])
			}
		}
		for i := range y {
			if (update[i] > 0) != (grad[i] > 0) {
				gains[i] += 0.2
			} else {
				gains[i] *= 0.8
			}
			gains[i] = math.Max(gains[i], minGain)
			update[i] = momentum*update[i] - lr*gains[i]*grad[i]
			y[i] += update[i]
		}
	}
	return y, nil
}

// SquaredDistances returns the n × n squared Euclidean distances between
// the rows of x.
func SquaredDistances(x []float64, n, d int) []float64 {
	out := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			s := 0.0
			for k := 0; k < d; k++ {
				t := x[i*d+k] - x[j*d+k]
				s += t * t
			}
			out[i*n+j], out[j*n+i] = s, s
		}
	}
	return out
}

// JointProbabilities returns t-SNE's symmetric P (n × n, zero diagonal,
// summing to 1, entries at least machine epsilon off the diagonal) from
// squared distances: for each point the Gaussian bandwidth whose
// conditional distribution has the given perplexity, found by bisection
// on the precision as scikit-learn's _binary_search_perplexity does
// (entropy in nats within 1e-5, at most 100 steps), then
// P = (P_j|i + P_i|j) / Σ.
func JointProbabilities(dist []float64, n int, perplexity float64) []float64 {
	cond := make([]float64, n*n)
	want := math.Log(perplexity)
	row := make([]float64, n)
	for i := 0; i < n; i++ {
		beta, lo, hi := 1.0, math.Inf(-1), math.Inf(1)
		for step := 0; step < 100; step++ {
			sum := 0.0
			for j := 0; j < n; j++ {
				row[j] = 0
				if j != i {
					row[j] = math.Exp(-dist[i*n+j] * beta)
				}
				sum += row[j]
			}
			if sum == 0 {
				sum = 1e-8
			}
			h := 0.0
			for j := 0; j < n; j++ {
				row[j] /= sum
				h += dist[i*n+j] * row[j]
			}
			h = math.Log(sum) + beta*h
			diff := h - want
			if math.Abs(diff) <= 1e-5 {
				break
			}
			if diff > 0 {
				lo = beta
				if math.IsInf(hi, 1) {
					beta *= 2
				} else {
					beta = (beta + hi) / 2
				}
			} else {
				hi = beta
				if math.IsInf(lo, -1) {
					beta /= 2
				} else {
					beta = (beta + lo) / 2
				}
			}
		}
		copy(cond[i*n:(i+1)*n], row)
	}
	p := make([]float64, n*n)
	total := 0.0
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			p[i*n+j] = cond[i*n+j] + cond[j*n+i]
			total += p[i*n+j]
		}
	}
	total = math.Max(total, machineEpsilon)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i != j {
				p[i*n+j] = math.Max(p[i*n+j]/total, machineEpsilon)
			}
		}
	}
	return p
}

// Silhouette returns the mean silhouette coefficient of the labelled rows
// of x (n × d) under Euclidean distance, as scikit-learn's
// silhouette_score: for each point (b − a)/max(a, b), a its mean distance
// to the rest of its class, b the smallest mean distance to another class;
// 0 for a point alone in its class. It needs at least two classes and
// fewer classes than points.
func Silhouette(x []float64, n, d int, labels []int) (float64, error) {
	if len(labels) != n || len(x) != n*d {
		return 0, fmt.Errorf("silhouette: %d labels and %d values for %d points of dimension %d", len(labels), len(x), n, d)
	}
	idx := map[int]int{}
	for _, l := range labels {
		if _, ok := idx[l]; !ok {
			idx[l] = len(idx)
		}
	}
	k := len(idx)
	if k < 2 || k >= n {
		return 0, fmt.Errorf("silhouette: %d classes among %d points; want 2 to %d", k, n, n-1)
	}
	count := make([]float64, k)
	for _, l := range labels {
		count[idx[l]]++
	}
	total := 0.0
	sums := make([]float64, k)
	for i := 0; i < n; i++ {
		for c := range sums {
			sums[c] = 0
		}
		for j := 0; j < n; j++ {
			if j == i {
				continue
			}
			s := 0.0
			for t := 0; t < d; t++ {
				v := x[i*d+t] - x[j*d+t]
				s += v * v
			}
			sums[idx[labels[j]]] += math.Sqrt(s)
		}
		own := idx[labels[i]]
		if count[own] == 1 {
			continue
		}
		a := sums[own] / (count[own] - 1)
		b := math.Inf(1)
		for c := range sums {
			if c != own {
				b = math.Min(b, sums[c]/count[c])
			}
		}
		if m := math.Max(a, b); m > 0 {
			total += (b - a) / m
		}
	}
	return total / float64(n), nil
}
