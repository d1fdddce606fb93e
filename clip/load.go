package clip

import (
	"fmt"
	"runtime"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip/internal/torchfile"
	"github.com/clipadapter/clipgo/clip/openclip"
	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
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

// Load reads a CLIP model from path: an OpenAI release (a TorchScript
// archive such as ViT-B-32.pt), a zip-format torch.save state dict (bare,
// or a training checkpoint's "state_dict" entry), or a safetensors file;
// parameter names may carry DataParallel's "module." prefix. The
// architecture is inferred from the tensor shapes (InferConfig); every
// parameter and buffer, BatchNorm running statistics included, is copied by
// name, converting each tensor from its stored dtype (fp16 weights become
// fp32 unless WithPrecision(FP16) is given on a CUDA device). Missing or
// unexpected names (a *KeyError), a shape that does not fit the inferred
// architecture, and a truncated or corrupt file are errors naming the file
// and the tensor.
//
// What the weights do not say (the MLP activation, the image tower's head
// width, the preprocessing) comes from OpenCLIP's configuration: the file
// given by WithOpenCLIPConfig, else the architecture named by
// WithArchitecture, else an open_clip_config.json in the checkpoint's
// folder (not for TorchScript archives, which are OpenAI's). Without any,
// the model is OpenAI's CLIP (QuickGELU, 64-wide heads, OpenAI's
// preprocessing). Checkpoints of other OpenCLIP families (timm or Hugging
// Face towers, SigLIP, CoCa, ...) are rejected with an
// *openclip.UnsupportedError naming the family.
func Load(path string, device gotch.Device, opts ...Option) (*Model, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	wdt, err := weightDType(o.precision, device)
	if err != nil {
		return nil, err
	}
	src, err := openSource(path)
	if err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	defer src.close()
	cfg, shapes, pre, err := sourceConfig(src, path, o)
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
	m.preprocess = pre
	if err := src.copyInto(m.params); err != nil {
		m.Drop()
		return nil, fmt.Errorf("clip: load %s: %w", path, err)
	}
	if err := m.prepare(); err != nil {
		m.Drop()
		return nil, fmt.Errorf("clip: load %s: %w", path, err)
	}
	return m, nil
}

// ReadConfig returns the architecture of the checkpoint at path (a
// TorchScript archive, a state dict or a safetensors file, as for Load)
// without reading its weights: the configuration inferred from the tensor
// shapes, checked against the input_resolution, context_length and
// vocab_size entries when the archive has them, and completed by OpenCLIP's
// configuration as Load does (opts may name it).
func ReadConfig(path string, opts ...Option) (Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	src, err := openSource(path)
	if err != nil {
		return Config{}, fmt.Errorf("clip: %w", err)
	}
	defer src.close()
	cfg, _, _, err := sourceConfig(src, path, o)
	return cfg, err
}

// sourceConfig infers the configuration of an opened checkpoint, checks it
// against the archive's extra entries and completes it with OpenCLIP's
// configuration. It returns the shapes of the weights (by model name,
// extra entries left out) and the preprocessing.
func sourceConfig(src source, path string, o options) (Config, map[string][]int64, preprocess.Config, error) {
	shapes := src.shapes()
	for name := range extraEntries {
		delete(shapes, name)
	}
	names := make([]string, 0, len(shapes))
	for name := range shapes {
		names = append(names, name)
	}
	if err := openclip.DetectFamily(names); err != nil {
		return Config{}, nil, preprocess.Config{}, fmt.Errorf("clip: load %s: %w", path, err)
	}
	cfg, err := InferConfig(shapes)
	if err != nil {
		return Config{}, nil, preprocess.Config{}, fmt.Errorf("clip: load %s (%s): %w", path, src.kind(), err)
	}
	extras := make([]string, 0, len(extraEntries))
	for name := range extraEntries {
		extras = append(extras, name)
	}
	sort.Strings(extras)
	for _, name := range extras {
		v, ok, err := src.readInt(name)
		if err != nil {
			return Config{}, nil, preprocess.Config{}, fmt.Errorf("clip: %w", err)
		}
		if !ok {
			continue
		}
		if want := extraEntries[name](cfg); v != int64(want) {
			return Config{}, nil, preprocess.Config{}, fmt.Errorf("clip: load %s: %s is %d but the weights imply %d", path, name, v, want)
		}
	}
	oc, ocName, err := findOpenCLIPConfig(path, src, o)
	if err != nil {
		return Config{}, nil, preprocess.Config{}, fmt.Errorf("clip: load %s: %w", path, err)
	}
	pre := preprocess.Config{}
	if oc != nil {
		if cfg, err = applyOpenCLIP(cfg, oc.Model); err != nil {
			return Config{}, nil, preprocess.Config{}, fmt.Errorf("clip: load %s: %s does not match the weights: %w", path, ocName, err)
		}
		if pre, err = OpenCLIPPreprocessing(oc.Preprocess); err != nil {
			return Config{}, nil, preprocess.Config{}, fmt.Errorf("clip: load %s: %s: %w", path, ocName, err)
		}
	}
	return cfg, shapes, pre, nil
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

// copyWeights copies every archive tensor that is a parameter of params
// (named without prefix), reading each storage once and releasing it after
// its last tensor.
func copyWeights(a *torchfile.Archive, prefix string, params *nn.Params) error {
	refs := make(map[string]int)
	for _, t := range a.Tensors {
		if params.Lookup(strings.TrimPrefix(t.Name, prefix)) != nil {
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
		name := strings.TrimPrefix(t.Name, prefix)
		if params.Lookup(name) == nil {
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
		err = params.Copy(name, v)
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
