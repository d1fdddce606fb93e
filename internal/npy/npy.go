// Package npy reads and writes NumPy .npy files through sbinet's npyio
// (codeberg.org/sbinet/npyio), adding what the toolkit needs around it:
// N-dimensional float32 and int64 arrays as a flat slice plus a shape,
// errors that name the file, checks of the header against the file size
// before anything is allocated (a truncated or padded file is an error,
// never a short read), and atomic writes (a temporary file in the same
// directory, renamed into place).
//
// Reading (npyio parses the header and decodes the data) accepts
// C-ordered arrays of either byte order and format version 1.0 or 2.0:
// float32 and float64 ('f4', 'f8') for Read, signed and unsigned integers
// and bools for ReadInt64. Writing produces what numpy.save does for the
// same array: format version 1.0, little endian, C order, the data
// starting at a multiple of 64 bytes (npyio's writer cannot, see write).
package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"codeberg.org/sbinet/npyio"

	"github.com/clipadapter/clipgo/internal/fsutil"
)

// Write stores data as a little-endian float32 array of the given shape in
// C order. The product of shape must equal len(data); an empty shape
// writes a 0-d array holding one value.
func Write(path string, shape []int, data []float32) error {
	return write(path, shape, data)
}

// WriteInt64 stores data as a little-endian int64 array of the given shape
// in C order, like Write.
func WriteInt64(path string, shape []int, data []int64) error {
	return write(path, shape, data)
}

// Read loads a floating-point array in C order: float32 as is, float64
// rounded to the nearest float32.
func Read(path string) (shape []int, data []float32, err error) {
	r, h, err := open(path)
	if err != nil {
		return nil, nil, err
	}
	switch h.kind {
	case "f4":
		data, err = readAs[float32](r)
	case "f8":
		data, err = readConv[float64, float32](r)
	default:
		return nil, nil, fmt.Errorf("read %s: element type %q is not floating point (want f4 or f8)", path, h.descr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return h.shape, data, nil
}

// ReadInt64 loads an integer or bool array ('i8', 'i4', 'i2', 'i1', 'u4',
// 'u2', 'u1' or 'b1') as int64 values in C order.
func ReadInt64(path string) (shape []int, data []int64, err error) {
	r, h, err := open(path)
	if err != nil {
		return nil, nil, err
	}
	switch h.kind {
	case "i8":
		data, err = readAs[int64](r)
	case "i4":
		data, err = readConv[int32, int64](r)
	case "i2":
		data, err = readConv[int16, int64](r)
	case "i1":
		data, err = readConv[int8, int64](r)
	case "u4":
		data, err = readConv[uint32, int64](r)
	case "u2":
		data, err = readConv[uint16, int64](r)
	case "u1":
		data, err = readConv[uint8, int64](r)
	case "b1":
		var b []bool
		if b, err = readAs[bool](r); err == nil {
			data = make([]int64, len(b))
			for i, v := range b {
				if v {
					data[i] = 1
				}
			}
		}
	default:
		return nil, nil, fmt.Errorf("read %s: element type %q is not a supported integer type (want i8, i4, i2, i1, u4, u2, u1 or b1)", path, h.descr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return h.shape, data, nil
}

// arrayInfo is what open checked of a file's header.
type arrayInfo struct {
	descr string // e.g. "<f4"
	kind  string // descr without the byte order, e.g. "f4"
	shape []int  // never nil
}

// itemSize is the size in bytes of the element kinds Read and ReadInt64
// accept.
var itemSize = map[string]int{
	"f4": 4, "f8": 8,
	"i1": 1, "i2": 2, "i4": 4, "i8": 8,
	"u1": 1, "u2": 2, "u4": 4, "b1": 1,
}

// open reads path, parses its header with npyio and checks that the data
// that follows has exactly the size the header announces.
func open(path string) (*npyio.Reader, arrayInfo, error) {
	var h arrayInfo
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, h, fmt.Errorf("read npy: %w", err)
	}
	body := bytes.NewReader(raw)
	r, err := newReader(body)
	if err != nil {
		return nil, h, fmt.Errorf("read %s: not a valid .npy file: %w", path, err)
	}
	h.descr = strings.Trim(r.Header.Descr.Type, `'"`)
	if r.Header.Descr.Fortran {
		return nil, h, fmt.Errorf("read %s: Fortran-ordered arrays are not supported", path)
	}
	size := 0
	if len(h.descr) == 3 && strings.ContainsRune("<>|=", rune(h.descr[0])) {
		h.kind = h.descr[1:]
		size = itemSize[h.kind]
	}
	if size == 0 {
		return nil, h, fmt.Errorf("read %s: unsupported element type %q", path, h.descr)
	}
	h.shape = append([]int{}, r.Header.Descr.Shape...)
	count := 1
	for _, d := range h.shape {
		if d < 0 {
			return nil, h, fmt.Errorf("read %s: negative dimension in shape %v", path, h.shape)
		}
		if d != 0 && count > math.MaxInt/size/d {
			return nil, h, fmt.Errorf("read %s: shape %v is too large", path, h.shape)
		}
		count *= d
	}
	switch left := body.Len(); {
	case left < count*size:
		return nil, h, fmt.Errorf("read %s: data truncated: shape %v of %s needs %d bytes, file has %d", path, h.shape, h.descr, count*size, left)
	case left > count*size:
		return nil, h, fmt.Errorf("read %s: %d unexpected bytes after the data of shape %v", path, left-count*size, h.shape)
	}
	return r, h, nil
}

// newReader is npyio.NewReader with its panics on some malformed headers
// (a header without a newline, keys out of order) turned into errors.
func newReader(body *bytes.Reader) (r *npyio.Reader, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("malformed header (%v)", p)
		}
	}()
	return npyio.NewReader(body)
}

// readAs reads all elements, stored as T on disk.
func readAs[T any](r *npyio.Reader) ([]T, error) {
	var out []T
	if err := r.Read(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// readConv reads elements stored as T and converts them to U.
func readConv[T, U int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | float32 | float64](r *npyio.Reader) ([]U, error) {
	in, err := readAs[T](r)
	if err != nil {
		return nil, err
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = U(v)
	}
	return out, nil
}

// Writing is done here rather than with npyio.Write, which always writes
// format version 2.0 without NumPy's 64-byte alignment and takes the shape
// from nested Go slices (no zero-length dimensions); the clip command
// promises format 1.0 files like numpy.save's.

const (
	// align is the alignment of the data start that NumPy uses.
	align = 64
	// growthDigits is the room NumPy leaves in a header so that the
	// leading dimension can later grow in place, kept so that our files
	// match numpy.save's byte for byte.
	growthDigits = 21
)

// write stores data with the given shape atomically: a format 1.0 header
// laid out as NumPy does, then the little-endian data.
func write[T float32 | int64](path string, shape []int, data []T) error {
	if err := checkShape(shape, len(data)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	descr := "<f4"
	if _, ok := any(data).([]int64); ok {
		descr = "<i8"
	}
	head := header(descr, shape)
	if len(head)-len(npyio.Magic)-4 > math.MaxUint16 {
		return fmt.Errorf("write %s: shape %v needs a header longer than format 1.0 allows", path, shape)
	}
	f, err := fsutil.Create(path, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer f.Abort()
	w := bufio.NewWriterSize(f, 1<<16)
	w.Write(head) // errors come back from Flush
	if err := binary.Write(w, binary.LittleEndian, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// header formats the array description the way NumPy 1.24 does: a Python
// dict literal with sorted keys, room for the leading dimension to grow,
// space padding and a final newline, so that the data starts at a multiple
// of 64 bytes.
func header(descr string, shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	tuple := "(" + strings.Join(dims, ", ") + ")"
	if len(shape) == 1 {
		tuple = "(" + dims[0] + ",)"
	}
	h := "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + tuple + ", }"
	if len(shape) > 0 {
		h += strings.Repeat(" ", max(0, growthDigits-len(dims[0])))
	}
	// magic (6) + version (2) + header length (2) + header + "\n"
	pad := align - (len(npyio.Magic)+4+len(h)+1)%align
	if pad == align {
		pad = 0
	}
	h += strings.Repeat(" ", pad) + "\n"
	out := make([]byte, 0, len(npyio.Magic)+4+len(h))
	out = append(out, npyio.Magic[:]...)
	out = append(out, 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(h)))
	return append(out, h...)
}

// checkShape reports whether shape describes exactly n elements.
func checkShape(shape []int, n int) error {
	count := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && count > math.MaxInt/d {
			return fmt.Errorf("shape %v is too large", shape)
		}
		count *= d
	}
	if count != n {
		return fmt.Errorf("shape %v holds %d elements, data has %d", shape, count, n)
	}
	return nil
}
