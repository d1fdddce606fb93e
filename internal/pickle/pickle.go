// Package pickle decodes Python pickles of plain data and simple objects
// without executing anything.
//
// It understands the opcodes that CPython's pickler emits for dicts, lists,
// tuples, sets, strings, bytes, numbers, booleans, None and instances of
// ordinary classes (protocols 2 to 5, and the protocol 0/1 forms of the
// same values where they are simple). A class reference (GLOBAL,
// STACK_GLOBAL) decodes to a Global naming it; instantiating it (NEWOBJ,
// NEWOBJ_EX, REDUCE) yields an *Object that records the class and the
// arguments, and BUILD stores the object's state. No Python callable is ever
// looked up or run, so the caller decides what the names mean; everything
// unknown (extension registry, out-of-band buffers) is an error.
//
// Decode reads plain data; persistent ids are an error there. Options adds
// hooks for formats that build more than plain data on top of pickle, such
// as PyTorch's archives: resolving persistent ids, interpreting REDUCE calls
// and applying BUILD to values that are not objects.
package pickle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Global is a reference to a module-level Python name, e.g. a class.
type Global struct {
	Module, Name string
}

// String returns "module.name".
func (g Global) String() string { return g.Module + "." + g.Name }

// Tuple is a Python tuple.
type Tuple []any

// List is a Python list. It is a pointer type because a pickle may refer to
// the same list more than once and fill it after first use.
type List struct {
	Items []any
}

// Set is a Python set or frozenset.
type Set struct {
	Items  []any
	Frozen bool
}

// Dict is a Python dict with its insertion order kept.
type Dict struct {
	Keys, Values []any
}

// Get returns the value stored under the string key k.
func (d *Dict) Get(k string) (any, bool) {
	for i, key := range d.Keys {
		if s, ok := key.(string); ok && s == k {
			return d.Values[i], true
		}
	}
	return nil, false
}

func (d *Dict) set(k, v any) {
	if ks, ok := k.(string); ok {
		for i, key := range d.Keys {
			if s, ok := key.(string); ok && s == ks {
				d.Values[i] = v
				return
			}
		}
	}
	d.Keys = append(d.Keys, k)
	d.Values = append(d.Values, v)
}

// Object is an instance of a Python class as the pickle describes it: the
// class, the arguments it was created with, and the state set by BUILD
// (usually a *Dict of attributes; a Tuple of (dict, slots) for classes with
// __slots__; nil when there was none).
type Object struct {
	Class  Global
	Args   Tuple
	Kwargs *Dict // NEWOBJ_EX keyword arguments, else nil
	State  any
}

// Attr returns the attribute name from a dict state, or from the first
// element of a (dict, slots) state.
func (o *Object) Attr(name string) (any, bool) {
	switch s := o.State.(type) {
	case *Dict:
		return s.Get(name)
	case Tuple:
		for _, part := range s {
			if d, ok := part.(*Dict); ok {
				if v, ok := d.Get(name); ok {
					return v, true
				}
			}
		}
	}
	return nil, false
}

// Error is a decoding error with the byte offset of the failing opcode.
type Error struct {
	Offset int
	Msg    string
	// Err is the error an Options hook returned, else nil.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("pickle: at byte %d: %s: %v", e.Offset, e.Msg, e.Err)
	}
	return fmt.Sprintf("pickle: at byte %d: %s", e.Offset, e.Msg)
}

// Unwrap returns the hook's error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Options extend decoding with caller-defined meaning for parts of a pickle
// that are not plain data. The zero value decodes as Decode does. An error
// a hook returns stops decoding and is wrapped in an *Error.
type Options struct {
	// PersistentLoad resolves a persistent id (PERSID, BINPERSID) to the
	// value that stands in its place. When nil, persistent ids are an
	// error.
	PersistentLoad func(pid any) (any, error)
	// Reduce, when set, is offered every REDUCE call first: it returns the
	// call's result and handled = true, or handled = false to leave the
	// call to the default (an *Object).
	Reduce func(fn Global, args Tuple) (result any, handled bool, err error)
	// Build applies BUILD's state to a value that is not an *Object (BUILD
	// on an *Object always sets its State). When nil, that is an error.
	Build func(target, state any) error
}

type mark struct{}

type decoder struct {
	opts  Options
	data  []byte
	pos   int
	op    int // offset of the opcode being decoded
	stack []any
	marks []int // stack lengths at each MARK
	memo  map[int]any
}

// Decode decodes the first pickle in data and returns its value. Python
// ints become int64, or *big.Int when they do not fit; str becomes string,
// bytes and bytearray []byte, float float64, None nil.
func Decode(data []byte) (any, error) {
	return Options{}.Decode(data)
}

// Decode decodes the first pickle in data like the package-level Decode,
// with o's hooks.
func (o Options) Decode(data []byte) (any, error) {
	d := &decoder{opts: o, data: data, memo: make(map[int]any)}
	return d.run()
}

// hookErr wraps the error of an Options hook.
func (d *decoder) hookErr(what string, err error) error {
	return &Error{Offset: d.op, Msg: what, Err: err}
}

func (d *decoder) errf(format string, args ...any) error {
	return &Error{Offset: d.op, Msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) read(n int) ([]byte, error) {
	if n < 0 || n > len(d.data)-d.pos {
		return nil, d.errf("truncated data: need %d bytes, %d left", n, len(d.data)-d.pos)
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *decoder) readLine() (string, error) {
	i := bytes.IndexByte(d.data[d.pos:], '\n')
	if i < 0 {
		return "", d.errf("truncated data: missing newline")
	}
	s := string(d.data[d.pos : d.pos+i])
	d.pos += i + 1
	return s, nil
}

func (d *decoder) readUint(n int) (uint64, error) {
	b, err := d.read(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (d *decoder) push(v any) { d.stack = append(d.stack, v) }

func (d *decoder) pop() (any, error) {
	if len(d.stack) == 0 || (len(d.marks) > 0 && len(d.stack) == d.marks[len(d.marks)-1]) {
		return nil, d.errf("stack underflow")
	}
	v := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	return v, nil
}

func (d *decoder) top() (any, error) {
	if len(d.stack) == 0 || (len(d.marks) > 0 && len(d.stack) == d.marks[len(d.marks)-1]) {
		return nil, d.errf("stack underflow")
	}
	return d.stack[len(d.stack)-1], nil
}

// popMark returns the items pushed since the last MARK and removes them.
func (d *decoder) popMark() ([]any, error) {
	if len(d.marks) == 0 {
		return nil, d.errf("no MARK on the stack")
	}
	k := d.marks[len(d.marks)-1]
	d.marks = d.marks[:len(d.marks)-1]
	items := append([]any(nil), d.stack[k:]...)
	d.stack = d.stack[:k]
	return items, nil
}

func (d *decoder) memoGet(i int) error {
	v, ok := d.memo[i]
	if !ok {
		return d.errf("memo key %d not defined", i)
	}
	d.push(v)
	return nil
}

func (d *decoder) memoPut(i int) error {
	v, err := d.top()
	if err != nil {
		return err
	}
	d.memo[i] = v
	return nil
}

// Opcodes (names as in CPython's pickletools).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opProto          = 0x80
	opNewObj         = 0x81
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opEmptySet       = 0x8f
	opAddItems       = 0x90
	opFrozenSet      = 0x91
	opNewObjEx       = 0x92
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
	opByteArray8     = 0x96
	opNextBuffer     = 0x97
	opReadOnlyBuffer = 0x98
)

func (d *decoder) run() (any, error) {
	for {
		d.op = d.pos
		b, err := d.read(1)
		if err != nil {
			return nil, d.errf("truncated data: no STOP opcode")
		}
		op := b[0]
		switch op {
		case opStop:
			v, err := d.pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		case opProto:
			p, err := d.readUint(1)
			if err != nil {
				return nil, err
			}
			if p > 5 {
				return nil, d.errf("unsupported pickle protocol %d", p)
			}
		case opFrame:
			// Frames only group opcodes for buffered reading; the whole
			// pickle is in memory already.
			if _, err := d.readUint(8); err != nil {
				return nil, err
			}
		case opMark:
			d.marks = append(d.marks, len(d.stack))
		case opPop:
			if len(d.stack) > 0 && !(len(d.marks) > 0 && d.marks[len(d.marks)-1] == len(d.stack)) {
				d.stack = d.stack[:len(d.stack)-1]
			} else if _, err := d.popMark(); err != nil {
				return nil, err
			}
		case opPopMark:
			if _, err := d.popMark(); err != nil {
				return nil, err
			}
		case opDup:
			v, err := d.top()
			if err != nil {
				return nil, err
			}
			d.push(v)

		case opNone:
			d.push(nil)
		case opNewTrue:
			d.push(true)
		case opNewFalse:
			d.push(false)
		case opInt:
			line, err := d.readLine()
			if err != nil {
				return nil, err
			}
			switch line {
			case "00":
				d.push(false)
			case "01":
				d.push(true)
			default:
				v, err := parseInt(line)
				if err != nil {
					return nil, d.errf("INT %q: %v", line, err)
				}
				d.push(v)
			}
		case opLong:
			line, err := d.readLine()
			if err != nil {
				return nil, err
			}
			v, err := parseInt(strings.TrimSuffix(line, "L"))
			if err != nil {
				return nil, d.errf("LONG %q: %v", line, err)
			}
			d.push(v)
		case opBinInt:
			v, err := d.readUint(4)
			if err != nil {
				return nil, err
			}
			d.push(int64(int32(uint32(v))))
		case opBinInt1:
			v, err := d.readUint(1)
			if err != nil {
				return nil, err
			}
			d.push(int64(v))
		case opBinInt2:
			v, err := d.readUint(2)
			if err != nil {
				return nil, err
			}
			d.push(int64(v))
		case opLong1, opLong4:
			size := 1
			if op == opLong4 {
				size = 4
			}
			n, err := d.readUint(size)
			if err != nil {
				return nil, err
			}
			if n > math.MaxInt32 {
				return nil, d.errf("LONG4 with negative length")
			}
			raw, err := d.read(int(n))
			if err != nil {
				return nil, err
			}
			d.push(decodeLong(raw))
		case opBinFloat:
			b, err := d.read(8)
			if err != nil {
				return nil, err
			}
			d.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
		case opFloat:
			line, err := d.readLine()
			if err != nil {
				return nil, err
			}
			f, err := strconv.ParseFloat(line, 64)
			if err != nil {
				return nil, d.errf("FLOAT %q: %v", line, err)
			}
			d.push(f)

		case opShortBinUni, opBinUnicode, opBinUnicode8:
			size := map[byte]int{opShortBinUni: 1, opBinUnicode: 4, opBinUnicode8: 8}[op]
			s, err := d.readCounted(size)
			if err != nil {
				return nil, err
			}
			d.push(string(s))
		case opUnicode:
			line, err := d.readLine()
			if err != nil {
				return nil, err
			}
			s, err := rawUnicodeEscape(line)
			if err != nil {
				return nil, d.errf("UNICODE: %v", err)
			}
			d.push(s)
		case opShortBinBytes, opBinBytes, opBinBytes8, opByteArray8:
			size := map[byte]int{opShortBinBytes: 1, opBinBytes: 4, opBinBytes8: 8, opByteArray8: 8}[op]
			b, err := d.readCounted(size)
			if err != nil {
				return nil, err
			}
			d.push(append([]byte(nil), b...))

		case opEmptyList:
			d.push(&List{})
		case opList:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			d.push(&List{Items: items})
		case opAppend:
			v, err := d.pop()
			if err != nil {
				return nil, err
			}
			if err := d.appendTo([]any{v}); err != nil {
				return nil, err
			}
		case opAppends:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			if err := d.appendTo(items); err != nil {
				return nil, err
			}

		case opEmptyTuple:
			d.push(Tuple{})
		case opTuple:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			d.push(Tuple(items))
		case opTuple1, opTuple2, opTuple3:
			n := int(op-opTuple1) + 1
			t := make(Tuple, n)
			for i := n - 1; i >= 0; i-- {
				if t[i], err = d.pop(); err != nil {
					return nil, err
				}
			}
			d.push(t)

		case opEmptyDict:
			d.push(&Dict{})
		case opDict:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			dict := &Dict{}
			if err := d.setItems(dict, items); err != nil {
				return nil, err
			}
			d.push(dict)
		case opSetItem:
			v, err := d.pop()
			if err != nil {
				return nil, err
			}
			k, err := d.pop()
			if err != nil {
				return nil, err
			}
			if err := d.setItemsOnTop([]any{k, v}); err != nil {
				return nil, err
			}
		case opSetItems:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			if err := d.setItemsOnTop(items); err != nil {
				return nil, err
			}

		case opEmptySet:
			d.push(&Set{})
		case opAddItems:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			t, err := d.top()
			if err != nil {
				return nil, err
			}
			s, ok := t.(*Set)
			if !ok {
				return nil, d.errf("ADDITEMS on %T, want a set", t)
			}
			s.Items = append(s.Items, items...)
		case opFrozenSet:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			d.push(&Set{Items: items, Frozen: true})

		case opGlobal:
			mod, err := d.readLine()
			if err != nil {
				return nil, err
			}
			name, err := d.readLine()
			if err != nil {
				return nil, err
			}
			d.push(Global{Module: mod, Name: name})
		case opStackGlobal:
			nameV, err := d.pop()
			if err != nil {
				return nil, err
			}
			modV, err := d.pop()
			if err != nil {
				return nil, err
			}
			mod, ok1 := modV.(string)
			name, ok2 := nameV.(string)
			if !ok1 || !ok2 {
				return nil, d.errf("STACK_GLOBAL needs two strings, got %T and %T", modV, nameV)
			}
			d.push(Global{Module: mod, Name: name})
		case opNewObj:
			args, err := d.pop()
			if err != nil {
				return nil, err
			}
			cls, err := d.pop()
			if err != nil {
				return nil, err
			}
			obj, err := d.newObject(cls, args, nil)
			if err != nil {
				return nil, err
			}
			d.push(obj)
		case opNewObjEx:
			kw, err := d.pop()
			if err != nil {
				return nil, err
			}
			args, err := d.pop()
			if err != nil {
				return nil, err
			}
			cls, err := d.pop()
			if err != nil {
				return nil, err
			}
			kwd, ok := kw.(*Dict)
			if !ok {
				return nil, d.errf("NEWOBJ_EX keyword arguments are %T, want a dict", kw)
			}
			obj, err := d.newObject(cls, args, kwd)
			if err != nil {
				return nil, err
			}
			d.push(obj)
		case opReduce:
			args, err := d.pop()
			if err != nil {
				return nil, err
			}
			fn, err := d.pop()
			if err != nil {
				return nil, err
			}
			obj, err := d.reduce(fn, args)
			if err != nil {
				return nil, err
			}
			d.push(obj)
		case opBuild:
			state, err := d.pop()
			if err != nil {
				return nil, err
			}
			t, err := d.top()
			if err != nil {
				return nil, err
			}
			if obj, ok := t.(*Object); ok {
				obj.build(state)
			} else if d.opts.Build == nil {
				return nil, d.errf("BUILD on %T, want an object", t)
			} else if err := d.opts.Build(t, state); err != nil {
				return nil, d.hookErr(fmt.Sprintf("BUILD on %T", t), err)
			}

		case opMemoize:
			if err := d.memoPut(len(d.memo)); err != nil {
				return nil, err
			}
		case opBinPut, opLongBinPut:
			size := 1
			if op == opLongBinPut {
				size = 4
			}
			i, err := d.readUint(size)
			if err != nil {
				return nil, err
			}
			if err := d.memoPut(int(i)); err != nil {
				return nil, err
			}
		case opPut:
			line, err := d.readLine()
			if err != nil {
				return nil, err
			}
			i, err := strconv.Atoi(line)
			if err != nil {
				return nil, d.errf("PUT %q: %v", line, err)
			}
			if err := d.memoPut(i); err != nil {
				return nil, err
			}
		case opBinGet, opLongBinGet:
			size := 1
			if op == opLongBinGet {
				size = 4
			}
			i, err := d.readUint(size)
			if err != nil {
				return nil, err
			}
			if err := d.memoGet(int(i)); err != nil {
				return nil, err
			}
		case opGet:
			line, err := d.readLine()
			if err != nil {
				return nil, err
			}
			i, err := strconv.Atoi(line)
			if err != nil {
				return nil, d.errf("GET %q: %v", line, err)
			}
			if err := d.memoGet(i); err != nil {
				return nil, err
			}

		case opPersID, opBinPersID:
			if d.opts.PersistentLoad == nil {
				return nil, d.errf("unsupported opcode 0x%02x (a persistent id, and no loader for it)", op)
			}
			var pid any
			if op == opPersID {
				line, err := d.readLine()
				if err != nil {
					return nil, err
				}
				pid = line
			} else if pid, err = d.pop(); err != nil {
				return nil, err
			}
			v, err := d.opts.PersistentLoad(pid)
			if err != nil {
				return nil, d.hookErr("persistent id", err)
			}
			d.push(v)

		case opNextBuffer, opReadOnlyBuffer:
			return nil, d.errf("out-of-band buffers are not supported")
		default:
			return nil, d.errf("unsupported opcode 0x%02x", op)
		}
	}
}

// readCounted reads a little-endian length of size bytes and that many
// bytes of payload.
func (d *decoder) readCounted(size int) ([]byte, error) {
	n, err := d.readUint(size)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.data)-d.pos) {
		return nil, d.errf("truncated data: need %d bytes, %d left", n, len(d.data)-d.pos)
	}
	return d.read(int(n))
}

func (d *decoder) appendTo(items []any) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	l, ok := t.(*List)
	if !ok {
		return d.errf("APPEND to %T, want a list", t)
	}
	l.Items = append(l.Items, items...)
	return nil
}

func (d *decoder) setItemsOnTop(items []any) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	dict, ok := t.(*Dict)
	if !ok {
		return d.errf("SETITEM on %T, want a dict", t)
	}
	return d.setItems(dict, items)
}

func (d *decoder) setItems(dict *Dict, items []any) error {
	if len(items)%2 != 0 {
		return d.errf("odd number of dict items (%d)", len(items))
	}
	for i := 0; i < len(items); i += 2 {
		dict.set(items[i], items[i+1])
	}
	return nil
}

func (d *decoder) newObject(cls, args any, kw *Dict) (*Object, error) {
	g, ok := cls.(Global)
	if !ok {
		return nil, d.errf("NEWOBJ class is %T, want a global", cls)
	}
	t, ok := args.(Tuple)
	if !ok {
		return nil, d.errf("NEWOBJ arguments are %T, want a tuple", args)
	}
	return &Object{Class: g, Args: t, Kwargs: kw}, nil
}

// reduce handles REDUCE. Options.Reduce sees the call first; by default
// copyreg._reconstructor(cls, object, None), which
// protocols 0 and 1 use for plain instances, becomes an instance of cls;
// any other callable becomes an Object whose Class is that callable.
// (Protocols 0 and 1 spell the names the Python 2 way, copy_reg and
// __builtin__.)
func (d *decoder) reduce(fn, args any) (any, error) {
	g, ok := fn.(Global)
	if !ok {
		return nil, d.errf("REDUCE callable is %T, want a global", fn)
	}
	t, ok := args.(Tuple)
	if !ok {
		return nil, d.errf("REDUCE arguments are %T, want a tuple", args)
	}
	if d.opts.Reduce != nil {
		v, handled, err := d.opts.Reduce(g, t)
		if err != nil {
			return nil, d.hookErr("REDUCE "+g.String(), err)
		}
		if handled {
			return v, nil
		}
	}
	if (g.Module == "copyreg" || g.Module == "copy_reg") && g.Name == "_reconstructor" && len(t) == 3 {
		cls, ok := t[0].(Global)
		base, _ := t[1].(Global)
		if ok && (base.Module == "builtins" || base.Module == "__builtin__") && base.Name == "object" && t[2] == nil {
			return &Object{Class: cls}, nil
		}
	}
	return &Object{Class: g, Args: t}, nil
}

// build applies BUILD's state as CPython's default __setstate__ does: a
// dict updates the instance dict.
func (o *Object) build(state any) {
	if sd, ok := state.(*Dict); ok {
		if cur, ok := o.State.(*Dict); ok {
			for i, k := range sd.Keys {
				cur.set(k, sd.Values[i])
			}
			return
		}
	}
	o.State = state
}

func parseInt(s string) (any, error) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, fmt.Errorf("not an integer")
	}
	return b, nil
}

// decodeLong decodes a little-endian two's complement integer.
func decodeLong(raw []byte) any {
	if len(raw) == 0 {
		return int64(0)
	}
	if len(raw) <= 8 {
		var v uint64
		for i := len(raw) - 1; i >= 0; i-- {
			v = v<<8 | uint64(raw[i])
		}
		shift := uint(64 - 8*len(raw))
		return int64(v<<shift) >> shift
	}
	be := make([]byte, len(raw))
	for i, c := range raw {
		be[len(raw)-1-i] = c
	}
	v := new(big.Int).SetBytes(be)
	if raw[len(raw)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(raw))))
	}
	if v.IsInt64() {
		return v.Int64()
	}
	return v
}

// rawUnicodeEscape decodes Python's raw-unicode-escape: \uXXXX and
// \UXXXXXXXX escapes, every other byte is a Latin-1 code point.
func rawUnicodeEscape(s string) (string, error) {
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
			v, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32)
			if err != nil {
				return "", fmt.Errorf("bad \\%c escape: %v", s[i+1], err)
			}
			sb.WriteRune(rune(v))
			i += 1 + n
			continue
		}
		sb.WriteRune(rune(c))
	}
	return sb.String(), nil
}
