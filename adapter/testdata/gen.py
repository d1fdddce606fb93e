"""Reference fixtures for package adapter (CLIP-Adapter, Tip-Adapter,
Tip-Adapter-F), computed with PyTorch from small fixed random inputs (D = 32).

Run with a Python that has torch and numpy (`make fixtures`, or directly); if
the Python running it lacks them, it re-runs itself with $PYTHON,
/usr/bin/python3 or python3, whichever can import both.

Everything is float32 .npy (labels int64) plus meta.json:

  inputs/    features [B,D], labels [B], text_features [T*C,D] (template-major:
             row t*C+c is class c in template t), views [V,NK,D] with
             cache_labels [NK], val_features [NV,D], val_labels [NV],
             init/<param>.npy adapter weights (PyTorch's default Linear init)
  clip_<case>/ logits, loss, grad/<param>, step/<param> (after one SGD step)
  tip/       logits (init alpha/beta, scale 100), logits_scale (checkpoint
             scale), zeroshot, counts [200,20] correct predictions per
             (beta, alpha) on the val set
  tipf/      logits, loss, grad/adapter.weight, step/adapter.weight (one
             AdamW step)
  meta.json  class names, templates, logit scale, per-case options, the
             searched alpha/beta
"""
import json
import os
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("torch", "numpy")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
D, C, B, T = 32, 5, 8, 2
K, V, NV = 3, 3, 40
REDUCTION = 4
LOGIT_SCALE = 73.5
CLASSES = ["class %d" % i for i in range(C)]
TEMPLATES = ["a photo of a {}.", "itap of a {}."]


def save(rel, x, dtype=np.float32):
    path = os.path.join(HERE, rel + ".npy")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    np.save(path, np.ascontiguousarray(np.asarray(x, dtype=dtype)))


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def classifier(text, n_templates):
    rows = [unit(text[t]) for t in range(n_templates)]
    return unit(torch.stack(rows).mean(dim=0))


# ---- inputs ----------------------------------------------------------------
rs = np.random.RandomState(20240611)
protos = rs.randn(C, D)
# Raw text features share a large common direction, so that the zero-shot
# logits differ by a few units and the cache can change predictions.
common = rs.randn(D)
text = torch.tensor(common * 4.0 + protos[None] * 0.1 + rs.randn(T, C, D) * 0.4, dtype=torch.float32)
labels = torch.tensor(rs.randint(0, C, size=B), dtype=torch.int64)
features = torch.tensor(protos[labels.numpy()] * 1.5 + rs.randn(B, D), dtype=torch.float32)
cache_labels = torch.tensor(np.repeat(np.arange(C), K), dtype=torch.int64)
base = protos[cache_labels.numpy()] * 1.5 + rs.randn(C * K, D)
views = torch.tensor(base[None] + 0.3 * rs.randn(V, C * K, D), dtype=torch.float32)
val_labels = torch.tensor(rs.randint(0, C, size=NV), dtype=torch.int64)
val_features = torch.tensor(protos[val_labels.numpy()] * 1.5 + rs.randn(NV, D) * 2.5, dtype=torch.float32)

save("inputs/features", features)
save("inputs/labels", labels, np.int64)
save("inputs/text_features", text.reshape(T * C, D))
save("inputs/views", views)
save("inputs/cache_labels", cache_labels, np.int64)
save("inputs/val_features", val_features)
save("inputs/val_labels", val_labels, np.int64)


# ---- CLIP-Adapter ----------------------------------------------------------
class Bottleneck(nn.Module):
    def __init__(self, d, reduction, relu_out):
        super().__init__()
        self.fc1 = nn.Linear(d, d // reduction, bias=False)
        self.fc2 = nn.Linear(d // reduction, d, bias=False)
        self.relu_out = relu_out

    def forward(self, x):
        y = self.fc2(torch.relu(self.fc1(x)))
        return torch.relu(y) if self.relu_out else y


class ClipAdapterRef(nn.Module):
    def __init__(self, variant, alpha, beta, learn, relu_out, w, scale):
        super().__init__()
        self.variant, self.alpha, self.beta, self.learn = variant, alpha, beta, learn
        self.register_buffer("w", w)
        self.scale = scale
        if variant in ("visual", "both"):
            self.visual = Bottleneck(D, REDUCTION, relu_out)
        if variant in ("text", "both"):
            self.text = Bottleneck(D, REDUCTION, relu_out)
        if learn:
            if variant in ("visual", "both"):
                self.alpha_logit = nn.Parameter(torch.full((1,), float(np.log(alpha / (1 - alpha)))))
            if variant in ("text", "both"):
                self.beta_logit = nn.Parameter(torch.full((1,), float(np.log(beta / (1 - beta)))))

    def ratio(self, name, fixed):
        return torch.sigmoid(getattr(self, name)) if self.learn else fixed

    def forward(self, f):
        if self.variant in ("visual", "both"):
            a = self.ratio("alpha_logit", self.alpha)
            f = a * self.visual(f) + (1 - a) * f
        w = self.w
        if self.variant in ("text", "both"):
            b = self.ratio("beta_logit", self.beta)
            w = b * self.text(w) + (1 - b) * w
        return self.scale * unit(f) @ unit(w).t()


# Initial weights: one draw per side, shared by all cases.
torch.manual_seed(0)
init = {
    "visual": Bottleneck(D, REDUCTION, True),
    "text": Bottleneck(D, REDUCTION, True),
}
for side, mod in init.items():
    for name, p in mod.named_parameters():
        save("inputs/init/%s.%s" % (side, name), p)

W = classifier(text, T)
save("inputs/classifier", W)

CASES = [
    dict(name="visual", variant="visual", alpha=0.2, beta=0.2, learn=False, relu_out=True),
    dict(name="text", variant="text", alpha=0.2, beta=0.3, learn=False, relu_out=True),
    dict(name="both_paper", variant="both", alpha=0.6, beta=0.4, learn=False, relu_out=False),
    dict(name="both_learned", variant="both", alpha=0.2, beta=0.7, learn=True, relu_out=True),
    dict(name="visual_learned_paper", variant="visual", alpha=0.35, beta=0.2, learn=True, relu_out=False),
]
for case in CASES:
    m = ClipAdapterRef(case["variant"], case["alpha"], case["beta"], case["learn"], case["relu_out"], W, LOGIT_SCALE)
    with torch.no_grad():
        for side in ("visual", "text"):
            if hasattr(m, side):
                getattr(m, side).load_state_dict(init[side].state_dict())
    params = list(m.named_parameters())
    case["params"] = [n for n, _ in params]
    logits = m(features)
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    d = "clip_" + case["name"]
    save(d + "/logits", logits)
    save(d + "/loss", loss.reshape(1))
    for n, p in params:
        save(d + "/grad/" + n, p.grad)
    opt = torch.optim.SGD([p for _, p in params], lr=0.002, momentum=0.9, weight_decay=5e-4)
    opt.step()
    for n, p in params:
        save(d + "/step/" + n, p)


# ---- Tip-Adapter -----------------------------------------------------------
INIT_ALPHA, INIT_BETA = 1.5, 2.0
SEARCH_SCALE, SEARCH_STEPS = [7.0, 3.0], [200, 20]
Wt = classifier(text, 1)  # Tip-Adapter: the single (first) template
keys = unit(views.mean(dim=0))
values = nn.functional.one_hot(cache_labels, C).float()
save("inputs/tip_keys", keys)


def tip_logits(f, keys, alpha, beta, scale=100.0):
    fn = unit(f)
    clip = scale * fn @ Wt.t()
    aff = fn @ keys.t()
    cache = ((-1) * (beta - beta * aff)).exp() @ values
    return clip + cache * alpha


with torch.no_grad():
    save("tip/logits", tip_logits(features, keys, INIT_ALPHA, INIT_BETA))
    save("tip/logits_scale", tip_logits(features, keys, INIT_ALPHA, INIT_BETA, LOGIT_SCALE))
    save("tip/zeroshot", 100.0 * unit(features) @ Wt.t())

    beta_list = [i * (SEARCH_SCALE[0] - 0.1) / SEARCH_STEPS[0] + 0.1 for i in range(SEARCH_STEPS[0])]
    alpha_list = [i * (SEARCH_SCALE[1] - 0.1) / SEARCH_STEPS[1] + 0.1 for i in range(SEARCH_STEPS[1])]
    fn = unit(val_features)
    clip = 100.0 * fn @ Wt.t()
    aff = fn @ keys.t()
    counts = np.zeros((len(beta_list), len(alpha_list)))
    best_acc, best_alpha, best_beta, best_correct = 0, 0, 0, 0
    for i, beta in enumerate(beta_list):
        for j, alpha in enumerate(alpha_list):
            cache = ((-1) * (beta - beta * aff)).exp() @ values
            logits = clip + cache * alpha
            correct = int((logits.argmax(dim=1) == val_labels).sum())
            counts[i, j] = correct
            acc = 100.0 * correct / NV
            if acc > best_acc:
                best_acc, best_alpha, best_beta, best_correct = acc, alpha, beta, correct
    save("tip/counts", counts)

# ---- Tip-Adapter-F: one AdamW step on the keys ------------------------------
adapter = nn.Linear(D, C * K, bias=False)
with torch.no_grad():
    adapter.weight.copy_(keys)
logits = tip_logits(features, adapter.weight, INIT_ALPHA, INIT_BETA)
loss = nn.functional.cross_entropy(logits, labels)
loss.backward()
save("tipf/logits", logits)
save("tipf/loss", loss.reshape(1))
save("tipf/grad/adapter.weight", adapter.weight.grad)
opt = torch.optim.AdamW(adapter.parameters(), lr=0.001, eps=1e-4, weight_decay=0.01)
opt.step()
save("tipf/step/adapter.weight", adapter.weight)

meta = {
    "torch": torch.__version__,
    "dim": D, "classes": CLASSES, "templates": TEMPLATES, "logit_scale": LOGIT_SCALE,
    "reduction": REDUCTION,
    "clip_cases": CASES,
    "sgd": {"lr": 0.002, "momentum": 0.9, "weight_decay": 5e-4},
    "tip": {"init_alpha": INIT_ALPHA, "init_beta": INIT_BETA, "search_scale": SEARCH_SCALE,
            "search_steps": SEARCH_STEPS, "best_alpha": best_alpha, "best_beta": best_beta,
            "best_correct": best_correct, "val_size": NV,
            "adamw": {"lr": 0.001, "eps": 1e-4, "weight_decay": 0.01, "betas": [0.9, 0.999]}},
}
with open(os.path.join(HERE, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
print("adapter fixtures written with torch %s; tip search: alpha %.4f beta %.4f, %d/%d correct"
      % (torch.__version__, best_alpha, best_beta, meta["tip"]["best_correct"], NV))
