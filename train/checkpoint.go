package train

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/fsutil"
	"github.com/clipadapter/clipgo/internal/torch"
)

// checkpointMagic starts every checkpoint (and feature cache) file. The
// layout is: magic, an 8-byte little-endian header length, a JSON header,
// the tensors' raw little-endian bytes in header order, then the SHA-256 of
// everything before it (32 bytes), which ReadTensors verifies. Files of the
// first version (checkpointMagicV1) have no checksum and are still read.
const (
	checkpointMagic   = "CLIPGO-CKPT-2\n"
	checkpointMagicV1 = "CLIPGO-CKPT-1\n"
)

// ErrCorrupt marks a file whose checksum does not match its contents.
var ErrCorrupt = errors.New("checksum mismatch: the file is corrupt")

type tensorEntry struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"` // "float32", "float64" or "int64"
	Shape []int64 `json:"shape"`
}

type checkpointHeader struct {
	Meta    json.RawMessage `json:"meta"`
	Tensors []tensorEntry   `json:"tensors"`
}

// WriteTensors writes named tensors and a JSON-encodable meta value to path
// atomically (a temporary file beside it, then a rename). Tensors are
// copied to the CPU; float64 and int64 tensors keep their type, others
// are stored as float32.
func WriteTensors(path string, meta any, tensors []Param) error {
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("checkpoint %s: meta: %w", path, err)
	}
	hdr := checkpointHeader{Meta: metaJSON}
	type blob struct {
		f32 []float32
		f64 []float64
		i64 []int64
	}
	blobs := make([]blob, len(tensors))
	for i, p := range tensors {
		e, b, err := tensorBytes(p)
		if err != nil {
			return fmt.Errorf("checkpoint %s: %w", path, err)
		}
		hdr.Tensors = append(hdr.Tensors, e)
		blobs[i] = blob(b)
	}
	hj, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := fsutil.Create(path, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Abort()
	sum := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	w.WriteString(checkpointMagic)
	binary.Write(w, binary.LittleEndian, uint64(len(hj)))
	w.Write(hj)
	for _, b := range blobs {
		var err error
		switch {
		case b.f32 != nil:
			err = binary.Write(w, binary.LittleEndian, b.f32)
		case b.f64 != nil:
			err = binary.Write(w, binary.LittleEndian, b.f64)
		default:
			err = binary.Write(w, binary.LittleEndian, b.i64)
		}
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if _, err := f.Write(sum.Sum(nil)); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

func tensorBytes(p Param) (tensorEntry, struct {
	f32 []float32
	f64 []float64
	i64 []int64
}, error) {
	var out struct {
		f32 []float32
		f64 []float64
		i64 []int64
	}
	shape, err := p.Tensor.Size()
	if err != nil {
		return tensorEntry{}, out, fmt.Errorf("tensor %s: %w", p.Name, err)
	}
	e := tensorEntry{Name: p.Name, Shape: shape}
	switch p.Tensor.DType() {
	case gotch.Int64:
		e.DType = "int64"
		out.i64, err = torch.Values[int64](p.Tensor)
	case gotch.Double:
		e.DType = "float64"
		out.f64, err = torch.Values[float64](p.Tensor)
	default:
		e.DType = "float32"
		out.f32, err = torch.Values[float32](p.Tensor)
	}
	if err != nil {
		return e, out, fmt.Errorf("tensor %s: %w", p.Name, err)
	}
	return e, out, nil
}

// ReadTensors reads a file written by WriteTensors, decoding its meta into
// meta (when non-nil) and creating the tensors on device.
func ReadTensors(path string, meta any, device gotch.Device) (tensors map[string]*ts.Tensor, err error) {
	hdr, r, err := readHeader(path, meta)
	if err != nil {
		return nil, err
	}
	bad := func(what string, err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read checkpoint %s: truncated %s", path, what)
		}
		return fmt.Errorf("read checkpoint %s: %s: %v", path, what, err)
	}
	out := make(map[string]*ts.Tensor, len(hdr.Tensors))
	defer func() {
		if err != nil { // free what was read before the error
			for _, t := range out {
				t.Drop()
			}
		}
	}()
	for _, e := range hdr.Tensors {
		n := int64(1)
		for _, s := range e.Shape {
			if s < 0 || s > math.MaxInt32 {
				return nil, fmt.Errorf("read checkpoint %s: tensor %s has a corrupt shape %v", path, e.Name, e.Shape)
			}
			n *= s
		}
		if size := map[string]int64{"float32": 4, "float64": 8, "int64": 8}[e.DType]; size > 0 && n*size > int64(r.Len()) {
			return nil, fmt.Errorf("read checkpoint %s: tensor %s (%v %s) is larger than the rest of the file: truncated or corrupt", path, e.Name, e.Shape, e.DType)
		}
		var t *ts.Tensor
		switch e.DType {
		case "float32":
			data := make([]float32, n)
			if err := binary.Read(r, binary.LittleEndian, data); err != nil {
				return nil, bad("tensor "+e.Name, err)
			}
			t, err = ts.OfSlice(data)
		case "float64":
			data := make([]float64, n)
			if err := binary.Read(r, binary.LittleEndian, data); err != nil {
				return nil, bad("tensor "+e.Name, err)
			}
			t, err = ts.OfSlice(data)
		case "int64":
			data := make([]int64, n)
			if err := binary.Read(r, binary.LittleEndian, data); err != nil {
				return nil, bad("tensor "+e.Name, err)
			}
			t, err = ts.OfSlice(data)
		default:
			return nil, fmt.Errorf("read checkpoint %s: tensor %s has unknown dtype %q", path, e.Name, e.DType)
		}
		if err != nil {
			return nil, fmt.Errorf("read checkpoint %s: tensor %s: %w", path, e.Name, err)
		}
		if t, err = t.View(e.Shape, true); err == nil {
			t, err = t.To(device, true)
		}
		if err != nil {
			return nil, fmt.Errorf("read checkpoint %s: tensor %s: %w", path, e.Name, torch.Err("to "+torch.DeviceName(device), err))
		}
		out[e.Name] = t
	}
	return out, nil
}

// readHeader reads a file written by WriteTensors, verifies its checksum
// and decodes its header, and its meta into meta (when non-nil); the
// reader is left at the first tensor's bytes.
func readHeader(path string, meta any) (*checkpointHeader, *bytes.Reader, error) {
	b, err := readChecked(path)
	if err != nil {
		return nil, nil, err
	}
	bad := func(what string, err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read checkpoint %s: truncated %s", path, what)
		}
		return fmt.Errorf("read checkpoint %s: %s: %v", path, what, err)
	}
	r := bytes.NewReader(b[len(checkpointMagic):])
	var hlen uint64
	if err := binary.Read(r, binary.LittleEndian, &hlen); err != nil {
		return nil, nil, bad("header length", err)
	}
	if hlen > 64<<20 {
		return nil, nil, fmt.Errorf("read checkpoint %s: corrupt header length %d", path, hlen)
	}
	hj := make([]byte, hlen)
	if _, err := io.ReadFull(r, hj); err != nil {
		return nil, nil, bad("header", err)
	}
	var hdr checkpointHeader
	if err := json.Unmarshal(hj, &hdr); err != nil {
		return nil, nil, bad("header", err)
	}
	if meta != nil {
		if err := json.Unmarshal(hdr.Meta, meta); err != nil {
			return nil, nil, bad("meta", err)
		}
	}
	return &hdr, r, nil
}

// readChecked reads a file written by WriteTensors and verifies its
// checksum (first-format files have none); it returns the bytes without the
// checksum.
func readChecked(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(b, []byte(checkpointMagic)):
		if len(b) < len(checkpointMagic)+sha256.Size {
			return nil, fmt.Errorf("read checkpoint %s: truncated file", path)
		}
		body, want := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
		if got := sha256.Sum256(body); !bytes.Equal(got[:], want) {
			return nil, fmt.Errorf("read checkpoint %s: %w", path, ErrCorrupt)
		}
		return body, nil
	case bytes.HasPrefix(b, []byte(checkpointMagicV1)):
		return b, nil
	}
	return nil, fmt.Errorf("read checkpoint %s: not a clipgo checkpoint", path)
}

// LoopState is the loop's position and RNG in a checkpoint.
type LoopState struct {
	Epoch       int `json:"epoch"`
	StepInEpoch int `json:"step_in_epoch,omitempty"`
	// Partial holds the sums of the steps already run in Epoch when
	// StepInEpoch > 0.
	Partial       *EpochSums         `json:"partial,omitempty"`
	GlobalStep    int                `json:"global_step"`
	RNG           []byte             `json:"rng"`
	OptimizerStep int64              `json:"optimizer_step"`
	Extra         map[string]float64 `json:"extra,omitempty"`
	// Info is free-form state of the caller (best validation accuracy...).
	Info json.RawMessage `json:"info,omitempty"`
}

// SaveCheckpoint writes the method's parameters, the optimizer's state and
// the loop's position and RNG to path, atomically. info is stored as is.
// The checkpoint it replaces is kept as path+PrevSuffix (a hard link, so
// that path itself is never missing): if the new one is later found
// corrupt, the previous one is still there. Failing to keep it is logged,
// not fatal: the new checkpoint matters more.
func SaveCheckpoint(path string, l *Loop, info any) error {
	return saveCheckpoint(path, l, info, true)
}

// SaveSnapshot writes a checkpoint like SaveCheckpoint but keeps no
// previous copy: for files replaced by choice (the best validation
// epoch's), not the one training resumes from.
func SaveSnapshot(path string, l *Loop, info any) error {
	return saveCheckpoint(path, l, info, false)
}

// saveCheckpoint is SaveCheckpoint; keepPrev says whether to keep the file
// it replaces as path+PrevSuffix.
func saveCheckpoint(path string, l *Loop, info any, keepPrev bool) error {
	st := LoopState{Epoch: l.Epoch, StepInEpoch: l.StepInEpoch, GlobalStep: l.GlobalStep}
	if l.StepInEpoch > 0 {
		p := l.partial
		st.Partial = &p
	}
	var err error
	if st.RNG, err = l.RNGState(); err != nil {
		return err
	}
	tensors := append([]Param{}, prefixed("param.", l.Method.Parameters())...)
	if l.Optimizer != nil {
		ost, step := l.Optimizer.State()
		st.OptimizerStep = step
		tensors = append(tensors, prefixed("optim.", ost)...)
	}
	if s, ok := l.Method.(Saver); ok {
		st.Extra = s.Extra()
	}
	if info != nil {
		if st.Info, err = json.Marshal(info); err != nil {
			return fmt.Errorf("checkpoint %s: info: %w", path, err)
		}
	}
	if keepPrev {
		keepPrevious(path)
	}
	return WriteTensors(path, st, tensors)
}

// keepPrevious hard-links path, when it exists, to path+PrevSuffix,
// replacing an older one; a failure (a file system without hard links) is
// logged, and the previous checkpoint is then not kept.
func keepPrevious(path string) {
	if _, err := os.Stat(path); err != nil {
		return
	}
	prev := path + PrevSuffix
	os.Remove(prev) // when it cannot be removed, Link fails and says why
	if err := os.Link(path, prev); err != nil {
		slog.Warn("checkpoint: the previous checkpoint is not kept", "file", prev, "err", err)
	}
}

// ReadLoopState returns the loop state stored in a checkpoint written by
// SaveCheckpoint or SaveSnapshot (its Info included), without reading its
// tensors.
func ReadLoopState(path string) (*LoopState, error) {
	var st LoopState
	if _, _, err := readHeader(path, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// PrevSuffix names the previous checkpoint kept beside a checkpoint.
const PrevSuffix = ".prev"

// LoadCheckpoint restores a checkpoint written by SaveCheckpoint into l: the
// method's parameters are copied in place, the optimizer's state and the
// loop's position and RNG are replaced. It returns the stored state.
func LoadCheckpoint(path string, l *Loop) (*LoopState, error) {
	dev := gotch.CPU
	if ps := l.Method.Parameters(); len(ps) > 0 {
		if d, err := ps[0].Tensor.Device(); err == nil {
			dev = d
		}
	}
	var st LoopState
	tensors, err := ReadTensors(path, &st, dev)
	if err != nil {
		prev := path + PrevSuffix
		if errors.Is(err, ErrCorrupt) {
			if _, perr := readChecked(prev); perr == nil {
				return nil, fmt.Errorf("%w; the previous checkpoint %s is intact: to resume from the epoch before, rename it to %s", err, prev, path)
			}
		}
		return nil, err
	}
	// The optimizer keeps the state tensors it takes; the rest (the
	// parameters' values, copied in place) are dropped here.
	var kept []Param
	defer func() {
		for _, t := range tensors {
			if !containsTensor(kept, t) {
				t.Drop()
			}
		}
	}()
	if err := CopyParameters(l.Method.Parameters(), tensors, "param."); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	optim := map[string]*ts.Tensor{}
	for name, t := range tensors {
		if rest, ok := strings.CutPrefix(name, "optim."); ok {
			optim[rest] = t
		}
	}
	if l.Optimizer != nil {
		err := l.Optimizer.SetState(optim, st.OptimizerStep)
		kept, _ = l.Optimizer.State()
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", path, err)
		}
	}
	if s, ok := l.Method.(Saver); ok && st.Extra != nil {
		if err := s.SetExtra(st.Extra); err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", path, err)
		}
	}
	if err := l.SetRNGState(st.RNG); err != nil {
		return nil, fmt.Errorf("checkpoint %s: rng: %w", path, err)
	}
	l.Epoch, l.StepInEpoch, l.GlobalStep = st.Epoch, st.StepInEpoch, st.GlobalStep
	l.partial = EpochSums{}
	if st.Partial != nil && st.StepInEpoch > 0 {
		l.partial = *st.Partial
	}
	return &st, nil
}

// containsTensor says whether t is one of ps's tensors.
func containsTensor(ps []Param, t *ts.Tensor) bool {
	for _, p := range ps {
		if p.Tensor == t {
			return true
		}
	}
	return false
}

// CopyParameters copies tensors[prefix+name] into each parameter in place,
// without recording gradients. A missing tensor or a shape mismatch is an
// error naming the parameter.
func CopyParameters(params []Param, tensors map[string]*ts.Tensor, prefix string) error {
	return torch.NoGrad(func() error {
		for _, p := range params {
			src, ok := tensors[prefix+p.Name]
			if !ok {
				return fmt.Errorf("no tensor for parameter %s", p.Name)
			}
			if err := copyParameter(p, src); err != nil {
				return err
			}
		}
		return nil
	})
}

// copyParameter copies src into the parameter p, converting its dtype;
// their shapes must be equal.
func copyParameter(p Param, src *ts.Tensor) error {
	want, err := p.Tensor.Size()
	if err != nil {
		return fmt.Errorf("parameter %s: %w", p.Name, torch.Err("size", err))
	}
	got, err := src.Size()
	if err != nil {
		return fmt.Errorf("parameter %s: %w", p.Name, torch.Err("size in the checkpoint", err))
	}
	if !slices.Equal(want, got) {
		return fmt.Errorf("parameter %s has shape %v, the checkpoint has %v", p.Name, want, got)
	}
	var s torch.Scope
	defer s.Drop()
	what := "parameter " + p.Name + ": convert to " + p.Tensor.DType().String()
	conv, err := s.Op(what)(src.Totype(p.Tensor.DType(), false))
	if err != nil {
		return err
	}
	return torch.CopyInto("parameter "+p.Name+": copy", p.Tensor, conv)
}

func prefixed(prefix string, ps []Param) []Param {
	out := make([]Param, len(ps))
	for i, p := range ps {
		out[i] = Param{Name: prefix + p.Name, Tensor: p.Tensor}
	}
	return out
}
