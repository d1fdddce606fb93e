package torch

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"
)

// These tests prove that the prepared gotch works on this machine's
// libtorch: autograd, optimizers, grad modes, VarStore files, TorchScript
// modules and the stubs for wrappers the libtorch lacks.

func values(t *testing.T, x *ts.Tensor) []float64 {
	t.Helper()
	return x.Float64Values()
}

func tensor(t *testing.T, data []float32, shape ...int64) *ts.Tensor {
	t.Helper()
	x, err := ts.OfSlice(data)
	if err != nil {
		t.Fatal(err)
	}
	y, err := x.View(shape, true)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

func TestAutogradMatchesAnalyticGradient(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// loss = sum((W x + b)^2); dL/dW = 2 (W x + b) x^T, dL/db = 2 (W x + b).
	w := tensor(t, []float32{0.5, -1, 2, 0.25, 1.5, -0.5}, 2, 3).MustSetRequiresGrad(true, true)
	b := tensor(t, []float32{0.1, -0.2}, 2).MustSetRequiresGrad(true, true)
	x := tensor(t, []float32{1, 2, -1}, 3)
	y := w.MustMv(x, false).MustAdd(b, true)
	loss := y.MustSquare(false).MustSum(gotch.Float, true)
	loss.MustBackward()

	yv := values(t, y)
	xv := []float64{1, 2, -1}
	gw := values(t, w.MustGrad(false))
	gb := values(t, b.MustGrad(false))
	for i := 0; i < 2; i++ {
		if !near(gb[i], 2*yv[i], 1e-6) {
			t.Errorf("db[%d] = %g, want %g", i, gb[i], 2*yv[i])
		}
		for j := 0; j < 3; j++ {
			if want := 2 * yv[i] * xv[j]; !near(gw[i*3+j], want, 1e-6) {
				t.Errorf("dW[%d,%d] = %g, want %g", i, j, gw[i*3+j], want)
			}
		}
	}
}

func TestSGDStepLowersLoss(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vs := nn.NewVarStore(gotch.CPU)
	lin := nn.NewLinear(vs.Root().Sub("lin"), 4, 1, nn.DefaultLinearConfig())
	opt, err := nn.DefaultSGDConfig().Build(vs, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	// Fit y = x0 - 2 x1 + 0.5 x2 + 3 x3 on a fixed batch.
	x := tensor(t, []float32{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0.5, -1, 2, 0}, 6, 4)
	y := tensor(t, []float32{1, -2, 0.5, 3, 2.5, 3.5}, 6, 1)
	lossAt := func() *ts.Tensor {
		pred := lin.Forward(x)
		l := pred.MustMseLoss(y, 1, true)
		return l
	}
	var first, last float64
	for step := 0; step < 150; step++ {
		l := lossAt()
		v := l.Float64Values()[0]
		if step == 0 {
			first = v
		}
		last = v
		if err := opt.BackwardStep(l); err != nil {
			t.Fatal(err)
		}
		l.MustDrop()
	}
	if !(last < first/10) {
		t.Fatalf("loss went from %g to %g after 150 SGD steps; want at least a 10x drop", first, last)
	}
}

func TestNoGradRestoresPreviousMode(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := tensor(t, []float32{1, 2, 3}, 3).MustSetRequiresGrad(true, true)
	for _, before := range []bool{true, false} {
		SetGradEnabled(before)
		var out *ts.Tensor
		if err := NoGrad(func() error {
			out = w.MustMulScalar(ts.FloatScalar(2), false)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if out.MustRequiresGrad() {
			t.Errorf("grad mode %v: output computed under NoGrad requires grad", before)
		}
		if got := GradEnabled(); got != before {
			t.Errorf("grad mode after NoGrad = %v, want the previous %v", got, before)
		}
		out.MustDrop()
	}
	SetGradEnabled(true)
	inside := w.MustMulScalar(ts.FloatScalar(2), false)
	if !inside.MustRequiresGrad() {
		t.Error("with grad mode on, an op on a leaf that requires grad should require grad")
	}
}

func TestVarStoreSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.ot")
	vs := nn.NewVarStore(gotch.CPU)
	nn.NewLinear(vs.Root().Sub("a"), 3, 2, nn.DefaultLinearConfig())
	if err := vs.Save(path); err != nil {
		t.Fatal(err)
	}
	vs2 := nn.NewVarStore(gotch.CPU)
	nn.NewLinear(vs2.Root().Sub("a"), 3, 2, nn.DefaultLinearConfig())
	if err := vs2.Load(path); err != nil {
		t.Fatal(err)
	}
	want, got := vs.Variables(), vs2.Variables()
	if len(want) != 2 || len(got) != len(want) {
		t.Fatalf("variables: saved %d, loaded %d, want 2", len(want), len(got))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Fatalf("loaded store lacks %s", name)
		}
		wv, gv := values(t, &w), values(t, &g)
		for i := range wv {
			if wv[i] != gv[i] {
				t.Fatalf("%s[%d] = %g after load, want %g", name, i, gv[i], wv[i])
			}
		}
	}
	// A truncated file is an error, not a crash.
	b, _ := os.ReadFile(path)
	bad := filepath.Join(t.TempDir(), "bad.ot")
	os.WriteFile(bad, b[:len(b)/2], 0o644)
	if err := vs2.Load(bad); err == nil {
		t.Error("loading a truncated VarStore file succeeded")
	}
}

type tinyRef struct {
	Input      [][]float64          `json:"input"`
	Output     [][]float64          `json:"output"`
	Parameters map[string][]float64 `json:"parameters"`
	Shapes     map[string][]int64   `json:"shapes"`
}

func TestTorchScriptModule(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ref tinyRef
	b, err := os.ReadFile("testdata/tiny_mlp.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	m, err := ts.ModuleLoad("testdata/tiny_mlp.pt")
	if err != nil {
		t.Fatal(err)
	}
	params, err := m.NamedParameters()
	if err != nil {
		t.Fatal(err)
	}
	if len(params) != len(ref.Parameters) {
		t.Fatalf("got %d named parameters, want %d", len(params), len(ref.Parameters))
	}
	for _, p := range params {
		want, ok := ref.Parameters[p.Name]
		if !ok {
			t.Fatalf("unexpected parameter %q", p.Name)
		}
		got := values(t, p.Tensor)
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", p.Name, len(got), len(want))
		}
		for i := range got {
			if !near(got[i], want[i], 1e-7) {
				t.Fatalf("%s[%d] = %g, want %g", p.Name, i, got[i], want[i])
			}
		}
	}
	var flat []float32
	for _, row := range ref.Input {
		for _, v := range row {
			flat = append(flat, float32(v))
		}
	}
	x := tensor(t, flat, int64(len(ref.Input)), int64(len(ref.Input[0])))
	var y *ts.Tensor
	if err := NoGrad(func() error {
		var err error
		y, err = m.Forward(x)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got := values(t, y)
	for i, row := range ref.Output {
		for j, want := range row {
			if !near(got[i*len(row)+j], want, 1e-5) {
				t.Errorf("forward[%d,%d] = %g, want %g", i, j, got[i*len(row)+j], want)
			}
		}
	}
	if _, err := ts.ModuleLoad("testdata/does-not-exist.pt"); err == nil {
		t.Error("loading a missing module succeeded")
	}
}

func TestStubbedWrapperReturnsError(t *testing.T) {
	// atg_empty_permuted only exists from libtorch 2.1; gotchprep replaced it
	// with a stub on older libtorch. On a newer libtorch it simply works.
	x, err := ts.EmptyPermuted([]int64{2, 3}, []int64{0, 1}, gotch.Float, gotch.CPU)
	if err == nil {
		if got := x.MustSize(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
			t.Fatalf("EmptyPermuted shape = %v", got)
		}
		t.Skip("this libtorch has empty_permuted; no stub to test")
	}
	if !strings.Contains(err.Error(), "atg_empty_permuted is not available in libtorch") {
		t.Fatalf("error = %q, want the stub's message", cli.FirstLine(err))
	}
	short := Err("empty_permuted", err)
	if strings.Contains(short.Error(), "\n") {
		t.Errorf("Err kept a multi-line message: %q", short)
	}
}

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in      string
		want    gotch.Device
		wantErr bool
	}{
		{"cpu", gotch.CPU, false},
		{"CPU", gotch.CPU, false},
		{"auto", gotch.CudaIfAvailable(), false},
		{"", gotch.CudaIfAvailable(), false},
		{"tpu", gotch.CPU, true},
	}
	if !gotch.CUDA.IsAvailable() {
		tests = append(tests, struct {
			in      string
			want    gotch.Device
			wantErr bool
		}{"cuda", gotch.CPU, true})
	}
	for _, tt := range tests {
		got, err := ParseDevice(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseDevice(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("ParseDevice(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
