package clip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/nlpodyssey/safetensors"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip/internal/torchfile"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
)

// source is an opened checkpoint: a PyTorch zip archive or a safetensors
// file. Tensor names are the model's: a "module." prefix on every name is
// removed.
type source interface {
	// kind describes the format ("TorchScript archive", "safetensors").
	kind() string
	// shapes returns every tensor's shape by name.
	shapes() map[string][]int64
	// readInt returns the integer scalar called name, if there is one.
	readInt(name string) (int64, bool, error)
	// copyInto copies the tensors that are parameters of params.
	copyInto(params *nn.Params) error
	close() error
}

// safetensorsMagic tells a safetensors file (an 8-byte little-endian
// header length, then a JSON object) from a zip archive ("PK").
func isSafetensors(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var head [9]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if n < 9 || bytes.HasPrefix(head[:], []byte("PK")) {
		return false, nil
	}
	return head[8] == '{', nil
}

// openSource opens a checkpoint in either format.
func openSource(path string) (source, error) {
	st, err := isSafetensors(path)
	if err != nil {
		return nil, err
	}
	if st {
		return openSafetensors(path)
	}
	a, err := torchfile.Open(path)
	if err != nil {
		return nil, err
	}
	return &archiveSource{a: a, prefix: commonPrefix(a.Names())}, nil
}

// commonPrefix returns "module." when every name starts with it (a model
// saved from DataParallel or DistributedDataParallel), else "".
func commonPrefix(names []string) string {
	if len(names) == 0 {
		return ""
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "module.") {
			return ""
		}
	}
	return "module."
}

// archiveSource reads a PyTorch zip archive.
type archiveSource struct {
	a      *torchfile.Archive
	prefix string
}

func (s *archiveSource) kind() string { return s.a.Kind.String() }

func (s *archiveSource) shapes() map[string][]int64 {
	m := make(map[string][]int64, len(s.a.Tensors))
	for _, t := range s.a.Tensors {
		m[strings.TrimPrefix(t.Name, s.prefix)] = t.Shape
	}
	return m
}

func (s *archiveSource) readInt(name string) (int64, bool, error) {
	if s.a.Lookup(s.prefix+name) == nil {
		return 0, false, nil
	}
	v, err := s.a.ReadInt(s.prefix + name)
	return v, err == nil, err
}

func (s *archiveSource) copyInto(params *nn.Params) error { return copyWeights(s.a, s.prefix, params) }

func (s *archiveSource) close() error { return s.a.Close() }

// isTorchScript reports an OpenAI-style TorchScript archive.
func isTorchScript(src source) bool {
	a, ok := src.(*archiveSource)
	return ok && a.a.Kind == torchfile.TorchScript
}

// safetensorsSource reads a safetensors file through a read-only memory
// map.
type safetensorsSource struct {
	data   []byte // the mapped file
	st     safetensors.SafeTensors
	prefix string
}

var safetensorsDTypes = map[safetensors.DType]gotch.DType{
	safetensors.F32: gotch.Float, safetensors.F64: gotch.Double, safetensors.F16: gotch.Half,
	safetensors.BF16: gotch.BFloat16, safetensors.I64: gotch.Int64, safetensors.I32: gotch.Int,
	safetensors.I16: gotch.Int16, safetensors.I8: gotch.Int8, safetensors.U8: gotch.Uint8,
	safetensors.BOOL: gotch.Bool,
}

func openSafetensors(path string) (*safetensorsSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < 8 || int64(int(fi.Size())) != fi.Size() {
		return nil, fmt.Errorf("open %s: not a safetensors file (%d bytes)", path, fi.Size())
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("open %s: map the file: %w", path, err)
	}
	st, err := safetensors.Deserialize(data)
	if err != nil {
		syscall.Munmap(data)
		return nil, fmt.Errorf("open %s: not a valid safetensors file (truncated or corrupt): %w", path, err)
	}
	s := &safetensorsSource{data: data, st: st, prefix: commonPrefix(st.Names())}
	return s, nil
}

func (s *safetensorsSource) kind() string { return "safetensors" }

// safetensorShape returns a tensor's shape as int64s.
func safetensorShape(v safetensors.TensorView) []int64 {
	shape := make([]int64, len(v.Shape()))
	for i, d := range v.Shape() {
		shape[i] = int64(d)
	}
	return shape
}

func (s *safetensorsSource) shapes() map[string][]int64 {
	m := make(map[string][]int64)
	for _, t := range s.st.Tensors() {
		m[strings.TrimPrefix(t.Name, s.prefix)] = safetensorShape(t.TensorView)
	}
	return m
}

func (s *safetensorsSource) readInt(string) (int64, bool, error) { return 0, false, nil }

func (s *safetensorsSource) copyInto(params *nn.Params) error {
	tensors := s.st.Tensors()
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].Name < tensors[j].Name })
	for _, t := range tensors {
		name := strings.TrimPrefix(t.Name, s.prefix)
		if params.Lookup(name) == nil {
			continue
		}
		dt, ok := safetensorsDTypes[t.TensorView.DType()]
		if !ok {
			return fmt.Errorf("tensor %q: unsupported dtype %v", t.Name, t.TensorView.DType())
		}
		shape := safetensorShape(t.TensorView)
		if len(shape) == 0 {
			shape = []int64{1} // Params.Copy turns [1] into the scalar
		}
		v, err := ts.OfDataSize(t.TensorView.Data(), shape, dt)
		if err != nil {
			return torch.Err(fmt.Sprintf("tensor %q", t.Name), err)
		}
		err = params.Copy(name, v)
		v.Drop()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *safetensorsSource) close() error {
	if s.data == nil {
		return nil
	}
	err := syscall.Munmap(s.data)
	s.data = nil
	return err
}

// configBeside returns the open_clip_config.json in path's folder, or "".
func configBeside(path, name string) string {
	p := filepath.Join(filepath.Dir(path), name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return p
	}
	return ""
}
