package clip

import (
	"fmt"
	"runtime"
	"sort"

	"github.com/clipadapter/clipgo/clip/internal/torchfile"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// extraEntries are the non-weight scalars stored in the released archives'
// state dicts; Load checks them against the inferred config and skips them.
var extraEntries = map[string]func(Config) int{
	"input_resolution": func(c Config) int { return c.ImageResolution },
	"context_length":   func(c Config) int { return c.ContextLength },
	"vocab_size":       func(c Config) int { return c.VocabSize },
}

// KeyError reports a state dict whose tensor names do not match the
// architecture inferred from it.
type KeyError struct {
	Path   string
	Report nn.LoadReport
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("clip: load %s: state dict does not match the CLIP architecture inferred from it: %s", e.Path, e.Report)
}

// Load reads a CLIP model from path: an OpenAI release (a TorchScript archive
// such as ViT-B-32.pt) or a zip-format torch.save state dict. The
// architecture is inferred from the tensor shapes (InferConfig); every
// parameter and buffer, BatchNorm running statistics included, is copied by
// name, converting each tensor from its stored dtype (fp16 weights become
// fp32 unless WithPrecision(FP16) is given on a CUDA device). Missing or
// unexpected names (a *KeyError), a shape that does not fit the inferred
// architecture, and a truncated or corrupt file are errors naming the file
// and the tensor.
func Load(path string, device gotch.Device, opts ...Option) (*Model, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	wdt, err := weightDType(o.precision, device)
	if err != nil {
		return nil, err
	}
	a, err := torchfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	defer a.Close()
	cfg, shapes, err := archiveConfig(a, path)
	if err != nil {
		return nil, err
	}

	// Check every name and shape before allocating anything.
	spec, err := build(cfg, nn.NewShapeParams(), wdt)
	if err != nil {
		return nil, fmt.Errorf("clip: load %s: %w", path, err)
	}
	if err := checkShapes(path, spec.params, shapes); err != nil {
		return nil, err
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m, err := build(cfg, nn.NewUninitializedParams(device), wdt)
	if err != nil {
		return nil, fmt.Errorf("clip: load %s: %w", path, err)
	}
	m.precision = o.precision
	m.fullTextContext = o.fullTextContext
	if err := copyWeights(a, m.params); err != nil {
		m.Drop()
		return nil, fmt.Errorf("clip: load %s: %w", path, err)
	}
	return m, nil
}

// ReadConfig returns the architecture of the checkpoint at path (a
// TorchScript archive or a state dict, as for Load) without reading its
// weights: the configuration inferred from the tensor shapes, checked
// against the input_resolution, context_length and vocab_size entries when
// the archive has them.
func ReadConfig(path string) (Config, error) {
	a, err := torchfile.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("clip: %w", err)
	}
	defer a.Close()
	cfg, _, err := archiveConfig(a, path)
	return cfg, err
}

// archiveConfig infers the configuration of an opened archive and checks
// it against the archive's extra entries. It returns the shapes of the
// weights (the extra entries left out).
func archiveConfig(a *torchfile.Archive, path string) (Config, map[string][]int64, error) {
	shapes := a.Shapes()
	for name := range extraEntries {
		delete(shapes, name)
	}
	cfg, err := InferConfig(shapes)
	if err != nil {
		return Config{}, nil, fmt.Errorf("clip: load %s (%s): %w", path, a.Kind, err)
	}
	names := make([]string, 0, len(extraEntries))
	for name := range extraEntries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if a.Lookup(name) == nil {
			continue
		}
		v, err := a.ReadInt(name)
		if err != nil {
			return Config{}, nil, fmt.Errorf("clip: %w", err)
		}
		if want := extraEntries[name](cfg); v != int64(want) {
			return Config{}, nil, fmt.Errorf("clip: load %s: %s is %d but the weights imply %d", path, name, v, want)
		}
	}
	return cfg, shapes, nil
}

// checkShapes compares the archive's names and shapes with the model's.
func checkShapes(path string, params *nn.Params, shapes map[string][]int64) error {
	seen := make(map[string]bool, len(shapes))
	var r nn.LoadReport
	for name := range shapes {
		if params.Lookup(name) == nil {
			r.Unexpected = append(r.Unexpected, name)
		} else {
			seen[name] = true
		}
	}
	sort.Strings(r.Unexpected)
	r.Missing = params.Missing(seen)
	if !r.OK() {
		return &KeyError{Path: path, Report: r}
	}
	for _, q := range params.List() {
		if got := shapes[q.Name]; !equalShape(got, q.Shape) {
			return fmt.Errorf("clip: load %s: tensor %q has shape %v, want %v for the inferred architecture", path, q.Name, got, q.Shape)
		}
	}
	return nil
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var archiveDTypes = map[torchfile.DType]gotch.DType{
	torchfile.Float32: gotch.Float, torchfile.Float64: gotch.Double, torchfile.Float16: gotch.Half,
	torchfile.BFloat16: gotch.BFloat16, torchfile.Int64: gotch.Int64, torchfile.Int32: gotch.Int,
	torchfile.Int16: gotch.Int16, torchfile.Int8: gotch.Int8, torchfile.Uint8: gotch.Uint8,
	torchfile.Bool: gotch.Bool,
}

// copyWeights copies every archive tensor that is a parameter of params,
// reading each storage once and releasing it after its last tensor.
func copyWeights(a *torchfile.Archive, params *nn.Params) error {
	refs := make(map[string]int)
	for _, t := range a.Tensors {
		if params.Lookup(t.Name) != nil {
			refs[t.StorageKey]++
		}
	}
	storages := make(map[string]*ts.Tensor)
	defer func() {
		for _, s := range storages {
			s.Drop()
		}
	}()
	for _, t := range a.Tensors {
		if params.Lookup(t.Name) == nil {
			continue
		}
		var err error
		st := storages[t.StorageKey]
		if st == nil {
			dt, ok := archiveDTypes[t.DType]
			if !ok {
				return fmt.Errorf("tensor %q: unsupported dtype %v", t.Name, t.DType)
			}
			var raw []byte
			raw, err = a.ReadStorage(t)
			if err != nil {
				return err
			}
			if st, err = ts.OfDataSize(raw, []int64{t.StorageNumel}, dt); err != nil {
				return torch.Err(fmt.Sprintf("tensor %q", t.Name), err)
			}
			storages[t.StorageKey] = st
		}
		var v *ts.Tensor
		if len(t.Shape) == 0 {
			// gotch's AsStrided cannot take an empty shape; Copy turns the
			// one-element view into the scalar parameter.
			v, err = st.Narrow(0, t.Offset, 1, false)
		} else {
			v, err = st.AsStrided(t.Shape, t.Stride, []int64{t.Offset}, false)
		}
		if err != nil {
			return torch.Err(fmt.Sprintf("tensor %q", t.Name), err)
		}
		err = params.Copy(t.Name, v)
		v.Drop()
		if err != nil {
			return err
		}
		if refs[t.StorageKey]--; refs[t.StorageKey] == 0 {
			st.Drop()
			delete(storages, t.StorageKey)
		}
	}
	return nil
}
