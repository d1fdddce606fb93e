// Package preprocess decodes images and applies CLIP's image transforms,
// reproducing the PIL/torchvision pipelines of the reference code:
//
//   - Test: CLIP's test transform (resize the shorter side with bicubic
//     filtering, center crop, normalize), used by CLIP, CoOp, CLIP-Adapter
//     and Tip-Adapter at test time;
//   - Train: RandomResizedCrop + RandomHorizontalFlip + normalize, the
//     training augmentation of CoOp/CLIP-Adapter (scale 0.08–1) and
//     Tip-Adapter (scale 0.5–1).
//
// Resize reproduces Pillow's bicubic resampling (Image.resize with
// Image.BICUBIC, Pillow 9.4) exactly, integer rounding included, so the
// transforms give the same pixels as torchvision on a PIL image. Decoding
// follows what Image.open(path).convert("RGB") returns: palette, grayscale,
// CMYK and alpha images are converted as Pillow converts them, and lossy
// WebP is converted as libwebp does.
//
// JPEGs are decoded by the system libjpeg through cgo (libjpeg-turbo,
// Debian's libjpeg62-turbo-dev, linked with -ljpeg), the library Pillow
// uses, with Pillow's settings, so they too match Pillow pixel for pixel.
// Everything else is pure Go. Built without cgo (CGO_ENABLED=0) or with
// the build tag nolibjpeg (for a machine without libjpeg's headers), the
// package falls back to Go's image/jpeg with libjpeg's chroma upsampling
// and color conversion; JPEG pixels can then differ slightly from
// Pillow's, because Go's inverse DCT is not libjpeg's (see Decode).
//
// Two orders of conversion (Order): OrderDassl converts to RGB right
// after decoding (Decode, Open), as Dassl's loader does for CoOp and
// CLIP-Adapter; the dataset pipeline uses it. OrderOpenAI keeps the image
// in the mode Pillow opens it in (Source, from DecodeSource or
// OpenSource), resizes and crops it in that mode with Pillow's per-mode
// rules and converts to RGB last, as OpenAI's clip.load preprocess (and
// OpenCLIP's) does; the clip commands use it (ApplyOrdered). The two
// differ only for images that are neither RGB nor grayscale.
//
// Transforms work on 8-bit RGB images (Image). Functions do not modify
// their input images, and transforms hold no state besides their options, so they may
// be used from several goroutines at once, each passing its own
// *rand.Rand.
package preprocess

import (
	"errors"
	"fmt"
	"image"
	"image/color"
)

// Image is an 8-bit RGB image: Pix holds W*H pixels row by row, 3 bytes
// (R, G, B) per pixel, without padding.
type Image struct {
	W, H int
	Pix  []uint8
}

// NewImage returns a black w×h image. Negative sizes are treated as 0.
func NewImage(w, h int) *Image {
	w, h = max(w, 0), max(h, 0)
	return &Image{W: w, H: h, Pix: make([]uint8, 3*w*h)}
}

// Check reports whether m is a well-formed image: non-nil, non-negative
// size and len(Pix) == 3*W*H.
func (m *Image) Check() error {
	switch {
	case m == nil:
		return errors.New("nil image")
	case m.W < 0 || m.H < 0:
		return fmt.Errorf("image has negative size %dx%d", m.W, m.H)
	case len(m.Pix) != 3*m.W*m.H:
		return fmt.Errorf("image %dx%d has %d bytes of pixels, want %d", m.W, m.H, len(m.Pix), 3*m.W*m.H)
	}
	return nil
}

// At returns the pixel at (x, y), which must lie inside the image.
func (m *Image) At(x, y int) (r, g, b uint8) {
	i := 3 * (y*m.W + x)
	return m.Pix[i], m.Pix[i+1], m.Pix[i+2]
}

// Clone returns a copy of m.
func (m *Image) Clone() *Image {
	return &Image{W: m.W, H: m.H, Pix: append([]uint8(nil), m.Pix...)}
}

// ToRGBA returns m as a standard library image (opaque), e.g. for encoding
// with image/png.
func (m *Image) ToRGBA() *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, m.W, m.H))
	for i, j := 0, 0; i < len(m.Pix); i, j = i+3, j+4 {
		out.Pix[j], out.Pix[j+1], out.Pix[j+2], out.Pix[j+3] = m.Pix[i], m.Pix[i+1], m.Pix[i+2], 255
	}
	return out
}

// FromImage converts a standard library image to RGB the way Pillow's
// convert("RGB") treats the corresponding mode:
//
//   - alpha is dropped: non-premultiplied colors (NRGBA, NRGBA64, palette
//     entries of type color.NRGBA) are kept as they are; premultiplied
//     colors (RGBA, RGBA64 and other color models) are un-premultiplied
//     first, which gives back the stored color up to rounding;
//   - 16-bit samples keep their high byte;
//   - grayscale is replicated into the three channels;
//   - CMYK uses Pillow's formula R = (255-K) - round(C*(255-K)/255);
//   - YCbCr (as decoded from JPEG) is upsampled and converted with
//     libjpeg's default "fancy" triangle filter and fixed-point JFIF
//     conversion; see Decode.
//
// Decode applies format-specific conversions on top of this where Pillow
// differs (16-bit grayscale PNG, WebP, GIF transparency).
func FromImage(img image.Image) *Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewImage(w, h)
	if w == 0 || h == 0 {
		return out
	}
	pix := out.Pix
	switch m := img.(type) {
	case *image.YCbCr:
		return fromYCbCrJPEG(m)
	case *image.NYCbCrA:
		return fromYCbCrJPEG(&m.YCbCr)
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				v := row[x]
				pix[i], pix[i+1], pix[i+2] = v, v, v
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				v := row[2*x] // big-endian: high byte first
				pix[i], pix[i+1], pix[i+2] = v, v, v
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				pix[i], pix[i+1], pix[i+2] = row[4*x], row[4*x+1], row[4*x+2]
			}
		}
	case *image.NRGBA64:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				pix[i], pix[i+1], pix[i+2] = row[8*x], row[8*x+2], row[8*x+4]
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				r, g, bl, a := row[4*x], row[4*x+1], row[4*x+2], row[4*x+3]
				if a != 255 {
					r, g, bl = unpremul8(r, a), unpremul8(g, a), unpremul8(bl, a)
				}
				pix[i], pix[i+1], pix[i+2] = r, g, bl
			}
		}
	case *image.CMYK:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				pix[i], pix[i+1], pix[i+2] = cmykToRGB(row[4*x], row[4*x+1], row[4*x+2], row[4*x+3])
			}
		}
	case *image.Paletted:
		pal := paletteRGB(m.Palette)
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				c := pal[row[x]]
				pix[i], pix[i+1], pix[i+2] = c[0], c[1], c[2]
			}
		}
	default:
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := straightRGB(img.At(x, y))
				pix[i], pix[i+1], pix[i+2] = c[0], c[1], c[2]
				i += 3
			}
		}
	}
	return out
}

// unpremul8 undoes alpha premultiplication of one 8-bit channel, rounding
// to nearest. Fully transparent pixels are black.
func unpremul8(c, a uint8) uint8 {
	if a == 0 {
		return 0
	}
	v := (uint32(c)*255 + uint32(a)/2) / uint32(a)
	return uint8(min(v, 255))
}

// straightRGB returns the non-premultiplied 8-bit color of c.
func straightRGB(c color.Color) [3]uint8 {
	switch v := c.(type) {
	case color.NRGBA:
		return [3]uint8{v.R, v.G, v.B}
	case color.NRGBA64:
		return [3]uint8{uint8(v.R >> 8), uint8(v.G >> 8), uint8(v.B >> 8)}
	case color.Gray:
		return [3]uint8{v.Y, v.Y, v.Y}
	case color.Gray16:
		return [3]uint8{uint8(v.Y >> 8), uint8(v.Y >> 8), uint8(v.Y >> 8)}
	case color.CMYK:
		r, g, b := cmykToRGB(v.C, v.M, v.Y, v.K)
		return [3]uint8{r, g, b}
	}
	n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
	return [3]uint8{uint8(n.R >> 8), uint8(n.G >> 8), uint8(n.B >> 8)}
}

// paletteRGB converts a palette to 256 RGB entries; indices beyond the
// palette are black, as in Pillow.
func paletteRGB(p color.Palette) *[256][3]uint8 {
	var out [256][3]uint8
	for i, c := range p {
		if i == 256 {
			break
		}
		out[i] = straightRGB(c)
	}
	return &out
}

// cmykToRGB is Pillow's CMYK to RGB conversion: each channel is
// (255-K) - C*(255-K)/255, the product divided by 255 with rounding.
func cmykToRGB(c, m, y, k uint8) (uint8, uint8, uint8) {
	nk := 255 - int(k)
	f := func(v uint8) uint8 {
		return uint8(nk - mulDiv255(int(v), nk))
	}
	return f(c), f(m), f(y)
}

// mulDiv255 returns round(a*b/255) for a, b in [0, 255], computed exactly
// as ((t>>8)+t)>>8 with t = a*b+128.
func mulDiv255(a, b int) int {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}
