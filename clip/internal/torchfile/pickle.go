package torchfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The pickle virtual machine below understands the opcodes of protocols 0-5
// that PyTorch's Python and C++ picklers emit. It builds plain Go values:
// nil, bool, int64, float64, string, []byte, Tuple, *List, *Dict, *Global,
// *Object and whatever the persistent-load and reduce hooks return. It never
// executes code: classes and functions are only named (Global).

// Tuple is a pickled tuple.
type Tuple []any

// List is a pickled list.
type List struct{ Items []any }

// Dict is a pickled dict (or OrderedDict); keys keep their insertion order.
type Dict struct {
	Keys   []any
	Values []any
	index  map[any]int
}

// Get returns the value stored under key.
func (d *Dict) Get(key any) (any, bool) {
	if i, ok := d.index[key]; ok {
		return d.Values[i], true
	}
	return nil, false
}

func (d *Dict) set(key, value any) {
	if d.index == nil {
		d.index = make(map[any]int)
	}
	if !hashable(key) {
		d.Keys = append(d.Keys, key)
		d.Values = append(d.Values, value)
		return
	}
	if i, ok := d.index[key]; ok {
		d.Values[i] = value
		return
	}
	d.index[key] = len(d.Keys)
	d.Keys = append(d.Keys, key)
	d.Values = append(d.Values, value)
}

func hashable(v any) bool {
	switch v.(type) {
	case nil, bool, int64, float64, string:
		return true
	}
	return false
}

// Global names a Python class or function (the GLOBAL opcode).
type Global struct{ Module, Name string }

func (g *Global) String() string { return g.Module + "." + g.Name }

// Object is an instance of a class the reader does not interpret: its class,
// the constructor arguments and the state set by BUILD.
type Object struct {
	Class *Global
	Args  Tuple
	State any
}

// mark is the sentinel the MARK opcode pushes.
type mark struct{}

// unpickler holds the state of one run of the pickle machine.
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	memo  map[int64]any
	// persistentLoad resolves persistent ids (PyTorch storages).
	persistentLoad func(pid any) (any, error)
	// reduce calls fn(args) for the functions the caller understands;
	// handled reports whether it did.
	reduce func(fn *Global, args Tuple) (result any, handled bool, err error)
}

var errStackUnderflow = errors.New("stack underflow")

// unpickle runs the pickle machine over data and returns the pickled value.
func (u *unpickler) unpickle() (result any, err error) {
	u.memo = make(map[int64]any)
	for {
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("pickle ends at byte %d without STOP (truncated?)", u.pos)
		}
		op := u.data[u.pos]
		at := u.pos
		u.pos++
		done, err := u.step(op)
		if err != nil {
			return nil, fmt.Errorf("pickle opcode %q at byte %d: %w", op, at, err)
		}
		if done {
			if len(u.stack) != 1 {
				return nil, fmt.Errorf("pickle: %d values on the stack at STOP, want 1", len(u.stack))
			}
			return u.stack[0], nil
		}
	}
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || u.pos+n > len(u.data) || u.pos+n < u.pos {
		return nil, fmt.Errorf("wants %d bytes, %d left (truncated?)", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) readLine() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", errors.New("unterminated line")
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) readUint(n int) (uint64, error) {
	b, err := u.read(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 {
		return nil, errStackUnderflow
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	if _, ok := v.(mark); ok {
		return nil, errors.New("unexpected MARK on the stack")
	}
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 {
		return nil, errStackUnderflow
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark pops everything down to the topmost MARK and returns it in order.
func (u *unpickler) popMark() ([]any, error) {
	for i := len(u.stack) - 1; i >= 0; i-- {
		if _, ok := u.stack[i].(mark); ok {
			items := append([]any(nil), u.stack[i+1:]...)
			u.stack = u.stack[:i]
			return items, nil
		}
	}
	return nil, errors.New("no MARK on the stack")
}

// longFromBytes decodes a little-endian two's-complement integer.
func longFromBytes(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) > 8 {
		// Allow redundant sign bytes.
		sign := byte(0)
		if b[len(b)-1]&0x80 != 0 {
			sign = 0xff
		}
		for _, c := range b[8:] {
			if c != sign {
				return 0, fmt.Errorf("integer of %d bytes does not fit in 64 bits", len(b))
			}
		}
		b = b[:8]
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if len(b) < 8 && b[len(b)-1]&0x80 != 0 {
		v |= ^uint64(0) << (8 * len(b))
	}
	return int64(v), nil
}

func (u *unpickler) memoPut(idx int64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[idx] = v
	return nil
}

func (u *unpickler) memoGet(idx int64) error {
	v, ok := u.memo[idx]
	if !ok {
		return fmt.Errorf("memo key %d not found", idx)
	}
	u.push(v)
	return nil
}

func (u *unpickler) call(fn any, args Tuple) (any, error) {
	g, ok := fn.(*Global)
	if !ok {
		return nil, fmt.Errorf("cannot call %T", fn)
	}
	if u.reduce != nil {
		v, handled, err := u.reduce(g, args)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", g, err)
		}
		if handled {
			return v, nil
		}
	}
	if g.Module == "collections" && g.Name == "OrderedDict" && len(args) == 0 {
		return &Dict{}, nil
	}
	return &Object{Class: g, Args: args}, nil
}

func unquote(s string) (string, error) {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		if s[0] == '\'' {
			s = `"` + strings.ReplaceAll(strings.ReplaceAll(s[1:len(s)-1], `"`, `\"`), `\'`, `'`) + `"`
		}
		return strconv.Unquote(s)
	}
	return "", fmt.Errorf("bad string literal %q", s)
}

// step executes one opcode; done is true after STOP.
func (u *unpickler) step(op byte) (done bool, err error) {
	switch op {
	case 0x80: // PROTO
		_, err = u.read(1)
	case 0x95: // FRAME
		_, err = u.read(8)
	case '.': // STOP
		return true, nil
	case '(': // MARK
		u.push(mark{})
	case '0': // POP
		if len(u.stack) == 0 {
			return false, errStackUnderflow
		}
		u.stack = u.stack[:len(u.stack)-1]
	case '1': // POP_MARK
		_, err = u.popMark()
	case '2': // DUP
		var v any
		if v, err = u.top(); err == nil {
			u.push(v)
		}
	case 'N': // NONE
		u.push(nil)
	case 0x88: // NEWTRUE
		u.push(true)
	case 0x89: // NEWFALSE
		u.push(false)
	case 'I': // INT
		var s string
		if s, err = u.readLine(); err != nil {
			return
		}
		switch s {
		case "01":
			u.push(true)
		case "00":
			u.push(false)
		default:
			var v int64
			if v, err = strconv.ParseInt(s, 10, 64); err == nil {
				u.push(v)
			}
		}
	case 'L': // LONG
		var s string
		if s, err = u.readLine(); err != nil {
			return
		}
		var v int64
		if v, err = strconv.ParseInt(strings.TrimSuffix(s, "L"), 10, 64); err == nil {
			u.push(v)
		}
	case 'J': // BININT
		var v uint64
		if v, err = u.readUint(4); err == nil {
			u.push(int64(int32(uint32(v))))
		}
	case 'K': // BININT1
		var v uint64
		if v, err = u.readUint(1); err == nil {
			u.push(int64(v))
		}
	case 'M': // BININT2
		var v uint64
		if v, err = u.readUint(2); err == nil {
			u.push(int64(v))
		}
	case 0x8a, 0x8b: // LONG1, LONG4
		n := 1
		if op == 0x8b {
			n = 4
		}
		var size uint64
		if size, err = u.readUint(n); err != nil {
			return
		}
		var b []byte
		if b, err = u.read(int(size)); err != nil {
			return
		}
		var v int64
		if v, err = longFromBytes(b); err == nil {
			u.push(v)
		}
	case 'F': // FLOAT
		var s string
		if s, err = u.readLine(); err != nil {
			return
		}
		var v float64
		if v, err = strconv.ParseFloat(s, 64); err == nil {
			u.push(v)
		}
	case 'G': // BINFLOAT (big-endian)
		var b []byte
		if b, err = u.read(8); err == nil {
			u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
		}
	case 'S': // STRING
		var s string
		if s, err = u.readLine(); err != nil {
			return
		}
		if s, err = unquote(s); err == nil {
			u.push(s)
		}
	case 'V': // UNICODE (raw-unicode-escape)
		var s string
		if s, err = u.readLine(); err != nil {
			return
		}
		if s, err = rawUnicodeEscape(s); err == nil {
			u.push(s)
		}
	case 'T', 'U', 'X', 0x8c, 0x8d, 'B', 'C', 0x8e, 0x96: // sized strings and bytes
		n := map[byte]int{'T': 4, 'U': 1, 'X': 4, 0x8c: 1, 0x8d: 8, 'B': 4, 'C': 1, 0x8e: 8, 0x96: 8}[op]
		var size uint64
		if size, err = u.readUint(n); err != nil {
			return
		}
		if size > uint64(len(u.data)) {
			return false, fmt.Errorf("length %d exceeds the pickle (truncated?)", size)
		}
		var b []byte
		if b, err = u.read(int(size)); err != nil {
			return
		}
		switch op {
		case 'B', 'C', 0x8e, 0x96:
			u.push(append([]byte(nil), b...))
		default:
			u.push(string(b))
		}
	case ')': // EMPTY_TUPLE
		u.push(Tuple{})
	case 't': // TUPLE
		var items []any
		if items, err = u.popMark(); err == nil {
			u.push(Tuple(items))
		}
	case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
		n := int(op-0x85) + 1
		if len(u.stack) < n {
			return false, errStackUnderflow
		}
		items := append(Tuple(nil), u.stack[len(u.stack)-n:]...)
		u.stack = u.stack[:len(u.stack)-n]
		u.push(items)
	case ']': // EMPTY_LIST
		u.push(&List{})
	case 'l': // LIST
		var items []any
		if items, err = u.popMark(); err == nil {
			u.push(&List{Items: items})
		}
	case 'a': // APPEND
		var v, l any
		if v, err = u.pop(); err != nil {
			return
		}
		if l, err = u.top(); err != nil {
			return
		}
		list, ok := l.(*List)
		if !ok {
			return false, fmt.Errorf("APPEND to %T", l)
		}
		list.Items = append(list.Items, v)
	case 'e': // APPENDS
		var items []any
		if items, err = u.popMark(); err != nil {
			return
		}
		var l any
		if l, err = u.top(); err != nil {
			return
		}
		list, ok := l.(*List)
		if !ok {
			return false, fmt.Errorf("APPENDS to %T", l)
		}
		list.Items = append(list.Items, items...)
	case '}': // EMPTY_DICT
		u.push(&Dict{})
	case 'd': // DICT
		var items []any
		if items, err = u.popMark(); err != nil {
			return
		}
		if len(items)%2 != 0 {
			return false, errors.New("odd number of items for DICT")
		}
		d := &Dict{}
		for i := 0; i < len(items); i += 2 {
			d.set(items[i], items[i+1])
		}
		u.push(d)
	case 's', 'u': // SETITEM, SETITEMS
		var items []any
		if op == 's' {
			if len(u.stack) < 2 {
				return false, errStackUnderflow
			}
			items = append(items, u.stack[len(u.stack)-2:]...)
			u.stack = u.stack[:len(u.stack)-2]
		} else if items, err = u.popMark(); err != nil {
			return
		}
		if len(items)%2 != 0 {
			return false, errors.New("odd number of items for SETITEMS")
		}
		var t any
		if t, err = u.top(); err != nil {
			return
		}
		d, ok := t.(*Dict)
		if !ok {
			return false, fmt.Errorf("SETITEM on %T", t)
		}
		for i := 0; i < len(items); i += 2 {
			d.set(items[i], items[i+1])
		}
	case 0x8f: // EMPTY_SET
		u.push(&List{})
	case 0x90: // ADDITEMS
		var items []any
		if items, err = u.popMark(); err != nil {
			return
		}
		var t any
		if t, err = u.top(); err != nil {
			return
		}
		set, ok := t.(*List)
		if !ok {
			return false, fmt.Errorf("ADDITEMS on %T", t)
		}
		set.Items = append(set.Items, items...)
	case 0x91: // FROZENSET
		var items []any
		if items, err = u.popMark(); err == nil {
			u.push(&List{Items: items})
		}
	case 'c': // GLOBAL
		var module, name string
		if module, err = u.readLine(); err != nil {
			return
		}
		if name, err = u.readLine(); err != nil {
			return
		}
		u.push(&Global{Module: module, Name: name})
	case 0x93: // STACK_GLOBAL
		var n, m any
		if n, err = u.pop(); err != nil {
			return
		}
		if m, err = u.pop(); err != nil {
			return
		}
		module, ok1 := m.(string)
		name, ok2 := n.(string)
		if !ok1 || !ok2 {
			return false, errors.New("STACK_GLOBAL needs two strings")
		}
		u.push(&Global{Module: module, Name: name})
	case 'R': // REDUCE
		var a, f any
		if a, err = u.pop(); err != nil {
			return
		}
		if f, err = u.pop(); err != nil {
			return
		}
		args, ok := a.(Tuple)
		if !ok {
			return false, fmt.Errorf("REDUCE arguments are %T, want a tuple", a)
		}
		var v any
		if v, err = u.call(f, args); err == nil {
			u.push(v)
		}
	case 0x81: // NEWOBJ
		var a, c any
		if a, err = u.pop(); err != nil {
			return
		}
		if c, err = u.pop(); err != nil {
			return
		}
		args, _ := a.(Tuple)
		cls, ok := c.(*Global)
		if !ok {
			return false, fmt.Errorf("NEWOBJ class is %T", c)
		}
		u.push(&Object{Class: cls, Args: args})
	case 0x92: // NEWOBJ_EX
		var c any
		if _, err = u.pop(); err != nil { // kwargs
			return
		}
		var a any
		if a, err = u.pop(); err != nil {
			return
		}
		if c, err = u.pop(); err != nil {
			return
		}
		args, _ := a.(Tuple)
		cls, ok := c.(*Global)
		if !ok {
			return false, fmt.Errorf("NEWOBJ_EX class is %T", c)
		}
		u.push(&Object{Class: cls, Args: args})
	case 'i': // INST
		var module, name string
		if module, err = u.readLine(); err != nil {
			return
		}
		if name, err = u.readLine(); err != nil {
			return
		}
		var items []any
		if items, err = u.popMark(); err == nil {
			u.push(&Object{Class: &Global{module, name}, Args: items})
		}
	case 'o': // OBJ
		var items []any
		if items, err = u.popMark(); err != nil {
			return
		}
		if len(items) == 0 {
			return false, errors.New("OBJ without a class")
		}
		cls, ok := items[0].(*Global)
		if !ok {
			return false, fmt.Errorf("OBJ class is %T", items[0])
		}
		u.push(&Object{Class: cls, Args: items[1:]})
	case 'b': // BUILD
		var state, t any
		if state, err = u.pop(); err != nil {
			return
		}
		if t, err = u.top(); err != nil {
			return
		}
		switch obj := t.(type) {
		case *Object:
			obj.State = state
		case *Dict:
			// OrderedDict instance attributes (a state dict's _metadata): ignored.
		default:
			// Tensors and other rebuilt values may carry extra state: ignored.
		}
	case 'P': // PERSID
		var s string
		if s, err = u.readLine(); err != nil {
			return
		}
		err = u.persist(s)
	case 'Q': // BINPERSID
		var pid any
		if pid, err = u.pop(); err == nil {
			err = u.persist(pid)
		}
	case 'p': // PUT
		var s string
		if s, err = u.readLine(); err != nil {
			return
		}
		var idx int64
		if idx, err = strconv.ParseInt(s, 10, 64); err == nil {
			err = u.memoPut(idx)
		}
	case 'q', 'r': // BINPUT, LONG_BINPUT
		n := 1
		if op == 'r' {
			n = 4
		}
		var idx uint64
		if idx, err = u.readUint(n); err == nil {
			err = u.memoPut(int64(idx))
		}
	case 0x94: // MEMOIZE
		err = u.memoPut(int64(len(u.memo)))
	case 'g': // GET
		var s string
		if s, err = u.readLine(); err != nil {
			return
		}
		var idx int64
		if idx, err = strconv.ParseInt(s, 10, 64); err == nil {
			err = u.memoGet(idx)
		}
	case 'h', 'j': // BINGET, LONG_BINGET
		n := 1
		if op == 'j' {
			n = 4
		}
		var idx uint64
		if idx, err = u.readUint(n); err == nil {
			err = u.memoGet(int64(idx))
		}
	default:
		return false, fmt.Errorf("unsupported pickle opcode 0x%02x", op)
	}
	return false, err
}

func (u *unpickler) persist(pid any) error {
	if u.persistentLoad == nil {
		return errors.New("persistent id without a loader")
	}
	v, err := u.persistentLoad(pid)
	if err != nil {
		return err
	}
	u.push(v)
	return nil
}

// rawUnicodeEscape decodes Python's raw-unicode-escape codec: bytes are
// Latin-1 code points, except \uXXXX and \UXXXXXXXX escapes.
func rawUnicodeEscape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n > len(s) {
				return "", errors.New("truncated \\u escape")
			}
			v, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32)
			if err != nil {
				return "", fmt.Errorf("bad \\u escape: %w", err)
			}
			b.WriteRune(rune(v))
			i += 1 + n
			continue
		}
		b.WriteRune(rune(c))
	}
	return b.String(), nil
}
