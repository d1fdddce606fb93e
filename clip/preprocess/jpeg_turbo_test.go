//go:build cgo && !nolibjpeg

package preprocess

// jpegExact reports whether JPEGs decode exactly as Pillow decodes them:
// with cgo (and without the tag nolibjpeg) they go through libjpeg.
const jpegExact = true
