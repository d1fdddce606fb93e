package pickle

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"strings"
	"testing"
)

// describe turns a decoded value into the tagged tree testdata/gen.py
// builds from the Python value.
func describe(v any) any {
	switch v := v.(type) {
	case nil:
		return []any{"none"}
	case bool:
		return []any{"bool", v}
	case int64:
		return []any{"int", fmt.Sprint(v)}
	case *big.Int:
		return []any{"int", v.String()}
	case float64:
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], math.Float64bits(v))
		return []any{"float", hex.EncodeToString(b[:])}
	case string:
		return []any{"str", v}
	case []byte:
		return []any{"bytes", hex.EncodeToString(v)}
	case *List:
		out := []any{"list"}
		for _, x := range v.Items {
			out = append(out, describe(x))
		}
		return out
	case Tuple:
		out := []any{"tuple"}
		for _, x := range v {
			out = append(out, describe(x))
		}
		return out
	case *Dict:
		out := []any{"dict"}
		for i, k := range v.Keys {
			out = append(out, []any{describe(k), describe(v.Values[i])})
		}
		return out
	case *Set:
		tag := "set"
		if v.Frozen {
			tag = "frozenset"
		}
		out := []any{tag}
		for _, x := range v.Items {
			out = append(out, describe(x))
		}
		return out
	case *Object:
		return []any{"obj", v.Class.String(), describe(v.State)}
	}
	return []any{"unexpected", fmt.Sprintf("%T", v)}
}

func canon(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPythonPickles(t *testing.T) {
	raw, err := os.ReadFile("testdata/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Files map[string]any `json:"files"`
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for p := 0; p <= 5; p++ {
		files[fmt.Sprintf("values_p%d.pkl", p)] = fmt.Sprintf("values_p%d.pkl", p)
	}
	for _, p := range []int{0, 2, 4, 5} {
		files[fmt.Sprintf("objects_p%d.pkl", p)] = "objects"
	}
	for file, key := range files {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + file)
			if err != nil {
				t.Fatal(err)
			}
			v, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			want, ok := exp.Files[key]
			if !ok {
				t.Fatalf("no expectation %q", key)
			}
			if got, want := canon(t, describe(v)), canon(t, want); got != want {
				t.Errorf("decoded value differs from Python's\n got: %.400s\nwant: %.400s", got, want)
			}
		})
	}
}

// Memoized objects are shared, not copied: the same Python object decodes
// to the same Go pointer.
func TestSharedReferences(t *testing.T) {
	for _, file := range []string{"values_p2.pkl", "values_p4.pkl"} {
		data, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		sh, _ := v.(*Dict).Get("shared")
		items := sh.(*List).Items
		if items[0].(*List) != items[1].(*List) {
			t.Errorf("%s: shared list decoded as two copies", file)
		}
	}
	data, err := os.ReadFile("testdata/objects_p4.pkl")
	if err != nil {
		t.Fatal(err)
	}
	v, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	val, _ := v.(*Dict).Get("val")
	again, _ := v.(*Dict).Get("again")
	items := val.(*List).Items
	if items[len(items)-1].(*Object) != again.(*Object) {
		t.Error(`"again" is not the last val object`)
	}
	o := again.(*Object)
	if o.Class != (Global{"dassl.data.datasets.base_dataset", "Datum"}) {
		t.Errorf("class = %v", o.Class)
	}
	if p, ok := o.Attr("_impath"); !ok || p != "/h/caltech-101/101_ObjectCategories/c5/89.jpg" {
		t.Errorf("_impath = %v, %v", p, ok)
	}
	if l, ok := o.Attr("_label"); !ok || l != int64(5) {
		t.Errorf("_label = %v, %v", l, ok)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "no STOP"},
		{"no stop", "\x80\x04K\x01", "no STOP"},
		{"truncated string", "\x80\x04\x8c\x05ab", "truncated data"},
		{"huge length", "\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f", "truncated data"},
		{"unknown opcode", "\x80\x04\xff.", "unsupported opcode 0xff"},
		{"persistent id", "\x80\x04K\x01Q.", "unsupported opcode 0x51"},
		{"protocol 6", "\x80\x06N.", "unsupported pickle protocol 6"},
		{"underflow", "\x80\x04.", "stack underflow"},
		{"bad memo", "\x80\x04h\x07.", "memo key 7 not defined"},
		{"append to int", "\x80\x04K\x01K\x02a.", "APPEND to int64"},
		{"setitem on list", "\x80\x04]K\x01K\x02s.", "SETITEM on *pickle.List"},
		{"build on int", "\x80\x04K\x01}b.", "BUILD on int64"},
		{"buffers", "\x80\x05\x97.", "out-of-band"},
		{"no mark", "\x80\x04K\x01e.", "no MARK"},
		{"pop below mark", "\x80\x04K\x01(\x85.", "stack underflow"},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.data))
		var pe *Error
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want a *pickle.Error containing %q", tt.name, err, tt.want)
		}
	}
}

// Hand-assembled opcodes that CPython's pickler does not produce for the
// fixtures but that the decoder accepts.
func TestHandAssembled(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"LONG4 negative", "\x80\x02\x8b\x01\x00\x00\x00\xff.", `["int","-1"]`},
		{"LONG1 zero length", "\x80\x02\x8a\x00.", `["int","0"]`},
		{"BININT negative", "\x80\x02J\xfe\xff\xff\xff.", `["int","-2"]`},
		{"GLOBAL", "cbuiltins\nobject\n.", `["unexpected","pickle.Global"]`},
		{"DUP and TUPLE2", "K\x05\x32\x86.", `["tuple",["int","5"],["int","5"]]`},
		{"POP_MARK", "K\x01(K\x02K\x031.", `["int","1"]`},
		{"raw unicode escape", "V\\u00e9x\n.", `["str","éx"]`},
		{"BUILD merges dicts", "\x80\x02c__main__\nC\n)\x81}X\x01\x00\x00\x00aK\x01sb}X\x01\x00\x00\x00bK\x02sb.",
			`["obj","__main__.C",["dict",[["str","a"],["int","1"]],[["str","b"],["int","2"]]]]`},
	}
	for _, tt := range tests {
		v, err := Decode([]byte(tt.data))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := canon(t, describe(v)); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestOptions checks the hooks on hand-assembled pickles: persistent ids
// in both spellings, REDUCE calls handled or left to the default, BUILD on
// a non-object, and hook errors wrapped in an *Error.
func TestOptions(t *testing.T) {
	hookErr := errors.New("hook failed")
	var pids []any
	opts := Options{
		PersistentLoad: func(pid any) (any, error) {
			pids = append(pids, pid)
			if pid == "bad" {
				return nil, hookErr
			}
			return fmt.Sprintf("loaded %v", pid), nil
		},
		Reduce: func(fn Global, args Tuple) (any, bool, error) {
			switch fn.String() {
			case "m.twice":
				return Tuple{args[0], args[0]}, true, nil
			case "m.fail":
				return nil, false, hookErr
			}
			return nil, false, nil
		},
		Build: func(target, state any) error {
			d := target.(*Dict)
			d.set("built", state)
			return nil
		},
	}
	tests := []struct {
		name string
		data string
		want string
		pids []any
	}{
		{"BINPERSID", "\x80\x02X\x03\x00\x00\x00abcQ.", `["str","loaded abc"]`, []any{"abc"}},
		{"BINPERSID tuple", "\x80\x02K\x01K\x02\x86Q.", `["str","loaded [1 2]"]`, []any{Tuple{int64(1), int64(2)}}},
		{"PERSID", "Pxyz\n.", `["str","loaded xyz"]`, []any{"xyz"}},
		{"REDUCE handled", "\x80\x02cm\ntwice\nK\x07\x85R.", `["tuple",["int","7"],["int","7"]]`, nil},
		{"REDUCE default", "\x80\x02cm\nother\nK\x07\x85R.", `["obj","m.other",["none"]]`, nil},
		{"BUILD on a dict", "\x80\x02}K\x05b.", `["dict",[["str","built"],["int","5"]]]`, nil},
	}
	for _, tt := range tests {
		pids = nil
		v, err := opts.Decode([]byte(tt.data))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := canon(t, describe(v)); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
		if fmt.Sprint(pids) != fmt.Sprint(tt.pids) {
			t.Errorf("%s: loader saw %v, want %v", tt.name, pids, tt.pids)
		}
	}

	for _, tt := range []struct{ name, data, want string }{
		{"loader error", "\x80\x02X\x03\x00\x00\x00badQ.", "at byte 10: persistent id: hook failed"},
		{"reduce error", "\x80\x02cm\nfail\n)R.", "at byte 11: REDUCE m.fail: hook failed"},
	} {
		_, err := opts.Decode([]byte(tt.data))
		var pe *Error
		if !errors.Is(err, hookErr) || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want a *pickle.Error wrapping the hook's error and containing %q", tt.name, err, tt.want)
		}
	}
}
