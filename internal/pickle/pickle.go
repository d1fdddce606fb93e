// Package pickle decodes Python pickles into plain Go values without
// executing anything. The decoding itself is done by
// github.com/nlpodyssey/gopickle; this package is the small layer that the
// project's two pickle formats (PyTorch archives' data.pkl, read by
// clip/internal/torchfile, and CoOp's few-shot split caches, read by
// datasets) share on top of it. It stays because gopickle alone is not safe
// or exact enough on files that may be damaged:
//
//   - It allocates a string's or frame's declared length before reading
//     it, so one corrupt length field can make the process die of an
//     unrecoverable out-of-memory error; it panics on some malformed input
//     (opcode 0xff, odd dict item counts, empty LONG1); and it reads a memo
//     key that was never stored as None. Decode first walks the
//     opcodes and checks every declared length, the STOP opcode and the
//     memo references against the data (scan.go), and turns any remaining
//     panic into an *Error.
//   - It does not undo the raw-unicode-escape encoding of protocol 0's
//     UNICODE strings; scan.go rewrites them as UTF-8 strings first.
//   - By default it accepts every class reference. Here a class is refused
//     unless the caller's Options.Allow accepts it; an accepted class only
//     ever becomes an inert *Object record (or what Options.Reduce makes of
//     a call to it).
//   - It yields its own container types and plain Go ints; Decode returns
//     the simpler value model below (int64, *List, *Dict with its key
//     order, Tuple, *Object), keeping shared references shared.
//
// Python ints become int64, or *big.Int when they do not fit; str becomes
// string, bytes and bytearray []byte, float float64, None nil, bool bool. A
// set's items come in no particular order.
package pickle

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	gopickle "github.com/nlpodyssey/gopickle/pickle"
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
// the same list more than once.
type List struct {
	Items []any
}

// Set is a Python set or frozenset.
type Set struct {
	Items  []any
	Frozen bool
}

// Dict is a Python dict (or collections.OrderedDict) with its insertion
// order kept.
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

// set stores v under k; a repeated string key keeps its first position and
// takes the new value, as in Python.
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

// Object is an instance of an allowed Python class as the pickle describes
// it: the class, the arguments it was created or called with (for
// NEWOBJ_EX, the keyword-argument dict is the last one), and the state set
// by BUILD (usually a *Dict of attributes; a Tuple of (dict, slots) for
// classes with __slots__; nil when there was none).
type Object struct {
	Class Global
	Args  Tuple
	State any

	// The values as gopickle built them; Args and State are converted from
	// these once the whole pickle is read, since a container may still be
	// filled after an object first refers to it.
	rawArgs  []any
	rawState any
}

// Attr returns the attribute name from a dict state, or from a dict in a
// (dict, slots) state.
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

// ErrRefused is wrapped by the *Error for a class reference that
// Options.Allow does not accept.
var ErrRefused = errors.New("refused: not a class this reader accepts")

// Error is a decoding error at a byte offset of the pickle. The offset is
// exact for damage found before decoding (truncation, unknown opcodes,
// undefined memo keys); for errors found while decoding it is how far the
// decoder had read, which in a framed pickle is the end of the frame (and in
// a protocol 0 pickle with UNICODE strings, a position in the rewritten one).
type Error struct {
	Offset int
	Msg    string
	// Err is the error an Options hook returned, ErrRefused, or nil.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("pickle: at byte %d: %s: %v", e.Offset, e.Msg, e.Err)
	}
	return fmt.Sprintf("pickle: at byte %d: %s", e.Offset, e.Msg)
}

// Unwrap returns the hook's error or ErrRefused, if any.
func (e *Error) Unwrap() error { return e.Err }

// Options say what the caller accepts beyond plain data. The zero value
// decodes plain data only: every class reference and persistent id is an
// error. An error a hook returns stops decoding and is wrapped in an *Error.
type Options struct {
	// Allow says whether a class reference (GLOBAL, STACK_GLOBAL, INST) may
	// appear. An allowed class instantiated by NEWOBJ, or called by REDUCE
	// without Reduce handling the call, becomes an *Object. When nil, every
	// class is refused. The references that only spell plain data are
	// always accepted: collections.OrderedDict, copy_reg._reconstructor and
	// __builtin__.object (protocol 0 and 1 objects), and _codecs.encode
	// (bytes before protocol 3).
	Allow func(Global) bool
	// PersistentLoad resolves a persistent id (PERSID, BINPERSID) to the
	// value that stands in its place. When nil, persistent ids are an
	// error.
	PersistentLoad func(pid any) (any, error)
	// Reduce, when set, is offered every call (REDUCE) of an allowed class
	// first: it returns the call's result and handled = true, or handled =
	// false to leave the call to the default (an *Object). A value it
	// returns that BUILD may later update must have a method
	// PySetState(state any) error.
	Reduce func(fn Global, args Tuple) (result any, handled bool, err error)
}

// Decode decodes the first pickle in data as plain data (Options{}).
func Decode(data []byte) (any, error) {
	return Options{}.Decode(data)
}

// Decode decodes the first pickle in data with o's hooks.
func (o Options) Decode(data []byte) (v any, err error) {
	data, err = scan(data)
	if err != nil {
		return nil, err
	}
	r := &countingReader{r: bytes.NewReader(data)}
	d := &decoder{opts: o}
	u := gopickle.NewUnpickler(r)
	u.FindClass = d.findClass
	if o.PersistentLoad != nil {
		u.PersistentLoad = d.persistentLoad
	}
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, &Error{Offset: r.n, Msg: fmt.Sprintf("malformed data (%v)", p)}
		}
	}()
	raw, err := u.Load()
	if err != nil {
		var he *hookError
		if errors.As(err, &he) {
			return nil, &Error{Offset: r.n, Msg: he.what, Err: he.err}
		}
		return nil, &Error{Offset: r.n, Msg: err.Error()}
	}
	return newConverter().conv(raw), nil
}

// countingReader counts the bytes the decoder has read, for error offsets.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

var _ io.ByteReader = (*countingReader)(nil)

// hookError carries an error from a hook, or a refusal, through gopickle.
type hookError struct {
	what string
	err  error
}

func (e *hookError) Error() string { return e.what + ": " + e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }
