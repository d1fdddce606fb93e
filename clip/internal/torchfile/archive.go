// Package torchfile reads the tensors of PyTorch's zip archives: TorchScript
// modules written by torch.jit.save (OpenAI's released CLIP checkpoints are
// such archives) and state dicts written by torch.save.
//
// Both are zip files holding <prefix>/data.pkl, a pickle whose tensors point
// at raw little-endian storages <prefix>/data/<key>. A TorchScript archive also
// holds <prefix>/code/ (the module classes, which declare which attributes are
// parameters and buffers) and <prefix>/constants.pkl (graph constants, not
// part of the state dict). The pickle is decoded by internal/pickle (gopickle
// underneath), which only builds data and refuses class references outside
// PyTorch's own (torch.*, __torch__.*); nothing from the file is ever
// executed.
//
// Open lists the tensors with their names, dtypes and shapes without reading
// their data; Archive.Read returns one tensor's storage bytes, checked against
// the zip CRC and the declared size.
package torchfile

import (
	"archive/zip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/clipadapter/clipgo/internal/pickle"
)

// Kind says what an archive holds.
type Kind int

const (
	// StateDict is a torch.save'd dict of named tensors.
	StateDict Kind = iota
	// TorchScript is a torch.jit.save'd module; its state dict is the
	// module tree's parameters and buffers, named by their dotted paths.
	TorchScript
)

func (k Kind) String() string {
	if k == TorchScript {
		return "TorchScript archive"
	}
	return "state dict"
}

// DType is a tensor element type as stored in an archive.
type DType int

// The storage element types PyTorch writes.
const (
	Float32 DType = iota + 1
	Float64
	Float16
	BFloat16
	Int64
	Int32
	Int16
	Int8
	Uint8
	Bool
)

var dtypeInfo = map[DType]struct {
	name string
	size int
}{
	Float32: {"float32", 4}, Float64: {"float64", 8}, Float16: {"float16", 2}, BFloat16: {"bfloat16", 2},
	Int64: {"int64", 8}, Int32: {"int32", 4}, Int16: {"int16", 2}, Int8: {"int8", 1}, Uint8: {"uint8", 1},
	Bool: {"bool", 1},
}

// storageTypes maps PyTorch's (legacy, typed) storage class names to dtypes.
var storageTypes = map[string]DType{
	"FloatStorage": Float32, "DoubleStorage": Float64, "HalfStorage": Float16, "BFloat16Storage": BFloat16,
	"LongStorage": Int64, "IntStorage": Int32, "ShortStorage": Int16, "CharStorage": Int8,
	"ByteStorage": Uint8, "BoolStorage": Bool, "UntypedStorage": Uint8,
}

// Size returns the size of one element in bytes.
func (d DType) Size() int { return dtypeInfo[d].size }

func (d DType) String() string {
	if info, ok := dtypeInfo[d]; ok {
		return info.name
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// storage is one raw storage record of the archive.
type storage struct {
	key      string
	dtype    DType
	numel    int64
	location string
	file     *zip.File
}

// view is a tensor as pickled: a strided window on a storage.
type view struct {
	storage *storage
	offset  int64
	shape   []int64
	stride  []int64
}

// Tensor describes one named tensor of an archive.
type Tensor struct {
	// Name is the state-dict key, e.g. "visual.conv1.weight".
	Name  string
	DType DType
	// Shape is the tensor's size; empty for a scalar.
	Shape []int64
	// Stride and Offset locate the tensor in its storage, in elements.
	Stride []int64
	Offset int64
	// StorageKey names the storage record (data/<key>); tensors may share one.
	StorageKey string
	// StorageNumel is the number of elements in the storage.
	StorageNumel int64
	// Location is the device the tensor was saved from ("cpu", "cuda:0").
	Location string

	file *zip.File
}

// Numel returns the number of elements of the tensor.
func (t *Tensor) Numel() int64 {
	n := int64(1)
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// Archive is an open PyTorch zip archive.
type Archive struct {
	// Path is the file the archive was opened from.
	Path string
	// Kind says whether the file is a TorchScript module or a state dict.
	Kind Kind
	// Tensors lists the state dict in archive order.
	Tensors []*Tensor

	byName map[string]*Tensor
	zr     *zip.ReadCloser
}

// Open reads the archive's directory and pickle and lists its tensors. The
// caller must Close it.
func Open(filename string) (*Archive, error) {
	zr, err := zip.OpenReader(filename)
	if err != nil {
		if errors.Is(err, zip.ErrFormat) {
			return nil, fmt.Errorf("open %s: not a PyTorch zip archive (truncated or corrupt file, or the pre-1.6 torch.save format): %w", filename, err)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, err // already names the file
		}
		return nil, fmt.Errorf("open %s: %w", filename, err)
	}
	a := &Archive{Path: filename, zr: zr, byName: make(map[string]*Tensor)}
	if err := a.parse(); err != nil {
		zr.Close()
		return nil, fmt.Errorf("open %s: %w", filename, err)
	}
	return a, nil
}

// Close releases the file.
func (a *Archive) Close() error { return a.zr.Close() }

// Lookup returns the tensor called name, or nil.
func (a *Archive) Lookup(name string) *Tensor { return a.byName[name] }

// Shapes returns every tensor's shape by name.
func (a *Archive) Shapes() map[string][]int64 {
	m := make(map[string][]int64, len(a.Tensors))
	for _, t := range a.Tensors {
		m[t.Name] = t.Shape
	}
	return m
}

func (a *Archive) parse() error {
	files := make(map[string]*zip.File, len(a.zr.File))
	var pickles []string
	for _, f := range a.zr.File {
		files[f.Name] = f
		if dir, base := path.Split(f.Name); base == "data.pkl" && strings.Count(dir, "/") == 1 {
			pickles = append(pickles, f.Name)
		}
	}
	if len(pickles) != 1 {
		return fmt.Errorf("want one <name>/data.pkl record, found %d: not a PyTorch archive", len(pickles))
	}
	prefix := strings.TrimSuffix(pickles[0], "data.pkl")
	if f := files[prefix+"byteorder"]; f != nil {
		b, err := readAll(f, 16)
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return fmt.Errorf("byte order %q is not supported", s)
		}
	}
	_, isScript := files[prefix+"constants.pkl"]
	if isScript {
		a.Kind = TorchScript
	}
	pkl, err := readAll(files[pickles[0]], 1<<30)
	if err != nil {
		return err
	}

	storages := make(map[string]*storage)
	root, err := unpickle(pkl, func(pid any) (any, error) {
		return loadStorage(pid, prefix, files, storages)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", pickles[0], err)
	}
	if isScript {
		classes, err := scanClasses(files, prefix)
		if err != nil {
			return err
		}
		obj, ok := root.(*pickle.Object)
		if !ok {
			return fmt.Errorf("%s: TorchScript root is a %T, want a module", pickles[0], root)
		}
		return a.walkModule(obj, "", classes, 0)
	}
	return a.walkStateDict(root)
}

func (a *Archive) add(name string, v *view) error {
	if _, dup := a.byName[name]; dup {
		return fmt.Errorf("tensor %q appears twice", name)
	}
	if err := v.check(); err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	t := &Tensor{
		Name: name, DType: v.storage.dtype, Shape: v.shape, Stride: v.stride, Offset: v.offset,
		StorageKey: v.storage.key, StorageNumel: v.storage.numel, Location: v.storage.location,
		file: v.storage.file,
	}
	a.Tensors = append(a.Tensors, t)
	a.byName[name] = t
	return nil
}

func (a *Archive) walkStateDict(root any) error {
	d, ok := root.(*pickle.Dict)
	if !ok {
		return fmt.Errorf("data.pkl holds a %s, want a state dict (a dict of tensors)", describe(root))
	}
	// A training checkpoint ({"epoch": ..., "state_dict": {...}, ...}):
	// the model's weights are its "state_dict" entry.
	for i, k := range d.Keys {
		if k == "state_dict" {
			if inner, ok := d.Values[i].(*pickle.Dict); ok {
				d = inner
			}
			break
		}
	}
	for i, k := range d.Keys {
		name, ok := k.(string)
		if !ok {
			return fmt.Errorf("state dict key %v is a %T, want a string", k, k)
		}
		v, ok := d.Values[i].(*view)
		if !ok {
			return fmt.Errorf("state dict entry %q is a %s, not a tensor", name, describe(d.Values[i]))
		}
		if err := a.add(name, v); err != nil {
			return err
		}
	}
	return nil
}

// walkModule adds the parameters and buffers of a pickled TorchScript module
// and recurses into its submodules.
func (a *Archive) walkModule(obj *pickle.Object, prefix string, classes map[string]*classInfo, depth int) error {
	if depth > 64 {
		return errors.New("module tree deeper than 64 levels")
	}
	state, ok := obj.State.(*pickle.Dict)
	if !ok {
		return fmt.Errorf("module %q (%s) has no attribute dict", strings.TrimSuffix(prefix, "."), obj.Class)
	}
	info := classes[obj.Class.String()]
	for i, k := range state.Keys {
		attr, ok := k.(string)
		if !ok {
			continue
		}
		switch v := state.Values[i].(type) {
		case *view:
			if info != nil && !info.isState(attr) {
				continue // a plain tensor attribute, not in the state dict
			}
			if err := a.add(prefix+attr, v); err != nil {
				return err
			}
		case *pickle.Object:
			if strings.HasPrefix(v.Class.Module, "__torch__") {
				if err := a.walkModule(v, prefix+attr+".", classes, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case *pickle.Object:
		return "object of class " + x.Class.String()
	case *pickle.Dict:
		return "dict"
	case *pickle.List:
		return "list"
	case pickle.Tuple:
		return "tuple"
	case *view:
		return "tensor"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// PySetState ignores a BUILD on a rebuilt tensor: it sets Python-side
// attributes (extra state) that the reader does not use.
func (v *view) PySetState(state any) error { return nil }

// check verifies that the view lies inside its storage.
func (v *view) check() error {
	if v.offset < 0 {
		return fmt.Errorf("negative storage offset %d", v.offset)
	}
	if len(v.shape) != len(v.stride) {
		return fmt.Errorf("shape %v and stride %v differ in length", v.shape, v.stride)
	}
	last := v.offset
	for i, s := range v.shape {
		if s < 0 || v.stride[i] < 0 {
			return fmt.Errorf("bad shape %v / stride %v", v.shape, v.stride)
		}
		if s == 0 {
			return nil // empty tensor
		}
		last += (s - 1) * v.stride[i]
	}
	if last >= v.storage.numel {
		return fmt.Errorf("view (offset %d, shape %v, stride %v) reaches element %d of a %d-element storage",
			v.offset, v.shape, v.stride, last, v.storage.numel)
	}
	return nil
}

func loadStorage(pid any, prefix string, files map[string]*zip.File, storages map[string]*storage) (any, error) {
	t, ok := pid.(pickle.Tuple)
	if !ok || len(t) < 5 {
		return nil, fmt.Errorf("persistent id %v: want ('storage', type, key, location, numel)", pid)
	}
	if kind, _ := t[0].(string); kind != "storage" {
		return nil, fmt.Errorf("persistent id kind %v: want 'storage'", t[0])
	}
	typ, ok1 := t[1].(pickle.Global)
	key, ok2 := t[2].(string)
	location, ok3 := t[3].(string)
	numel, ok4 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 || numel < 0 {
		return nil, fmt.Errorf("persistent id %v: want ('storage', type, key, location, numel)", pid)
	}
	if s, ok := storages[key]; ok {
		return s, nil
	}
	dtype, ok := storageTypes[typ.Name]
	if !ok {
		return nil, fmt.Errorf("storage %s: unsupported storage type %s", key, typ)
	}
	f := files[prefix+"data/"+key]
	if f == nil {
		return nil, fmt.Errorf("storage record %sdata/%s is missing (truncated archive?)", prefix, key)
	}
	if want := uint64(numel) * uint64(dtype.Size()); f.UncompressedSize64 != want {
		return nil, fmt.Errorf("storage record %s holds %d bytes, want %d (%d %s elements)",
			f.Name, f.UncompressedSize64, want, numel, dtype)
	}
	s := &storage{key: key, dtype: dtype, numel: numel, location: location, file: f}
	storages[key] = s
	return s, nil
}

// unpickle decodes a PyTorch pickle (data.pkl). Persistent ids go to
// persistentLoad (nil: they are an error); calls are interpreted by rebuild;
// class references must be PyTorch's (see torchGlobal).
func unpickle(data []byte, persistentLoad func(pid any) (any, error)) (any, error) {
	return pickle.Options{
		Allow:          torchGlobal,
		PersistentLoad: persistentLoad,
		Reduce:         rebuild,
	}.Decode(data)
}

// torchGlobal accepts the class references a PyTorch archive makes: torch's
// storage types and rebuild functions (torch.*) and TorchScript's module
// classes (__torch__.*). Those not interpreted by rebuild only become inert
// records; any other module (os, builtins, ...) is refused.
func torchGlobal(g pickle.Global) bool {
	for _, root := range []string{"torch", "__torch__"} {
		if g.Module == root || strings.HasPrefix(g.Module, root+".") {
			return true
		}
	}
	return false
}

// rebuild interprets the pickled calls that rebuild tensors.
func rebuild(fn pickle.Global, args pickle.Tuple) (any, bool, error) {
	switch fn.String() {
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		if len(args) < 4 {
			return nil, true, fmt.Errorf("%d arguments, want at least 4", len(args))
		}
		s, ok := args[0].(*storage)
		if !ok {
			return nil, true, fmt.Errorf("argument 0 is a %T, want a storage", args[0])
		}
		offset, ok := args[1].(int64)
		if !ok {
			return nil, true, fmt.Errorf("storage offset is a %T", args[1])
		}
		shape, err := ints(args[2])
		if err != nil {
			return nil, true, fmt.Errorf("size: %w", err)
		}
		stride, err := ints(args[3])
		if err != nil {
			return nil, true, fmt.Errorf("stride: %w", err)
		}
		return &view{storage: s, offset: offset, shape: shape, stride: stride}, true, nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(args) < 1 {
			return nil, true, errors.New("no arguments")
		}
		return args[0], true, nil
	case "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type":
		if len(args) < 3 {
			return nil, true, errors.New("too few arguments")
		}
		inner, ok1 := args[0].(pickle.Global)
		innerArgs, ok2 := args[2].(pickle.Tuple)
		if !ok1 || !ok2 {
			return nil, true, errors.New("unexpected arguments")
		}
		return rebuild(inner, innerArgs)
	}
	return nil, false, nil
}

func ints(v any) ([]int64, error) {
	t, ok := v.(pickle.Tuple)
	if !ok {
		return nil, fmt.Errorf("%T, want a tuple of ints", v)
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("element %d is a %T, want an int", i, x)
		}
		out[i] = n
	}
	return out, nil
}

func readAll(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("record %s is too large (%d bytes)", f.Name, f.UncompressedSize64)
	}
	r, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", f.Name, err)
	}
	defer r.Close()
	b := make([]byte, f.UncompressedSize64)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("record %s: %w", f.Name, err)
	}
	// Reading to EOF makes the zip reader verify the CRC.
	if n, err := r.Read(make([]byte, 1)); n != 0 || (err != nil && err != io.EOF) {
		if err == nil {
			err = errors.New("longer than its declared size")
		}
		return nil, fmt.Errorf("record %s: %w", f.Name, err)
	}
	return b, nil
}

// ReadStorage returns the raw bytes of t's whole storage (little-endian
// elements of t.DType; the tensor is the view Offset/Shape/Stride of it),
// verified against the zip CRC.
func (a *Archive) ReadStorage(t *Tensor) ([]byte, error) {
	b, err := readAll(t.file, 1<<40)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", a.Path, t.Name, err)
	}
	return b, nil
}

// ReadInt returns the value of a one-element integer tensor (for example
// the input_resolution entry of OpenAI's CLIP archives).
func (a *Archive) ReadInt(name string) (int64, error) {
	t := a.Lookup(name)
	if t == nil {
		return 0, fmt.Errorf("%s: no tensor %q", a.Path, name)
	}
	if t.Numel() != 1 {
		return 0, fmt.Errorf("%s: tensor %q has shape %v, want one element", a.Path, name, t.Shape)
	}
	b, err := a.ReadStorage(t)
	if err != nil {
		return 0, err
	}
	size := int64(t.DType.Size())
	raw := b[t.Offset*size : (t.Offset+1)*size]
	switch t.DType {
	case Int64:
		return int64(binary.LittleEndian.Uint64(raw)), nil
	case Int32:
		return int64(int32(binary.LittleEndian.Uint32(raw))), nil
	case Int16:
		return int64(int16(binary.LittleEndian.Uint16(raw))), nil
	case Int8:
		return int64(int8(raw[0])), nil
	case Uint8, Bool:
		return int64(raw[0]), nil
	}
	return 0, fmt.Errorf("%s: tensor %q is %s, want an integer", a.Path, name, t.DType)
}

// Names returns the tensor names in sorted order.
func (a *Archive) Names() []string {
	names := make([]string, 0, len(a.Tensors))
	for _, t := range a.Tensors {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	return names
}
