package preprocess

import "image"

// This file turns the planes of a decoded JPEG (Go's *image.YCbCr) into RGB
// the way libjpeg(-turbo) does by default, which is what Pillow returns. It
// serves FromImage, and Decode in builds without cgo (with cgo, libjpeg
// itself decodes JPEGs; see jpeg_turbo.go):
//
//   - subsampled chroma is upsampled with libjpeg's "fancy" triangle filter
//     for 2:1 ratios (3/4 of the nearer sample plus 1/4 of the next one in
//     each subsampled direction, with libjpeg's alternating rounding
//     biases), and by replication for 4:1 ratios or when libjpeg falls back
//     to it (2:1 horizontal with a chroma width of at most 2);
//   - YCbCr is converted with the JFIF equations in libjpeg's 16-bit fixed
//     point: R = Y + 1.402 (Cr-128), G = Y - 0.34414 (Cb-128) - 0.71414
//     (Cr-128), B = Y + 1.772 (Cb-128).
//
// Image edges replicate the last chroma sample, as libjpeg does.

// JFIF YCbCr->RGB coefficients in 16-bit fixed point, rounded to nearest
// (libjpeg's FIX(x) = round(x * 65536)).
const (
	fixCrR = 91881  // 1.40200
	fixCbB = 116130 // 1.77200
	fixCrG = 46802  // 0.71414
	fixCbG = 22554  // 0.34414
	half16 = 1 << 15
)

// jpegYCCToRGB converts one pixel with libjpeg's fixed-point arithmetic.
func jpegYCCToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	yy := int32(y)
	b1 := int32(cb) - 128
	r1 := int32(cr) - 128
	r := yy + (fixCrR*r1+half16)>>16
	g := yy + (-fixCbG*b1+half16-fixCrG*r1)>>16
	b := yy + (fixCbB*b1+half16)>>16
	return clampU8(r), clampU8(g), clampU8(b)
}

func clampU8(v int32) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// subsampling returns the horizontal and vertical chroma subsampling
// factors of r.
func subsampling(r image.YCbCrSubsampleRatio) (hf, vf int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return 2, 1
	case image.YCbCrSubsampleRatio420:
		return 2, 2
	case image.YCbCrSubsampleRatio440:
		return 1, 2
	case image.YCbCrSubsampleRatio411:
		return 4, 1
	case image.YCbCrSubsampleRatio410:
		return 4, 2
	}
	return 1, 1
}

// chromaUpsampler produces full-resolution rows of one chroma plane.
type chromaUpsampler struct {
	plane      []uint8
	stride     int
	hf, vf     int
	x0         int // absolute x of the image's first column
	c0x, c0y   int // absolute chroma coordinates of the plane's first sample
	cw, ch     int // chroma plane size covering the image
	w          int
	fancyH     bool // triangle filter horizontally
	fancyV     bool // triangle filter vertically
	colsum     []int
	nearIdx    []int // per output column: near chroma column (plane-relative)
	farIdx     []int // per output column: next-nearest chroma column
	oddColumns []bool
}

func newChromaUpsampler(m *image.YCbCr, plane []uint8) *chromaUpsampler {
	b := m.Rect
	hf, vf := subsampling(m.SubsampleRatio)
	u := &chromaUpsampler{
		plane: plane, stride: m.CStride, hf: hf, vf: vf,
		x0: b.Min.X, w: b.Dx(),
		c0x: b.Min.X / hf, c0y: b.Min.Y / vf,
	}
	u.cw = (b.Max.X-1)/hf - u.c0x + 1
	u.ch = (b.Max.Y-1)/vf - u.c0y + 1
	// libjpeg's choice of method (jdsample.c, jinit_upsampler).
	switch {
	case hf == 2 && vf == 1:
		u.fancyH = u.cw > 2
	case hf == 2 && vf == 2:
		u.fancyH = u.cw > 2
		u.fancyV = u.fancyH
	case hf == 1 && vf == 2:
		u.fancyV = true
	}
	u.nearIdx = make([]int, u.w)
	u.farIdx = make([]int, u.w)
	u.oddColumns = make([]bool, u.w)
	for i := range u.w {
		x := u.x0 + i
		n := x/hf - u.c0x
		u.nearIdx[i] = n
		u.oddColumns[i] = x%2 != 0
		f := n - 1
		if x%2 != 0 {
			f = n + 1
		}
		u.farIdx[i] = min(max(f, 0), u.cw-1)
	}
	u.colsum = make([]int, u.cw)
	return u
}

// row writes the upsampled chroma of image row y (absolute) into dst.
func (u *chromaUpsampler) row(dst []uint8, y int) {
	nearRow := y/u.vf - u.c0y
	near := u.plane[nearRow*u.stride:]
	if !u.fancyV {
		if !u.fancyH {
			for i := range dst {
				dst[i] = near[u.nearIdx[i]]
			}
			return
		}
		// h2v1: 3/4 nearer + 1/4 further, biases 1 (even) and 2 (odd).
		for i := range dst {
			bias := 1
			if u.oddColumns[i] {
				bias = 2
			}
			dst[i] = uint8((3*int(near[u.nearIdx[i]]) + int(near[u.farIdx[i]]) + bias) >> 2)
		}
		return
	}
	farRow := nearRow - 1
	oddRow := y%2 != 0
	if oddRow {
		farRow = nearRow + 1
	}
	farRow = min(max(farRow, 0), u.ch-1)
	far := u.plane[farRow*u.stride:]
	if !u.fancyH {
		// h1v2: biases 1 (upper row of a pair) and 2 (lower row).
		bias := 1
		if oddRow {
			bias = 2
		}
		for i := range dst {
			j := u.nearIdx[i]
			dst[i] = uint8((3*int(near[j]) + int(far[j]) + bias) >> 2)
		}
		return
	}
	// h2v2: vertical column sums, then 3/4-1/4 horizontally, biases 8
	// (even columns) and 7 (odd columns), divided by 16.
	for j := range u.colsum {
		u.colsum[j] = 3*int(near[j]) + int(far[j])
	}
	for i := range dst {
		bias := 8
		if u.oddColumns[i] {
			bias = 7
		}
		dst[i] = uint8((3*u.colsum[u.nearIdx[i]] + u.colsum[u.farIdx[i]] + bias) >> 4)
	}
}

// fromYCbCrJPEG converts a decoded JPEG to RGB like libjpeg; see the top of
// this file.
func fromYCbCrJPEG(m *image.YCbCr) *Image {
	b := m.Rect
	w, h := b.Dx(), b.Dy()
	out := NewImage(w, h)
	if w == 0 || h == 0 {
		return out
	}
	cbU := newChromaUpsampler(m, m.Cb)
	crU := newChromaUpsampler(m, m.Cr)
	cb := make([]uint8, w)
	cr := make([]uint8, w)
	for r := range h {
		y := b.Min.Y + r
		cbU.row(cb, y)
		crU.row(cr, y)
		yrow := m.Y[m.YOffset(b.Min.X, y):]
		o := out.Pix[3*r*w:]
		for i := range w {
			o[3*i], o[3*i+1], o[3*i+2] = jpegYCCToRGB(yrow[i], cb[i], cr[i])
		}
	}
	return out
}
