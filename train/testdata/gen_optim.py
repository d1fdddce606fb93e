"""Reference optimizer trajectories from PyTorch for train/optim_test.go.

Each case starts from the same parameter, feeds the same gradient sequence
(loss = sum(p * G_k), so grad = G_k) and records the parameter after every
step. Run through `make fixtures`."""
import json
import os

import torch

here = os.path.dirname(os.path.abspath(__file__))
g = torch.Generator().manual_seed(0)
p0 = torch.randn(3, 4, generator=g)
grads = [torch.randn(3, 4, generator=g) for _ in range(4)]
lrs = [0.1, 0.05, 0.02, 0.01]

cases = {
    "sgd_momentum_wd": lambda p: torch.optim.SGD([p], lr=1.0, momentum=0.9, weight_decay=5e-4),
    "sgd_plain": lambda p: torch.optim.SGD([p], lr=1.0),
    "adamw": lambda p: torch.optim.AdamW([p], lr=1.0, betas=(0.9, 0.999), eps=1e-4, weight_decay=0.01),
}
out = {"p0": p0.flatten().tolist(), "shape": list(p0.shape), "grads": [x.flatten().tolist() for x in grads], "lrs": lrs, "cases": {}}
for name, make in cases.items():
    p = p0.clone().requires_grad_(True)
    opt = make(p)
    traj = []
    for k, G in enumerate(grads):
        for group in opt.param_groups:
            group["lr"] = lrs[k]
        opt.zero_grad()
        (p * G).sum().backward()
        opt.step()
        traj.append(p.detach().flatten().tolist())
    out["cases"][name] = traj
with open(os.path.join(here, "optim.json"), "w") as f:
    json.dump(out, f)
print("wrote optim.json")
