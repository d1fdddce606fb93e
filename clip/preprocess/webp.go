package preprocess

import "image"

// fromYCbCrWebP converts a decoded lossy WebP (VP8, 4:2:0, BT.601 "studio
// range" YUV) to RGB exactly as libwebp does by default, which is what
// Pillow returns: chroma is upsampled with libwebp's "fancy" bilinear
// filter (weights 9/16, 3/16, 3/16, 1/16 of the four nearest chroma
// samples, computed in libwebp's integer steps) and converted with its
// 14-bit fixed-point BT.601 equations.
func fromYCbCrWebP(m *image.YCbCr) *Image {
	if m.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		return fromYCbCrJPEG(m)
	}
	b := m.Rect
	w, h := b.Dx(), b.Dy()
	out := NewImage(w, h)
	if w == 0 || h == 0 {
		return out
	}
	cw, ch := (w+1)/2, (h+1)/2
	c0 := m.COffset(b.Min.X, b.Min.Y)
	for y := range h {
		near := y >> 1
		far := near - 1
		if y&1 != 0 {
			far = near + 1
		}
		far = min(max(far, 0), ch-1)
		nu := m.Cb[c0+near*m.CStride:]
		nv := m.Cr[c0+near*m.CStride:]
		fu := m.Cb[c0+far*m.CStride:]
		fv := m.Cr[c0+far*m.CStride:]
		yrow := m.Y[m.YOffset(b.Min.X, b.Min.Y+y):]
		o := out.Pix[3*y*w:]
		for x := range w {
			j := x >> 1
			var u, v int
			if x == 0 || (w&1 == 0 && x == w-1) {
				// Image edge columns: vertical interpolation only.
				u = (3*int(nu[j]) + int(fu[j]) + 2) >> 2
				v = (3*int(nv[j]) + int(fv[j]) + 2) >> 2
			} else {
				k := j - 1
				if x&1 != 0 {
					k = j + 1
				}
				k = min(k, cw-1)
				u = webpFancy(int(nu[j]), int(nu[k]), int(fu[j]), int(fu[k]))
				v = webpFancy(int(nv[j]), int(nv[k]), int(fv[j]), int(fv[k]))
			}
			o[3*x], o[3*x+1], o[3*x+2] = webpYUVToRGB(int(yrow[x]), u, v)
		}
	}
	return out
}

// webpFancy interpolates a chroma value from the nearest sample a, the
// horizontal neighbour b, the vertical neighbour c and the diagonal d:
// about (9a + 3b + 3c + d + 8)/16, with libwebp's exact rounding
// (an average over the 2x2 block, then the mean with a).
func webpFancy(a, b, c, d int) int {
	diag := (a + b + c + d + 8 + 2*(b+c)) >> 3
	return (diag + a) >> 1
}

// webpYUVToRGB is libwebp's BT.601 conversion: with a.b = (a*b)>>8,
// R = (19077.y + 26149.v - 14234) >> 6, G = (19077.y - 6419.u - 13320.v +
// 8708) >> 6, B = (19077.y + 33050.u - 17685) >> 6, clipped to [0, 255].
func webpYUVToRGB(y, u, v int) (uint8, uint8, uint8) {
	yy := (y * 19077) >> 8
	r := yy + (v*26149)>>8 - 14234
	g := yy - (u*6419)>>8 - (v*13320)>>8 + 8708
	b := yy + (u*33050)>>8 - 17685
	return webpClip(r), webpClip(g), webpClip(b)
}

func webpClip(v int) uint8 {
	if v&^(256<<6-1) == 0 {
		return uint8(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}
