package preprocess

import (
	"fmt"
	"math"
)

// CLIP's per-channel normalization constants (R, G, B), used by CLIP and
// by CoOp, CLIP-Adapter and Tip-Adapter. Each rounds to the same float32
// as torch.as_tensor(..., dtype=torch.float32) of the Python literal.
const (
	MeanR, MeanG, MeanB float32 = 0.48145466, 0.4578275, 0.40821073
	StdR, StdG, StdB    float32 = 0.26862954, 0.26130258, 0.27577711
)

// Mean and Std are the normalization constants as arrays, for callers'
// convenience. Normalize uses the constants above; changing these variables
// has no effect on it.
var (
	Mean = [3]float32{MeanR, MeanG, MeanB}
	Std  = [3]float32{StdR, StdG, StdB}
)

// Crop returns the w×h region of img whose top-left corner is (x, y).
// Like Pillow's Image.crop (and so torchvision's crop on PIL images), the
// region may extend beyond the image; pixels outside are black. Negative
// sizes are treated as 0.
func Crop(img *Image, x, y, w, h int) *Image {
	w, h = max(w, 0), max(h, 0)
	out := NewImage(w, h)
	// Intersection with the image, in source coordinates.
	x0, y0 := max(x, 0), max(y, 0)
	x1, y1 := min(x+w, img.W), min(y+h, img.H)
	if x0 >= x1 || y0 >= y1 {
		return out
	}
	n := 3 * (x1 - x0)
	for sy := y0; sy < y1; sy++ {
		src := img.Pix[3*(sy*img.W+x0):][:n]
		copy(out.Pix[3*((sy-y)*w+(x0-x)):], src)
	}
	return out
}

// centerCropOrigin returns where torchvision's CenterCrop puts the top-left
// corner of a crop of length c from a side of length n: round((n - c)/2)
// with round-half-to-even when the crop fits; when it does not, the side is
// first padded with (c - n)//2 black pixels before and the rest after, so
// the crop starts at -((c - n)//2).
func centerCropOrigin(n, c int) int {
	if c > n {
		return -((c - n) / 2)
	}
	return int(math.RoundToEven(float64(n-c) / 2))
}

// CenterCrop returns the central size×size region of img with
// torchvision's CenterCrop offsets (top = round((H-size)/2), left =
// round((W-size)/2), Python rounding), padding with black when img is
// smaller than size, as torchvision 0.14 does.
func CenterCrop(img *Image, size int) *Image {
	return Crop(img, centerCropOrigin(img.W, size), centerCropOrigin(img.H, size), size, size)
}

// FlipHorizontal returns img mirrored left to right.
func FlipHorizontal(img *Image) *Image {
	out := NewImage(img.W, img.H)
	for y := range img.H {
		src := img.Pix[3*y*img.W:][:3*img.W]
		dst := out.Pix[3*y*img.W:][:3*img.W]
		for x := range img.W {
			j := 3 * (img.W - 1 - x)
			dst[3*x], dst[3*x+1], dst[3*x+2] = src[j], src[j+1], src[j+2]
		}
	}
	return out
}

// Normalize writes img into dst as a CHW float32 tensor (3×H×W, channel
// planes R, G, B) with CLIP's normalization, ((v/255) - Mean[c]) / Std[c],
// each step in float32 as torchvision's ToTensor and Normalize compute it.
// It panics if len(dst) < 3*W*H (a programming error; the transforms check
// sizes and return errors).
func Normalize(img *Image, dst []float32) {
	normalize(img, dst, false, Config{})
}

// normalize is Normalize with an optional horizontal flip folded in and
// c's mean and std.
func normalize(img *Image, dst []float32, flip bool, c Config) {
	plane := img.W * img.H
	if len(dst) < 3*plane {
		panic(fmt.Sprintf("preprocess.Normalize: dst has %d elements, need 3*%d*%d = %d", len(dst), img.W, img.H, 3*plane))
	}
	nw := newNormWriterWith(dst, img.W, img.H, flip, c)
	for y := range img.H {
		nw.row(y, img.Pix[3*y*img.W:][:3*img.W])
	}
}

// normWriter writes rows of an 8-bit RGB image of width w into a CHW
// float32 tensor with CLIP's normalization, optionally flipping each row.
type normWriter struct {
	// lut[c][v] = (v/255 - mean[c]) / std[c] in float32 arithmetic, as
	// ToTensor and Normalize compute it.
	lut     [3][256]float32
	r, g, b []float32
	w       int
	flip    bool
}

// newNormWriterWith returns a normWriter for a w×h image into dst, which
// must hold at least 3*w*h values, with c's mean and std.
func newNormWriterWith(dst []float32, w, h int, flip bool, c Config) *normWriter {
	plane := w * h
	nw := &normWriter{r: dst[:plane], g: dst[plane : 2*plane], b: dst[2*plane : 3*plane], w: w, flip: flip}
	mean, std := c.meanStd()
	for c := range 3 {
		for v := range 256 {
			nw.lut[c][v] = (float32(v)/255 - mean[c]) / std[c]
		}
	}
	return nw
}

// row writes row y, 3*w values (R, G, B per pixel).
func (nw *normWriter) row(y int, row []uint8) {
	w := nw.w
	row = row[:3*w]
	r, g, b := nw.r[y*w:][:w], nw.g[y*w:][:w], nw.b[y*w:][:w]
	lr, lg, lb := &nw.lut[0], &nw.lut[1], &nw.lut[2]
	if nw.flip {
		for x := range w {
			p := row[3*(w-1-x):][:3]
			r[x], g[x], b[x] = lr[p[0]], lg[p[1]], lb[p[2]]
		}
		return
	}
	for x := range w {
		p := row[3*x:][:3]
		r[x], g[x], b[x] = lr[p[0]], lg[p[1]], lb[p[2]]
	}
}
