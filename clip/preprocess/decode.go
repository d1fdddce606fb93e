package preprocess

import (
	"bytes"
	"errors"
	"fmt"
	"image"
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
	s, err := DecodeSource(data)
	if err != nil {
		return nil, err
	}
	return s.RGB(), nil
}

// OpenSource reads and decodes the image file at path into its Pillow
// mode; see DecodeSource. Errors name the path.
func OpenSource(path string) (*Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	s, err := DecodeSource(data)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	return s, nil
}

// DecodeSource decodes an encoded image held in memory into the mode
// Pillow 9.4's Image.open gives it, without converting it: Source.RGB of
// the result is what Decode returns. The modes by format:
//
//   - JPEG: L (grayscale), RGB, CMYK (CMYK and YCCK, Adobe-inverted);
//   - PNG: 1 (1-bit gray), L (2 to 8-bit gray), I (16-bit gray), LA, RGB
//     (8 or 16-bit, high byte kept), P, RGBA (8 or 16-bit, and 16-bit gray
//     with alpha, which Pillow opens as RGBA);
//   - GIF: P, the first frame on the logical screen;
//   - WebP: RGB, or RGBA when the file declares alpha;
//   - BMP: P, or L/1 when the palette is a gray ramp (Pillow's rule), RGB,
//     RGBA;
//   - TIFF: L, I;16, P, RGB, RGBA (golang.org/x/image/tiff reads neither
//     CMYK nor 32-bit integer or float samples, and 1-bit TIFFs come out
//     as L where Pillow has mode 1).
func DecodeSource(data []byte) (*Source, error) {
	format, err := Sniff(data)
	if err != nil {
		return nil, err
	}
	s, err := decodeFormat(format, data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", format, err)
	}
	if s.W == 0 || s.H == 0 {
		return nil, fmt.Errorf("decode %s: empty image (%dx%d)", format, s.W, s.H)
	}
	return s, nil
}

func decodeFormat(format Format, data []byte) (*Source, error) {
	r := bytes.NewReader(data)
	switch format {
	case JPEG:
		return decodeJPEG(data)
	case PNG:
		img, err := png.Decode(r)
		if err != nil {
			return nil, err
		}
		return pngSource(img, data), nil
	case GIF:
		return decodeGIF(data)
	case WebP:
		img, err := webp.Decode(r)
		if err != nil {
			return nil, err
		}
		return webpSource(img, webpHasAlpha(data)), nil
	case BMP:
		img, err := bmp.Decode(r)
		if err != nil {
			return nil, err
		}
		return genericSource(img), nil
	case TIFF:
		img, err := tiff.Decode(r)
		if err != nil {
			return nil, err
		}
		return genericSource(img), nil
	}
	return nil, ErrUnknownFormat
}

// decodeGIF decodes the first frame of a GIF the way Pillow opens it: a P
// image of the logical screen size, with the frame at its offset, the
// rest filled with the transparency index if there is one (else index 0),
// and the transparent entry of the palette keeping its stored color (Go's
// decoder makes it transparent black).
func decodeGIF(data []byte) (*Source, error) {
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
		return SourceOf(FromImage(img)), nil
	}
	info, err := gifFirstFrame(data)
	if err != nil {
		return nil, err
	}
	pal := paletteRGB(pm.Palette)
	if info.transparent >= 0 && info.transparent < len(info.palette) {
		pal[info.transparent] = info.palette[info.transparent]
	}
	out := newSource(ModeP, cfg.Width, cfg.Height, pal)
	if info.transparent > 0 {
		fill := uint8(info.transparent)
		for i := range out.Pix {
			out.Pix[i] = fill
		}
	}
	b := pm.Rect.Intersect(image.Rect(0, 0, cfg.Width, cfg.Height))
	for y := b.Min.Y; y < b.Max.Y; y++ {
		copy(out.Pix[y*out.W+b.Min.X:][:b.Dx()], pm.Pix[pm.PixOffset(b.Min.X, y):])
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
