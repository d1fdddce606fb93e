"""Writes probe/testdata/sklearn.json: scikit-learn references for the linear
probe's tests.

* "fits": small random feature sets (well and badly conditioned, raw and
  L2-normalized), and for several C the minimizer of LogisticRegression's
  objective 1/2||W||^2 + C*sum(CE) (coefficients, intercepts, predicted
  probabilities, objective value and largest gradient entry of
  sum(CE) + ||W||^2/(2C), computed here with numpy), plus the objective
  values scikit-learn's lbfgs reaches with tol 1e-10 and with its default
  tol 1e-4.
* "searches": train/val splits and the outcome of CoOp's lpclip C search
  (coarse grid, then num_step rounds; first best wins, ties go left), run
  once with exact fits (newton-cg) and once with CoOp's lbfgs settings:
  every fit in order (validation accuracy, iterations, largest gradient
  entry) and the chosen C.

Needs numpy and scikit-learn (Debian: python3-numpy, python3-sklearn).
Run it with any Python; it re-runs itself under $PYTHON, /usr/bin/python3
or python3, whichever can import both.
"""
import json
import os
import sys
import warnings


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("numpy", "sklearn")

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

# newton-cg with tol 1e-12 ends on rounding ("failed to converge") at a
# gradient of ~1e-8 or less, which is printed below for each fit.
warnings.filterwarnings("ignore", message="newton-cg failed to converge")
warnings.filterwarnings("ignore", message="Line Search failed")
warnings.filterwarnings("ignore", message="Rounding errors prevent the line search")
warnings.filterwarnings("ignore", message="The line search algorithm did not converge")
# lbfgs fits that stop at max_iter are expected here (ill-conditioned case,
# large C); their iteration counts are printed and recorded instead.
warnings.filterwarnings("ignore", message="lbfgs failed to converge")
HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20240611)


def r12(a):
    """Rounds to 12 significant digits (keeps the file small)."""
    return [r12(v) for v in a] if isinstance(a, (list, tuple)) else float(f"{a:.12g}")


def blobs(n_per, k, d, spread, offset=0.0):
    means = rng.normal(size=(k, d))
    y = np.repeat(np.arange(k), n_per)
    rng.shuffle(y)
    x = offset + means[y] + spread * rng.normal(size=(len(y), d))
    return np.round(x, 6), y


def normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def objective_and_grad(x, y, coef, intercept, c):
    """1/2||W||^2 + C*sum CE, and max |grad| of sum CE + ||W||^2/(2C)."""
    z = x @ coef.T + intercept
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    ce = lse - z[np.arange(len(y)), y]
    p = np.exp(z - lse[:, None])
    p[np.arange(len(y)), y] -= 1
    gw = p.T @ x + coef / c
    gb = p.sum(axis=0)
    obj = 0.5 * (coef ** 2).sum() + c * ce.sum()
    return obj, max(np.abs(gw).max(), np.abs(gb).max())


def fit(x, y, c, tol, max_iter, solver="lbfgs"):
    clf = LogisticRegression(C=c, solver=solver, penalty="l2", max_iter=max_iter, tol=tol)
    clf.fit(x, y)
    assert clf.coef_.shape[0] == len(np.unique(y)), "multinomial expected"
    return clf


def fit_cases():
    out = []
    xw, yw = blobs(12, 5, 16, 1.0)
    xb, yb = blobs(12, 5, 16, 1.0)
    # Columns scaled over 3 decades and two nearly collinear columns: the
    # design matrix (with the intercept column) has condition number ~1e5.
    xb = xb * np.logspace(-1.5, 1.5, 16)
    xb[:, 1] = np.round(xb[:, 0] + 1e-3 * rng.normal(size=len(yb)), 10)
    xn, yn = blobs(12, 5, 16, 0.6, offset=2.0)
    cases = [
        ("well", xw, yw, False, [1e-3, 1.0, 1e2]),
        ("ill_conditioned", xb, yb, False, [1e-3, 1.0, 1e2]),
        ("normalized", xn, yn, True, [1e-1, 1.0, 1e2]),
    ]
    for name, x, y, norm, cs in cases:
        xf = normalize(x) if norm else x
        fits = []
        for c in cs:
            # The reference solution: scikit-learn's newton-cg on the same
            # objective, which stops on max|grad| <= tol only (lbfgs also
            # stops on scipy's relative-reduction test, ~1e-9 short of the
            # optimum), then the lbfgs fits with tight and default tol.
            exact = fit(xf, y, c, tol=1e-12, max_iter=1000, solver="newton-cg")
            obj, gmax = objective_and_grad(xf, y, exact.coef_, exact.intercept_, c)
            tight = fit(xf, y, c, tol=1e-10, max_iter=100000)
            obj_tight, gmax_tight = objective_and_grad(xf, y, tight.coef_, tight.intercept_, c)
            dflt = fit(xf, y, c, tol=1e-4, max_iter=1000)
            obj_dflt, _ = objective_and_grad(xf, y, dflt.coef_, dflt.intercept_, c)
            print(f"fit {name} C={c:g}: newton-cg objective={obj:.15g} grad_max={gmax:.2g}; "
                  f"lbfgs tol 1e-10: rel. objective gap {(obj_tight - obj) / obj:.2g}, grad_max={gmax_tight:.2g}; "
                  f"tol 1e-4: gap {(obj_dflt - obj) / obj:.2g}")
            fits.append({
                "C": c,
                "coef": r12(exact.coef_.tolist()),
                "intercept": r12(exact.intercept_.tolist()),
                "proba": r12(exact.predict_proba(xf).tolist()),
                "objective": obj,
                "grad_max": gmax,
                "lbfgs_tight_objective": obj_tight,
                "lbfgs_tight_n_iter": int(tight.n_iter_[0]),
                "lbfgs_default_objective": obj_dflt,
                "lbfgs_default_n_iter": int(dflt.n_iter_[0]),
            })
        out.append({"name": name, "normalize": norm, "classes": int(y.max() + 1),
                    "x": x.tolist(), "y": y.tolist(), "fits": fits})
    return out


def coop_search(xtr, ytr, xv, yv, grid, num_step, solver, tol):
    """CoOp's lpclip search, with every fit recorded."""
    trials = []

    def val_acc(c, rnd):
        clf = fit(xtr, ytr, c, tol=tol, max_iter=1000 if solver == "lbfgs" else 10000, solver=solver)
        acc = float((clf.predict(xv) == yv).sum()) / len(yv)
        _, gmax = objective_and_grad(xtr, ytr, clf.coef_, clf.intercept_, c)
        trials.append({"round": rnd, "C": c, "val_acc": acc, "n_iter": int(clf.n_iter_[0]),
                       "grad_max": r12(gmax)})
        return acc

    accs = [val_acc(c, 0) for c in grid]
    peak = grid[int(np.argmax(accs))]
    cl, cr = 1e-1 * peak, 1e1 * peak
    chosen, chosen_acc = None, None
    for step in range(num_step):
        al, ar = val_acc(cl, step + 1), val_acc(cr, step + 1)
        mid = 0.5 * (np.log10(cl) + np.log10(cr))
        if al < ar:
            chosen, chosen_acc = cr, ar
            cl, cr = float(np.power(10, mid)), float(np.power(10, np.log10(cr)))
        else:
            chosen, chosen_acc = cl, al
            cl, cr = float(np.power(10, np.log10(cl))), float(np.power(10, mid))
    return {"solver": solver, "tol": tol, "peak": peak, "chosen_C": chosen,
            "chosen_val_acc": chosen_acc, "trials": trials}


def search_cases():
    out = []
    grid = [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6]
    # name, L2-normalize, offset, noise, seed. The seeds were picked so that
    # the coarse peak is inside the grid (raw_interior), tied between the
    # first grid values (raw_tied: the first, 1e6, must win) and for
    # normalized features with a common offset, like CLIP's.
    specs = [
        ("raw_interior", False, 0.0, 1.0, 1),
        ("raw_tied", False, 0.0, 1.3, 0),
        ("normalized", True, 2.0, 0.9, 7),
    ]
    for name, norm, offset, spread, seed in specs:
        r = np.random.default_rng(seed)
        k, d = 5, 8
        means = r.normal(size=(k, d))

        def draw(n_per):
            y = np.repeat(np.arange(k), n_per)
            r.shuffle(y)
            return np.round(offset + means[y] + spread * r.normal(size=(len(y), d)), 6), y

        xtr, ytr = draw(20)
        xv, yv = draw(10)
        xtrf, xvf = (normalize(xtr), normalize(xv)) if norm else (xtr, xv)
        # "exact": newton-cg to max|grad| <= 1e-10, i.e. the exact
        # minimizers; "lbfgs": what CoOp runs (lbfgs, tol 1e-4, 1000
        # iterations), whose fits at extreme C stop early (scipy's
        # relative-reduction test) and so can predict differently.
        res = {"name": name, "normalize": norm, "classes": k, "grid": grid, "num_step": 8,
               "x_train": xtr.tolist(), "y_train": ytr.tolist(),
               "x_val": xv.tolist(), "y_val": yv.tolist()}
        for key, solver, tol in (("exact", "newton-cg", 1e-10), ("lbfgs", "lbfgs", 1e-4)):
            r = coop_search(xtrf, ytr, xvf, yv, grid, 8, solver, tol)
            coarse = [t["val_acc"] for t in r["trials"] if t["round"] == 0]
            print(f"search {name} ({key}): coarse {coarse} peak={r['peak']:g} "
                  f"chosen C={r['chosen_C']:.6g} val acc={r['chosen_val_acc']:.3f}")
            res[key] = r
        out.append(res)
    return out


ref = {
    "sklearn_version": sklearn.__version__,
    "numpy_version": np.__version__,
    "fits": fit_cases(),
    "searches": search_cases(),
}
path = os.path.join(HERE, "sklearn.json")
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(ref, f, separators=(",", ":"))
os.replace(tmp, path)
print(f"wrote {path} ({os.path.getsize(path)} bytes)")
