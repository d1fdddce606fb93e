//go:build !cgo || nolibjpeg

package preprocess

import (
	"bytes"
	"image"
	"image/jpeg"
)

// decodeJPEG decodes a JPEG with Go's image/jpeg in builds without cgo, or
// with the build tag nolibjpeg (for machines that lack libjpeg's headers
// but need cgo for libtorch): grayscale as L, CMYK as CMYK, YCbCr
// converted with FromImage: chroma upsampling and color conversion then
// follow libjpeg exactly, but Go's inverse DCT differs from libjpeg's
// ISLOW one in the last bit (see Decode).
func decodeJPEG(data []byte) (*Source, error) {
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	switch img.(type) {
	case *image.Gray:
		return &Source{Mode: ModeL, W: img.Bounds().Dx(), H: img.Bounds().Dy(), Pix: grayOf(img)}, nil
	case *image.CMYK:
		return &Source{Mode: ModeCMYK, W: img.Bounds().Dx(), H: img.Bounds().Dy(), Pix: cmykOf(img)}, nil
	}
	return SourceOf(FromImage(img)), nil
}
