package probe

import (
	"context"
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// problem is a multinomial logistic regression training set on one device,
// in float64. The parameters are one [K, D+1] tensor theta: the weights W in
// the first D columns and the intercepts b in the last, so that the logits
// are xAug * theta' with xAug = [x, 1].
//
// The minimized function is scikit-learn's (1.2) lbfgs objective
//
//	f(theta) = sum_i CE_i(theta) + ||W||^2 / (2C),
//
// which is C-times smaller than ½||W||² + C·Σ CE and has the same
// minimizer; the intercepts are not penalized.
type problem struct {
	x       *ts.Tensor // [N, D+1], last column ones
	labels  *ts.Tensor // [N, 1] int64
	minus   *ts.Tensor // [N, 1] float64, all -1 (for P - onehot(y))
	mask    *ts.Tensor // [1, D+1] float64: 1 for weights, 0 for the intercept
	classes int64
	dim     int64 // D + 1
}

// newProblem takes ownership of xAug ([N, D+1] float64) and builds the rest
// from the labels y (each in [0, classes)).
func newProblem(xAug *ts.Tensor, y []int64, classes int64, device gotch.Device) (*problem, error) {
	n, dim, err := shape2(xAug, "features")
	if err != nil {
		drop(xAug)
		return nil, err
	}
	pb := &problem{x: xAug, classes: classes, dim: dim}
	lab, err := ts.OfSlice(y)
	if err != nil {
		pb.drop()
		return nil, torch.Err("labels", err)
	}
	pb.labels, err = lab.ToDevice(device, gotch.Int64, false, false, true)
	if err == nil {
		err = pb.labels.Unsqueeze_(1)
	}
	if err != nil {
		pb.drop()
		return nil, torch.Err("labels", err)
	}
	if pb.minus, err = ts.Full([]int64{n, 1}, ts.FloatScalar(-1), gotch.Double, device); err != nil {
		pb.drop()
		return nil, torch.Err("labels", err)
	}
	mask := make([]float64, dim)
	for i := range mask[:dim-1] {
		mask[i] = 1
	}
	m, err := ts.OfSlice(mask)
	if err == nil {
		pb.mask, err = m.ToDevice(device, gotch.Double, false, false, true)
	}
	if err == nil {
		err = pb.mask.Unsqueeze_(0)
	}
	if err != nil {
		pb.drop()
		return nil, torch.Err("penalty mask", err)
	}
	return pb, nil
}

func (pb *problem) drop() {
	drop(pb.x, pb.labels, pb.minus, pb.mask)
	pb.x, pb.labels, pb.minus, pb.mask = nil, nil, nil, nil
}

// zeros returns the all-zero parameters, sklearn's starting point.
func (pb *problem) zeros() (*ts.Tensor, error) {
	dev, err := pb.x.Device()
	if err != nil {
		return nil, torch.Err("parameters", err)
	}
	z, err := ts.Zeros([]int64{pb.classes, pb.dim}, gotch.Double, dev)
	return z, torch.Err("parameters", err)
}

// objective returns f for the given C (see problem).
func (pb *problem) objective(c float64) objective {
	invC := 1 / c
	return func(theta *ts.Tensor) (float64, *ts.Tensor, error) {
		f, g, err := pb.eval(theta, invC)
		if err != nil {
			return 0, nil, fmt.Errorf("logistic objective: %w", err)
		}
		return f, g, nil
	}
}

func (pb *problem) eval(theta *ts.Tensor, invC float64) (float64, *ts.Tensor, error) {
	thT, err := theta.T(false)
	if err != nil {
		return 0, nil, torch.Err("transpose", err)
	}
	z, err := pb.x.Mm(thT, false) // [N, K] logits
	drop(thT)
	if err != nil {
		return 0, nil, torch.Err("logits", err)
	}
	lse, err := z.Logsumexp([]int64{1}, true, false) // [N, 1]
	if err != nil {
		drop(z)
		return 0, nil, torch.Err("logsumexp", err)
	}
	zy, err := z.Gather(1, pb.labels, false, false) // [N, 1] true-class logits
	if err != nil {
		drop(z, lse)
		return 0, nil, torch.Err("gather", err)
	}
	ce, err := lse.Sub(zy, false)
	drop(zy)
	if err != nil {
		drop(z, lse)
		return 0, nil, torch.Err("cross-entropy", err)
	}
	ceSum, err := ce.Sum(gotch.Double, true)
	if err != nil {
		drop(z, lse)
		return 0, nil, torch.Err("cross-entropy", err)
	}
	loss, err := item(ceSum, "cross-entropy")
	if err != nil {
		drop(z, lse)
		return 0, nil, err
	}
	// P - onehot(y), computed in z's place.
	p, err := z.Sub(lse, true)
	drop(lse)
	if err == nil {
		err = p.Exp_()
	}
	if err == nil {
		err = p.ScatterAdd_(1, pb.labels, pb.minus)
	}
	if err != nil {
		drop(p)
		return 0, nil, torch.Err("softmax", err)
	}
	pT, err := p.T(true)
	if err != nil {
		return 0, nil, torch.Err("transpose", err)
	}
	g, err := pT.Mm(pb.x, true) // [K, D+1]
	if err != nil {
		return 0, nil, torch.Err("gradient", err)
	}
	w, err := theta.Mul(pb.mask, false)
	if err != nil {
		drop(g)
		return 0, nil, torch.Err("penalty", err)
	}
	defer drop(w)
	ww, err := dot(w, w)
	if err != nil {
		drop(g)
		return 0, nil, err
	}
	if err := axpy(g, invC, w); err != nil {
		drop(g)
		return 0, nil, err
	}
	return loss + 0.5*invC*ww, g, nil
}

// fit minimizes the objective for C from init (zeros when nil). It returns
// the parameters, which the caller owns.
func (pb *problem) fit(ctx context.Context, c float64, init *ts.Tensor, cfg lbfgsConfig) (*ts.Tensor, lbfgsResult, error) {
	if !(c > 0) || math.IsInf(c, 0) {
		return nil, lbfgsResult{}, fmt.Errorf("C = %v: want a positive finite number", c)
	}
	if init == nil {
		z, err := pb.zeros()
		if err != nil {
			return nil, lbfgsResult{}, err
		}
		defer drop(z)
		init = z
	}
	obj := pb.objective(c)
	// Cancellation is checked at every evaluation of the objective (one
	// or a few per L-BFGS iteration).
	interruptible := func(x *ts.Tensor) (float64, *ts.Tensor, error) {
		if ctx.Err() != nil {
			return 0, nil, train.ErrInterrupted
		}
		return obj(x)
	}
	theta, res, err := minimize(interruptible, init, cfg)
	if err != nil {
		return nil, res, fmt.Errorf("fit C=%g: %w", c, err)
	}
	return theta, res, nil
}

// predict returns argmax_k of xAug * theta' for each row of xAug.
func predict(xAug, theta *ts.Tensor) ([]int64, error) {
	thT, err := theta.T(false)
	if err != nil {
		return nil, torch.Err("predict", err)
	}
	z, err := xAug.Mm(thT, false)
	drop(thT)
	if err != nil {
		return nil, torch.Err("predict", err)
	}
	am, err := z.Argmax([]int64{1}, false, true)
	if err != nil {
		return nil, torch.Err("predict", err)
	}
	defer drop(am)
	return torch.Values[int64](am)
}

// countCorrect returns how many predictions match the labels.
func countCorrect(xAug, theta *ts.Tensor, y []int64) (int, error) {
	pred, err := predict(xAug, theta)
	if err != nil {
		return 0, err
	}
	if len(pred) != len(y) {
		return 0, fmt.Errorf("predict: %d predictions for %d labels", len(pred), len(y))
	}
	n := 0
	for i, p := range pred {
		if p == y[i] {
			n++
		}
	}
	return n, nil
}
