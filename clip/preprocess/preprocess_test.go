package preprocess

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBicubicKernel checks Keys' cubic (a = -0.5) at hand-computed points:
// 1 - 2.5x² + 1.5|x|³ on [0, 1], -0.5(|x|³ - 5x² + 8|x| - 4) on [1, 2].
func TestBicubicKernel(t *testing.T) {
	tests := []struct{ x, want float64 }{
		{0, 1}, {0.25, 0.8671875}, {-0.25, 0.8671875}, {0.5, 0.5625}, {0.75, 0.2265625},
		{1, 0}, {1.25, -0.0703125}, {1.5, -0.0625}, {-1.5, -0.0625}, {2, 0}, {2.5, 0}, {-7, 0},
	}
	for _, tc := range tests {
		if got := bicubic(tc.x); got != tc.want {
			t.Errorf("bicubic(%g) = %g, want %g", tc.x, got, tc.want)
		}
	}
}

// TestFilterTaps checks tap ranges derived by hand from Pillow's rules.
func TestFilterTaps(t *testing.T) {
	// Same size: a single unit weight on the pixel itself.
	ft := newFilterTaps(5, 5)
	for i := range 5 {
		lo, n := ft.start[i], ft.count[i]
		for j := range n {
			want := int32(0)
			if lo+j == i {
				want = 1 << precisionBits
			}
			if got := ft.k[i*ft.ksize+j]; got != want {
				t.Errorf("identity: output %d tap %d (input %d) = %d, want %d", i, j, lo+j, got, want)
			}
		}
	}
	// 4 -> 2: scale 2, support 4, center 1 and 3; taps [0, 4) for both
	// (clamped), kernel stretched by 2.
	ft = newFilterTaps(4, 2)
	if ft.ksize != 9 || ft.start[0] != 0 || ft.count[0] != 4 || ft.start[1] != 0 || ft.count[1] != 4 {
		t.Errorf("4->2: ksize %d, taps %v %v", ft.ksize, ft.start, ft.count)
	}
	// Weights bicubic(-0.25), bicubic(0.25), bicubic(0.75), bicubic(1.25)
	// divided by their sum 1.890625, in fixed point.
	raw := []float64{0.8671875, 0.8671875, 0.2265625, -0.0703125}
	for j, r := range raw {
		f := r / 1.890625 * (1 << precisionBits)
		want := int32(math.Round(f)) // half away from zero, as in Pillow
		if got := ft.k[j]; got != want {
			t.Errorf("4->2 weight %d = %d, want %d", j, got, want)
		}
	}
	// 3 -> 7 upscale: scale 3/7, support 2; output 0 has center 3/14,
	// taps int(3/14-2+0.5) = int(-1.29) = -1 -> 0 to int(3/14+2.5) = 2.
	ft = newFilterTaps(3, 7)
	if ft.start[0] != 0 || ft.count[0] != 2 {
		t.Errorf("3->7 output 0 taps start %d count %d, want 0, 2", ft.start[0], ft.count[0])
	}
}

func TestResizedSize(t *testing.T) {
	tests := []struct{ w, h, size, nw, nh int }{
		{500, 375, 224, 298, 224}, // int(224*500/375) = int(298.67)
		{375, 500, 224, 224, 298},
		{224, 300, 224, 224, 300}, // unchanged
		{640, 480, 224, 298, 224},
		{100, 100, 224, 224, 224},
		{1, 1000, 224, 224, 224000},
		{333, 500, 336, 336, 504}, // 336*500/333 = 504.5 -> 504
		{37, 53, 64, 64, 91},      // 64*53/37 = 91.68
	}
	for _, tc := range tests {
		if nw, nh := ResizedSize(tc.w, tc.h, tc.size); nw != tc.nw || nh != tc.nh {
			t.Errorf("ResizedSize(%d, %d, %d) = %d, %d; want %d, %d", tc.w, tc.h, tc.size, nw, nh, tc.nw, tc.nh)
		}
	}
}

func TestCenterCropOrigin(t *testing.T) {
	tests := []struct{ n, c, want int }{
		{53, 36, 8},  // 8.5 rounds to even
		{55, 36, 10}, // 9.5 rounds to even
		{54, 36, 9},
		{36, 36, 0},
		{37, 36, 0}, // 0.5 -> 0
		{39, 36, 2}, // 1.5 -> 2
		{30, 36, -3},
		{31, 36, -2}, // padding (36-31)//2 = 2 before
		{298, 224, 37},
	}
	for _, tc := range tests {
		if got := centerCropOrigin(tc.n, tc.c); got != tc.want {
			t.Errorf("centerCropOrigin(%d, %d) = %d, want %d", tc.n, tc.c, got, tc.want)
		}
	}
}

// gradient returns a w×h image with pixel (x, y) = (x, y, x+y).
func gradient(w, h int) *Image {
	m := NewImage(w, h)
	for y := range h {
		for x := range w {
			i := 3 * (y*w + x)
			m.Pix[i], m.Pix[i+1], m.Pix[i+2] = uint8(x), uint8(y), uint8(x+y)
		}
	}
	return m
}

func TestCropAndFlip(t *testing.T) {
	g := gradient(4, 3)
	c := Crop(g, 2, -1, 3, 3)
	// Rows: y=-1 (outside), 0, 1; columns x=2, 3, 4 (outside).
	want := []uint8{
		0, 0, 0, 0, 0, 0, 0, 0, 0,
		2, 0, 2, 3, 0, 3, 0, 0, 0,
		2, 1, 3, 3, 1, 4, 0, 0, 0,
	}
	if c.W != 3 || c.H != 3 || !bytes.Equal(c.Pix, want) {
		t.Errorf("Crop = %dx%d %v, want 3x3 %v", c.W, c.H, c.Pix, want)
	}
	if c := Crop(g, 10, 10, 2, 2); !bytes.Equal(c.Pix, make([]uint8, 12)) {
		t.Errorf("crop outside the image is not black: %v", c.Pix)
	}
	if c := Crop(g, 0, 0, -2, 5); c.W != 0 || c.H != 5 || len(c.Pix) != 0 {
		t.Errorf("negative width: %dx%d", c.W, c.H)
	}
	f := FlipHorizontal(g)
	for y := range 3 {
		for x := range 4 {
			r, gg, b := f.At(x, y)
			if int(r) != 3-x || int(gg) != y || int(b) != 3-x+y {
				t.Errorf("flip (%d,%d) = %d %d %d", x, y, r, gg, b)
			}
		}
	}
}

// TestNormalize checks the CHW layout and the values against the formula
// evaluated in float64.
func TestNormalize(t *testing.T) {
	m := NewImage(2, 1)
	copy(m.Pix, []uint8{255, 0, 128, 1, 2, 3})
	dst := make([]float32, 6)
	Normalize(m, dst)
	want := []float64{
		(1 - 0.48145466) / 0.26862954, (1.0/255 - 0.48145466) / 0.26862954, // R plane
		(0 - 0.4578275) / 0.26130258, (2.0/255 - 0.4578275) / 0.26130258, // G plane
		(128.0/255 - 0.40821073) / 0.27577711, (3.0/255 - 0.40821073) / 0.27577711, // B plane
	}
	for i, w := range want {
		if math.Abs(float64(dst[i])-w) > 1e-6 {
			t.Errorf("dst[%d] = %v, want %v", i, dst[i], w)
		}
	}
	flipped := make([]float32, 6)
	normalize(m, flipped, true, Config{})
	for c := range 3 {
		if flipped[2*c] != dst[2*c+1] || flipped[2*c+1] != dst[2*c] {
			t.Errorf("flipped plane %d = %v, want %v reversed", c, flipped[2*c:2*c+2], dst[2*c:2*c+2])
		}
	}
}

// TestFromImage converts each standard library image type and checks
// hand-derived values (Pillow's conversion rules).
func TestFromImage(t *testing.T) {
	rect := image.Rect(0, 0, 2, 1)
	gray := image.NewGray(rect)
	gray.Pix = []uint8{7, 200}
	gray16 := image.NewGray16(rect)
	gray16.Pix = []uint8{0x12, 0x34, 0xff, 0x01}
	nrgba := image.NewNRGBA(rect)
	nrgba.Pix = []uint8{10, 20, 30, 0, 40, 50, 60, 128}
	rgba := image.NewRGBA(rect)
	rgba.Pix = []uint8{50, 25, 0, 100, 1, 2, 3, 255} // premultiplied
	nrgba64 := image.NewNRGBA64(rect)
	nrgba64.Pix = []uint8{0xab, 0xcd, 0x01, 0x02, 0x80, 0x00, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	cmyk := image.NewCMYK(image.Rect(0, 0, 4, 1))
	cmyk.Pix = []uint8{0, 0, 0, 0, 255, 0, 0, 0, 100, 50, 20, 60, 200, 100, 30, 250}
	pal := image.NewPaletted(rect, color.Palette{color.RGBA{1, 2, 3, 255}, color.NRGBA{9, 8, 7, 0}})
	pal.Pix = []uint8{1, 0}
	ycc := image.NewYCbCr(rect, image.YCbCrSubsampleRatio444)
	ycc.Y = []uint8{81, 128}
	ycc.Cb = []uint8{90, 128}
	ycc.Cr = []uint8{240, 128}
	alpha := image.NewAlpha(rect)
	alpha.Pix = []uint8{0, 255}
	sub := image.NewGray(image.Rect(0, 0, 4, 3))
	for i := range sub.Pix {
		sub.Pix[i] = uint8(i)
	}

	tests := []struct {
		name string
		img  image.Image
		want []uint8
	}{
		{"gray", gray, []uint8{7, 7, 7, 200, 200, 200}},
		{"gray16 keeps the high byte", gray16, []uint8{0x12, 0x12, 0x12, 0xff, 0xff, 0xff}},
		{"nrgba drops alpha", nrgba, []uint8{10, 20, 30, 40, 50, 60}},
		// 50*255/100 = 127.5 -> 128, 25*255/100 = 63.75 -> 64.
		{"rgba un-premultiplied", rgba, []uint8{128, 64, 0, 1, 2, 3}},
		{"nrgba64", nrgba64, []uint8{0xab, 0x01, 0x80, 1, 3, 5}},
		// Pillow: (255-K) - round(C*(255-K)/255); values checked with
		// Pillow 9.4's Image.convert("RGB").
		{"cmyk", cmyk, []uint8{255, 255, 255, 0, 255, 255, 119, 157, 180, 1, 3, 4}},
		{"paletted (alpha ignored)", pal, []uint8{9, 8, 7, 1, 2, 3}},
		// libjpeg: R = 81 + ((91881*112 + 32768) >> 16) = 238,
		// G = 81 + ((22554*38 + 32768 - 46802*112) >> 16) = 14,
		// B = 81 + ((-116130*38 + 32768) >> 16) = 14.
		{"ycbcr 4:4:4", ycc, []uint8{238, 14, 14, 128, 128, 128}},
		// Generic path: an alpha mask is white with alpha; un-premultiplied
		// white, except fully transparent black.
		{"alpha (generic)", alpha, []uint8{0, 0, 0, 255, 255, 255}},
		{"sub-image", sub.SubImage(image.Rect(1, 1, 3, 2)), []uint8{5, 5, 5, 6, 6, 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FromImage(tc.img)
			if err := got.Check(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Pix, tc.want) {
				t.Errorf("got %v, want %v", got.Pix, tc.want)
			}
		})
	}
}

// TestWebPYUVToRGB checks libwebp's BT.601 studio-range conversion at
// hand-computed points: Y=16 is black, Y=235 white, for neutral chroma.
func TestWebPYUVToRGB(t *testing.T) {
	tests := []struct {
		y, u, v int
		want    [3]uint8
	}{
		{16, 128, 128, [3]uint8{0, 0, 0}},
		{235, 128, 128, [3]uint8{255, 255, 255}},
		// R = -14234 and B = -17685 clip to 0; G = 8708 >> 6 = 136.
		{0, 0, 0, [3]uint8{0, 136, 0}},
		// Y=235 (19077.235 = 17512), U=128, V=255:
		// R = 17512 + 26046 - 14234 = 29324, above 255<<6: 255;
		// G = 17512 - 3209 - 13267 + 8708 = 9744 >> 6 = 152;
		// B = 17512 + 16525 - 17685 = 16352 >> 6 = 255.
		{235, 128, 255, [3]uint8{255, 152, 255}},
	}
	for _, tc := range tests {
		r, g, b := webpYUVToRGB(tc.y, tc.u, tc.v)
		if [3]uint8{r, g, b} != tc.want {
			t.Errorf("webpYUVToRGB(%d, %d, %d) = %d %d %d, want %v", tc.y, tc.u, tc.v, r, g, b, tc.want)
		}
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		head string
		want Format
	}{
		{"\xff\xd8\xff\xe0\x00\x10JFIF", JPEG},
		{"\x89PNG\r\n\x1a\n\x00", PNG},
		{"GIF89a\x01\x00", GIF},
		{"GIF87a", GIF},
		{"RIFF\x10\x00\x00\x00WEBPVP8 ", WebP},
		{"BM\x36\x00", BMP},
		{"II*\x00\x08", TIFF},
		{"MM\x00*\x00", TIFF},
	}
	for _, tc := range tests {
		if got, err := Sniff([]byte(tc.head)); err != nil || got != tc.want {
			t.Errorf("Sniff(%q) = %q, %v; want %q", tc.head, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "RIFF\x10\x00\x00\x00WAVE", "%PDF-1.4", "\xff\xd8"} {
		if _, err := Sniff([]byte(bad)); !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("Sniff(%q): err = %v, want ErrUnknownFormat", bad, err)
		}
	}
}

// TestDecodeReader checks Decode on a reader and the error for a
// non-image.
func TestDecodeReader(t *testing.T) {
	data, err := os.ReadFile(fixturePath("img/png_rgb.png"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := openFixture(t, "img/png_rgb.png")
	if d := compare(t, m, want); d.max != 0 {
		t.Errorf("Decode differs from Open: %v", d)
	}
	if _, err := Decode(strings.NewReader("hello")); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("Decode(text): err = %v", err)
	}
}

// TestRandomResizedCropDistribution draws many crop boxes and compares
// their statistics with those of torchvision's RandomResizedCrop.get_params
// recorded by gen.py (torch's generator cannot be reproduced, so only the
// distribution is compared). Means must agree within 5 standard errors,
// standard deviations within 3% (where the fallback is rare), the fallback
// frequency within 5 standard errors.
func TestRandomResizedCropDistribution(t *testing.T) {
	m := loadManifest(t)
	if len(m.RRCStats) == 0 {
		t.Fatal("no statistics in the manifest")
	}
	for k, c := range m.RRCStats {
		rng := rand.New(rand.NewPCG(uint64(k), 99))
		n := c.N
		vals := map[string][]float64{}
		fb := c.Stats.FallbackBox
		nFallback := 0
		for range n {
			x, y, w, h := RandomResizedCropParams(c.W, c.H, c.Scale, c.Ratio, rng)
			if w <= 0 || h <= 0 || x < 0 || y < 0 || x+w > c.W || y+h > c.H {
				t.Fatalf("%dx%d: box (%d,%d,%d,%d) outside the image", c.W, c.H, x, y, w, h)
			}
			if x == fb.X && y == fb.Y && w == fb.W && h == fb.H {
				nFallback++
			}
			vals["x"] = append(vals["x"], float64(x))
			vals["y"] = append(vals["y"], float64(y))
			vals["w"] = append(vals["w"], float64(w))
			vals["h"] = append(vals["h"], float64(h))
			vals["area"] = append(vals["area"], float64(w*h)/float64(c.W*c.H))
			vals["aspect"] = append(vals["aspect"], float64(w)/float64(h))
		}
		ref := map[string]moments{"x": c.Stats.X, "y": c.Stats.Y, "w": c.Stats.W, "h": c.Stats.H,
			"area": c.Stats.Area, "aspect": c.Stats.Aspect}
		for key, v := range vals {
			mean, std := meanStd(v)
			r := ref[key]
			se := math.Sqrt((r.Std*r.Std + std*std) / float64(n))
			if math.Abs(mean-r.Mean) > 5*se+1e-9 {
				t.Errorf("%dx%d scale %v: mean %s = %.4f, torchvision %.4f (standard error %.4f)", c.W, c.H, c.Scale, key, mean, r.Mean, se)
			}
			// For the elongated images almost every draw is the fallback
			// box and the spread comes from a few rare boxes, so the
			// sample standard deviation is too noisy to compare.
			if c.Stats.FallbackFrac < 0.01 && math.Abs(std-r.Std) > 0.03*r.Std+1e-9 {
				t.Errorf("%dx%d scale %v: std %s = %.4f, torchvision %.4f", c.W, c.H, c.Scale, key, std, r.Std)
			}
		}
		p := float64(nFallback) / float64(n)
		q := c.Stats.FallbackFrac
		se := math.Sqrt((p*(1-p) + q*(1-q)) / float64(n))
		if math.Abs(p-q) > 5*se+1e-3 {
			t.Errorf("%dx%d: fallback box frequency %.4f, torchvision %.4f", c.W, c.H, p, q)
		}
	}
}

func meanStd(v []float64) (mean, std float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}

// TestRandomResizedCropFallback uses images so elongated that no attempt
// can fit, so the central fallback box is returned (hand-derived from
// torchvision's rule).
func TestRandomResizedCropFallback(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ratio := [2]float64{3.0 / 4.0, 4.0 / 3.0}
	for range 20 {
		// Wide: h = H = 10, w = round(10 * 4/3) = 13, left = (1000-13)//2.
		if x, y, w, h := RandomResizedCropParams(1000, 10, [2]float64{0.08, 1}, ratio, rng); x != 493 || y != 0 || w != 13 || h != 10 {
			t.Fatalf("wide fallback = (%d,%d,%d,%d), want (493,0,13,10)", x, y, w, h)
		}
		// Tall: w = W = 10, h = round(10 / (3/4)) = 13, top = (1000-13)//2.
		if x, y, w, h := RandomResizedCropParams(10, 1000, [2]float64{0.08, 1}, ratio, rng); x != 0 || y != 493 || w != 10 || h != 13 {
			t.Fatalf("tall fallback = (%d,%d,%d,%d), want (0,493,10,13)", x, y, w, h)
		}
	}
	// Scale and ratio ranges of a single point: area 1/4, aspect 1 ->
	// a 50x50 box in a 100x100 image, always found at the first attempt.
	for range 20 {
		x, y, w, h := RandomResizedCropParams(100, 100, [2]float64{0.25, 0.25}, [2]float64{1, 1}, rng)
		if w != 50 || h != 50 || x < 0 || x > 50 || y < 0 || y > 50 {
			t.Fatalf("point ranges: (%d,%d,%d,%d)", x, y, w, h)
		}
	}
}

// TestTrainTransform checks that Train draws the crop, then the flip, from
// the given generator, and composes them with the (fixture-tested) resize
// and normalization.
func TestTrainTransform(t *testing.T) {
	src := openFixture(t, "img/b_211x157.png")
	for _, opt := range []TrainOptions{{}, {Scale: [2]float64{0.5, 1}}, {NoFlip: true}} {
		tr := Train(61, opt)
		if tr.Size() != 61 {
			t.Fatalf("Size() = %d", tr.Size())
		}
		rng := rand.New(rand.NewPCG(7, 8))
		ref := rand.New(rand.NewPCG(7, 8))
		o := opt.withDefaults()
		for i := range 20 {
			got := make([]float32, 3*61*61)
			if err := tr.Apply(src, rng, got); err != nil {
				t.Fatal(err)
			}
			x, y, w, h := RandomResizedCropParams(src.W, src.H, o.Scale, o.Ratio, ref)
			flip := !opt.NoFlip && ref.Float64() < 0.5
			want := make([]float32, len(got))
			crop := ResizedCrop(src, x, y, w, h, 61, 61)
			if flip {
				crop = FlipHorizontal(crop)
			}
			Normalize(crop, want)
			for j := range got {
				if got[j] != want[j] {
					t.Fatalf("options %+v, draw %d: value %d = %v, want %v", opt, i, j, got[j], want[j])
				}
			}
		}
	}
}

// TestTrainFlipRate crops the whole (square) image every time, so only
// the flip is random, and counts flips: about half, none with NoFlip.
func TestTrainFlipRate(t *testing.T) {
	img := gradient(3, 3)
	whole := TrainOptions{Scale: [2]float64{1, 1}, Ratio: [2]float64{1, 1}}
	plain := make([]float32, 27)
	Normalize(img, plain)
	count := func(opt TrainOptions) int {
		rng := rand.New(rand.NewPCG(3, 4))
		tr := Train(3, opt)
		n := 0
		dst := make([]float32, 27)
		for range 4000 {
			if err := tr.Apply(img, rng, dst); err != nil {
				t.Fatal(err)
			}
			if dst[0] != plain[0] {
				n++
			}
		}
		return n
	}
	// Binomial(4000, 0.5): standard deviation 31.6.
	if n := count(whole); n < 2000-160 || n > 2000+160 {
		t.Errorf("%d of 4000 flipped, want about 2000", n)
	}
	whole.NoFlip = true
	if n := count(whole); n != 0 {
		t.Errorf("NoFlip: %d flipped", n)
	}
}

func TestTransformErrors(t *testing.T) {
	img := gradient(5, 4)
	rng := rand.New(rand.NewPCG(1, 1))
	tests := []struct {
		name string
		tr   Transform
		img  *Image
		rng  *rand.Rand
		dst  []float32
		want string
	}{
		{"test short dst", Test(4), img, nil, make([]float32, 47), "output buffer has 47 elements"},
		{"test nil image", Test(4), nil, nil, make([]float32, 48), "nil image"},
		{"test bad image", Test(4), &Image{W: 2, H: 2, Pix: make([]uint8, 5)}, nil, make([]float32, 48), "5 bytes"},
		{"test empty image", Test(4), NewImage(0, 3), nil, make([]float32, 48), "empty image"},
		{"test size 0", Test(0), img, nil, nil, "size 0"},
		{"train nil rng", Train(4, TrainOptions{}), img, nil, make([]float32, 48), "nil random generator"},
		{"train bad scale", Train(4, TrainOptions{Scale: [2]float64{0.5, 0.2}}), img, rng, make([]float32, 48), "scale range"},
		{"train scale > 1", Train(4, TrainOptions{Scale: [2]float64{0.5, 2}}), img, rng, make([]float32, 48), "scale range"},
		{"train bad ratio", Train(4, TrainOptions{Ratio: [2]float64{-1, 2}}), img, rng, make([]float32, 48), "ratio range"},
		{"train long dst", Train(4, TrainOptions{}), img, rng, make([]float32, 49), "49 elements"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tr.Apply(tc.img, tc.rng, tc.dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestResizeDegenerate covers sizes Pillow rejects (we return an empty
// image instead of panicking) and the copy for an unchanged size.
func TestResizeDegenerate(t *testing.T) {
	g := gradient(4, 3)
	if r := Resize(g, 0, 5); r.W != 0 || r.H != 0 {
		t.Errorf("Resize to width 0 = %dx%d", r.W, r.H)
	}
	r := Resize(g, 4, 3)
	if !bytes.Equal(r.Pix, g.Pix) {
		t.Error("same-size resize changed the image")
	}
	r.Pix[0] = 99
	if g.Pix[0] == 99 {
		t.Error("same-size resize shares memory with the input")
	}
	if r := ResizeShorter(g, 0); r.W != 0 {
		t.Errorf("ResizeShorter(0) = %dx%d", r.W, r.H)
	}
	// A resized crop partly outside the image equals crop-then-resize.
	a, b := ResizedCrop(g, -1, 1, 4, 4, 7, 5), Resize(Crop(g, -1, 1, 4, 4), 7, 5)
	if !bytes.Equal(a.Pix, b.Pix) {
		t.Error("ResizedCrop outside the image differs from Crop + Resize")
	}
}

// TestResampleWindow checks that computing only a window of the output
// gives exactly the corresponding pixels of the full resize, for down-
// and upscaling and with one direction unchanged (the fixture-tested
// Resize computes the whole output through the same code, so the full
// resize is checked against Pillow there).
func TestResampleWindow(t *testing.T) {
	src := openFixture(t, "img/b_211x157.png")
	for _, size := range [][2]int{{150, 97}, {211, 97}, {150, 157}, {400, 300}, {20, 15}, {211, 400}} {
		w, h := size[0], size[1]
		full := Resize(src, w, h)
		for _, win := range []image.Rectangle{
			image.Rect(0, 0, w, h), image.Rect(10, 5, w/2, h-3), image.Rect(w-1, h-1, w, h), image.Rect(3, 0, 4, h),
		} {
			got := resample(src, image.Rect(0, 0, src.W, src.H), w, h, win)
			want := Crop(full, win.Min.X, win.Min.Y, win.Dx(), win.Dy())
			if !bytes.Equal(got.Pix, want.Pix) {
				t.Errorf("%dx%d: window %v differs from the cropped full resize", w, h, win)
			}
		}
	}
}

func btoi8(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestVerticalTapsPacked checks the two-sums-per-word arithmetic of
// verticalTaps against Pillow's plain 32-bit sum per value, with the real
// weights of many scale factors and rows chosen to push the sums to their
// extremes (255 where the weight is positive and 0 where it is negative,
// and the reverse) as well as random rows.
func TestVerticalTapsPacked(t *testing.T) {
	// By hand: with weights 2^21 and -2^21, value 0 sums to 2^21 - 255·2^21
	// (negative: the low lane borrows from the high one) and value 1 to
	// exactly 2^22, which is 1 only if the borrow is undone.
	got := make([]uint8, 2)
	verticalTaps(got, make([]uint64, 1), [][]uint64{{0 | 1<<32}, {255}}, []int32{1 << 21, -1 << 21})
	if got[0] != 0 || got[1] != 1 {
		t.Errorf("borrow case: got %v, want [0 1]", got)
	}

	rng := rand.New(rand.NewPCG(3, 4))
	const width = 7 // odd: the last word carries one value
	for _, sizes := range [][2]int{{5, 3}, {17, 13}, {100, 7}, {500, 224}, {224, 500}, {3, 40}, {1000, 9}} {
		ft := newFilterTaps(sizes[0], sizes[1])
		for i, k := range ft.taps {
			rows := make([][]uint8, len(k))
			for j := range rows {
				rows[j] = make([]uint8, width)
				for x := range width {
					// Values 0 and 3 get the largest sum, 1 and 2 the
					// smallest (most negative), so both lanes of a word
					// see both extremes.
					switch {
					case x == 0 || x == 3:
						rows[j][x] = uint8(255 * btoi8(k[j] > 0))
					case x == 1 || x == 2:
						rows[j][x] = uint8(255 * btoi8(k[j] < 0))
					default:
						rows[j][x] = uint8(rng.IntN(256))
					}
				}
			}
			packed := make([][]uint64, len(k))
			for j := range rows {
				packed[j] = make([]uint64, (width+1)/2)
				packPairs(packed[j], rows[j])
			}
			got := make([]uint8, width+1)
			verticalTaps(got, make([]uint64, (width+1)/2), packed, k)
			for x := range width {
				sum := int32(1 << (precisionBits - 1))
				for j, kv := range k {
					sum += int32(rows[j][x]) * kv
				}
				if want := clip8(sum); got[x] != want {
					t.Fatalf("%d->%d, output %d, value %d: got %d, want %d", sizes[0], sizes[1], i, x, got[x], want)
				}
			}
		}
	}
}

func BenchmarkDecodeTestTransform224(b *testing.B) {
	path := filepath.Join("testdata", "bench_500x375.jpg")
	tr := Test(224)
	dst := make([]float32, 3*224*224)
	for b.Loop() {
		img, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := tr.Apply(img, nil, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeJPEG(b *testing.B) {
	path := filepath.Join("testdata", "bench_500x375.jpg")
	for b.Loop() {
		if _, err := Open(path); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTestTransform224(b *testing.B) {
	img, err := Open(filepath.Join("testdata", "bench_500x375.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	tr := Test(224)
	dst := make([]float32, 3*224*224)
	for b.Loop() {
		if err := tr.Apply(img, nil, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTrainTransform224(b *testing.B) {
	img, err := Open(filepath.Join("testdata", "bench_500x375.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	tr := Train(224, TrainOptions{})
	rng := rand.New(rand.NewPCG(1, 2))
	dst := make([]float32, 3*224*224)
	for b.Loop() {
		if err := tr.Apply(img, rng, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResizedCrop resamples boxes of the benchmark photo to 224×224:
// a typical RandomResizedCrop box (slight downscale), the whole image
// (downscale by about 1.7) and a small box (upscale by about 2.8).
func BenchmarkResizedCrop(b *testing.B) {
	img, err := Open(filepath.Join("testdata", "bench_500x375.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name       string
		x, y, w, h int
	}{
		{"typical", 60, 40, 320, 250},
		{"whole", 0, 0, 500, 375},
		{"small", 200, 100, 80, 90},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				ResizedCrop(img, bc.x, bc.y, bc.w, bc.h, 224, 224)
			}
		})
	}
}
