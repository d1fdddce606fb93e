"""Reference fixtures for package gda, computed with PyTorch from the
equations of GDA (Wang et al., ICLR 2024) as its reference implementation
states them: torch.cov of the class-centred samples, the shrinkage
D * pinv((n - 1) * cov + trace(cov) * I), W = mu @ cov_inv, b = log p -
diag(mu cov_inv mu^T) / 2, logits = 100 * f @ Wc^T + alpha * (f @ W + b).

Run with a Python that has torch and numpy (`make fixtures`, or directly).

Files (float32 .npy, labels int64):
  views [V, NK, D] raw training features, train_labels [NK]
  text [C, D] raw text features (one template)
  test [B, D], test_labels [B]; val [NV, D], val_labels [NV]
  weights [C, D] (the discriminant, W^T of the reference), bias [C]
  logits [B, C] with alpha = 0.1; counts [A] correct val predictions per alpha
  meta.json: classes, template, alphas, best alpha
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("torch", "numpy")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
D, C, K, V, B, NV = 16, 4, 5, 3, 12, 40
ALPHAS = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
CLASSES = ["class %d" % i for i in range(C)]
TEMPLATE = "a photo of a {}."


def save(name, x, dtype=np.float32):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    np.save(os.path.join(HERE, name + ".npy"), np.ascontiguousarray(np.asarray(x, dtype=dtype)))


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


rs = np.random.RandomState(20240612)
protos = rs.randn(C, D)
common = rs.randn(D)
text = torch.tensor(common * 3.0 + protos * 0.3 + rs.randn(C, D) * 0.5, dtype=torch.float64)
train_labels = np.repeat(np.arange(C), K)
base = protos[train_labels] * 1.2 + rs.randn(C * K, D)
views = torch.tensor(base[None] + 0.4 * rs.randn(V, C * K, D), dtype=torch.float64)
test_labels = rs.randint(0, C, size=B)
test = torch.tensor(protos[test_labels] * 1.2 + rs.randn(B, D) * 1.5, dtype=torch.float64)
val_labels = rs.randint(0, C, size=NV)
val = torch.tensor(protos[val_labels] * 1.2 + rs.randn(NV, D) * 2.0, dtype=torch.float64)

# ---- the reference's estimator (float64 here) ------------------------------
vecs = unit(views.reshape(V * C * K, D))
labels = torch.tensor(np.tile(train_labels, V))
mus = torch.cat([vecs[labels == i].mean(dim=0, keepdim=True) for i in range(C)])
center = torch.cat([vecs[labels == i] - mus[i].unsqueeze(0) for i in range(C)])
cov = center.T.cov()
cov_inv = center.shape[1] * torch.linalg.pinv((center.shape[0] - 1) * cov + cov.trace() * torch.eye(D, dtype=torch.float64))
ps = torch.ones(C, dtype=torch.float64) / C
W = torch.einsum("nd,dc->cn", mus, cov_inv)  # [D, C]
b = ps.log() - torch.einsum("nd,dc,nc->n", mus, cov_inv, mus) / 2

wc = unit(text)


def logits(x, alpha):
    f = unit(x)
    return 100.0 * f @ wc.T + alpha * (f @ W + b)


counts = []
best_acc, best_alpha = 0, 0.1
for a in ALPHAS:
    pred = logits(val, a).argmax(dim=1).numpy()
    n = int((pred == val_labels).sum())
    counts.append(n)
    if n > best_acc:
        best_acc, best_alpha = n, a

save("views", views)
save("train_labels", train_labels, np.int64)
save("text", text)
save("test", test)
save("test_labels", test_labels, np.int64)
save("val", val)
save("val_labels", val_labels, np.int64)
save("weights", W.T)
save("bias", b)
save("logits", logits(test, 0.1))
save("counts", np.array(counts), np.int64)
with open(os.path.join(HERE, "meta.json"), "w") as fh:
    json.dump({"torch": torch.__version__, "classes": CLASSES, "template": TEMPLATE, "alphas": ALPHAS,
               "best_alpha": best_alpha, "best_correct": best_acc}, fh, indent=1)
    fh.write("\n")
print("gda fixtures written; best alpha", best_alpha, "counts", counts)
