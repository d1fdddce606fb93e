package pickle

import (
	"fmt"
	"math/big"

	"github.com/nlpodyssey/gopickle/types"
)

// decoder holds the hooks given to gopickle for one Decode.
type decoder struct {
	opts Options
}

// findClass resolves a class reference: _codecs.encode is interpreted,
// anything else must be allowed by Options.Allow. (gopickle resolves the
// other plain-data names itself before asking.)
func (d *decoder) findClass(module, name string) (any, error) {
	g := Global{Module: module, Name: name}
	if g == (Global{"_codecs", "encode"}) {
		return codecsEncode{}, nil
	}
	if d.opts.Allow == nil || !d.opts.Allow(g) {
		return nil, &hookError{what: "class " + g.String(), err: ErrRefused}
	}
	return &class{g: g, d: d}, nil
}

func (d *decoder) persistentLoad(pid any) (any, error) {
	v, err := d.opts.PersistentLoad(newConverter().conv(pid))
	if err != nil {
		return nil, &hookError{what: "persistent id", err: err}
	}
	return v, nil
}

// class is an allowed class as gopickle sees it. Instantiating or calling
// it only records what the pickle asked for.
type class struct {
	g Global
	d *decoder
}

// PyNew is NEWOBJ (and object.__new__(cls) for protocols 0 and 1).
func (c *class) PyNew(args ...any) (any, error) {
	return &Object{Class: c.g, rawArgs: args}, nil
}

// Call is REDUCE (and INST, OBJ).
func (c *class) Call(args ...any) (any, error) {
	if c.d.opts.Reduce != nil {
		conv := newConverter()
		t := make(Tuple, len(args))
		for i, a := range args {
			t[i] = conv.conv(a)
		}
		v, handled, err := c.d.opts.Reduce(c.g, t)
		if err != nil {
			return nil, &hookError{what: "REDUCE " + c.g.String(), err: err}
		}
		if handled {
			return v, nil
		}
	}
	return &Object{Class: c.g, rawArgs: args}, nil
}

// PySetState is BUILD: a dict state updates a dict state already there, as
// CPython's default __setstate__ updates the instance dict; any other state
// replaces it.
func (o *Object) PySetState(state any) error {
	cur, ok1 := o.rawState.(*types.Dict)
	add, ok2 := state.(*types.Dict)
	if ok1 && ok2 {
		merged := append(append(types.Dict{}, *cur...), *add...)
		o.rawState = &merged
		return nil
	}
	o.rawState = state
	return nil
}

// codecsEncode is _codecs.encode, which protocols 0 to 2 use to spell bytes
// as encode(latin-1 text, "latin1").
type codecsEncode struct{}

func (codecsEncode) Call(args ...any) (any, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("_codecs.encode with %d arguments, want 2", len(args))
	}
	s, ok1 := args[0].(string)
	enc, ok2 := args[1].(string)
	if !ok1 || !ok2 || (enc != "latin1" && enc != "latin-1") {
		return nil, fmt.Errorf("_codecs.encode(%T, %v): only latin1 text is supported", args[0], args[1])
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, fmt.Errorf("_codecs.encode: %U is not latin1", r)
		}
		b = append(b, byte(r))
	}
	return b, nil
}

// converter turns gopickle's values into this package's, once each, so that
// a value the pickle shares stays shared.
type converter struct {
	seen map[any]any
}

func newConverter() *converter { return &converter{seen: make(map[any]any)} }

func (c *converter) conv(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case *big.Int:
		if x.IsInt64() {
			return x.Int64()
		}
		return x
	case *types.ByteArray:
		return []byte(*x)
	case *class:
		return x.g
	case codecsEncode:
		return Global{"_codecs", "encode"}
	case *types.OrderedDictClass:
		return Global{"collections", "OrderedDict"}
	case *types.ObjectClass:
		return Global{"builtins", "object"}
	case *types.Reconstructor:
		return Global{"copyreg", "_reconstructor"}
	}
	switch v.(type) {
	case *types.Tuple, *types.List, *types.Dict, *types.OrderedDict, *types.Set, *types.FrozenSet, *Object:
		if done, ok := c.seen[v]; ok {
			return done
		}
	default:
		return v // scalars, and the caller's own values from hooks
	}
	switch x := v.(type) {
	case *types.Tuple:
		t := make(Tuple, len(*x))
		c.seen[v] = t
		for i, e := range *x {
			t[i] = c.conv(e)
		}
		return t
	case *types.List:
		l := &List{Items: make([]any, len(*x))}
		c.seen[v] = l
		for i, e := range *x {
			l.Items[i] = c.conv(e)
		}
		return l
	case *types.Dict:
		d := &Dict{}
		c.seen[v] = d
		for _, e := range *x {
			d.set(c.conv(e.Key), c.conv(e.Value))
		}
		return d
	case *types.OrderedDict:
		d := &Dict{}
		c.seen[v] = d
		for e := x.List.Front(); e != nil; e = e.Next() {
			entry := e.Value.(*types.OrderedDictEntry)
			d.set(c.conv(entry.Key), c.conv(entry.Value))
		}
		return d
	case *types.Set:
		s := &Set{}
		c.seen[v] = s
		for e := range *x {
			s.Items = append(s.Items, c.conv(e))
		}
		return s
	case *types.FrozenSet:
		s := &Set{Frozen: true}
		c.seen[v] = s
		for e := range *x {
			s.Items = append(s.Items, c.conv(e))
		}
		return s
	case *Object:
		c.seen[v] = x
		x.Args = make(Tuple, len(x.rawArgs))
		for i, a := range x.rawArgs {
			x.Args[i] = c.conv(a)
		}
		x.State = c.conv(x.rawState)
		return x
	}
	return v
}
