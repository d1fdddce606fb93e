package pickle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Argument layouts of the opcodes.
const (
	argNone    = iota + 1
	argFixed   // n bytes
	argLine    // one '\n'-terminated line
	argLines   // two lines (module and name)
	argCounted // an n-byte little-endian length, then that many bytes
)

type opInfo struct {
	name string
	arg  int
	n    int
}

// opcodes lists every opcode of pickle protocols 0 to 5 with its argument
// layout (names as in CPython's pickletools).
var opcodes = [256]opInfo{
	'(': {"MARK", argNone, 0}, '.': {"STOP", argNone, 0}, '0': {"POP", argNone, 0},
	'1': {"POP_MARK", argNone, 0}, '2': {"DUP", argNone, 0}, 'F': {"FLOAT", argLine, 0},
	'I': {"INT", argLine, 0}, 'J': {"BININT", argFixed, 4}, 'K': {"BININT1", argFixed, 1},
	'L': {"LONG", argLine, 0}, 'M': {"BININT2", argFixed, 2}, 'N': {"NONE", argNone, 0},
	'P': {"PERSID", argLine, 0}, 'Q': {"BINPERSID", argNone, 0}, 'R': {"REDUCE", argNone, 0},
	'S': {"STRING", argLine, 0}, 'T': {"BINSTRING", argCounted, 4}, 'U': {"SHORT_BINSTRING", argCounted, 1},
	'V': {"UNICODE", argLine, 0}, 'X': {"BINUNICODE", argCounted, 4}, 'a': {"APPEND", argNone, 0},
	'b': {"BUILD", argNone, 0}, 'c': {"GLOBAL", argLines, 0}, 'd': {"DICT", argNone, 0},
	'}': {"EMPTY_DICT", argNone, 0}, 'e': {"APPENDS", argNone, 0}, 'g': {"GET", argLine, 0},
	'h': {"BINGET", argFixed, 1}, 'i': {"INST", argLines, 0}, 'j': {"LONG_BINGET", argFixed, 4},
	'l': {"LIST", argNone, 0}, ']': {"EMPTY_LIST", argNone, 0}, 'o': {"OBJ", argNone, 0},
	'p': {"PUT", argLine, 0}, 'q': {"BINPUT", argFixed, 1}, 'r': {"LONG_BINPUT", argFixed, 4},
	's': {"SETITEM", argNone, 0}, 't': {"TUPLE", argNone, 0}, ')': {"EMPTY_TUPLE", argNone, 0},
	'u': {"SETITEMS", argNone, 0}, 'G': {"BINFLOAT", argFixed, 8},
	0x80: {"PROTO", argFixed, 1}, 0x81: {"NEWOBJ", argNone, 0}, 0x82: {"EXT1", argFixed, 1},
	0x83: {"EXT2", argFixed, 2}, 0x84: {"EXT4", argFixed, 4}, 0x85: {"TUPLE1", argNone, 0},
	0x86: {"TUPLE2", argNone, 0}, 0x87: {"TUPLE3", argNone, 0}, 0x88: {"NEWTRUE", argNone, 0},
	0x89: {"NEWFALSE", argNone, 0}, 0x8a: {"LONG1", argCounted, 1}, 0x8b: {"LONG4", argCounted, 4},
	'B': {"BINBYTES", argCounted, 4}, 'C': {"SHORT_BINBYTES", argCounted, 1},
	0x8c: {"SHORT_BINUNICODE", argCounted, 1}, 0x8d: {"BINUNICODE8", argCounted, 8},
	0x8e: {"BINBYTES8", argCounted, 8}, 0x8f: {"EMPTY_SET", argNone, 0}, 0x90: {"ADDITEMS", argNone, 0},
	0x91: {"FROZENSET", argNone, 0}, 0x92: {"NEWOBJ_EX", argNone, 0}, 0x93: {"STACK_GLOBAL", argNone, 0},
	0x94: {"MEMOIZE", argNone, 0}, 0x95: {"FRAME", argFixed, 8}, 0x96: {"BYTEARRAY8", argCounted, 8},
	0x97: {"NEXT_BUFFER", argNone, 0}, 0x98: {"READONLY_BUFFER", argNone, 0},
}

// scan walks the opcodes of the first pickle in data without decoding
// values, so that damage is reported as an error before gopickle sees it:
// an unknown opcode, a line or counted argument (or frame) running past the
// end of the data, a protocol above 5, a memo key read before it was
// stored, or no STOP. It returns the pickle up to its STOP; protocol 0's
// UNICODE strings (raw-unicode-escape) are rewritten there as the
// equivalent BINUNICODE (UTF-8), which gopickle reads correctly.
func scan(data []byte) ([]byte, error) {
	var (
		out    []byte // the rewritten pickle, once a UNICODE opcode is seen
		copied int    // data[:copied] is in out
		framed bool
		memo   = make(map[uint64]bool)
	)
	fail := func(at int, format string, args ...any) error {
		return &Error{Offset: at, Msg: fmt.Sprintf(format, args...)}
	}
	for pos := 0; pos < len(data); {
		at, op := pos, data[pos]
		info := opcodes[op]
		if info.arg == 0 {
			return nil, fail(at, "unsupported opcode 0x%02x", op)
		}
		pos++
		need := func(n uint64) error {
			if n > uint64(len(data)-pos) {
				return fail(at, "truncated data: %s needs %d bytes, %d left", info.name, n, len(data)-pos)
			}
			return nil
		}
		var arg []byte
		switch info.arg {
		case argFixed:
			if err := need(uint64(info.n)); err != nil {
				return nil, err
			}
			arg = data[pos : pos+info.n]
			pos += info.n
		case argLine, argLines:
			for range info.arg - argLine + 1 {
				i := bytes.IndexByte(data[pos:], '\n')
				if i < 0 {
					return nil, fail(at, "truncated data: %s has no end of line", info.name)
				}
				arg = data[pos : pos+i]
				pos += i + 1
			}
		case argCounted:
			if err := need(uint64(info.n)); err != nil {
				return nil, err
			}
			var n uint64
			for i := info.n - 1; i >= 0; i-- {
				n = n<<8 | uint64(data[pos+i])
			}
			pos += info.n
			if err := need(n); err != nil {
				return nil, err
			}
			pos += int(n)
		}

		switch info.name {
		case "STOP":
			if out != nil {
				return append(out, data[copied:pos]...), nil
			}
			return data[:pos], nil
		case "PROTO":
			if arg[0] > 5 {
				return nil, fail(at, "unsupported pickle protocol %d", arg[0])
			}
		case "FRAME":
			framed = true
			if err := need(binary.LittleEndian.Uint64(arg)); err != nil {
				return nil, err
			}
		case "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET":
			var key uint64
			switch {
			case info.name == "MEMOIZE":
				key = uint64(len(memo))
			case info.arg == argLine:
				k, err := strconv.ParseUint(string(arg), 10, 31)
				if err != nil {
					return nil, fail(at, "%s %q: not a memo key", info.name, arg)
				}
				key = k
			default:
				for i := len(arg) - 1; i >= 0; i-- {
					key = key<<8 | uint64(arg[i])
				}
			}
			if strings.HasSuffix(info.name, "GET") {
				if !memo[key] {
					return nil, fail(at, "%s: memo key %d not defined", info.name, key)
				}
			} else {
				memo[key] = true
			}
		case "UNICODE":
			if framed {
				return nil, fail(at, "UNICODE opcode in a framed pickle (not written by CPython)")
			}
			s, err := rawUnicodeEscape(arg)
			if err != nil {
				return nil, fail(at, "UNICODE: %v", err)
			}
			out = append(out, data[copied:at]...)
			out = append(out, 'X')
			out = binary.LittleEndian.AppendUint32(out, uint32(len(s)))
			out = append(out, s...)
			copied = pos
		}
	}
	return nil, &Error{Offset: len(data), Msg: "truncated data: no STOP opcode"}
}

// rawUnicodeEscape decodes Python's raw-unicode-escape: \uXXXX and
// \UXXXXXXXX escapes; every other byte is a Latin-1 code point.
func rawUnicodeEscape(s []byte) (string, error) {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n > len(s) {
				return "", fmt.Errorf("truncated \\%c escape", s[i+1])
			}
			v, err := strconv.ParseUint(string(s[i+2:i+2+n]), 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return "", fmt.Errorf("bad \\%c escape %q", s[i+1], s[i:i+2+n])
			}
			sb.WriteRune(rune(v))
			i += 1 + n
			continue
		}
		sb.WriteRune(rune(c))
	}
	return sb.String(), nil
}
