//go:build cgo && !nolibjpeg

package preprocess

// JPEG decoding through the system libjpeg (libjpeg-turbo on Debian,
// package libjpeg62-turbo-dev), the library Pillow decodes JPEGs with. The
// decoder is set up as Pillow sets it up: full-size output, the default
// ISLOW inverse DCT and libjpeg's default "fancy" chroma upsampling, so the
// pixels are the ones Image.open(path).convert("RGB") returns.

/*
#cgo LDFLAGS: -ljpeg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

// clipgo_jpeg bundles a decompressor with the error handler that turns
// libjpeg's fatal errors into a longjmp back to the entry point that
// called it. It lives in C memory, as does the compressed data it reads.
typedef struct {
	struct jpeg_decompress_struct cinfo;
	struct jpeg_error_mgr jerr;
	jmp_buf jmp;
	int created;
	unsigned char *data;
	char msg[JMSG_LENGTH_MAX];
} clipgo_jpeg;

static void clipgo_jpeg_error_exit(j_common_ptr cinfo) {
	clipgo_jpeg *j = (clipgo_jpeg *)cinfo->client_data;
	(*cinfo->err->format_message)(cinfo, j->msg);
	longjmp(j->jmp, 1);
}

// Warnings (corrupt but decodable data) are ignored, as Pillow ignores
// them, except running out of data: libjpeg would pad the image with
// gray, while Pillow reports a truncated file.
static void clipgo_jpeg_emit_message(j_common_ptr cinfo, int level) {
	if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
		clipgo_jpeg_error_exit(cinfo);
	}
}

static void clipgo_jpeg_free(clipgo_jpeg *j) {
	if (j == NULL) {
		return;
	}
	if (j->created) {
		jpeg_destroy_decompress(&j->cinfo);
	}
	free(j->data);
	free(j);
}

// clipgo_jpeg_header creates a decompressor for a copy of data[0:n] and
// reads the header. On success it returns 0 and *out is set (free it with
// clipgo_jpeg_free); on failure it returns -1, nothing is left allocated,
// and the message is in msg (msgcap bytes, NUL-terminated).
static int clipgo_jpeg_header(const void *data, size_t n, clipgo_jpeg **out,
		int *w, int *h, int *space, int *ncomp, char *msg, size_t msgcap) {
	*out = NULL;
	clipgo_jpeg *j = calloc(1, sizeof(clipgo_jpeg));
	if (j == NULL) {
		snprintf(msg, msgcap, "out of memory");
		return -1;
	}
	j->data = malloc(n > 0 ? n : 1);
	if (j->data == NULL) {
		free(j);
		snprintf(msg, msgcap, "out of memory");
		return -1;
	}
	memcpy(j->data, data, n);
	j->cinfo.err = jpeg_std_error(&j->jerr);
	j->jerr.error_exit = clipgo_jpeg_error_exit;
	j->jerr.emit_message = clipgo_jpeg_emit_message;
	j->cinfo.client_data = j;
	if (setjmp(j->jmp)) {
		snprintf(msg, msgcap, "%s", j->msg);
		clipgo_jpeg_free(j);
		return -1;
	}
	jpeg_create_decompress(&j->cinfo);
	j->created = 1;
	jpeg_mem_src(&j->cinfo, j->data, (unsigned long)n);
	jpeg_read_header(&j->cinfo, TRUE);
	*w = (int)j->cinfo.image_width;
	*h = (int)j->cinfo.image_height;
	*space = (int)j->cinfo.jpeg_color_space;
	*ncomp = j->cinfo.num_components;
	*out = j;
	return 0;
}

// clipgo_jpeg_read decompresses the image whose header j has read into
// buf: w*h pixels of 3 bytes (R, G, B) when space is 0, of 4 bytes (C, M,
// Y, K as libjpeg gives them) when it is 1, of 1 byte (gray) when it is
// 2, row by row without padding. It
// returns 0 on success and -1 with the message in msg on failure; either
// way j stays allocated (the caller frees it). buf is only used during
// the call.
static int clipgo_jpeg_read(clipgo_jpeg *j, unsigned char *buf, int space,
		char *msg, size_t msgcap) {
	if (setjmp(j->jmp)) {
		snprintf(msg, msgcap, "%s", j->msg);
		return -1;
	}
	j->cinfo.out_color_space = space == 1 ? JCS_CMYK : space == 2 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_start_decompress(&j->cinfo);
	JDIMENSION w = j->cinfo.output_width, h = j->cinfo.output_height;
	int comps = j->cinfo.output_components;
	if (comps != (space == 1 ? 4 : space == 2 ? 1 : 3) || w != j->cinfo.image_width || h != j->cinfo.image_height) {
		snprintf(msg, msgcap, "unexpected output of %ux%u pixels of %d components", w, h, comps);
		return -1;
	}
	size_t stride = (size_t)w * comps;
	JSAMPROW rows[16];
	while (j->cinfo.output_scanline < h) {
		JDIMENSION y = j->cinfo.output_scanline, n = h - y;
		if (n > 16) {
			n = 16;
		}
		for (JDIMENSION i = 0; i < n; i++) {
			rows[i] = buf + (size_t)(y + i) * stride;
		}
		jpeg_read_scanlines(&j->cinfo, rows, n);
	}
	jpeg_finish_decompress(&j->cinfo);
	return 0;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// maxJPEGPixels is the largest JPEG decodeJPEG accepts, in pixels: twice
// Pillow's Image.MAX_IMAGE_PIXELS, the size at which Pillow refuses to
// open an image (DecompressionBombError).
const maxJPEGPixels = 2 * 89478485

// libjpeg's J_COLOR_SPACE values for the color spaces handled here.
const (
	jcsGrayscale = C.JCS_GRAYSCALE
	jcsRGB       = C.JCS_RGB
	jcsYCbCr     = C.JCS_YCbCr
	jcsCMYK      = C.JCS_CMYK
	jcsYCCK      = C.JCS_YCCK
)

// decodeJPEG decodes a JPEG with libjpeg as Pillow does, into the mode
// Pillow opens it in: grayscale as L, YCbCr and RGB as RGB, and
// 4-component (CMYK or YCCK) images as CMYK read with Adobe's inverted
// polarity (Pillow's "CMYK;I", which it assumes for every CMYK JPEG).
func decodeJPEG(data []byte) (*Source, error) {
	if len(data) == 0 {
		return nil, errors.New("empty data")
	}
	var (
		j                  *C.clipgo_jpeg
		w, h, space, ncomp C.int
		msg                [C.JMSG_LENGTH_MAX]C.char
	)
	if C.clipgo_jpeg_header(unsafe.Pointer(&data[0]), C.size_t(len(data)), &j,
		&w, &h, &space, &ncomp, &msg[0], C.size_t(len(msg))) != 0 {
		return nil, fmt.Errorf("libjpeg: %s", C.GoString(&msg[0]))
	}
	defer C.clipgo_jpeg_free(j)

	var (
		out  C.int // libjpeg output: 0 RGB, 1 CMYK, 2 gray
		mode = ModeRGB
	)
	switch {
	case space == jcsGrayscale && ncomp == 1:
		out, mode = 2, ModeL
	case (space == jcsYCbCr || space == jcsRGB) && ncomp == 3:
	case (space == jcsCMYK || space == jcsYCCK) && ncomp == 4:
		out, mode = 1, ModeCMYK
	default:
		return nil, fmt.Errorf("unsupported JPEG: %d components in color space %d", ncomp, space)
	}
	if int64(w)*int64(h) > maxJPEGPixels {
		return nil, fmt.Errorf("image of %dx%d pixels is larger than the limit of %d pixels", w, h, maxJPEGPixels)
	}
	src := newSource(mode, int(w), int(h), nil)
	if len(src.Pix) == 0 {
		return src, nil // DecodeSource reports the empty image
	}
	buf := src.Pix
	// buf holds no Go pointers and C keeps no reference to it after the
	// call, as cgo's pointer rules require.
	if C.clipgo_jpeg_read(j, (*C.uchar)(unsafe.Pointer(&buf[0])), out, &msg[0], C.size_t(len(msg))) != 0 {
		return nil, fmt.Errorf("libjpeg: %s", C.GoString(&msg[0]))
	}
	if mode == ModeCMYK {
		for i, v := range buf {
			buf[i] = ^v
		}
	}
	return src, nil
}
