package train

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

// Param is one learnable tensor of a method, with the name it has in
// checkpoints.
type Param struct {
	Name   string
	Tensor *ts.Tensor
}

// Optimizer updates parameters from their gradients. Its state (momentum
// buffers, Adam moments, step count) is owned by the toolkit so that
// checkpoints capture it and a resumed run continues exactly.
type Optimizer interface {
	// Step applies one update with learning rate lr to every parameter
	// that has a gradient, then zeroes the gradients.
	Step(lr float64) error
	// State returns the optimizer's state tensors by name (shared, not
	// copies) and its scalar state.
	State() (tensors []Param, step int64)
	// SetState restores state written by State. Missing tensors are an
	// error. The optimizer takes ownership of the tensors it keeps (those
	// State returns afterwards) and drops the state they replace.
	SetState(tensors map[string]*ts.Tensor, step int64) error
	// Drop frees the state tensors (the parameters stay with their owner).
	Drop()
}

// SGD is stochastic gradient descent with momentum and L2 weight decay, with
// PyTorch's semantics (dampening 0, no Nesterov): the first momentum buffer
// is the gradient itself.
type SGD struct {
	params      []Param
	Momentum    float64
	WeightDecay float64
	bufs        []*ts.Tensor
	step        int64
}

// NewSGD returns an SGD optimizer over params.
func NewSGD(params []Param, momentum, weightDecay float64) *SGD {
	return &SGD{params: params, Momentum: momentum, WeightDecay: weightDecay, bufs: make([]*ts.Tensor, len(params))}
}

// Step implements Optimizer.
func (o *SGD) Step(lr float64) error {
	return stepAll(o.params, func(i int, p, g *ts.Tensor) error {
		var s torch.Scope
		defer s.Drop()
		if o.WeightDecay != 0 {
			// g = g + wd * p
			wd, err := s.Op("weight decay")(p.MulScalar(scalar(o.WeightDecay), false))
			if err != nil {
				return err
			}
			if err := g.Add_(wd); err != nil {
				return torch.Err("weight decay", err)
			}
		}
		d := g
		if o.Momentum != 0 {
			if o.bufs[i] == nil {
				b, err := g.ZerosLike(false)
				if err != nil {
					return torch.Err("momentum buffer", err)
				}
				if err := torch.CopyInto("momentum buffer", b, g); err != nil {
					b.Drop()
					return err
				}
				o.bufs[i] = b
			} else {
				if err := o.bufs[i].MulScalar_(scalar(o.Momentum)); err != nil {
					return torch.Err("momentum", err)
				}
				if err := o.bufs[i].Add_(g); err != nil {
					return torch.Err("momentum", err)
				}
			}
			d = o.bufs[i]
		}
		upd, err := s.Op("update")(d.MulScalar(scalar(lr), false))
		if err != nil {
			return err
		}
		return torch.Err("update", p.Sub_(upd))
	}, &o.step)
}

// State implements Optimizer.
func (o *SGD) State() ([]Param, int64) {
	var st []Param
	for i, b := range o.bufs {
		if b != nil {
			st = append(st, Param{Name: "momentum." + o.params[i].Name, Tensor: b})
		}
	}
	return st, o.step
}

// SetState implements Optimizer.
func (o *SGD) SetState(tensors map[string]*ts.Tensor, step int64) error {
	o.step = step
	for i, p := range o.params {
		b, ok := tensors["momentum."+p.Name]
		if !ok {
			if o.Momentum != 0 && step > 0 {
				return fmt.Errorf("optimizer state lacks momentum.%s", p.Name)
			}
			continue
		}
		if o.bufs[i] != nil && o.bufs[i] != b {
			o.bufs[i].Drop()
		}
		o.bufs[i] = b
	}
	return nil
}

// Drop implements Optimizer.
func (o *SGD) Drop() {
	for i, b := range o.bufs {
		if b != nil {
			b.Drop()
			o.bufs[i] = nil
		}
	}
}

// AdamW is Adam with decoupled weight decay, with PyTorch's semantics.
type AdamW struct {
	params       []Param
	Beta1, Beta2 float64
	Eps          float64
	WeightDecay  float64
	m, v         []*ts.Tensor
	step         int64
}

// NewAdamW returns an AdamW optimizer over params.
func NewAdamW(params []Param, beta1, beta2, eps, weightDecay float64) *AdamW {
	return &AdamW{params: params, Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay,
		m: make([]*ts.Tensor, len(params)), v: make([]*ts.Tensor, len(params))}
}

// Step implements Optimizer.
func (o *AdamW) Step(lr float64) error {
	t := float64(o.step + 1)
	bc1 := 1 - math.Pow(o.Beta1, t)
	bc2 := 1 - math.Pow(o.Beta2, t)
	return stepAll(o.params, func(i int, p, g *ts.Tensor) error {
		var s torch.Scope
		defer s.Drop()
		if o.WeightDecay != 0 {
			if err := p.MulScalar_(scalar(1 - lr*o.WeightDecay)); err != nil {
				return torch.Err("weight decay", err)
			}
		}
		if o.m[i] == nil {
			m, err := p.ZerosLike(false)
			if err != nil {
				return torch.Err("first moment", err)
			}
			v, err := p.ZerosLike(false)
			if err != nil {
				m.Drop()
				return torch.Err("second moment", err)
			}
			o.m[i], o.v[i] = m, v
		}
		// m = b1 m + (1-b1) g
		if err := o.m[i].MulScalar_(scalar(o.Beta1)); err != nil {
			return torch.Err("first moment", err)
		}
		gm, err := s.Op("first moment")(g.MulScalar(scalar(1-o.Beta1), false))
		if err != nil {
			return err
		}
		if err := o.m[i].Add_(gm); err != nil {
			return torch.Err("first moment", err)
		}
		// v = b2 v + (1-b2) g^2
		if err := o.v[i].MulScalar_(scalar(o.Beta2)); err != nil {
			return torch.Err("second moment", err)
		}
		g2, err := s.Op("second moment")(g.Mul(g, false))
		if err != nil {
			return err
		}
		if err := g2.MulScalar_(scalar(1 - o.Beta2)); err != nil {
			return torch.Err("second moment", err)
		}
		if err := o.v[i].Add_(g2); err != nil {
			return torch.Err("second moment", err)
		}
		// p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
		denom, err := s.Op("update denominator")(o.v[i].Sqrt(false))
		if err != nil {
			return err
		}
		if err := denom.DivScalar_(scalar(math.Sqrt(bc2))); err != nil {
			return torch.Err("update denominator", err)
		}
		if err := denom.AddScalar_(scalar(o.Eps)); err != nil {
			return torch.Err("update denominator", err)
		}
		upd, err := s.Op("update")(o.m[i].Div(denom, false))
		if err != nil {
			return err
		}
		if err := upd.MulScalar_(scalar(lr / bc1)); err != nil {
			return torch.Err("update", err)
		}
		return torch.Err("update", p.Sub_(upd))
	}, &o.step)
}

// State implements Optimizer.
func (o *AdamW) State() ([]Param, int64) {
	var st []Param
	for i := range o.params {
		if o.m[i] != nil {
			st = append(st, Param{Name: "exp_avg." + o.params[i].Name, Tensor: o.m[i]}, Param{Name: "exp_avg_sq." + o.params[i].Name, Tensor: o.v[i]})
		}
	}
	return st, o.step
}

// SetState implements Optimizer.
func (o *AdamW) SetState(tensors map[string]*ts.Tensor, step int64) error {
	o.step = step
	for i, p := range o.params {
		m, okm := tensors["exp_avg."+p.Name]
		v, okv := tensors["exp_avg_sq."+p.Name]
		if okm != okv || (!okm && step > 0) {
			return fmt.Errorf("optimizer state lacks the Adam moments of %s", p.Name)
		}
		if o.m[i] != nil && o.m[i] != m {
			o.m[i].Drop()
		}
		if o.v[i] != nil && o.v[i] != v {
			o.v[i].Drop()
		}
		o.m[i], o.v[i] = m, v
	}
	return nil
}

// Drop implements Optimizer.
func (o *AdamW) Drop() {
	for i := range o.params {
		if o.m[i] != nil {
			o.m[i].Drop()
		}
		if o.v[i] != nil {
			o.v[i].Drop()
		}
		o.m[i], o.v[i] = nil, nil
	}
}

// stepAll runs update for every parameter with a defined gradient, without
// recording gradients, then zeroes the gradients and advances step. An
// error names the parameter; step advances only when every update ran.
func stepAll(params []Param, update func(i int, p, g *ts.Tensor) error, step *int64) error {
	err := torch.NoGrad(func() error {
		for i, prm := range params {
			if err := stepOne(i, prm, update); err != nil {
				return fmt.Errorf("optimizer step, parameter %s: %w", prm.Name, err)
			}
		}
		return nil
	})
	if err == nil {
		*step++
	}
	return err
}

// stepOne updates one parameter from its gradient (when it has one) and
// zeroes the gradient.
func stepOne(i int, prm Param, update func(i int, p, g *ts.Tensor) error) error {
	g, err := prm.Tensor.Grad(false)
	if err != nil {
		return torch.Err("gradient", err)
	}
	defer g.Drop()
	ok, err := g.Defined()
	if err != nil {
		return torch.Err("gradient", err)
	}
	if !ok {
		return nil
	}
	if err := update(i, prm.Tensor, g); err != nil {
		return err
	}
	return torch.Err("zero the gradient", g.Zero_())
}

// scalar returns a libtorch scalar; gotch frees it with a finalizer.
func scalar(v float64) *ts.Scalar { return ts.FloatScalar(v) }
