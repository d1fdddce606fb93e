package preprocess

import (
	"errors"
	"fmt"
)

// Mode is a Pillow image mode: the layout Image.open gives a decoded
// image before any conversion.
type Mode string

// The modes a Source can have (Pillow's names).
const (
	Mode1    Mode = "1"    // bilevel, one byte per pixel, 0 or 255
	ModeL    Mode = "L"    // 8-bit grayscale
	ModeLA   Mode = "LA"   // 8-bit grayscale and alpha
	ModeP    Mode = "P"    // 8-bit palette indices
	ModeRGB  Mode = "RGB"  // 8-bit RGB
	ModeRGBA Mode = "RGBA" // 8-bit RGB and (straight) alpha
	ModeCMYK Mode = "CMYK" // 8-bit CMYK as Pillow stores it
	ModeI16  Mode = "I;16" // 16-bit unsigned grayscale
	ModeI    Mode = "I"    // 32-bit signed integer grayscale
	ModeF    Mode = "F"    // 32-bit float grayscale
)

// bands returns the number of 8-bit samples per pixel of the 8-bit modes
// (0 for the others).
func (m Mode) bands() int {
	switch m {
	case Mode1, ModeL, ModeP:
		return 1
	case ModeLA:
		return 2
	case ModeRGB:
		return 3
	case ModeRGBA, ModeCMYK:
		return 4
	}
	return 0
}

// Source is a decoded image in the mode Pillow opens it in (see
// DecodeSource), before any conversion to RGB. Exactly one of Pix, Int and
// Float holds the samples, row by row without padding:
//
//   - Pix for the 8-bit modes, Mode.bands() bytes per pixel (Mode1 stores
//     0 or 255, ModeP palette indices);
//   - Int for ModeI and ModeI16, one value per pixel;
//   - Float for ModeF, one value per pixel.
//
// Palette is the RGB palette of ModeP (entries beyond the file's palette
// are black). A ModeP image's transparency does not matter here: Pillow
// resizes palette images by their indices and ignores transparency when it
// converts them to RGB.
type Source struct {
	Mode    Mode
	W, H    int
	Pix     []uint8
	Int     []int32
	Float   []float32
	Palette *[256][3]uint8
}

// newSource returns a zeroed w×h image of mode m (palette shared with pal).
func newSource(m Mode, w, h int, pal *[256][3]uint8) *Source {
	s := &Source{Mode: m, W: w, H: h, Palette: pal}
	switch m {
	case ModeI, ModeI16:
		s.Int = make([]int32, w*h)
	case ModeF:
		s.Float = make([]float32, w*h)
	default:
		s.Pix = make([]uint8, m.bands()*w*h)
	}
	return s
}

// SourceOf wraps an RGB image as a ModeRGB source, sharing its pixels.
func SourceOf(img *Image) *Source {
	return &Source{Mode: ModeRGB, W: img.W, H: img.H, Pix: img.Pix}
}

// Check reports whether s is well formed: a known mode, non-negative size,
// samples of the right length in the right field, a palette for ModeP.
func (s *Source) Check() error {
	if s == nil {
		return errors.New("nil image")
	}
	if s.W < 0 || s.H < 0 {
		return fmt.Errorf("image has negative size %dx%d", s.W, s.H)
	}
	n := s.W * s.H
	switch s.Mode {
	case ModeI, ModeI16:
		if len(s.Int) != n {
			return fmt.Errorf("mode %s image %dx%d has %d values, want %d", s.Mode, s.W, s.H, len(s.Int), n)
		}
	case ModeF:
		if len(s.Float) != n {
			return fmt.Errorf("mode F image %dx%d has %d values, want %d", s.W, s.H, len(s.Float), n)
		}
	default:
		b := s.Mode.bands()
		if b == 0 {
			return fmt.Errorf("unsupported image mode %q", s.Mode)
		}
		if len(s.Pix) != b*n {
			return fmt.Errorf("mode %s image %dx%d has %d bytes, want %d", s.Mode, s.W, s.H, len(s.Pix), b*n)
		}
		if s.Mode == ModeP && s.Palette == nil {
			return errors.New("mode P image without a palette")
		}
	}
	return nil
}

// RGB converts s to 8-bit RGB as Pillow's convert("RGB") does (Pillow
// 9.4):
//
//   - 1, L: the value in all three channels; LA: the same, alpha dropped;
//   - P: the palette color of each index;
//   - RGBA: alpha dropped (the stored, straight colors are kept);
//   - CMYK: R = (255-K) - round(C·(255-K)/255), and so on;
//   - I, I;16: the value clipped to [0, 255];
//   - F: the value clipped to [0, 255] and truncated (NaN gives 0).
//
// A ModeRGB source shares its pixels with the result.
func (s *Source) RGB() *Image {
	if s.Mode == ModeRGB {
		return &Image{W: s.W, H: s.H, Pix: s.Pix}
	}
	out := NewImage(s.W, s.H)
	o := out.Pix
	n := s.W * s.H
	switch s.Mode {
	case Mode1, ModeL:
		for i, v := range s.Pix[:n] {
			o[3*i], o[3*i+1], o[3*i+2] = v, v, v
		}
	case ModeLA:
		for i := range n {
			v := s.Pix[2*i]
			o[3*i], o[3*i+1], o[3*i+2] = v, v, v
		}
	case ModeP:
		pal := s.Palette
		for i, v := range s.Pix[:n] {
			c := pal[v]
			o[3*i], o[3*i+1], o[3*i+2] = c[0], c[1], c[2]
		}
	case ModeRGBA:
		for i := range n {
			p := s.Pix[4*i:][:3]
			o[3*i], o[3*i+1], o[3*i+2] = p[0], p[1], p[2]
		}
	case ModeCMYK:
		for i := range n {
			p := s.Pix[4*i:][:4]
			o[3*i], o[3*i+1], o[3*i+2] = cmykToRGB(p[0], p[1], p[2], p[3])
		}
	case ModeI, ModeI16:
		for i, v := range s.Int[:n] {
			c := uint8(min(max(v, 0), 255))
			o[3*i], o[3*i+1], o[3*i+2] = c, c, c
		}
	case ModeF:
		for i, v := range s.Float[:n] {
			var c uint8
			switch {
			case v >= 255:
				c = 255
			case v > 0: // false for NaN
				c = uint8(v)
			}
			o[3*i], o[3*i+1], o[3*i+2] = c, c, c
		}
	}
	return out
}

// crop returns the w×h region of s at (x, y), zero-filled (in s's mode)
// where it extends beyond s, as Pillow's crop and torchvision's constant
// padding with fill 0 do.
func (s *Source) crop(x, y, w, h int) *Source {
	out := newSource(s.Mode, w, h, s.Palette)
	x0, y0 := max(x, 0), max(y, 0)
	x1, y1 := min(x+w, s.W), min(y+h, s.H)
	if x0 >= x1 || y0 >= y1 {
		return out
	}
	for sy := y0; sy < y1; sy++ {
		si, di := sy*s.W+x0, (sy-y)*w+(x0-x)
		n := x1 - x0
		switch {
		case s.Int != nil:
			copy(out.Int[di:][:n], s.Int[si:])
		case s.Float != nil:
			copy(out.Float[di:][:n], s.Float[si:])
		default:
			b := s.Mode.bands()
			copy(out.Pix[b*di:][:b*n], s.Pix[b*si:])
		}
	}
	return out
}

// ErrModeNotResizable is returned (wrapped) when an image's mode cannot be
// resampled with the requested filter because Pillow 9.4 refuses to as
// well (mode I;16 with a bicubic or bilinear filter: "image has wrong
// mode"), so OpenAI's preprocess fails on such an image too.
var ErrModeNotResizable = errors.New("Pillow 9.4 cannot resample this image mode with a bicubic or bilinear filter (OpenAI's preprocess fails on it too)")

// resizeSource resizes s to outW×outH in its own mode, as Pillow 9.4's
// Image.resize(size, filter) does, and returns the output window win
// (inside the output). The rules by mode:
//
//   - same size: a copy (no resampling);
//   - 1 and P: nearest neighbour whatever the filter (resizeNearest);
//   - L, RGB, CMYK: the 8-bit fixed-point filter per band, as for RGB;
//   - LA, RGBA: colors premultiplied by alpha (round(c·a/255)), resampled
//     as above with alpha, then divided by the resampled alpha
//     (truncating, clipped to 255; kept as they are where alpha is 0 or
//     255);
//   - I: the filter with float64 weights per pass, each pass rounded half
//     away from zero to int32; F: the same, each pass stored as float32;
//   - I;16: an error (ErrModeNotResizable).
func resizeSource(s *Source, outW, outH int, win [4]int, f filter) (*Source, error) {
	x, y, w, h := win[0], win[1], win[2], win[3]
	if outW == s.W && outH == s.H {
		return s.crop(x, y, w, h), nil
	}
	switch s.Mode {
	case Mode1, ModeP:
		return resizeNearest(s, outW, outH, x, y, w, h), nil
	case ModeL, ModeRGB, ModeCMYK:
		out := newSource(s.Mode, w, h, nil)
		out.Pix = resample8(s.Pix, s.Mode.bands(), s.W, s.H, outW, outH, x, y, w, h, f)
		return out, nil
	case ModeLA, ModeRGBA:
		nb := s.Mode.bands()
		pre := premultiply(s.Pix, nb)
		out := newSource(s.Mode, w, h, nil)
		out.Pix = resample8(pre, nb, s.W, s.H, outW, outH, x, y, w, h, f)
		unpremultiply(out.Pix, nb)
		return out, nil
	case ModeI:
		out := newSource(ModeI, w, h, nil)
		out.Int = resample32(s.Int, s.W, s.H, outW, outH, x, y, w, h, f, roundHalfAway)
		return out, nil
	case ModeF:
		out := newSource(ModeF, w, h, nil)
		out.Float = resample32(s.Float, s.W, s.H, outW, outH, x, y, w, h, f,
			func(v float64) float32 { return float32(v) })
		return out, nil
	case ModeI16:
		return nil, fmt.Errorf("resize mode I;16 image: %w", ErrModeNotResizable)
	}
	return nil, fmt.Errorf("resize: unsupported image mode %q", s.Mode)
}

// roundHalfAway is Pillow's ROUND_UP for 32-bit integer resampling:
// round half away from zero, then truncate to int32.
func roundHalfAway(v float64) int32 {
	if v >= 0 {
		return int32(v + 0.5)
	}
	return int32(v - 0.5)
}

// resizeNearest is Pillow's nearest-neighbour resize (an affine scaling):
// output column x samples input column int(x0 + x·sx) with x0 = sx/2 and
// sx = W/outW, the position accumulated in float64 one step at a time as
// Pillow does (so that the rounding is the same); rows likewise.
func resizeNearest(s *Source, outW, outH, x, y, w, h int) *Source {
	cols := nearestIndex(s.W, outW)
	rows := nearestIndex(s.H, outH)
	out := newSource(s.Mode, w, h, s.Palette)
	for yy := range h {
		src := s.Pix[rows[y+yy]*s.W:][:s.W]
		dst := out.Pix[yy*w:][:w]
		for xx := range w {
			dst[xx] = src[cols[x+xx]]
		}
	}
	return out
}

// nearestIndex returns the input index of each of the n output samples of
// a nearest-neighbour resize from size in.
func nearestIndex(in, n int) []int {
	step := float64(in) / float64(n)
	pos := step * 0.5
	idx := make([]int, n)
	for i := range idx {
		j := 0
		if pos >= 0 {
			j = int(pos)
		}
		idx[i] = min(j, in-1)
		pos = float64(pos + step)
	}
	return idx
}

// premultiply returns a copy of the nb-band (LA or RGBA) pixels with the
// colors multiplied by alpha, round(c·a/255), as Pillow's conversion to
// "La"/"RGBa" computes it.
func premultiply(pix []uint8, nb int) []uint8 {
	out := make([]uint8, len(pix))
	for i := 0; i+nb <= len(pix); i += nb {
		a := int(pix[i+nb-1])
		for c := range nb - 1 {
			out[i+c] = uint8(mulDiv255(int(pix[i+c]), a))
		}
		out[i+nb-1] = uint8(a)
	}
	return out
}

// unpremultiply divides the colors of premultiplied nb-band pixels by
// alpha in place as Pillow's conversion from "La"/"RGBa" does: 255·c/a
// truncated and clipped to 255, except where alpha is 0 or 255 (kept).
func unpremultiply(pix []uint8, nb int) {
	for i := 0; i+nb <= len(pix); i += nb {
		a := int(pix[i+nb-1])
		if a == 0 || a == 255 {
			continue
		}
		for c := range nb - 1 {
			pix[i+c] = uint8(min(255*int(pix[i+c])/a, 255))
		}
	}
}

// resample8 resizes nb-band 8-bit pixels (W×H) to outW×outH with filter f
// as Pillow does for 8-bit images (the arithmetic of resample, per band)
// and returns the w×h window at (x, y) of the output.
func resample8(pix []uint8, nb, W, H, outW, outH, x, y, w, h int, f filter) []uint8 {
	// Horizontal pass over the source rows the window needs.
	r0, r1 := y, y+h
	var vt *filterTaps
	if outH != H {
		vt = newFilterTapsWith(H, outH, f)
		r0, r1 = vt.start[y], 0
		for yy := y; yy < y+h; yy++ {
			r1 = max(r1, vt.start[yy]+vt.count[yy])
		}
	}
	rowLen := nb * w
	tmp := make([]uint8, (r1-r0)*rowLen)
	if outW != W {
		ht := newFilterTapsWith(W, outW, f)
		for r := r0; r < r1; r++ {
			in := pix[r*nb*W:][:nb*W]
			d := tmp[(r-r0)*rowLen:][:rowLen]
			for xx := range w {
				k := ht.taps[x+xx]
				p := in[nb*ht.start[x+xx]:]
				for b := range nb {
					s := int32(1 << (precisionBits - 1))
					for j, kv := range k {
						s += int32(p[nb*j+b]) * kv
					}
					d[nb*xx+b] = clip8(s)
				}
			}
		}
	} else {
		for r := r0; r < r1; r++ {
			copy(tmp[(r-r0)*rowLen:][:rowLen], pix[(r*W+x)*nb:])
		}
	}
	if vt == nil {
		return tmp
	}
	out := make([]uint8, h*rowLen)
	for yy := range h {
		k := vt.taps[y+yy]
		base := vt.start[y+yy] - r0
		d := out[yy*rowLen:][:rowLen]
		for i := range rowLen {
			s := int32(1 << (precisionBits - 1))
			for j, kv := range k {
				s += int32(tmp[(base+j)*rowLen+i]) * kv
			}
			d[i] = clip8(s)
		}
	}
	return out
}

// resample32 resizes W×H single-band 32-bit samples to outW×outH with
// filter f as Pillow does for modes I and F: float64 weights, the sum of
// each pass accumulated in float64 in tap order and stored with conv (a
// rounding to int32 for I, a float32 conversion for F). It returns the w×h
// window at (x, y) of the output.
func resample32[T int32 | float32](pix []T, W, H, outW, outH, x, y, w, h int, f filter, conv func(float64) T) []T {
	r0, r1 := y, y+h
	var vt *filterCoeffs
	if outH != H {
		vt = newFilterCoeffs(H, outH, f)
		r0, r1 = vt.start[y], 0
		for yy := y; yy < y+h; yy++ {
			r1 = max(r1, vt.start[yy]+len(vt.w[yy]))
		}
	}
	tmp := make([]T, (r1-r0)*w)
	if outW != W {
		ht := newFilterCoeffs(W, outW, f)
		for r := r0; r < r1; r++ {
			in := pix[r*W:][:W]
			d := tmp[(r-r0)*w:][:w]
			for xx := range w {
				p := in[ht.start[x+xx]:]
				s := 0.0
				for j, kv := range ht.w[x+xx] {
					s = float64(s + float64(float64(p[j])*kv))
				}
				d[xx] = conv(s)
			}
		}
	} else {
		for r := r0; r < r1; r++ {
			copy(tmp[(r-r0)*w:][:w], pix[r*W+x:])
		}
	}
	if vt == nil {
		return tmp
	}
	out := make([]T, h*w)
	for yy := range h {
		k := vt.w[y+yy]
		base := vt.start[y+yy] - r0
		d := out[yy*w:][:w]
		for i := range w {
			s := 0.0
			for j, kv := range k {
				s = float64(s + float64(float64(tmp[(base+j)*w+i])*kv))
			}
			d[i] = conv(s)
		}
	}
	return out
}
