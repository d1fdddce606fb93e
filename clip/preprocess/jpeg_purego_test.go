//go:build !cgo || nolibjpeg

package preprocess

// jpegExact reports whether JPEGs decode exactly as Pillow decodes them:
// without cgo or with the tag nolibjpeg, Go's decoder is used, and its
// inverse DCT is not libjpeg's.
const jpegExact = false
