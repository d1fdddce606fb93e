package preprocess

import "fmt"

// Interpolation is the resampling filter of the resize.
type Interpolation int

const (
	// Bicubic is Pillow's bicubic filter (the zero value; CLIP's).
	Bicubic Interpolation = iota
	// Bilinear is Pillow's bilinear (triangle) filter.
	Bilinear
)

func (i Interpolation) String() string {
	if i == Bilinear {
		return "bilinear"
	}
	return "bicubic"
}

// ResizeMode says how the test transform fits an image to the square
// input.
type ResizeMode int

const (
	// ResizeShortest resizes the shorter side to the input size and center
	// crops (the zero value; CLIP's).
	ResizeShortest ResizeMode = iota
	// ResizeLongest resizes the longer side to the input size and pads the
	// shorter one with black.
	ResizeLongest
	// ResizeSquash resizes both sides to the input size.
	ResizeSquash
)

func (m ResizeMode) String() string {
	switch m {
	case ResizeLongest:
		return "longest"
	case ResizeSquash:
		return "squash"
	}
	return "shortest"
}

// Config is a checkpoint's preprocessing (OpenCLIP's preprocess_cfg). The
// zero value is CLIP's: Mean and Std, bicubic, shortest side.
type Config struct {
	// Mean and Std normalize each channel; all-zero means CLIP's.
	Mean, Std     [3]float32
	Interpolation Interpolation
	ResizeMode    ResizeMode
}

// meanStd returns the normalization constants, CLIP's for a zero Config.
func (c Config) meanStd() (mean, std [3]float32) {
	if c.Mean == [3]float32{} && c.Std == [3]float32{} {
		return [3]float32{MeanR, MeanG, MeanB}, [3]float32{StdR, StdG, StdB}
	}
	return c.Mean, c.Std
}

// IsCLIP reports whether c is CLIP's preprocessing.
func (c Config) IsCLIP() bool {
	mean, std := c.meanStd()
	return mean == [3]float32{MeanR, MeanG, MeanB} && std == [3]float32{StdR, StdG, StdB} &&
		c.Interpolation == Bicubic && c.ResizeMode == ResizeShortest
}

// String describes c compactly, for logs and cache keys.
func (c Config) String() string {
	mean, std := c.meanStd()
	return fmt.Sprintf("%s/%s/mean%v/std%v", c.ResizeMode, c.Interpolation, mean, std)
}
