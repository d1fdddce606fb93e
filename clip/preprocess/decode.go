package preprocess

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"io"
	"os"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// Format names the container formats Decode understands.
type Format string

// The formats Decode recognises by their leading bytes.
const (
	JPEG Format = "jpeg"
	PNG  Format = "png"
	GIF  Format = "gif"
	WebP Format = "webp"
	BMP  Format = "bmp"
	TIFF Format = "tiff"
)

// ErrUnknownFormat is returned (wrapped) for data that is not one of the
// supported formats.
var ErrUnknownFormat = errors.New("unknown image format (supported: JPEG, PNG, GIF, WebP, BMP, TIFF)")

// Sniff returns the format of an encoded image from its first bytes (at
// least 12 are needed to recognise WebP).
func Sniff(head []byte) (Format, error) {
	switch {
	case bytes.HasPrefix(head, []byte("\xff\xd8\xff")):
		return JPEG, nil
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return PNG, nil
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return GIF, nil
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return WebP, nil
	case bytes.HasPrefix(head, []byte("BM")):
		return BMP, nil
	case bytes.HasPrefix(head, []byte("II*\x00")), bytes.HasPrefix(head, []byte("MM\x00*")):
		return TIFF, nil
	}
	return "", ErrUnknownFormat
}

// Open reads and decodes the image file at path; see Decode. Errors name
// the path.
func Open(path string) (*Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	m, err := DecodeBytes(data)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	return m, nil
}

// Decode reads an encoded image from r and converts it to RGB, matching
// Pillow's Image.open(...).convert("RGB") (Pillow 9.4 with libjpeg-turbo
// and libwebp):
//
//   - JPEG: decoded by libjpeg(-turbo) as Pillow decodes it (full size,
//     ISLOW inverse DCT, fancy upsampling), so the pixels are Pillow's.
//     Grayscale is replicated into the three channels; CMYK and YCCK
//     JPEGs are read as Adobe-inverted CMYK, as Pillow assumes for every
//     CMYK JPEG, and converted with Pillow's CMYK->RGB formula.
//     Progressive and arithmetic-coded JPEGs are supported, 12-bit ones
//     are not. Warnings about corrupt but decodable data are ignored, as in
//     Pillow, but data that ends before the image does is an error (Pillow:
//     "image file is truncated"), as are images of more than 2*89478485
//     pixels (Pillow's decompression bomb limit). EXIF orientation is
//     ignored, as Image.open does. Without cgo (or with the build tag
//     nolibjpeg), Go's image/jpeg decodes instead: chroma upsampling and
//     color conversion still follow libjpeg exactly (see FromImage), but
//     Go's inverse DCT differs from libjpeg's in the last bit, so a few
//     percent of the values differ from Pillow's, by at most 3 levels in
//     our measurements (mean absolute difference about 0.04); YCCK is
//     converted by Go's decoder, not bit-exactly as libjpeg does, and
//     arithmetic coding is not supported.
//   - PNG: 16-bit color keeps the high byte; 16-bit grayscale is clipped to
//     255 the way Pillow's "I" mode converts (values above 255 become
//     white), palette and alpha as in FromImage.
//   - GIF: the first frame, placed on the logical screen; the transparent
//     palette entry keeps its stored color (Pillow ignores transparency
//     when converting to RGB).
//   - WebP: lossy images are converted with libwebp's fancy upsampling and
//     fixed-point BT.601 equations (pixel-exact to Pillow); lossless ones
//     are exact anyway; alpha is dropped.
//   - BMP and TIFF: through golang.org/x/image, alpha dropped.
//
// Corrupt, truncated and unsupported data are errors.
func Decode(r io.Reader) (*Image, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read image: %w", err)
	}
	return DecodeBytes(data)
}

// DecodeBytes decodes an encoded image held in memory; see Decode.
func DecodeBytes(data []byte) (*Image, error) {
	format, err := Sniff(data)
	if err != nil {
		return nil, err
	}
	m, err := decodeFormat(format, data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", format, err)
	}
	if m.W == 0 || m.H == 0 {
		return nil, fmt.Errorf("decode %s: empty image (%dx%d)", format, m.W, m.H)
	}
	return m, nil
}

func decodeFormat(format Format, data []byte) (*Image, error) {
	r := bytes.NewReader(data)
	switch format {
	case JPEG:
		return decodeJPEG(data)
	case PNG:
		img, err := png.Decode(r)
		if err != nil {
			return nil, err
		}
		if isGray16PNG(data) {
			return fromGray16Clipped(img), nil
		}
		return FromImage(img), nil
	case GIF:
		return decodeGIF(data)
	case WebP:
		img, err := webp.Decode(r)
		if err != nil {
			return nil, err
		}
		switch m := img.(type) {
		case *image.YCbCr:
			return fromYCbCrWebP(m), nil
		case *image.NYCbCrA:
			return fromYCbCrWebP(&m.YCbCr), nil
		}
		return FromImage(img), nil
	case BMP:
		img, err := bmp.Decode(r)
		if err != nil {
			return nil, err
		}
		return FromImage(img), nil
	case TIFF:
		img, err := tiff.Decode(r)
		if err != nil {
			return nil, err
		}
		return FromImage(img), nil
	}
	return nil, ErrUnknownFormat
}

// isGray16PNG reports whether a PNG's header declares 16-bit grayscale
// (color type 0 or 4 would both be gray, but only type 0 becomes Pillow's
// 32-bit integer mode "I"; 16-bit gray+alpha becomes "LA" with the high
// byte kept).
func isGray16PNG(data []byte) bool {
	// signature (8) + IHDR length (4) + "IHDR" (4) + width, height (8) +
	// bit depth (1) + color type (1)
	if len(data) < 26 || string(data[12:16]) != "IHDR" {
		return false
	}
	return data[24] == 16 && data[25] == 0
}

// fromGray16Clipped converts a 16-bit grayscale image the way Pillow
// converts mode "I" to RGB: each value is clipped to [0, 255].
func fromGray16Clipped(img image.Image) *Image {
	b := img.Bounds()
	out := NewImage(b.Dx(), b.Dy())
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			// Gray16 normally; 16-bit gray with a tRNS chunk decodes as
			// NRGBA64 with R = G = B = the gray value.
			var v uint16
			switch c := img.At(x, y).(type) {
			case color.Gray16:
				v = c.Y
			case color.NRGBA64:
				v = c.R
			default:
				v = color.Gray16Model.Convert(c).(color.Gray16).Y
			}
			g := uint8(min(v, 255))
			out.Pix[i], out.Pix[i+1], out.Pix[i+2] = g, g, g
			i += 3
		}
	}
	return out
}

// decodeGIF decodes the first frame of a GIF the way Pillow shows it: on a
// canvas of the logical screen size, with the transparent color index
// mapped to its palette color rather than to transparent black.
func decodeGIF(data []byte) (*Image, error) {
	cfg, err := gif.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	img, err := gif.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	pm, ok := img.(*image.Paletted)
	if !ok {
		return FromImage(img), nil
	}
	info, err := gifFirstFrame(data)
	if err != nil {
		return nil, err
	}
	pal := paletteRGB(pm.Palette)
	if info.transparent >= 0 && info.transparent < len(info.palette) {
		pal[info.transparent] = info.palette[info.transparent]
	}
	// Pixels outside the first frame take the transparency index if there
	// is one (Pillow fills the canvas with it), else index 0.
	fill := pal[0]
	if info.transparent >= 0 {
		fill = pal[info.transparent]
	}
	out := NewImage(cfg.Width, cfg.Height)
	for i := 0; i < len(out.Pix); i += 3 {
		out.Pix[i], out.Pix[i+1], out.Pix[i+2] = fill[0], fill[1], fill[2]
	}
	b := pm.Rect.Intersect(image.Rect(0, 0, cfg.Width, cfg.Height))
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := pm.Pix[pm.PixOffset(b.Min.X, y):]
		for x := b.Min.X; x < b.Max.X; x++ {
			c := pal[row[x-b.Min.X]]
			i := 3 * (y*out.W + x)
			out.Pix[i], out.Pix[i+1], out.Pix[i+2] = c[0], c[1], c[2]
		}
	}
	return out, nil
}

// gifFrameInfo is what Go's GIF decoder does not expose about the first
// frame: its color table as stored (Go replaces the transparent entry) and
// its transparent index (-1 if none).
type gifFrameInfo struct {
	palette     [][3]uint8
	transparent int
}

// gifFirstFrame walks the GIF blocks up to the first image descriptor.
func gifFirstFrame(data []byte) (*gifFrameInfo, error) {
	errShort := errors.New("gif: truncated before the first image")
	if len(data) < 13 {
		return nil, errShort
	}
	info := &gifFrameInfo{transparent: -1}
	pos := 13
	var global [][3]uint8
	readTable := func(flags byte) ([][3]uint8, error) {
		n := 2 << (flags & 7)
		if pos+3*n > len(data) {
			return nil, errShort
		}
		t := make([][3]uint8, n)
		for i := range t {
			t[i] = [3]uint8{data[pos+3*i], data[pos+3*i+1], data[pos+3*i+2]}
		}
		pos += 3 * n
		return t, nil
	}
	if data[10]&0x80 != 0 {
		var err error
		if global, err = readTable(data[10]); err != nil {
			return nil, err
		}
	}
	for pos < len(data) {
		switch data[pos] {
		case 0x21: // extension
			if pos+2 > len(data) {
				return nil, errShort
			}
			label := data[pos+1]
			pos += 2
			first := true
			for {
				if pos >= len(data) {
					return nil, errShort
				}
				n := int(data[pos])
				pos++
				if n == 0 {
					break
				}
				if pos+n > len(data) {
					return nil, errShort
				}
				// Graphic control extension: flags, delay (2), index.
				if label == 0xf9 && first && n >= 4 {
					if data[pos]&1 != 0 {
						info.transparent = int(data[pos+3])
					} else {
						info.transparent = -1
					}
				}
				first = false
				pos += n
			}
		case 0x2c: // image descriptor
			if pos+10 > len(data) {
				return nil, errShort
			}
			flags := data[pos+9]
			pos += 10
			info.palette = global
			if flags&0x80 != 0 {
				t, err := readTable(flags)
				if err != nil {
					return nil, err
				}
				info.palette = t
			}
			return info, nil
		default:
			return nil, fmt.Errorf("gif: unexpected block %#x before the first image", data[pos])
		}
	}
	return nil, errShort
}
