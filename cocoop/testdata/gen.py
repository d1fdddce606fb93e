"""Reference fixtures for package cocoop, computed with PyTorch from
CoCoOp's equations as its reference trainer states them
(KaiyangZhou/CoOp trainers/cocoop.py): context initialised from the token
embedding of "a photo of a"; meta_net = Linear(D, D//16), ReLU,
Linear(D//16, W) on the normalised image feature; per image i the prompt
of class c is [prefix_c, ctx + pi_i, suffix_c]; logits_i = logit_scale *
f_i @ normalize(text_encoder(prompts_i)).T; cross-entropy; one SGD step
(momentum 0.9, weight decay 5e-4, lr 0.002).

The text encoder is a small differentiable stand-in that both sides
implement: h_n = mean over positions l <= eot_n of tanh(x[n, l] + pos[l]),
features = h_n @ proj. Token ids come from a toy vocabulary (meta.json);
the end-of-text id is the largest.

Files (float32 .npy): table [V, W] token embeddings, pos [L, W], proj
[W, D], features [B, D], labels [B] (int64), init/<param>, logits [B, C],
loss [1], grad/<param>, step/<param>.
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
W, D, L, C, B = 8, 32, 12, 3, 4
SCALE = 50.0
CLASSES = ["red fox", "cat", "blue whale shark"]
INIT = "a photo of a"
VOCAB = ["<pad>", "<sot>", "a", "photo", "of", "red", "fox", "cat", "blue", "whale", "shark", "."]
VOCAB.append("<eot>")  # the largest id


def tokenize(text):
    words = text.replace(".", " .").split()
    ids = [1] + [VOCAB.index(w) for w in words] + [len(VOCAB) - 1]
    return ids + [0] * (L - len(ids))


def save(rel, x, dtype=np.float32):
    path = os.path.join(HERE, rel + ".npy")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    np.save(path, np.ascontiguousarray(np.asarray(x, dtype=dtype)))


rs = np.random.RandomState(20240614)
table = torch.tensor(rs.randn(len(VOCAB), W) * 0.5, dtype=torch.float32)
pos = torch.tensor(rs.randn(L, W) * 0.1, dtype=torch.float32)
proj = torch.tensor(rs.randn(W, D) / np.sqrt(W), dtype=torch.float32)
features = torch.tensor(rs.randn(B, D), dtype=torch.float32)
labels = torch.tensor(rs.randint(0, C, size=B), dtype=torch.int64)


def encode(x, eot):
    h = torch.tanh(x + pos)
    mask = (torch.arange(L)[None, :] <= torch.tensor(eot)[:, None]).to(h.dtype)
    h = (h * mask[:, :, None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
    return h @ proj


prompts = ["%s %s." % (INIT, name) for name in CLASSES]
ids = torch.tensor([tokenize(p) for p in prompts])
eot = ids.argmax(dim=-1).tolist()
emb = table[ids]
M = len(INIT.split())
prefix, suffix = emb[:, :1], emb[:, 1 + M:]
ctx = torch.nn.Parameter(table[torch.tensor(tokenize(INIT))][1:1 + M].clone())
hidden = D // 16
lin1, lin2 = torch.nn.Linear(D, hidden), torch.nn.Linear(hidden, W)
save("init/ctx", ctx)
save("init/meta_net.linear1.weight", lin1.weight)
save("init/meta_net.linear1.bias", lin1.bias)
save("init/meta_net.linear2.weight", lin2.weight)
save("init/meta_net.linear2.bias", lin2.bias)

f = features / features.norm(dim=-1, keepdim=True)
pi = lin2(F.relu(lin1(f)))
shifted = ctx[None] + pi[:, None]
rows = []
for i in range(B):
    p = torch.cat([prefix, shifted[i][None].expand(C, -1, -1), suffix], dim=1)
    g = encode(p, eot)
    g = g / g.norm(dim=-1, keepdim=True)
    rows.append(SCALE * f[i] @ g.T)
logits = torch.stack(rows)
loss = F.cross_entropy(logits, labels)
params = {"ctx": ctx, "meta_net.linear1.weight": lin1.weight, "meta_net.linear1.bias": lin1.bias,
          "meta_net.linear2.weight": lin2.weight, "meta_net.linear2.bias": lin2.bias}
opt = torch.optim.SGD(list(params.values()), lr=0.002, momentum=0.9, weight_decay=5e-4)
opt.zero_grad()
loss.backward()
for name, p in params.items():
    save("grad/" + name, p.grad)
opt.step()
for name, p in params.items():
    save("step/" + name, p)
save("table", table)
save("pos", pos)
save("proj", proj)
save("features", features)
save("labels", labels, np.int64)
save("logits", logits)
save("loss", loss.reshape(1))
texts = {t: tokenize(t) for t in prompts + [INIT]}
with open(os.path.join(HERE, "meta.json"), "w") as fh:
    json.dump({"torch": torch.__version__, "classes": CLASSES, "ctx_init": INIT, "scale": SCALE, "tokens": texts,
               "sgd": {"lr": 0.002, "momentum": 0.9, "weight_decay": 5e-4}}, fh, indent=1)
    fh.write("\n")
print("cocoop fixtures written")
