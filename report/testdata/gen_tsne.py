"""Reference values for report/tsne.go from scikit-learn (1.2.1 here).

Writes tsne_reference.json: a small labelled point set, scikit-learn's
joint probabilities of exact t-SNE for it (sklearn.manifold._t_sne.
_joint_probabilities on squared Euclidean distances, as TSNE(method="exact")
computes them) and silhouette_score in the input space and for a second,
overlapping labelling.

    /usr/bin/python3 report/testdata/gen_tsne.py
"""
import json
import os

import numpy as np
from sklearn.manifold._t_sne import _joint_probabilities
from sklearn.metrics import pairwise_distances, silhouette_score

rng = np.random.RandomState(0)
centres = rng.normal(size=(3, 5)) * 3
x = np.concatenate([c + rng.normal(size=(14, 5)) for c in centres])[:40]
labels = np.repeat(np.arange(3), 14)[:40]
noisy = labels.copy()
noisy[::3] = (noisy[::3] + 1) % 3
out = {"x": x.ravel().tolist(), "n": int(x.shape[0]), "d": int(x.shape[1]), "labels": labels.tolist(), "noisy_labels": noisy.tolist()}
for perp in (5.0, 12.0):
    dist = pairwise_distances(x, metric="euclidean", squared=True)
    p = _joint_probabilities(dist, perp, 0)  # condensed upper triangle
    full = np.zeros((x.shape[0], x.shape[0]))
    full[np.triu_indices(x.shape[0], 1)] = p
    full = full + full.T
    out["p_perplexity_%g" % perp] = full.ravel().tolist()
out["silhouette"] = float(silhouette_score(x, labels))
out["silhouette_noisy"] = float(silhouette_score(x, noisy))
with open(os.path.join(os.path.dirname(__file__), "tsne_reference.json"), "w") as f:
    json.dump(out, f)
print("silhouette", out["silhouette"], out["silhouette_noisy"])
