package preprocess

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// Order says when an image is converted to RGB relative to the transform.
// The two reference pipelines differ here, and for images that are not
// RGB or grayscale the pixels differ too (Pillow resizes palette, alpha,
// CMYK and 16/32-bit images in their own mode).
type Order int

const (
	// OrderDassl converts to RGB right after decoding, then transforms:
	// Dassl's loader, which CoOp and CLIP-Adapter use (every image is read
	// with convert("RGB") first), and Tip-Adapter's. The dataset pipeline
	// uses it. It is the zero value.
	OrderDassl Order = iota
	// OrderOpenAI resizes and crops the image in its own Pillow mode and
	// converts to RGB afterwards: OpenAI's clip.load preprocess (and
	// OpenCLIP's, whose _convert_to_rgb also comes after resize and crop).
	// The clip commands use it.
	OrderOpenAI
)

func (o Order) String() string {
	if o == OrderOpenAI {
		return "openai"
	}
	return "dassl"
}

// sourceTransform is implemented by the transforms that can work on an
// image in its own mode (OrderOpenAI).
type sourceTransform interface {
	applySource(s *Source, rng *rand.Rand, dst []float32) error
}

// ApplyOrdered applies t to the decoded image s in the given order:
// OrderDassl is t.Apply(s.RGB(), ...); OrderOpenAI resizes and crops s in
// its own mode (see resizeSource for Pillow's rules by mode) and converts
// the result to RGB as Source.RGB does, which is what torchvision's
// transforms followed by convert("RGB") give on the PIL image. RGB and
// grayscale (L) images give the same pixels in both orders (and take the
// same code). t must be one of this package's transforms (Test, TestWith,
// Train, TrainWith) for OrderOpenAI.
func ApplyOrdered(t Transform, s *Source, order Order, rng *rand.Rand, dst []float32) error {
	if err := s.Check(); err != nil {
		return err
	}
	if order == OrderDassl || s.Mode == ModeRGB || s.Mode == ModeL {
		// L: replicating into RGB commutes with per-band resampling,
		// cropping and zero padding, so the RGB path is exact.
		return t.Apply(s.RGB(), rng, dst)
	}
	st, ok := t.(sourceTransform)
	if !ok {
		return fmt.Errorf("transform %T cannot apply the OpenAI order (resize before RGB conversion)", t)
	}
	return st.applySource(s, rng, dst)
}

// applySource is the test transform in OrderOpenAI on a non-RGB image.
func (t testTransform) applySource(s *Source, _ *rand.Rand, dst []float32) error {
	if err := checkSource(s, t.size, dst); err != nil {
		return fmt.Errorf("test transform: %w", err)
	}
	f := filterOf(t.cfg.Interpolation)
	n := t.size
	var nw, nh, x, y int
	switch t.cfg.ResizeMode {
	case ResizeSquash:
		nw, nh = n, n
	case ResizeLongest:
		nw, nh = longestSize(s.W, s.H, n)
		x, y = centerCropOrigin(nw, n), centerCropOrigin(nh, n)
	default:
		nw, nh = ResizedSize(s.W, s.H, n)
		x, y = centerCropOrigin(nw, n), centerCropOrigin(nh, n)
	}
	// The part of the n×n crop inside the resized image; the rest is
	// padding (zero in the image's mode, as torchvision pads with fill 0).
	x0, y0 := max(x, 0), max(y, 0)
	x1, y1 := min(x+n, nw), min(y+n, nh)
	part, err := resizeSource(s, nw, nh, [4]int{x0, y0, x1 - x0, y1 - y0}, f)
	if err != nil {
		return fmt.Errorf("test transform: %w", err)
	}
	if x0 != x || y0 != y || x1-x0 != n || y1-y0 != n {
		part = part.crop(x-x0, y-y0, n, n)
	}
	normalize(part.RGB(), dst, false, t.cfg)
	return nil
}

// applySource is the train transform in OrderOpenAI on a non-RGB image:
// the random box is cropped, resized to size×size in the image's mode,
// flipped, then converted to RGB.
func (t trainTransform) applySource(s *Source, rng *rand.Rand, dst []float32) error {
	if err := checkSource(s, t.size, dst); err != nil {
		return fmt.Errorf("train transform: %w", err)
	}
	if rng == nil {
		return errors.New("train transform: nil random generator")
	}
	if err := t.opt.Check(); err != nil {
		return fmt.Errorf("train transform: %w", err)
	}
	x, y, w, h := RandomResizedCropParams(s.W, s.H, t.opt.Scale, t.opt.Ratio, rng)
	flip := !t.opt.NoFlip && rng.Float64() < 0.5
	part, err := resizedCropSource(s, x, y, w, h, t.size, filterOf(t.cfg.Interpolation))
	if err != nil {
		return fmt.Errorf("train transform: %w", err)
	}
	normalize(part.RGB(), dst, flip, t.cfg)
	return nil
}

// resizedCropSource is torchvision's resized_crop on a PIL image in its
// own mode: the w×h box at (x, y) is cropped, then resized to size×size.
func resizedCropSource(s *Source, x, y, w, h, size int, f filter) (*Source, error) {
	return resizeSource(s.crop(x, y, w, h), size, size, [4]int{0, 0, size, size}, f)
}

// checkSource validates the arguments of applySource.
func checkSource(s *Source, size int, dst []float32) error {
	if size <= 0 {
		return fmt.Errorf("output size %d must be positive", size)
	}
	if s.W == 0 || s.H == 0 {
		return fmt.Errorf("empty image (%dx%d)", s.W, s.H)
	}
	if len(dst) != 3*size*size {
		return fmt.Errorf("output buffer has %d elements, want 3*%d*%d = %d", len(dst), size, size, 3*size*size)
	}
	return nil
}
