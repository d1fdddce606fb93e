package probe

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// checkFeatures checks one feature set: a non-empty [N, D] matrix with N
// labels in [0, classes) and only finite values. When dim >= 0 the
// features must have dim columns. It returns D.
func checkFeatures(f *train.Features, name string, classes, dim int64) (int64, error) {
	if f == nil || f.X == nil {
		return 0, fmt.Errorf("probe: no %s features", name)
	}
	n, d, err := shape2(f.X, "probe: "+name+" features")
	if err != nil {
		return 0, err
	}
	if n == 0 || d == 0 {
		return 0, fmt.Errorf("probe: %s features are empty (shape [%d %d])", name, n, d)
	}
	if int64(len(f.Y)) != n {
		return 0, fmt.Errorf("probe: %s features have %d rows but %d labels", name, n, len(f.Y))
	}
	if dim >= 0 && d != dim {
		return 0, fmt.Errorf("probe: %s features have %d dimensions, the training features %d", name, d, dim)
	}
	for i, y := range f.Y {
		if y < 0 || y >= classes {
			return 0, fmt.Errorf("probe: %s label %d (example %d) is outside [0, %d)", name, y, i, classes)
		}
	}
	fin, err := f.X.Isfinite(false)
	if err != nil {
		return 0, torch.Err("probe: "+name+" features: finiteness", err)
	}
	rows, err := fin.AllDim(1, false, true)
	if err != nil {
		return 0, torch.Err("probe: "+name+" features: finiteness", err)
	}
	ok, err := torch.Values[int64](rows)
	drop(rows)
	if err != nil {
		return 0, fmt.Errorf("probe: %s features: finiteness: %w", name, err)
	}
	bad, first := 0, -1
	for i, v := range ok {
		if v == 0 {
			if first < 0 {
				first = i
			}
			bad++
		}
	}
	if bad > 0 {
		return 0, fmt.Errorf("probe: %s features contain NaN or Inf values in %d of %d rows (first: row %d)", name, bad, n, first)
	}
	return d, nil
}

// checkAllClasses fails when a class in [0, classes) has no example: the
// multinomial model would give it weights fitted to nothing (scikit-learn
// would silently drop the class instead).
func checkAllClasses(y []int64, classes int64) error {
	count := make([]int, classes)
	for _, v := range y {
		count[v]++
	}
	var missing []int64
	for k, c := range count {
		if c == 0 {
			missing = append(missing, int64(k))
		}
	}
	switch {
	case len(missing) == 0:
		return nil
	case len(missing) <= 10:
		return fmt.Errorf("probe: training features have no example of class %v (of %d classes)", missing, classes)
	default:
		return fmt.Errorf("probe: training features have no example of %d of %d classes (first: %v)", len(missing), classes, missing[:10])
	}
}

// toDouble returns x as float64 on device, each row L2-normalized when
// normalize is set. x itself is not modified.
func toDouble(x *ts.Tensor, device gotch.Device, normalize bool) (*ts.Tensor, error) {
	xd, err := x.ToDevice(device, gotch.Double, false, false, false)
	if err != nil {
		return nil, torch.Err("to float64", err)
	}
	if !normalize {
		return xd, nil
	}
	norm, err := xd.NormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false)
	if err != nil {
		drop(xd)
		return nil, torch.Err("row norms", err)
	}
	// Like torch.nn.functional.normalize: a zero row stays zero.
	if err := norm.ClampMin_(ts.FloatScalar(1e-12)); err != nil {
		drop(xd, norm)
		return nil, torch.Err("row norms", err)
	}
	xn, err := xd.Div(norm, true)
	drop(norm)
	return xn, torch.Err("normalize", err)
}

// augmented returns [x, 1] in float64 on device (see toDouble).
func augmented(x *ts.Tensor, device gotch.Device, normalize bool) (*ts.Tensor, error) {
	xd, err := toDouble(x, device, normalize)
	if err != nil {
		return nil, err
	}
	n, _, err := shape2(xd, "features")
	if err != nil {
		drop(xd)
		return nil, err
	}
	ones, err := ts.Ones([]int64{n, 1}, gotch.Double, device)
	if err != nil {
		drop(xd)
		return nil, torch.Err("intercept column", err)
	}
	xa, err := ts.Cat([]*ts.Tensor{xd, ones}, 1)
	drop(xd, ones)
	return xa, torch.Err("intercept column", err)
}

// split turns theta [K, D+1] into the transposed weights [D, K] and the
// intercepts [K], both with their own storage.
func split(theta *ts.Tensor) (w, b *ts.Tensor, err error) {
	_, dim, err := shape2(theta, "parameters")
	if err != nil {
		return nil, nil, err
	}
	wv, err := theta.Narrow(1, 0, dim-1, false)
	if err == nil {
		wv, err = wv.T(true)
	}
	if err == nil {
		w, err = wv.Contiguous(true)
	}
	if err != nil {
		return nil, nil, torch.Err("weights", err)
	}
	bv, err := theta.Select(1, dim-1, false)
	if err == nil {
		b, err = bv.Contiguous(true)
	}
	if err != nil {
		drop(w)
		return nil, nil, torch.Err("intercepts", err)
	}
	return w, b, nil
}
