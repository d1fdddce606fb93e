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

// filterTaps holds the fixed-point weights of one resampling direction.
type filterTaps struct {
	ksize int
	start []int   // first input index of output i
	count []int   // number of taps of output i
	k     []int32 // weights, ksize per output
}

// newFilterTaps computes the weights for resampling inSize samples to
// outSize samples.
func newFilterTaps(inSize, outSize int) *filterTaps {
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1.0)
	support := bicubicSupp * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	t := &filterTaps{
		ksize: ksize,
		start: make([]int, outSize),
		count: make([]int, outSize),
		k:     make([]int32, outSize*ksize),
	}
	w := make([]float64, ksize)
	ss := 1.0 / filterscale
	for i := range outSize {
		center := float64(float64(i)+0.5) * scale
		lo := int(float64(center-support) + 0.5)
		lo = max(lo, 0)
		hi := int(float64(center+support) + 0.5)
		hi = min(hi, inSize)
		n := hi - lo
		sum := 0.0
		for j := range n {
			v := bicubic(float64(float64(float64(j+lo)-center)+0.5) * ss)
			w[j] = v
			sum += v
		}
		for j := range n {
			if sum != 0 {
				w[j] /= sum
			}
			// Fixed point, rounding half away from zero (C truncation of
			// value ± 0.5).
			f := float64(w[j] * (1 << precisionBits))
			if w[j] < 0 {
				t.k[i*ksize+j] = int32(f - 0.5)
			} else {
				t.k[i*ksize+j] = int32(f + 0.5)
			}
		}
		t.start[i], t.count[i] = lo, n
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
	sw, sh := src.Dx(), src.Dy()
	ww, wh := win.Dx(), win.Dy()
	out := NewImage(ww, wh)
	if ww <= 0 || wh <= 0 || sw <= 0 || sh <= 0 {
		return out
	}
	needH := outW != sw
	needV := outH != sh

	// Rows of the source (relative to src) that the window needs.
	var vt *filterTaps
	r0, r1 := win.Min.Y, win.Max.Y
	if needV {
		vt = newFilterTaps(sh, outH)
		r0, r1 = math.MaxInt, 0
		for y := win.Min.Y; y < win.Max.Y; y++ {
			r0 = min(r0, vt.start[y])
			r1 = max(r1, vt.start[y]+vt.count[y])
		}
	}

	// Horizontal pass into tmp: rows r0..r1-1, window columns only.
	tmpW := ww
	var tmp []uint8
	if needH {
		ht := newFilterTaps(sw, outW)
		tmp = make([]uint8, 3*tmpW*(r1-r0))
		for r := r0; r < r1; r++ {
			in := img.Pix[3*((src.Min.Y+r)*img.W+src.Min.X):]
			o := tmp[3*(r-r0)*tmpW:]
			for xx := win.Min.X; xx < win.Max.X; xx++ {
				k := ht.k[xx*ht.ksize : xx*ht.ksize+ht.count[xx]]
				p := in[3*ht.start[xx]:]
				s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
				for j, kv := range k {
					s0 += int32(p[3*j]) * kv
					s1 += int32(p[3*j+1]) * kv
					s2 += int32(p[3*j+2]) * kv
				}
				i := 3 * (xx - win.Min.X)
				o[i], o[i+1], o[i+2] = clip8(s0), clip8(s1), clip8(s2)
			}
		}
	} else {
		// Width unchanged: the window columns of the source rows.
		tmp = make([]uint8, 3*tmpW*(r1-r0))
		for r := r0; r < r1; r++ {
			off := 3 * ((src.Min.Y+r)*img.W + src.Min.X + win.Min.X)
			copy(tmp[3*(r-r0)*tmpW:3*(r-r0+1)*tmpW], img.Pix[off:off+3*tmpW])
		}
	}

	if !needV {
		copy(out.Pix, tmp)
		return out
	}
	// Vertical pass.
	rowLen := 3 * tmpW
	acc := make([]int32, rowLen)
	for yy := win.Min.Y; yy < win.Max.Y; yy++ {
		for i := range acc {
			acc[i] = 1 << (precisionBits - 1)
		}
		k := vt.k[yy*vt.ksize : yy*vt.ksize+vt.count[yy]]
		for j, kv := range k {
			row := tmp[(vt.start[yy]+j-r0)*rowLen:][:rowLen]
			for i, v := range row {
				acc[i] += int32(v) * kv
			}
		}
		o := out.Pix[(yy-win.Min.Y)*rowLen:][:rowLen]
		for i, v := range acc {
			o[i] = clip8(v)
		}
	}
	return out
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
