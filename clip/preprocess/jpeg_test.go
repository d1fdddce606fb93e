package preprocess

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestDecodeJPEGTruncated cuts a JPEG at every length short of its end:
// each prefix must be an error, as Pillow 9.4 reports for it ("image file
// is truncated", checked by hand at several cuts including the one that
// drops only the final EOI marker), never an image padded with gray.
func TestDecodeJPEGTruncated(t *testing.T) {
	data, err := os.ReadFile(fixturePath("img/jpeg_420.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeBytes(data); err != nil {
		t.Fatalf("whole file: %v", err)
	}
	for n := 3; n < len(data); n++ {
		if m, err := DecodeBytes(data[:n]); err == nil {
			t.Fatalf("first %d of %d bytes decoded into %dx%d, want an error", n, len(data), m.W, m.H)
		}
	}
}

// TestDecodeJPEGExtraneousData checks that junk bytes between the last
// scan and the EOI marker, which libjpeg reports only as a warning
// ("Corrupt JPEG data: 4 extraneous bytes before marker 0xd9"), do not
// change the decoded pixels: Pillow 9.4 decodes such a file to the same
// array as the intact one.
func TestDecodeJPEGExtraneousData(t *testing.T) {
	data, err := os.ReadFile(fixturePath("img/jpeg_420.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(data, []byte{0xff, 0xd9}) {
		t.Fatal("fixture does not end with EOI")
	}
	junk := append(append(bytes.Clone(data[:len(data)-2]), "junk"...), 0xff, 0xd9)
	got, err := DecodeBytes(junk)
	if err != nil {
		t.Fatalf("decode with extraneous data: %v", err)
	}
	intact, err := DecodeBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if d := compare(t, got, intact); d.max != 0 {
		t.Errorf("differs from the intact file: %v", d)
	}
	if jpegExact {
		if d := compare(t, got, readU8(t, "decoded/jpeg_420.npy")); d.max != 0 {
			t.Errorf("differs from Pillow: %v; want pixel-exact", d)
		}
	}
}

// TestDecodeJPEGTooLarge patches a JPEG's frame header to 65000×65000
// pixels, beyond Pillow's decompression bomb limit: libjpeg reads the
// header, and the decoder must refuse before allocating the image.
func TestDecodeJPEGTooLarge(t *testing.T) {
	if !jpegExact {
		t.Skip("Go's image/jpeg has no size limit")
	}
	data, err := os.ReadFile(fixturePath("img/jpeg_420.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte{0xff, 0xc0}) // SOF0: length, precision, height, width
	if i < 0 || i+9 > len(data) {
		t.Fatal("no SOF0 marker in the fixture")
	}
	data = bytes.Clone(data)
	data[i+5], data[i+6], data[i+7], data[i+8] = 0xfd, 0xe8, 0xfd, 0xe8
	_, err = DecodeBytes(data)
	if err == nil || !strings.Contains(err.Error(), "65000x65000") {
		t.Errorf("err = %v, want the size named", err)
	}
}
