package preprocess

import (
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
)

// Transform turns a decoded image into a normalized CHW float32 tensor of
// 3×Size()×Size() values.
type Transform interface {
	// Apply writes the transformed img into dst, which must have exactly
	// 3*Size()*Size() elements. Random transforms draw from rng; the test
	// transform ignores it (it may be nil).
	Apply(img *Image, rng *rand.Rand, dst []float32) error
	// Size is the side of the square output.
	Size() int
}

// testTransform is CLIP's _transform: Resize(size, bicubic) on the shorter
// side, CenterCrop(size), ToTensor, Normalize; or OpenCLIP's variants of
// it chosen by cfg.
type testTransform struct {
	size int
	cfg  Config
}

// Test returns CLIP's test-time transform for input resolution size
// (docs/protocol.md §3): resize so that the shorter side is size (bicubic,
// torchvision's truncation of the longer side; no resampling when it is
// already size), center crop size×size with torchvision's offsets, then
// normalize with Mean and Std. Dassl's test transform used by CoOp and
// CLIP-Adapter is the same pipeline. Only the pixels inside the crop are
// resampled, with exactly the values a full resize would give.
//
// Apply takes an RGB image (OrderDassl: decoders convert right after
// decoding, as the Dassl and Tip-Adapter loaders do). CLIP's own transform
// converts to RGB after cropping, which gives other pixels for palette,
// RGBA, CMYK and 16-bit sources; ApplyOrdered with OrderOpenAI does that.
func Test(size int) Transform { return testTransform{size: size} }

// TestWith returns OpenCLIP's test-time transform for a checkpoint whose
// preprocessing is c (the zero Config gives Test): c's resize mode and
// interpolation, then normalization with c's mean and std. "shortest" is
// Test's resize and center crop; "squash" resizes the whole image to
// size×size; "longest" resizes so that the longer side is size (the other
// round(side·size/longer), Python rounding) and pads the rest with black,
// centred as OpenCLIP's CenterCropOrPad does.
func TestWith(size int, c Config) Transform { return testTransform{size: size, cfg: c} }

func (t testTransform) Size() int { return t.size }

func (t testTransform) Apply(img *Image, _ *rand.Rand, dst []float32) error {
	if err := checkApply(img, t.size, dst); err != nil {
		return fmt.Errorf("test transform: %w", err)
	}
	f := filterOf(t.cfg.Interpolation)
	w := newNormWriterWith(dst, t.size, t.size, false, t.cfg)
	full := image.Rect(0, 0, img.W, img.H)
	switch t.cfg.ResizeMode {
	case ResizeSquash:
		resampleRowsWith(img, full, t.size, t.size, image.Rect(0, 0, t.size, t.size), f, w.row)
		return nil
	case ResizeLongest:
		nw, nh := longestSize(img.W, img.H, t.size)
		// Per axis: crop (centred, Python rounding) where the resized side
		// is longer than size, pad ((size-n)//2 before) where it is shorter.
		x, y := centerCropOrigin(nw, t.size), centerCropOrigin(nh, t.size)
		win := image.Rect(x, y, x+t.size, y+t.size).Intersect(image.Rect(0, 0, nw, nh))
		canvas := NewImage(t.size, t.size)
		part := resampleWith(img, full, nw, nh, win, f)
		for r := range part.H {
			copy(canvas.Pix[3*((win.Min.Y-y+r)*t.size+win.Min.X-x):], part.Pix[3*r*part.W:][:3*part.W])
		}
		for r := range t.size {
			w.row(r, canvas.Pix[3*r*t.size:][:3*t.size])
		}
		return nil
	}
	// The shorter side becomes size and the longer one at least size, so
	// the crop never needs CenterCrop's padding.
	nw, nh := ResizedSize(img.W, img.H, t.size)
	x := centerCropOrigin(nw, t.size)
	y := centerCropOrigin(nh, t.size)
	resampleRowsWith(img, full, nw, nh, image.Rect(x, y, x+t.size, y+t.size), f, w.row)
	return nil
}

// longestSize returns the size OpenCLIP's ResizeKeepRatio(size,
// longest=1) gives a w×h image: each side divided by max(w, h)/size and
// rounded half to even.
func longestSize(w, h, size int) (nw, nh int) {
	ratio := max(float64(h)/float64(size), float64(w)/float64(size))
	return int(math.RoundToEven(float64(w) / ratio)), int(math.RoundToEven(float64(h) / ratio))
}

// resampleWith is resample with the kernel f.
func resampleWith(img *Image, src image.Rectangle, outW, outH int, win image.Rectangle, f filter) *Image {
	out := NewImage(win.Dx(), win.Dy())
	rowLen := 3 * out.W
	resampleRowsWith(img, src, outW, outH, win, f, func(y int, row []uint8) {
		copy(out.Pix[y*rowLen:][:rowLen], row)
	})
	return out
}

// TrainOptions configures Train. The zero value gives torchvision's (and
// CoOp's) defaults.
type TrainOptions struct {
	// Scale is the range of the crop area as a fraction of the image area;
	// zero means {0.08, 1} (torchvision and Dassl's default, used by CoOp
	// and CLIP-Adapter). Tip-Adapter uses {0.5, 1}.
	Scale [2]float64
	// Ratio is the range of the crop's aspect ratio (width/height), drawn
	// log-uniformly; zero means {3/4, 4/3}.
	Ratio [2]float64
	// NoFlip disables the random horizontal flip (probability 0.5).
	NoFlip bool
}

// withDefaults fills zero fields with torchvision's defaults.
func (o TrainOptions) withDefaults() TrainOptions {
	if o.Scale == [2]float64{} {
		o.Scale = [2]float64{0.08, 1}
	}
	if o.Ratio == [2]float64{} {
		o.Ratio = [2]float64{3.0 / 4.0, 4.0 / 3.0}
	}
	return o
}

// Check reports whether the options (with defaults applied) are valid.
func (o TrainOptions) Check() error {
	o = o.withDefaults()
	s, r := o.Scale, o.Ratio
	if !(s[0] > 0 && s[0] <= s[1] && s[1] <= 1) {
		return fmt.Errorf("random resized crop: scale range %v must satisfy 0 < min <= max <= 1", s)
	}
	if !(r[0] > 0 && r[0] <= r[1] && !math.IsInf(r[1], 0)) {
		return fmt.Errorf("random resized crop: ratio range %v must satisfy 0 < min <= max", r)
	}
	return nil
}

// trainTransform is RandomResizedCrop → RandomHorizontalFlip → Normalize.
type trainTransform struct {
	size int
	opt  TrainOptions
	cfg  Config
}

// Train returns the training-time augmentation of docs/protocol.md §4:
// RandomResizedCrop(size, scale=o.Scale, ratio=o.Ratio, bicubic) →
// RandomHorizontalFlip(0.5) → normalize with Mean and Std. The crop is
// drawn with torchvision 0.14's algorithm (see RandomResizedCropParams)
// and the flip with probability 0.5, both from the rng passed to Apply.
//
// The random stream is Go's, not torch's: the same seed does not give the
// crops PyTorch would draw, but the crops follow the same distribution.
// Invalid options make Apply return an error.
func Train(size int, o TrainOptions) Transform {
	return trainTransform{size: size, opt: o.withDefaults()}
}

// TrainWith is Train with the interpolation, mean and std of a
// checkpoint's preprocessing c (its resize mode does not apply: the
// random crop is resized to size×size).
func TrainWith(size int, o TrainOptions, c Config) Transform {
	return trainTransform{size: size, opt: o.withDefaults(), cfg: c}
}

func (t trainTransform) Size() int { return t.size }

func (t trainTransform) Apply(img *Image, rng *rand.Rand, dst []float32) error {
	if err := checkApply(img, t.size, dst); err != nil {
		return fmt.Errorf("train transform: %w", err)
	}
	if rng == nil {
		return errors.New("train transform: nil random generator")
	}
	if err := t.opt.Check(); err != nil {
		return fmt.Errorf("train transform: %w", err)
	}
	x, y, w, h := RandomResizedCropParams(img.W, img.H, t.opt.Scale, t.opt.Ratio, rng)
	flip := !t.opt.NoFlip && rng.Float64() < 0.5
	// The box lies inside the image: resample it straight into dst,
	// normalizing (and flipping) each output row.
	nw := newNormWriterWith(dst, t.size, t.size, flip, t.cfg)
	resampleRowsWith(img, image.Rect(x, y, x+w, y+h), t.size, t.size, image.Rect(0, 0, t.size, t.size), filterOf(t.cfg.Interpolation), nw.row)
	return nil
}

// checkApply validates the arguments common to the transforms.
func checkApply(img *Image, size int, dst []float32) error {
	if size <= 0 {
		return fmt.Errorf("output size %d must be positive", size)
	}
	if err := img.Check(); err != nil {
		return err
	}
	if img.W == 0 || img.H == 0 {
		return fmt.Errorf("empty image (%dx%d)", img.W, img.H)
	}
	if len(dst) != 3*size*size {
		return fmt.Errorf("output buffer has %d elements, want 3*%d*%d = %d", len(dst), size, size, 3*size*size)
	}
	return nil
}

// RandomResizedCropParams draws the crop box (left x, top y, width w,
// height h) of torchvision 0.14's RandomResizedCrop.get_params for a W×H
// image: up to 10 attempts of area = W·H·U(scale), aspect =
// exp(U(ln ratio[0], ln ratio[1])), w = round(sqrt(area·aspect)), h =
// round(sqrt(area/aspect)) (half to even); the first box that fits is
// placed with top = uniform integer in [0, H-h], then left in [0, W-w].
// If none fits, the fallback is the largest centred box whose aspect ratio
// is the image's clamped to [min(ratio), max(ratio)]. Random numbers come
// from rng (uniform floats from Float64, integers from IntN).
func RandomResizedCropParams(W, H int, scale, ratio [2]float64, rng *rand.Rand) (x, y, w, h int) {
	area := float64(W) * float64(H)
	logLo, logHi := math.Log(ratio[0]), math.Log(ratio[1])
	uniform := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
	for range 10 {
		target := area * uniform(scale[0], scale[1])
		aspect := math.Exp(uniform(logLo, logHi))
		w := int(math.RoundToEven(math.Sqrt(target * aspect)))
		h := int(math.RoundToEven(math.Sqrt(target / aspect)))
		if 0 < w && w <= W && 0 < h && h <= H {
			top := rng.IntN(H - h + 1)
			left := rng.IntN(W - w + 1)
			return left, top, w, h
		}
	}
	// Fallback to a central crop.
	inRatio := float64(W) / float64(H)
	minR, maxR := min(ratio[0], ratio[1]), max(ratio[0], ratio[1])
	switch {
	case inRatio < minR:
		w = W
		h = int(math.RoundToEven(float64(w) / minR))
	case inRatio > maxR:
		h = H
		w = int(math.RoundToEven(float64(h) * maxR))
	default:
		w, h = W, H
	}
	return (W - w) / 2, (H - h) / 2, w, h
}

// ResizedCrop crops the w×h box at (x, y) from img and resizes it to
// outW×outH with Pillow's bicubic filter, as torchvision's resized_crop
// does on a PIL image. Parts of the box outside the image are black (as in
// Crop).
func ResizedCrop(img *Image, x, y, w, h, outW, outH int) *Image {
	if outW <= 0 || outH <= 0 || w <= 0 || h <= 0 {
		return NewImage(max(outW, 0), max(outH, 0))
	}
	box := image.Rect(x, y, x+w, y+h)
	if !box.In(image.Rect(0, 0, img.W, img.H)) {
		return Resize(Crop(img, x, y, w, h), outW, outH)
	}
	return resample(img, box, outW, outH, image.Rect(0, 0, outW, outH))
}
