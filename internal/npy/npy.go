// Package npy reads and writes NumPy .npy files (the format of numpy.save
// and numpy.load) for the few element types the toolkit exchanges with
// Python: float32 arrays for images and features, integer arrays for labels.
//
// Writing produces format version 1.0, C order, little endian, with the
// header padded so that the data starts at a multiple of 64 bytes, as
// NumPy does; files are written atomically (a temporary file in the same
// directory, renamed into place). Reading accepts format versions 1.0, 2.0
// and 3.0, either byte order and both C and Fortran order (Fortran-ordered
// data is returned in C order).
//
// Format specification:
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
package npy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/clipadapter/clipgo/internal/fsutil"
)

const (
	magic = "\x93NUMPY"
	// align is the alignment of the data start that NumPy uses.
	align = 64
	// growthDigits is the room NumPy leaves in a header so that the
	// leading dimension can later grow in place (numpy.lib.format's
	// GROWTH_AXIS_MAX_DIGITS); copied so that our files match NumPy's byte
	// for byte.
	growthDigits = 21
	// maxHeader bounds the header size accepted when reading.
	maxHeader = 1 << 20
)

// Write stores data as a little-endian float32 ('<f4') array of the given
// shape in C order. The product of shape must equal len(data); an empty
// shape writes a 0-d array holding one value.
func Write(path string, shape []int, data []float32) error {
	if err := checkShape(shape, len(data)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	body := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(body[4*i:], math.Float32bits(v))
	}
	return writeFile(path, "<f4", shape, body)
}

// WriteInt64 stores data as a little-endian int64 ('<i8') array of the
// given shape in C order, like Write.
func WriteInt64(path string, shape []int, data []int64) error {
	if err := checkShape(shape, len(data)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	body := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(body[8*i:], uint64(v))
	}
	return writeFile(path, "<i8", shape, body)
}

// Read loads a floating-point array: float32 ('f4') as is, float64 ('f8')
// and float16 ('f2') converted to float32 (float64 values are rounded to
// the nearest float32). The data is returned in C order.
func Read(path string) (shape []int, data []float32, err error) {
	a, err := readFile(path)
	if err != nil {
		return nil, nil, err
	}
	n := a.count()
	data = make([]float32, n)
	switch a.kind {
	case "f4":
		for i := range data {
			data[i] = math.Float32frombits(a.order.Uint32(a.body[4*i:]))
		}
	case "f8":
		for i := range data {
			data[i] = float32(math.Float64frombits(a.order.Uint64(a.body[8*i:])))
		}
	case "f2":
		for i := range data {
			data[i] = halfToFloat32(a.order.Uint16(a.body[2*i:]))
		}
	default:
		return nil, nil, fmt.Errorf("read %s: element type %q is not floating point (want f2, f4 or f8)", path, a.descr)
	}
	if a.fortran {
		data = toCOrder(data, a.shape)
	}
	return a.shape, data, nil
}

// ReadInt64 loads an integer array ('i8', 'i4', 'i2', 'i1', 'u4', 'u2',
// 'u1' or 'b1') as int64 values in C order.
func ReadInt64(path string) (shape []int, data []int64, err error) {
	a, err := readFile(path)
	if err != nil {
		return nil, nil, err
	}
	n := a.count()
	data = make([]int64, n)
	b := a.body
	switch a.kind {
	case "i8":
		for i := range data {
			data[i] = int64(a.order.Uint64(b[8*i:]))
		}
	case "i4":
		for i := range data {
			data[i] = int64(int32(a.order.Uint32(b[4*i:])))
		}
	case "u4":
		for i := range data {
			data[i] = int64(a.order.Uint32(b[4*i:]))
		}
	case "i2":
		for i := range data {
			data[i] = int64(int16(a.order.Uint16(b[2*i:])))
		}
	case "u2":
		for i := range data {
			data[i] = int64(a.order.Uint16(b[2*i:]))
		}
	case "i1":
		for i := range data {
			data[i] = int64(int8(b[i]))
		}
	case "u1", "b1":
		for i := range data {
			data[i] = int64(b[i])
		}
	default:
		return nil, nil, fmt.Errorf("read %s: element type %q is not a supported integer type (want i8, i4, i2, i1, u4, u2, u1 or b1)", path, a.descr)
	}
	if a.fortran {
		data = toCOrder(data, a.shape)
	}
	return a.shape, data, nil
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
	pad := align - (len(magic)+4+len(h)+1)%align
	if pad == align {
		pad = 0
	}
	h += strings.Repeat(" ", pad) + "\n"
	out := make([]byte, 0, len(magic)+4+len(h))
	out = append(out, magic...)
	out = append(out, 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(h)))
	return append(out, h...)
}

// writeFile writes header and body to path atomically.
func writeFile(path, descr string, shape []int, body []byte) error {
	head := header(descr, shape)
	if len(head)-len(magic)-4 > math.MaxUint16 {
		return fmt.Errorf("write %s: shape %v needs a header longer than format 1.0 allows", path, shape)
	}
	f, err := fsutil.Create(path, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(head); err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		return err
	}
	return f.Commit()
}

// array is a parsed .npy file.
type array struct {
	descr   string
	kind    string // descr without the byte-order character, e.g. "f4"
	order   binary.ByteOrder
	fortran bool
	shape   []int
	body    []byte
}

func (a *array) count() int {
	n := 1
	for _, d := range a.shape {
		n *= d
	}
	return n
}

// elemSize is the size in bytes of the supported element kinds.
var elemSize = map[string]int{
	"f2": 2, "f4": 4, "f8": 8,
	"i1": 1, "i2": 2, "i4": 4, "i8": 8,
	"u1": 1, "u2": 2, "u4": 4, "b1": 1,
}

// readFile reads and validates path, returning its header fields and the
// raw data.
func readFile(path string) (*array, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read npy: %w", err)
	}
	a, err := parse(raw)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return a, nil
}

func parse(raw []byte) (*array, error) {
	if len(raw) < len(magic)+4 || string(raw[:len(magic)]) != magic {
		return nil, errors.New("not a .npy file (bad magic string)")
	}
	major := raw[6]
	var hlen, start int
	switch major {
	case 1:
		hlen, start = int(binary.LittleEndian.Uint16(raw[8:10])), 10
	case 2, 3:
		if len(raw) < 12 {
			return nil, io.ErrUnexpectedEOF
		}
		h := binary.LittleEndian.Uint32(raw[8:12])
		if h > maxHeader {
			return nil, fmt.Errorf("header length %d is implausible", h)
		}
		hlen, start = int(h), 12
	default:
		return nil, fmt.Errorf("unsupported format version %d.%d", major, raw[7])
	}
	if len(raw) < start+hlen {
		return nil, fmt.Errorf("truncated header: %w", io.ErrUnexpectedEOF)
	}
	fields, err := parseDict(string(raw[start : start+hlen]))
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	a := &array{}
	descr, ok := fields["descr"].(string)
	if !ok {
		return nil, errors.New("header: missing or non-string 'descr'")
	}
	fortran, ok := fields["fortran_order"].(bool)
	if !ok {
		return nil, errors.New("header: missing or non-boolean 'fortran_order'")
	}
	shape, ok := fields["shape"].([]int)
	if !ok {
		return nil, errors.New("header: missing or malformed 'shape'")
	}
	a.descr, a.fortran, a.shape = descr, fortran, shape
	if len(descr) != 3 {
		return nil, fmt.Errorf("unsupported element type %q", descr)
	}
	switch descr[0] {
	case '<', '|':
		a.order = binary.LittleEndian
	case '>':
		a.order = binary.BigEndian
	default:
		return nil, fmt.Errorf("unsupported element type %q", descr)
	}
	a.kind = descr[1:]
	size, ok := elemSize[a.kind]
	if !ok {
		return nil, fmt.Errorf("unsupported element type %q", descr)
	}
	count := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && count > math.MaxInt/size/d {
			return nil, fmt.Errorf("shape %v is too large", shape)
		}
		count *= d
	}
	body := raw[start+hlen:]
	if len(body) < count*size {
		return nil, fmt.Errorf("data truncated: shape %v of %s needs %d bytes, file has %d: %w",
			shape, descr, count*size, len(body), io.ErrUnexpectedEOF)
	}
	if len(body) > count*size {
		return nil, fmt.Errorf("%d unexpected bytes after the data of shape %v", len(body)-count*size, shape)
	}
	a.body = body
	return a, nil
}

// parseDict parses the Python dict literal of a .npy header. Values may be
// strings, True/False, integers and tuples of integers; that is all the
// format uses.
func parseDict(s string) (map[string]any, error) {
	p := &dictParser{s: s}
	out := map[string]any{}
	p.space()
	if !p.eat('{') {
		return nil, fmt.Errorf("want '{' in %q", s)
	}
	for {
		p.space()
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return nil, fmt.Errorf("%w in %q", err, s)
		}
		p.space()
		if !p.eat(':') {
			return nil, fmt.Errorf("want ':' after key %q in %q", key, s)
		}
		p.space()
		v, err := p.value()
		if err != nil {
			return nil, fmt.Errorf("%w in %q", err, s)
		}
		out[key] = v
		p.space()
		if p.eat(',') {
			continue
		}
		p.space()
		if !p.eat('}') {
			return nil, fmt.Errorf("want ',' or '}' in %q", s)
		}
		break
	}
	p.space()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("trailing text after dict in %q", s)
	}
	return out, nil
}

type dictParser struct {
	s string
	i int
}

func (p *dictParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *dictParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *dictParser) str() (string, error) {
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", errors.New("want a quoted string")
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", errors.New("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return v, nil
}

func (p *dictParser) value() (any, error) {
	switch {
	case p.i >= len(p.s):
		return nil, errors.New("missing value")
	case p.s[p.i] == '\'' || p.s[p.i] == '"':
		return p.str()
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, nil
	case p.s[p.i] == '(':
		p.i++
		dims := []int{}
		for {
			p.space()
			if p.eat(')') {
				return dims, nil
			}
			d, err := p.int()
			if err != nil {
				return nil, err
			}
			dims = append(dims, d)
			p.space()
			if p.eat(',') {
				continue
			}
			if !p.eat(')') {
				return nil, errors.New("want ',' or ')' in shape")
			}
			return dims, nil
		}
	default:
		return p.int()
	}
}

func (p *dictParser) int() (int, error) {
	j := p.i
	for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
		j++
	}
	v, err := strconv.Atoi(p.s[p.i:j])
	if err != nil {
		return 0, fmt.Errorf("bad integer at %q", p.s[p.i:])
	}
	p.i = j
	// Python 2 era files may write long integers as 3L.
	if p.i < len(p.s) && p.s[p.i] == 'L' {
		p.i++
	}
	return v, nil
}

// halfToFloat32 converts an IEEE 754 binary16 value exactly.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
	case frac == 0: // signed zero
		return math.Float32frombits(sign)
	default: // subnormal: frac * 2^-24
		v := float32(frac) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
}

// toCOrder converts data stored in Fortran (column-major) order to C
// (row-major) order.
func toCOrder[T any](data []T, shape []int) []T {
	if len(shape) < 2 {
		return data
	}
	out := make([]T, len(data))
	idx := make([]int, len(shape))
	// Fortran strides: stride[0] = 1, stride[k] = stride[k-1]*shape[k-1].
	stride := make([]int, len(shape))
	stride[0] = 1
	for k := 1; k < len(shape); k++ {
		stride[k] = stride[k-1] * shape[k-1]
	}
	for i := range out {
		off := 0
		for k, v := range idx {
			off += v * stride[k]
		}
		out[i] = data[off]
		// Advance the C-order multi-index (last axis fastest).
		for k := len(idx) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < shape[k] {
				break
			}
			idx[k] = 0
		}
	}
	return out
}
