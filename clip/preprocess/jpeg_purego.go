//go:build !cgo || nolibjpeg

package preprocess

import (
	"bytes"
	"image/jpeg"
)

// decodeJPEG decodes a JPEG with Go's image/jpeg in builds without cgo, or
// with the build tag nolibjpeg (for machines that lack libjpeg's headers
// but need cgo for libtorch), and converts it with FromImage: chroma
// upsampling and color conversion then follow libjpeg exactly, but Go's
// inverse DCT differs from libjpeg's ISLOW one in the last bit (see
// Decode).
func decodeJPEG(data []byte) (*Image, error) {
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return FromImage(img), nil
}
