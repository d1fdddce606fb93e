package preprocess

import (
	"encoding/binary"
	"image"
	"image/color"
)

// pngSource converts a decoded PNG to the mode Pillow opens it in, which
// depends on the header's color type and bit depth (data is the file).
func pngSource(img image.Image, data []byte) *Source {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	// signature (8) + IHDR length (4) + "IHDR" (4) + width, height (8) +
	// bit depth (1) + color type (1)
	if len(data) < 26 || string(data[12:16]) != "IHDR" {
		return genericSource(img)
	}
	depth, ctype := data[24], data[25]
	switch {
	case ctype == 0 && depth == 1:
		return &Source{Mode: Mode1, W: w, H: h, Pix: grayOf(img)}
	case ctype == 0 && depth == 16:
		return &Source{Mode: ModeI, W: w, H: h, Int: gray16Of(img)}
	case ctype == 0:
		return &Source{Mode: ModeL, W: w, H: h, Pix: grayOf(img)}
	case ctype == 3:
		if pm, ok := img.(*image.Paletted); ok {
			return palettedSource(pm)
		}
	case ctype == 4 && depth == 16:
		// Pillow opens 16-bit gray+alpha as RGBA (gray replicated).
		return &Source{Mode: ModeRGBA, W: w, H: h, Pix: nrgbaOf(img)}
	case ctype == 4:
		return &Source{Mode: ModeLA, W: w, H: h, Pix: laOf(nrgbaOf(img))}
	case ctype == 6:
		return &Source{Mode: ModeRGBA, W: w, H: h, Pix: nrgbaOf(img)}
	}
	return SourceOf(FromImage(img))
}

// webpSource converts a decoded WebP to RGB, or to RGBA when the file
// declares alpha (Pillow's modes), with libwebp's YUV conversion for lossy
// images.
func webpSource(img image.Image, alpha bool) *Source {
	var rgb *Image
	var a []uint8 // alpha plane, row by row, nil if opaque
	switch m := img.(type) {
	case *image.YCbCr:
		rgb = fromYCbCrWebP(m)
	case *image.NYCbCrA:
		rgb = fromYCbCrWebP(&m.YCbCr)
		if alpha {
			b := m.Rect
			a = make([]uint8, 0, b.Dx()*b.Dy())
			for y := b.Min.Y; y < b.Max.Y; y++ {
				a = append(a, m.A[m.AOffset(b.Min.X, y):][:b.Dx()]...)
			}
		}
	default:
		if alpha {
			b := img.Bounds()
			return &Source{Mode: ModeRGBA, W: b.Dx(), H: b.Dy(), Pix: nrgbaOf(img)}
		}
		rgb = FromImage(img)
	}
	if a == nil {
		return SourceOf(rgb)
	}
	out := newSource(ModeRGBA, rgb.W, rgb.H, nil)
	for i := range a {
		copy(out.Pix[4*i:][:3], rgb.Pix[3*i:])
		out.Pix[4*i+3] = a[i]
	}
	return out
}

// webpHasAlpha reports whether a WebP file declares alpha, as libwebp's
// WebPGetFeatures does: the alpha flag of an extended (VP8X) header, or
// the alpha_is_used bit of a lossless (VP8L) header.
func webpHasAlpha(data []byte) bool {
	if len(data) < 30 {
		return false
	}
	switch string(data[12:16]) {
	case "VP8X":
		return data[20]&0x10 != 0
	case "VP8L":
		// signature byte 0x2f, then 14 bits width-1, 14 bits height-1,
		// 1 bit alpha_is_used (little-endian bit order).
		return data[20] == 0x2f && binary.LittleEndian.Uint32(data[21:25])>>28&1 != 0
	}
	return false
}

// genericSource converts a decoded BMP or TIFF to the Pillow mode its Go
// image type corresponds to: gray as L (or 1 for a BMP with a two-color
// black and white palette), 16-bit gray as I;16, palette as P (or L/1 when
// the palette is the gray ramp Pillow's BMP reader turns into L/1), colors
// with some alpha below opaque as RGBA, other colors as RGB.
func genericSource(img image.Image) *Source {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.Gray:
		return &Source{Mode: ModeL, W: w, H: h, Pix: grayOf(img)}
	case *image.Gray16:
		return &Source{Mode: ModeI16, W: w, H: h, Int: gray16Of(img)}
	case *image.Paletted:
		s := palettedSource(m)
		if mode := grayRampMode(m.Palette); mode != "" {
			// The index is the gray value.
			s.Mode, s.Palette = mode, nil
			if mode == Mode1 {
				for i, v := range s.Pix {
					s.Pix[i] = v * 255
				}
			}
		}
		return s
	case *image.CMYK:
		return &Source{Mode: ModeCMYK, W: w, H: h, Pix: cmykOf(img)}
	}
	if !opaque(img) {
		return &Source{Mode: ModeRGBA, W: w, H: h, Pix: nrgbaOf(img)}
	}
	return SourceOf(FromImage(img))
}

// grayRampMode returns the mode Pillow's BMP reader gives a palette image:
// 1 for the two colors black and white, L for the n-entry ramp with entry
// i = (i, i, i), "" (P) otherwise.
func grayRampMode(p color.Palette) Mode {
	if len(p) == 0 || len(p) > 256 {
		return ""
	}
	want := func(i int) uint8 { return uint8(i) }
	if len(p) == 2 {
		want = func(i int) uint8 { return uint8(255 * i) }
	}
	for i, c := range p {
		v := straightRGB(c)
		if v != [3]uint8{want(i), want(i), want(i)} {
			return ""
		}
	}
	if len(p) == 2 {
		return Mode1
	}
	return ModeL
}

// opaque reports whether every pixel of img has full alpha.
func opaque(img image.Image) bool {
	if o, ok := img.(interface{ Opaque() bool }); ok {
		return o.Opaque()
	}
	return false
}

// palettedSource returns the indices and RGB palette of a palette image.
func palettedSource(m *image.Paletted) *Source {
	b := m.Rect
	s := newSource(ModeP, b.Dx(), b.Dy(), paletteRGB(m.Palette))
	for y := b.Min.Y; y < b.Max.Y; y++ {
		copy(s.Pix[(y-b.Min.Y)*s.W:][:s.W], m.Pix[m.PixOffset(b.Min.X, y):])
	}
	return s
}

// grayOf returns the 8-bit gray values of img (the red channel of the
// straight color for non-gray image types, e.g. gray PNGs with a tRNS
// chunk, which Go decodes as NRGBA).
func grayOf(img image.Image) []uint8 {
	b := img.Bounds()
	out := make([]uint8, 0, b.Dx()*b.Dy())
	if m, ok := img.(*image.Gray); ok {
		for y := b.Min.Y; y < b.Max.Y; y++ {
			out = append(out, m.Pix[m.PixOffset(b.Min.X, y):][:b.Dx()]...)
		}
		return out
	}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			out = append(out, straightRGB(img.At(x, y))[0])
		}
	}
	return out
}

// gray16Of returns the 16-bit gray values of img (Gray16, or NRGBA64 with
// R = G = B as Go decodes 16-bit gray PNGs with a tRNS chunk).
func gray16Of(img image.Image) []int32 {
	b := img.Bounds()
	out := make([]int32, 0, b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			var v uint16
			switch c := img.At(x, y).(type) {
			case color.Gray16:
				v = c.Y
			case color.NRGBA64:
				v = c.R
			default:
				v = color.Gray16Model.Convert(c).(color.Gray16).Y
			}
			out = append(out, int32(v))
		}
	}
	return out
}

// nrgbaOf returns the straight (non-premultiplied) 8-bit RGBA values of
// img, 16-bit samples reduced to their high byte.
func nrgbaOf(img image.Image) []uint8 {
	b := img.Bounds()
	out := make([]uint8, 0, 4*b.Dx()*b.Dy())
	if m, ok := img.(*image.NRGBA); ok {
		for y := b.Min.Y; y < b.Max.Y; y++ {
			out = append(out, m.Pix[m.PixOffset(b.Min.X, y):][:4*b.Dx()]...)
		}
		return out
	}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			var c color.NRGBA64
			if n, ok := img.At(x, y).(color.NRGBA64); ok {
				c = n
			} else {
				c = color.NRGBA64Model.Convert(img.At(x, y)).(color.NRGBA64)
			}
			out = append(out, uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8), uint8(c.A>>8))
		}
	}
	return out
}

// laOf keeps the red and alpha channels of RGBA values.
func laOf(rgba []uint8) []uint8 {
	out := make([]uint8, len(rgba)/2)
	for i := range len(rgba) / 4 {
		out[2*i], out[2*i+1] = rgba[4*i], rgba[4*i+3]
	}
	return out
}

// cmykOf returns the CMYK values of img.
func cmykOf(img image.Image) []uint8 {
	b := img.Bounds()
	out := make([]uint8, 0, 4*b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.CMYKModel.Convert(img.At(x, y)).(color.CMYK)
			out = append(out, c.C, c.M, c.Y, c.K)
		}
	}
	return out
}
