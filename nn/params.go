// Package nn holds the building blocks of CLIP on gotch tensors: LayerNorm
// computed in fp32, QuickGELU, multi-head attention with PyTorch's packed
// in_proj_weight/in_proj_bias and out_proj, residual attention blocks and
// transformers, eval-mode BatchNorm, the ModifiedResNet bottleneck with
// anti-aliased (average-pool) striding, and the attention pool.
//
// Layers keep their weights in a Params store under the exact names of the
// PyTorch state dict (e.g. "transformer.resblocks.0.attn.in_proj_weight"), so
// loading a checkpoint is a name-for-name copy. The weights are frozen: they
// never require gradients. Learned parameters of adaptation methods live in
// stores of their own.
//
// Sequences are batch-first: [N, L, E]. Forward methods never modify or drop
// their inputs; they drop their intermediate tensors and return a new tensor
// that the caller owns. They run in whatever grad mode the caller set; where
// no gradient is tracked (Untracked) they write into their own intermediate
// tensors in place. Inference shortcuts that compute the same function with
// less work (ForwardFirst, ForwardPackedAt, FoldedConv) are tested against
// the direct computation in inference_test.go.
package nn

import (
	"fmt"
	"sort"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// NamedTensor is one tensor of a Params store: its name, shape and dtype,
// and the tensor itself (nil in a shape-only store).
type NamedTensor struct {
	Name  string
	Shape []int64
	DType gotch.DType
	// Tensor is nil in a shape-only store.
	Tensor *ts.Tensor
}

// Params is an ordered store of named, frozen tensors on one device.
type Params struct {
	device        gotch.Device
	shapeOnly     bool
	uninitialized bool
	list          []*NamedTensor
	index         map[string]*NamedTensor
}

// NewParams returns an empty store whose tensors live on device.
func NewParams(device gotch.Device) *Params {
	return &Params{device: device, index: make(map[string]*NamedTensor)}
}

// NewUninitializedParams returns an empty store whose Add allocates tensors
// without clearing them, for a caller that overwrites every tensor (loading
// a checkpoint), which then touches the memory once instead of twice.
func NewUninitializedParams(device gotch.Device) *Params {
	p := NewParams(device)
	p.uninitialized = true
	return p
}

// NewShapeParams returns a store that records names, shapes and dtypes
// without allocating tensors, for checking an architecture's parameter list
// cheaply. Layers built on it cannot run.
func NewShapeParams() *Params {
	p := NewParams(gotch.CPU)
	p.shapeOnly = true
	return p
}

// Device returns the device of the store's tensors.
func (p *Params) Device() gotch.Device { return p.device }

// ShapeOnly reports whether the store allocates no tensors.
func (p *Params) ShapeOnly() bool { return p.shapeOnly }

// Len returns the number of tensors.
func (p *Params) Len() int { return len(p.list) }

// List returns the tensors in the order they were added.
func (p *Params) List() []*NamedTensor { return append([]*NamedTensor(nil), p.list...) }

// Lookup returns the tensor called name, or nil.
func (p *Params) Lookup(name string) *NamedTensor { return p.index[name] }

// NumElements returns the total number of elements of all tensors.
func (p *Params) NumElements() int64 {
	var n int64
	for _, q := range p.list {
		n += numel(q.Shape)
	}
	return n
}

// Add creates a tensor called name, zero-filled unless the store is
// uninitialized. Names must be unique.
func (p *Params) Add(name string, shape []int64, dtype gotch.DType) (*ts.Tensor, error) {
	if _, dup := p.index[name]; dup {
		return nil, fmt.Errorf("parameter %q defined twice", name)
	}
	for _, s := range shape {
		if s <= 0 {
			return nil, fmt.Errorf("parameter %q: bad shape %v", name, shape)
		}
	}
	q := &NamedTensor{Name: name, Shape: append(make([]int64, 0, len(shape)), shape...), DType: dtype}
	if !p.shapeOnly {
		alloc := zeros
		if p.uninitialized {
			alloc = empty
		}
		t, err := alloc(q.Shape, dtype, p.device)
		if err != nil {
			return nil, torch.Err(fmt.Sprintf("create parameter %q", name), err)
		}
		q.Tensor = t
	}
	p.list = append(p.list, q)
	p.index[name] = q
	return q.Tensor, nil
}

// Copy copies src into the tensor called name, converting dtype and device.
// The shapes must match exactly (a scalar and a one-element tensor count as
// the same shape). src is not modified.
func (p *Params) Copy(name string, src *ts.Tensor) error {
	q := p.index[name]
	if q == nil {
		return fmt.Errorf("no parameter %q", name)
	}
	shape, err := src.Size()
	if err != nil {
		return torch.Err(fmt.Sprintf("parameter %q: source shape", name), err)
	}
	if !sameShape(shape, q.Shape) {
		return fmt.Errorf("parameter %q: shape %v, want %v", name, shape, q.Shape)
	}
	if p.shapeOnly {
		return nil
	}
	return torch.NoGrad(func() error {
		s := src
		if len(shape) != len(q.Shape) { // scalar <-> [1]
			v, err := Reshape(src, q.Shape)
			if err != nil {
				return fmt.Errorf("parameter %q: %w", name, err)
			}
			defer v.Drop()
			s = v
		}
		return torch.CopyInto(fmt.Sprintf("copy parameter %q", name), q.Tensor, s)
	})
}

// LoadReport lists the names a load did not match.
type LoadReport struct {
	// Missing are parameters the source did not provide.
	Missing []string
	// Unexpected are source tensors that match no parameter.
	Unexpected []string
}

// OK reports whether every name matched.
func (r LoadReport) OK() bool { return len(r.Missing) == 0 && len(r.Unexpected) == 0 }

func (r LoadReport) String() string {
	return fmt.Sprintf("missing keys %s; unexpected keys %s", list(r.Missing), list(r.Unexpected))
}

func list(names []string) string {
	const max = 8
	if len(names) == 0 {
		return "none"
	}
	s := fmt.Sprintf("%q", names)
	if len(names) > max {
		s = fmt.Sprintf("%q and %d more", names[:max], len(names)-max)
	}
	return s
}

// Load copies every tensor of src into the parameter of the same name and
// reports the names that did not match (sorted). A shape mismatch is an
// error. The caller keeps ownership of src.
func (p *Params) Load(src map[string]*ts.Tensor) (LoadReport, error) {
	var r LoadReport
	names := make([]string, 0, len(src))
	for name := range src {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if p.index[name] == nil {
			r.Unexpected = append(r.Unexpected, name)
			continue
		}
		if err := p.Copy(name, src[name]); err != nil {
			return r, err
		}
	}
	for _, q := range p.list {
		if _, ok := src[q.Name]; !ok {
			r.Missing = append(r.Missing, q.Name)
		}
	}
	sort.Strings(r.Missing)
	return r, nil
}

// Missing returns the parameters whose names are not in seen, sorted.
func (p *Params) Missing(seen map[string]bool) []string {
	var out []string
	for _, q := range p.list {
		if !seen[q.Name] {
			out = append(out, q.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Drop releases every tensor. The store must not be used afterwards.
func (p *Params) Drop() {
	for _, q := range p.list {
		if q.Tensor != nil {
			q.Tensor.Drop()
			q.Tensor = nil
		}
	}
}

// zeros works around gotch's ts.Zeros, which indexes the first element of
// the shape and so panics for a scalar.
func zeros(shape []int64, dtype gotch.DType, device gotch.Device) (*ts.Tensor, error) {
	if len(shape) > 0 {
		return ts.Zeros(shape, dtype, device)
	}
	z, err := ts.Zeros([]int64{1}, dtype, device)
	if err != nil {
		return nil, err
	}
	return z.Squeeze(true)
}

// empty allocates without clearing (scalars as in zeros).
func empty(shape []int64, dtype gotch.DType, device gotch.Device) (*ts.Tensor, error) {
	if len(shape) > 0 {
		return ts.Empty(shape, dtype, device)
	}
	return zeros(shape, dtype, device)
}

// Reshape returns x with the given shape. Unlike gotch's Reshape it accepts
// an empty shape (a scalar, for one-element x).
func Reshape(x *ts.Tensor, shape []int64) (*ts.Tensor, error) {
	if len(shape) > 0 {
		y, err := x.Reshape(shape, false)
		return y, wrap("reshape", err)
	}
	// gotch's Numel ends the process when the shape cannot be read.
	xs, err := size(x)
	if err != nil {
		return nil, err
	}
	if n := numel(xs); n != 1 {
		return nil, fmt.Errorf("reshape: %d elements cannot form a scalar", n)
	}
	f, err := x.Reshape([]int64{1}, false)
	if err != nil {
		return nil, wrap("reshape", err)
	}
	y, err := f.Squeeze(true)
	return y, wrap("reshape", err)
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	return n
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		// A scalar and a one-element vector hold the same value.
		return numel(a) == 1 && numel(b) == 1 && len(a)+len(b) == 1
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Builder creates the parameters of layers in a Params store under a dotted
// name prefix. Errors are sticky: after the first one, Param returns nil
// and Err reports it, so constructors need not check every parameter.
type Builder struct {
	params      *Params
	prefix      string
	weightDType gotch.DType
	state       *builderState
}

type builderState struct{ err error }

// NewBuilder returns a builder for p whose convolution and linear weights
// (and attention projections) get weightDType (gotch.Float, or gotch.Half
// for CLIP's fp16 mode); normalisation parameters and embeddings are always
// fp32.
func NewBuilder(p *Params, weightDType gotch.DType) Builder {
	return Builder{params: p, weightDType: weightDType, state: &builderState{}}
}

// Sub returns a builder whose names are prefixed with name + ".".
func (b Builder) Sub(name string) Builder {
	b.prefix = b.prefix + name + "."
	return b
}

// Param adds a zero tensor called prefix+name.
func (b Builder) Param(name string, dtype gotch.DType, shape ...int64) *ts.Tensor {
	if b.state.err != nil {
		return nil
	}
	t, err := b.params.Add(b.prefix+name, shape, dtype)
	if err != nil {
		b.state.err = err
	}
	return t
}

// Weight adds a tensor of the weight dtype.
func (b Builder) Weight(name string, shape ...int64) *ts.Tensor {
	return b.Param(name, b.weightDType, shape...)
}

// Float adds an fp32 tensor.
func (b Builder) Float(name string, shape ...int64) *ts.Tensor {
	return b.Param(name, gotch.Float, shape...)
}

// Err returns the first error of any builder sharing this one's state.
func (b Builder) Err() error { return b.state.err }
