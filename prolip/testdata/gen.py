"""Reference fixtures for package prolip, computed with PyTorch from
ProLIP's equations as its reference code states them (astra-vision/ProLIP
methods/ProLIP.py): an nn.Linear projection initialised from CLIP's
(weight learned, bias frozen), logits = 100 * normalize(proj(x)) @ Wc^T,
loss = cross_entropy + lambda * MSELoss(reduction="sum")(W0, W),
lambda = 1/N shots, Adam(lr, eps=1e-4), CosineAnnealingLR(T_max=epochs)
stepped after every step, one full-batch step per epoch on view
(epoch mod V).

Files (float32 .npy, labels int64): views [V, NK, P], labels [NK],
text [C, D] raw text features, weight0 [D, P], bias [D], test [B, P],
logits0 [B, C] (initial projection), loss0 [1] and grad0 [D, P] (first
step), weight_final [D, P] and logits_final [B, C] after all epochs;
meta.json: classes, template, lr, epochs, lambda.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("torch", "numpy")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
P, D, C, K, V, B = 12, 8, 3, 4, 2, 10
LR, EPOCHS = 0.01, 6
CLASSES = ["class %d" % i for i in range(C)]
TEMPLATE = "a photo of a {}."


def save(name, x, dtype=np.float32):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    np.save(os.path.join(HERE, name + ".npy"), np.ascontiguousarray(np.asarray(x, dtype=dtype)))


torch.manual_seed(0)
rs = np.random.RandomState(20240613)
labels = np.repeat(np.arange(C), K)
protos = rs.randn(C, P)
views = torch.tensor(protos[labels][None] + 0.7 * rs.randn(V, C * K, P), dtype=torch.float32)
test = torch.tensor(protos[rs.randint(0, C, size=B)] + 0.7 * rs.randn(B, P), dtype=torch.float32)
text = torch.tensor(rs.randn(C, D), dtype=torch.float32)
weight0 = torch.tensor(rs.randn(D, P) / np.sqrt(P), dtype=torch.float32)
bias = torch.tensor(rs.randn(D) * 0.1, dtype=torch.float32)
wc = text / text.norm(dim=-1, keepdim=True)
lam = 1.0 / K

proj = torch.nn.Linear(P, D)
proj.weight = torch.nn.Parameter(weight0.clone())
proj.bias = torch.nn.Parameter(bias.clone())
proj.bias.requires_grad = False
mse = torch.nn.MSELoss(reduction="sum")


def logits(x):
    return 100.0 * F.normalize(proj(x), dim=-1) @ wc.T


with torch.no_grad():
    save("logits0", logits(test))
opt = torch.optim.Adam([proj.weight], lr=LR, eps=1e-4)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
y = torch.tensor(labels)
for epoch in range(EPOCHS):
    x = views[epoch % V]
    loss = F.cross_entropy(logits(x), y) + lam * mse(weight0.view(-1), proj.weight.view(-1))
    opt.zero_grad()
    loss.backward()
    if epoch == 0:
        save("loss0", loss.reshape(1))
        save("grad0", proj.weight.grad)
    opt.step()
    sched.step()

save("views", views)
save("labels", labels, np.int64)
save("text", text)
save("weight0", weight0)
save("bias", bias)
save("test", test)
save("weight_final", proj.weight)
with torch.no_grad():
    save("logits_final", logits(test))
with open(os.path.join(HERE, "meta.json"), "w") as fh:
    json.dump({"torch": torch.__version__, "classes": CLASSES, "template": TEMPLATE, "lr": LR, "epochs": EPOCHS,
               "lambda": lam}, fh, indent=1)
    fh.write("\n")
print("prolip fixtures written")
