// Package pyrandom reproduces the parts of CPython's random module that
// few-shot sampling depends on, bit for bit: the MT19937 generator seeded
// like random.seed(int), getrandbits, random, the rejection sampler behind
// randrange, sample, choices and shuffle.
//
// It exists so that Go code draws exactly the same few-shot splits as the
// Python code bases it reproduces (Dassl/CoOp). For the toolkit's own
// randomness use math/rand/v2 instead.
//
// A Random is not safe for concurrent use.
package pyrandom

import (
	"errors"
	"math/bits"
)

// Mersenne Twister (MT19937) parameters.
const (
	n         = 624
	m         = 397
	matrixA   = 0x9908b0df
	upperMask = 0x80000000
	lowerMask = 0x7fffffff
)

// Random is a CPython-compatible random number generator.
type Random struct {
	mt  [n]uint32
	mti int
}

// New returns a generator in the state of CPython's random.seed(seed).
// As in CPython, the sign of seed is ignored.
func New(seed int64) *Random {
	r := new(Random)
	r.Seed(seed)
	return r
}

// Seed resets r to the state of CPython's random.seed(seed) for an int seed:
// the absolute value is split into 32-bit words, least significant first
// (at least one word), and fed to the reference init_by_array.
func (r *Random) Seed(seed int64) {
	u := uint64(seed)
	if seed < 0 {
		u = -u // two's complement negation gives |seed|, also for MinInt64
	}
	key := []uint32{uint32(u)}
	if hi := uint32(u >> 32); hi != 0 {
		key = append(key, hi)
	}
	r.initByArray(key)
}

func (r *Random) initGenrand(s uint32) {
	r.mt[0] = s
	for i := 1; i < n; i++ {
		prev := r.mt[i-1]
		r.mt[i] = 1812433253*(prev^(prev>>30)) + uint32(i)
	}
	r.mti = n
}

func (r *Random) initByArray(key []uint32) {
	r.initGenrand(19650218)
	i, j := 1, 0
	k := max(n, len(key))
	for ; k > 0; k-- {
		prev := r.mt[i-1]
		r.mt[i] = (r.mt[i] ^ ((prev ^ (prev >> 30)) * 1664525)) + key[j] + uint32(j)
		i++
		j++
		if i >= n {
			r.mt[0] = r.mt[n-1]
			i = 1
		}
		if j >= len(key) {
			j = 0
		}
	}
	for k = n - 1; k > 0; k-- {
		prev := r.mt[i-1]
		r.mt[i] = (r.mt[i] ^ ((prev ^ (prev >> 30)) * 1566083941)) - uint32(i)
		i++
		if i >= n {
			r.mt[0] = r.mt[n-1]
			i = 1
		}
	}
	r.mt[0] = 0x80000000
}

// twist regenerates the whole state block.
func (r *Random) twist() {
	mag := [2]uint32{0, matrixA}
	var kk int
	for kk = 0; kk < n-m; kk++ {
		y := (r.mt[kk] & upperMask) | (r.mt[kk+1] & lowerMask)
		r.mt[kk] = r.mt[kk+m] ^ (y >> 1) ^ mag[y&1]
	}
	for ; kk < n-1; kk++ {
		y := (r.mt[kk] & upperMask) | (r.mt[kk+1] & lowerMask)
		r.mt[kk] = r.mt[kk+(m-n)] ^ (y >> 1) ^ mag[y&1]
	}
	y := (r.mt[n-1] & upperMask) | (r.mt[0] & lowerMask)
	r.mt[n-1] = r.mt[m-1] ^ (y >> 1) ^ mag[y&1]
	r.mti = 0
}

// Uint32 returns the next raw 32-bit output (the reference genrand_int32).
func (r *Random) Uint32() uint32 {
	if r.mti >= n {
		r.twist()
	}
	y := r.mt[r.mti]
	r.mti++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// Getrandbits returns a non-negative integer with k random bits, like
// random.getrandbits(k), for 0 <= k <= 64. As in CPython 3.9+, k = 0 draws
// nothing (older versions reject it), and wider values are assembled from 32-bit outputs, least
// significant word first, the last word keeping its top bits.
func (r *Random) Getrandbits(k int) uint64 {
	if k < 0 || k > 64 {
		panic("pyrandom: Getrandbits needs 0 <= k <= 64")
	}
	var v uint64
	for shift := 0; k > 0; shift += 32 {
		w := r.Uint32()
		if k < 32 {
			w >>= 32 - k
		}
		v |= uint64(w) << shift
		k -= 32
	}
	return v
}

// Float64 returns a float in [0, 1) exactly as random.random() does: 53
// bits built from two outputs.
func (r *Random) Float64() float64 {
	a := uint64(r.Uint32() >> 5)
	b := uint64(r.Uint32() >> 6)
	return float64(a*67108864+b) * (1.0 / 9007199254740992.0)
}

// Below returns an integer in [0, n) like CPython's _randbelow for n > 0:
// getrandbits(bit length of n), redrawn until it is below n.
func (r *Random) Below(n int) int {
	if n <= 0 {
		panic("pyrandom: Below needs n > 0")
	}
	k := bits.Len64(uint64(n))
	v := r.Getrandbits(k)
	for v >= uint64(n) {
		v = r.Getrandbits(k)
	}
	return int(v)
}

// ErrSampleSize is returned by Sample when k is negative or larger than the
// population.
var ErrSampleSize = errors.New("pyrandom: sample larger than population or is negative")

// sampleSetSize is CPython's threshold between sample's two algorithms:
// 21, plus 4**ceil(log4(3k)) when k > 5.
func sampleSetSize(k int) int {
	size := 21
	if k > 5 {
		// ceil(log(3k)/log(4)) is the smallest e with 4**e >= 3k; 3k is
		// never a power of 4, so the float logarithm CPython uses cannot
		// land on the other side of an integer.
		p := 1
		for p < 3*k {
			p *= 4
		}
		size += p
	}
	return size
}

// SampleIndices returns the indices random.sample(range(n), k) would
// return, in order, consuming the stream exactly as CPython does: a pool
// with swap-removal when n <= setsize, otherwise redraws of repeated
// indices.
func (r *Random) SampleIndices(n, k int) ([]int, error) {
	if k < 0 || k > n {
		return nil, ErrSampleSize
	}
	out := make([]int, k)
	if n <= sampleSetSize(k) {
		pool := make([]int, n)
		for i := range pool {
			pool[i] = i
		}
		for i := 0; i < k; i++ {
			j := r.Below(n - i)
			out[i] = pool[j]
			pool[j] = pool[n-i-1]
		}
		return out, nil
	}
	selected := make(map[int]struct{}, k)
	for i := 0; i < k; i++ {
		j := r.Below(n)
		for {
			if _, dup := selected[j]; !dup {
				break
			}
			j = r.Below(n)
		}
		selected[j] = struct{}{}
		out[i] = j
	}
	return out, nil
}

// Sample returns k distinct elements of pop chosen like random.sample.
func Sample[T any](r *Random, pop []T, k int) ([]T, error) {
	idx, err := r.SampleIndices(len(pop), k)
	if err != nil {
		return nil, err
	}
	out := make([]T, k)
	for i, j := range idx {
		out[i] = pop[j]
	}
	return out, nil
}

// ChoiceIndices returns the indices random.choices(range(n), k=k) would
// return (with replacement, no weights): floor(random() * n) each.
func (r *Random) ChoiceIndices(n, k int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = int(r.Float64() * float64(n))
	}
	return out
}

// Choices returns k elements of pop drawn with replacement like
// random.choices(pop, k=k). pop must not be empty when k > 0.
func Choices[T any](r *Random, pop []T, k int) []T {
	out := make([]T, k)
	for i, j := range r.ChoiceIndices(len(pop), k) {
		out[i] = pop[j]
	}
	return out
}
