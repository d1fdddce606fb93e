package preprocess

import (
	"image"
	"math"
)

// Bicubic resampling as Pillow implements Image.resize(size, BICUBIC)
// (Pillow 9.4, libImaging/Resample.c; this is an independent
// implementation of the same arithmetic):
//
//   - separable: a horizontal pass (skipped when the width is unchanged),
//     then a vertical pass (skipped when the height is unchanged), each
//     rounded and clipped to 8 bits;
//   - the kernel is Keys' cubic with a = -0.5 and support 2; when shrinking
//     by a factor s > 1 the kernel is stretched by s (support 2s), which is
//     the antialiasing;
//   - output sample i of n has its center at (i + 0.5) * in/n in input
//     coordinates; the taps run from int(center - support + 0.5) to
//     int(center + support + 0.5) (exclusive, C truncation), clamped to the
//     image, and input pixel j is weighted by kernel((j - center + 0.5)/s);
//   - the weights of each output sample are divided by their sum, then
//     converted to fixed point with 22 fractional bits, rounding half away
//     from zero;
//   - each output value is (2^21 + sum of weight*value) >> 22, clipped to
//     [0, 255].
//
// Floating-point steps are written with explicit float64 conversions so
// that the compiler cannot fuse them into FMA instructions, which would
// change the rounding on some architectures.

const (
	precisionBits = 32 - 8 - 2
	bicubicA      = -0.5
	bicubicSupp   = 2.0
)

// bicubic is Keys' cubic convolution kernel with a = -0.5, evaluated in
// Horner form as Pillow does.
func bicubic(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		// ((a+2)x - (a+3)) x x + 1
		p := float64(float64((bicubicA+2)*x) - (bicubicA + 3))
		return float64(float64(p*x)*x) + 1
	}
	if x < 2 {
		// (((x - 5) x + 8) x - 4) a
		p := float64(float64((x-5)*x) + 8)
		return float64(float64(p*x)-4) * bicubicA
	}
	return 0
}

// bilinear is Pillow's triangle filter (support 1).
func bilinear(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// filter is a resampling kernel and its support, as in Pillow.
type filter struct {
	support float64
	kernel  func(float64) float64
}

// filterOf returns the kernel of an interpolation.
func filterOf(i Interpolation) filter {
	if i == Bilinear {
		return filter{1, bilinear}
	}
	return filter{bicubicSupp, bicubic}
}

// filterTaps holds the fixed-point weights of one resampling direction.
type filterTaps struct {
	ksize int
	start []int     // first input index of output i
	count []int     // number of taps of output i
	k     []int32   // weights, ksize per output
	taps  [][]int32 // taps[i] = k[i*ksize:][:count[i]]
}

// newFilterTaps computes the bicubic weights for resampling inSize samples
// to outSize samples.
func newFilterTaps(inSize, outSize int) *filterTaps {
	return newFilterTapsWith(inSize, outSize, filterOf(Bicubic))
}

// filterCoeffs holds the normalized float64 weights of one resampling
// direction, as Pillow computes them before converting them to fixed point
// for 8-bit images (32-bit images use them as they are).
type filterCoeffs struct {
	ksize int
	start []int       // first input index of output i
	w     [][]float64 // weights of output i, one per input index from start
}

// newFilterCoeffs computes the weights of filter f for resampling inSize
// samples to outSize samples.
func newFilterCoeffs(inSize, outSize int, f filter) *filterCoeffs {
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1.0)
	support := f.support * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := &filterCoeffs{ksize: ksize, start: make([]int, outSize), w: make([][]float64, outSize)}
	all := make([]float64, outSize*ksize)
	ss := 1.0 / filterscale
	for i := range outSize {
		center := float64(float64(i)+0.5) * scale
		lo := int(float64(center-support) + 0.5)
		lo = max(lo, 0)
		hi := int(float64(center+support) + 0.5)
		hi = min(hi, inSize)
		n := hi - lo
		w := all[i*ksize:][:n]
		sum := 0.0
		for j := range n {
			v := f.kernel(float64(float64(float64(j+lo)-center)+0.5) * ss)
			w[j] = v
			sum += v
		}
		if sum != 0 {
			for j := range n {
				w[j] /= sum
			}
		}
		c.start[i], c.w[i] = lo, w
	}
	return c
}

// newFilterTapsWith computes the weights of filter f for resampling inSize
// samples to outSize samples, in fixed point.
func newFilterTapsWith(inSize, outSize int, f filter) *filterTaps {
	c := newFilterCoeffs(inSize, outSize, f)
	ksize := c.ksize
	t := &filterTaps{
		ksize: ksize,
		start: c.start,
		count: make([]int, outSize),
		k:     make([]int32, outSize*ksize),
		taps:  make([][]int32, outSize),
	}
	for i, w := range c.w {
		for j, v := range w {
			// Fixed point, rounding half away from zero (C truncation of
			// value ± 0.5).
			f := float64(v * (1 << precisionBits))
			if v < 0 {
				t.k[i*ksize+j] = int32(f - 0.5)
			} else {
				t.k[i*ksize+j] = int32(f + 0.5)
			}
		}
		t.count[i] = len(w)
		t.taps[i] = t.k[i*ksize:][:len(w)]
	}
	return t
}

// clip8 converts a fixed-point accumulator to an 8-bit value: an
// arithmetic shift by precisionBits, clipped to [0, 255].
func clip8(v int32) uint8 {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// Resize resamples img to w×h with Pillow's bicubic filter (see the top of
// this file); the result equals Pillow's img.resize((w, h), Image.BICUBIC)
// for RGB images. An image already w×h is copied. Non-positive sizes give
// an empty image.
func Resize(img *Image, w, h int) *Image {
	if w <= 0 || h <= 0 {
		return NewImage(0, 0)
	}
	return resample(img, image.Rect(0, 0, img.W, img.H), w, h, image.Rect(0, 0, w, h))
}

// resample resizes the part src of img (which must lie inside img) to
// outW×outH as Resize does, but computes and returns only the pixels in the
// output window win (which must lie inside the output). Because every
// output pixel depends only on its own filter taps, this equals resizing
// everything and cropping win afterwards.
func resample(img *Image, src image.Rectangle, outW, outH int, win image.Rectangle) *Image {
	out := NewImage(win.Dx(), win.Dy())
	rowLen := 3 * out.W
	resampleRows(img, src, outW, outH, win, func(y int, row []uint8) {
		copy(out.Pix[y*rowLen:][:rowLen], row)
	})
	return out
}

// resampleRows computes what resample returns and hands it to emit one
// row at a time, top to bottom: y counts from 0 at the window's top, and
// row holds the 3*win.Dx() values of that row. row is only valid during
// the call (its memory is reused for the next row).
//
// The horizontal pass is computed lazily, one source row at a time, into a
// ring of the rows the current output row's vertical taps need: the taps
// of successive output rows start and end at non-decreasing source rows,
// so a ring as long as the most taps of any output row is enough. The
// ring's rows are packed two values per word for verticalTaps.
func resampleRows(img *Image, src image.Rectangle, outW, outH int, win image.Rectangle, emit func(y int, row []uint8)) {
	resampleRowsWith(img, src, outW, outH, win, filterOf(Bicubic), emit)
}

// resampleRowsWith is resampleRows with the kernel f.
func resampleRowsWith(img *Image, src image.Rectangle, outW, outH int, win image.Rectangle, f filter, emit func(y int, row []uint8)) {
	sw, sh := src.Dx(), src.Dy()
	ww, wh := win.Dx(), win.Dy()
	if ww <= 0 || wh <= 0 || sw <= 0 || sh <= 0 {
		return
	}
	rowLen := 3 * ww
	// srcRow returns source row r (relative to src): all of its columns
	// for the horizontal pass, or only the window's when the width is
	// unchanged.
	srcRow := func(r int) []uint8 {
		off := 3 * ((src.Min.Y+r)*img.W + src.Min.X)
		if outW == sw {
			return img.Pix[off+3*win.Min.X:][:rowLen]
		}
		return img.Pix[off:][:3*sw]
	}
	var ht *filterTaps
	if outW != sw {
		ht = newFilterTapsWith(sw, outW, f)
	}

	if outH == sh {
		// Height unchanged: each output row is one source row.
		row := make([]uint8, rowLen)
		for y := range wh {
			if ht == nil {
				emit(y, srcRow(win.Min.Y+y))
				continue
			}
			resampleRow(row, srcRow(win.Min.Y+y), ht, win.Min.X)
			emit(y, row)
		}
		return
	}

	vt := newFilterTapsWith(sh, outH, f)
	ringLen := 0
	for y := win.Min.Y; y < win.Max.Y; y++ {
		ringLen = max(ringLen, vt.count[y])
	}
	pw := (rowLen + 1) / 2 // words per packed row
	ring := make([]uint64, ringLen*pw)
	next := vt.start[win.Min.Y] // next source row to compute
	rows := make([][]uint64, ringLen)
	acc := make([]uint64, pw)
	row := make([]uint8, 2*pw) // the last value is padding when rowLen is odd
	for yy := win.Min.Y; yy < win.Max.Y; yy++ {
		start, n := vt.start[yy], vt.count[yy]
		for j := range n {
			r := start + j
			slot := ring[(r%ringLen)*pw:][:pw]
			if r >= next {
				if ht == nil {
					packPairs(slot, srcRow(r))
				} else {
					resampleRowPacked(slot, srcRow(r), ht, win.Min.X, ww)
				}
				next = r + 1
			}
			rows[j] = slot
		}
		verticalTaps(row, acc, rows[:n], vt.taps[yy])
		emit(yy-win.Min.Y, row[:rowLen])
	}
}

// resampleRow computes len(dst)/3 output pixels of one row, starting at
// output column x0, from the input row in with the horizontal taps t.
func resampleRow(dst, in []uint8, t *filterTaps, x0 int) {
	for o := 0; o+2 < len(dst); o += 3 {
		xx := x0 + o/3
		s0, s1, s2 := tapsRGB(in[3*t.start[xx]:], t.taps[xx])
		d := dst[o:][:3]
		d[0], d[1], d[2] = clip8(s0), clip8(s1), clip8(s2)
	}
}

// resampleRowPacked is resampleRow for w output pixels with the output
// packed as packPairs packs it: pixels 2m and 2m+1 fill words 3m to 3m+2.
func resampleRowPacked(dst []uint64, in []uint8, t *filterTaps, x0, w int) {
	start, taps := t.start[x0:][:w], t.taps[x0:][:w]
	x := 0
	for ; x+1 < w; x += 2 {
		a0, a1, a2 := tapsRGB(in[3*start[x]:], taps[x])
		b0, b1, b2 := tapsRGB(in[3*start[x+1]:], taps[x+1])
		d := dst[3*x/2:][:3]
		d[0] = uint64(clip8(a0)) | uint64(clip8(a1))<<32
		d[1] = uint64(clip8(a2)) | uint64(clip8(b0))<<32
		d[2] = uint64(clip8(b1)) | uint64(clip8(b2))<<32
	}
	if x < w {
		a0, a1, a2 := tapsRGB(in[3*start[x]:], taps[x])
		d := dst[3*x/2:][:2]
		d[0] = uint64(clip8(a0)) | uint64(clip8(a1))<<32
		d[1] = uint64(clip8(a2))
	}
}

// tapsRGB returns the fixed-point sums, rounding term included, of the
// taps k over the RGB pixels starting at p, one per channel.
//
// It is kept out of line on purpose: inlined into resampleRow's loop, the
// compiler spills the three sums to the stack on every tap, which makes
// the horizontal pass about 30% slower.
//
//go:noinline
func tapsRGB(p []uint8, k []int32) (s0, s1, s2 int32) {
	s0, s1, s2 = 1<<(precisionBits-1), 1<<(precisionBits-1), 1<<(precisionBits-1)
	p = p[:3*len(k)]
	j := 0
	for ; j+1 < len(k); j += 2 {
		q := p[3*j:][:6]
		ka, kb := k[j], k[j+1]
		s0 += int32(q[0])*ka + int32(q[3])*kb
		s1 += int32(q[1])*ka + int32(q[4])*kb
		s2 += int32(q[2])*ka + int32(q[5])*kb
	}
	if j < len(k) {
		q := p[3*j:][:3]
		kv := k[j]
		s0 += int32(q[0]) * kv
		s1 += int32(q[1]) * kv
		s2 += int32(q[2]) * kv
	}
	return s0, s1, s2
}

// packPairs stores the 8-bit values of src two per word in dst for
// verticalTaps: dst[i] holds src[2i] in its low 32 bits and src[2i+1] in
// its high 32 bits (0 past the end of src).
func packPairs(dst []uint64, src []uint8) {
	n := len(src) / 2
	dst = dst[:(len(src)+1)/2]
	for i := range n {
		p := src[2*i:][:2]
		dst[i] = uint64(p[0]) | uint64(p[1])<<32
	}
	if len(src)%2 != 0 {
		dst[n] = uint64(src[len(src)-1])
	}
}

// verticalTaps computes one output row into dst (8-bit values, 2*len(acc)
// of them): the sum over taps j of k[j] times rows[j] (rows packed by
// packPairs), rounded and clipped as clip8 does. acc is scratch space.
//
// Two sums share each 64-bit word: with a = x + y·2³² and the weight k
// sign-extended, a·k = x·k + (y·k)·2³² modulo 2⁶⁴, so a word accumulates
// S₀ + S₁·2³² for the two 32-bit sums S₀ and S₁ that Pillow computes. Both
// lie in (-2³¹, 2³¹) (at most 255 times the sum of the weights' magnitudes,
// which is below 1.3·2²²), so S₀ is the low 32 bits read as an int32 and
// S₁ is (word - S₀) shifted right by 32: the results are exact, and half as
// many multiplications are needed. Integer sums do not depend on the order
// of the terms either, so taps are accumulated several rows at a time.
func verticalTaps(dst []uint8, acc []uint64, rows [][]uint64, k []int32) {
	n := len(acc)
	const half = 1<<(precisionBits-1) | 1<<(precisionBits-1+32)
	for i := range acc {
		acc[i] = half
	}
	j := 0
	for ; j+4 <= len(k); j += 4 {
		a, b, c, d := rows[j][:n], rows[j+1][:n], rows[j+2][:n], rows[j+3][:n]
		ka, kb, kc, kd := uint64(k[j]), uint64(k[j+1]), uint64(k[j+2]), uint64(k[j+3])
		for i := range acc {
			acc[i] += a[i]*ka + b[i]*kb + c[i]*kc + d[i]*kd
		}
	}
	for ; j+2 <= len(k); j += 2 {
		a, b := rows[j][:n], rows[j+1][:n]
		ka, kb := uint64(k[j]), uint64(k[j+1])
		for i := range acc {
			acc[i] += a[i]*ka + b[i]*kb
		}
	}
	if j < len(k) {
		a := rows[j][:n]
		ka := uint64(k[j])
		for i := range acc {
			acc[i] += a[i] * ka
		}
	}
	dst = dst[:2*n]
	for i, v := range acc {
		lo := int32(uint32(v))
		hi := int32((int64(v) - int64(lo)) >> 32)
		d := dst[2*i:][:2]
		d[0], d[1] = clip8(lo), clip8(hi)
	}
}

// ResizedSize returns the size torchvision's Resize(size) (an int) gives a
// w×h image: the shorter side becomes size and the longer side
// int(size * long / short), truncated (torchvision 0.14,
// _compute_resized_output_size). Square images become size×size.
func ResizedSize(w, h, size int) (nw, nh int) {
	short, long := h, w
	if w <= h {
		short, long = w, h
	}
	// Python: int(size * long / short); the true division of two exact
	// integers is correctly rounded, then truncated.
	newLong := int(float64(size*long) / float64(short))
	if w <= h {
		return size, newLong
	}
	return newLong, size
}

// ResizeShorter resizes img so that its shorter side is size, keeping the
// aspect ratio as torchvision's Resize(size) does (see ResizedSize), with
// Pillow's bicubic filter. If the size does not change the image is copied
// (no resampling, as in Pillow).
func ResizeShorter(img *Image, size int) *Image {
	if size <= 0 || img.W <= 0 || img.H <= 0 {
		return NewImage(0, 0)
	}
	w, h := ResizedSize(img.W, img.H, size)
	return Resize(img, w, h)
}
