"""Writes the clip package's test fixtures: small CLIP models in the format of
OpenAI's released checkpoints, and what PyTorch computes with them.

The models are a small PyTorch implementation of the CLIP architecture written
for this script from the facts in docs/models.md (it is not
OpenAI's code): pre-LayerNorm residual attention blocks with torch's
nn.MultiheadAttention, a ViT and a ModifiedResNet image tower, a causal text
transformer. Weights are random (with non-trivial LayerNorm/BatchNorm
statistics), converted to fp16 where the released checkpoints are fp16
(docs/models.md section 4), and the reference outputs are computed in fp32 from
those fp16-rounded weights, which is what loading a checkpoint on a CPU does.

Files (all in this directory):
  vit.pt         TorchScript archive (torch.jit.trace_module with forward,
                 encode_image, encode_text; input_resolution, context_length,
                 vocab_size buffers), fp16 weights like the released ones.
  vit_sd.pt      the same weights as a plain torch.save state dict.
  rn.pt          TorchScript archive of a ModifiedResNet CLIP.
  tiny_keys.pt   state dict of a tiny CLIP with one key missing
                 (ln_final.bias) and one extra (visual.extra.weight).
  tiny_shape.pt  state dict of a tiny CLIP whose
                 transformer.resblocks.0.mlp.c_fc.weight is transposed.
  notclip.pt     a TorchScript archive of a two-layer MLP (not CLIP).
  attr.pt        a scripted module with a parameter, a buffer and a plain
                 tensor attribute (for the archive reader).
  *.npy          inputs and reference outputs (see write_reference).
  *_script.json, vit_sd.json
                 the state dicts as PyTorch loads them: dtype, shape and
                 first element of every tensor (see write_listing).

Run through `make fixtures`, or directly with a Python that has torch and
numpy (the script finds one: $PYTHON, /usr/bin/python3, python3).
"""
import collections
import copy
import json
import math
import os
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("numpy", "torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# Small vocabulary: the token embedding would otherwise dominate the files.
# The start/end-of-text tokens are the two largest ids, as in CLIP.
VOCAB = 1024
SOT, EOT = VOCAB - 2, VOCAB - 1
CONTEXT = 77


class LayerNorm32(tnn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input dtype, cast back."""

    def forward(self, x):
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.to(x.dtype)


class QuickGELU(tnn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(tnn.Module):
    """x + MHA(LN1(x)), then + MLP(LN2(x)); x is [L, N, W] (sequence first)."""

    def __init__(self, width, heads, mask):
        super().__init__()
        self.ln_1 = LayerNorm32(width)
        self.attn = tnn.MultiheadAttention(width, heads)
        self.ln_2 = LayerNorm32(width)
        self.mlp = tnn.Sequential(collections.OrderedDict([
            ("c_fc", tnn.Linear(width, 4 * width)),
            ("gelu", QuickGELU()),
            ("c_proj", tnn.Linear(4 * width, width)),
        ]))
        self.mask = mask  # plain attribute, not a parameter or buffer

    def forward(self, x):
        h = self.ln_1(x)
        m = None
        if self.mask is not None:
            m = self.mask[: x.shape[0], : x.shape[0]].to(dtype=x.dtype)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=m)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(tnn.Module):
    def __init__(self, width, layers, heads, mask=None):
        super().__init__()
        self.resblocks = tnn.Sequential(*[Block(width, heads, mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class ViT(tnn.Module):
    def __init__(self, resolution, patch, width, layers, out_dim):
        super().__init__()
        grid = resolution // patch
        self.conv1 = tnn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = tnn.Parameter(torch.zeros(width))
        self.positional_embedding = tnn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = LayerNorm32(width)
        self.transformer = Transformer(width, layers, width // 64)
        self.ln_post = LayerNorm32(width)
        self.proj = tnn.Parameter(torch.zeros(width, out_dim))

    def forward(self, x):
        x = self.conv1(x.to(self.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # N, grid², width
        cls = self.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], 1, x.shape[2])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0, :]) @ self.proj


class Bottleneck(tnn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.pool = tnn.AvgPool2d(stride) if stride > 1 else tnn.Identity()
        self.conv3 = tnn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(4 * planes)
        self.downsample = None
        if stride > 1 or inplanes != 4 * planes:
            self.downsample = tnn.Sequential(collections.OrderedDict([
                ("-1", tnn.AvgPool2d(stride)),
                ("0", tnn.Conv2d(inplanes, 4 * planes, 1, bias=False)),
                ("1", tnn.BatchNorm2d(4 * planes)),
            ]))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.pool(y)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


class AttnPool(tnn.Module):
    def __init__(self, grid, dim, heads, out_dim):
        super().__init__()
        self.positional_embedding = tnn.Parameter(torch.zeros(grid * grid + 1, dim))
        self.q_proj = tnn.Linear(dim, dim)
        self.k_proj = tnn.Linear(dim, dim)
        self.v_proj = tnn.Linear(dim, dim)
        self.c_proj = tnn.Linear(dim, out_dim)
        self.heads = heads

    def forward(self, x):
        x = x.flatten(2).permute(2, 0, 1)  # HW, N, C
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding.to(x.dtype)[:, None, :]
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.heads,
            in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True, q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            training=False, need_weights=False)
        return out[0]


class ResNetTower(tnn.Module):
    def __init__(self, layers, width, resolution, heads, out_dim):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width // 2)
        self.conv2 = tnn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(width // 2)
        self.conv3 = tnn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = tnn.BatchNorm2d(width)
        self.avgpool = tnn.AvgPool2d(2)
        inplanes = width
        for i, n in enumerate(layers):
            planes = width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(inplanes, planes, (1 if i == 0 else 2) if j == 0 else 1))
                inplanes = 4 * planes
            setattr(self, "layer%d" % (i + 1), tnn.Sequential(*blocks))
        self.attnpool = AttnPool(resolution // 32, 32 * width, heads, out_dim)

    def forward(self, x):
        x = x.to(self.conv1.weight.dtype)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class TinyCLIP(tnn.Module):
    def __init__(self, embed_dim, resolution, vision_layers, vision_width, patch,
                 context, vocab, text_width, text_layers):
        super().__init__()
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ResNetTower(vision_layers, vision_width, resolution,
                                      32 * vision_width // 64, embed_dim)
        else:
            self.visual = ViT(resolution, patch, vision_width, vision_layers, embed_dim)
        mask = torch.full((context, context), float("-inf")).triu(1)
        self.transformer = Transformer(text_width, text_layers, text_width // 64, mask)
        self.token_embedding = tnn.Embedding(vocab, text_width)
        self.positional_embedding = tnn.Parameter(torch.zeros(context, text_width))
        self.ln_final = LayerNorm32(text_width)
        self.text_projection = tnn.Parameter(torch.zeros(text_width, embed_dim))
        self.logit_scale = tnn.Parameter(torch.tensor(math.log(100.0)))
        self.register_buffer("input_resolution", torch.tensor(resolution))
        self.register_buffer("context_length", torch.tensor(context))
        self.register_buffer("vocab_size", torch.tensor(vocab))

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    def encode_image(self, image):
        return self.visual(image)

    def encode_text_embeddings(self, x, eot):
        x = x.to(self.dtype) + self.positional_embedding.to(self.dtype)[: x.shape[1]]
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection

    def encode_text(self, tokens):
        x = self.token_embedding(tokens)
        return self.encode_text_embeddings(x, tokens.argmax(dim=-1))

    def forward(self, image, tokens):
        f = self.encode_image(image)
        g = self.encode_text(tokens)
        f = f / f.norm(dim=1, keepdim=True)
        g = g / g.norm(dim=1, keepdim=True)
        per_image = self.logit_scale.exp() * f @ g.t()
        return per_image, per_image.t()


class WithAttribute(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(2, 2)
        self.register_buffer("buf", torch.arange(3.0))
        self.plain = torch.ones(4)  # an attribute, not a parameter or buffer

    def forward(self, x):
        return self.lin(x) + self.plain[:2] + self.buf[:2]


def randomize(model, gen):
    """Fills every parameter and buffer with random values of a sensible scale,
    including non-trivial LayerNorm/BatchNorm parameters and statistics."""

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(s in name for s in ("ln_", "bn", "downsample.1")) and p.dim() == 1
            if name in ("input_resolution", "context_length", "vocab_size", "logit_scale"):
                continue
            if leaf == "num_batches_tracked":
                p.fill_(7)
            elif leaf == "running_mean":
                p.copy_(0.1 * randn(*p.shape))
            elif leaf == "running_var":
                p.copy_(0.5 + torch.rand(*p.shape, generator=gen))
            elif is_norm and leaf == "weight":
                p.copy_(1 + 0.1 * randn(*p.shape))
            elif is_norm and leaf == "bias":
                p.copy_(0.1 * randn(*p.shape))
            elif name == "token_embedding.weight":
                p.copy_(0.02 * randn(*p.shape))
            elif name == "positional_embedding":
                p.copy_(0.01 * randn(*p.shape))
            elif p.dim() == 1:  # linear and attention biases, class embedding
                p.copy_(0.05 * randn(*p.shape))
            else:  # weights: unit gain for the fan-in
                fan_in = p[0].numel() if p.dim() > 2 else p.shape[-1]
                if name in ("text_projection", "visual.proj") or name.endswith("positional_embedding"):
                    fan_in = p.shape[0] if "proj" in name else p.shape[1]
                p.copy_(randn(*p.shape) / math.sqrt(fan_in))


def fp16_names(model):
    """Names of the tensors the released checkpoints store in fp16
    (docs/models.md section 4): weight and bias of every Conv/Linear layer, the
    packed attention in_proj_weight/in_proj_bias, text_projection and
    visual.proj."""
    names = set()
    for mname, m in model.named_modules():
        prefix = mname + "." if mname else ""
        if isinstance(m, (tnn.Conv2d, tnn.Linear)):
            names.update(prefix + n for n, _ in m.named_parameters(recurse=False))
        if isinstance(m, tnn.MultiheadAttention):
            names.update(prefix + n for n in ("in_proj_weight", "in_proj_bias"))
    names.update(("text_projection", "visual.proj"))
    return names & set(n for n, _ in model.named_parameters())


def round_to_fp16(model):
    """Rounds the fp16 tensors to fp16 values, keeping them fp32, and returns
    their names."""
    names = fp16_names(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in names:
                p.copy_(p.half().float())
    return names


def half_state_dict(model, names):
    return collections.OrderedDict(
        (k, v.half() if k in names else v.clone()) for k, v in model.state_dict().items())


def save_torchscript(model, names, path, image, tokens):
    """Traces model (fp32) and saves it with the fp16 tensors in fp16, as the
    released archives store them. (The traced graphs record fp32 casts; the
    Go loader reads only the weights, never the graphs.)"""
    model = copy.deepcopy(model)  # the traced module shares its parameters
    traced = torch.jit.trace_module(model, {
        "forward": (image, tokens),
        "encode_image": (image,),
        "encode_text": (tokens,),
    })
    for n, p in traced.named_parameters():
        if n in names:
            p.data = p.data.half()
    traced.save(path)
    loaded = torch.jit.load(path)
    sd = loaded.state_dict()
    for n in names:
        assert sd[n].dtype == torch.float16, n
    for n in ("input_resolution", "context_length", "vocab_size"):
        assert n in sd, n


def write_listing(path, name):
    """Lists the state dict of an archive as PyTorch loads it: dtype, shape
    and the first element of every tensor (for the archive reader's tests)."""
    sd = torch.jit.load(path).state_dict() if name.endswith("_script") else torch.load(path)
    out = collections.OrderedDict()
    for k, v in sd.items():
        out[k] = {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                  "first": v.flatten()[0].item() if v.numel() else None}
    with open(os.path.join(HERE, name + ".json"), "w") as f:
        json.dump(out, f, indent=0)


def token_rows():
    rows = [
        [SOT, 320, 1000, 539, 320, 269, EOT],
        [SOT, 320, 539, 17, EOT],
        [SOT, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, EOT],
        [SOT] + list(range(1, CONTEXT - 1)) + [EOT],  # EOT at the last position
    ]
    out = torch.zeros(len(rows), CONTEXT, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def save_npy(name, t):
    arr = t.detach().cpu().numpy()
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    np.save(os.path.join(HERE, name + ".npy"), np.ascontiguousarray(arr))


def write_reference(prefix, model, image, tokens, gen):
    """Inputs and outputs of the fp32 model with fp16-rounded weights."""
    with torch.no_grad():
        f = model.encode_image(image)
        g = model.encode_text(tokens)
        per_image, _ = model(image, tokens)
        # The CoOp path: token embeddings with learned context rows 1..4.
        x = model.token_embedding(tokens).clone()
        x[:, 1:5, :] = 0.02 * torch.randn(x.shape[0], 4, x.shape[2], generator=gen)
        eot = tokens.argmax(dim=-1)
        h = model.encode_text_embeddings(x, eot)
    for t in (f, g, per_image, h):
        assert torch.isfinite(t).all()
    save_npy(prefix + "_images", image)
    save_npy(prefix + "_tokens", tokens)
    save_npy(prefix + "_image_features", f)
    save_npy(prefix + "_text_features", g)
    save_npy(prefix + "_logits_per_image", per_image)
    save_npy(prefix + "_embeddings", x)
    save_npy(prefix + "_embeddings_eot", eot)
    save_npy(prefix + "_embeddings_features", h)
    print("%s: image features %s (std %.3f), text features %s (std %.3f)" % (
        prefix, tuple(f.shape), f.std().item(), tuple(g.shape), g.std().item()))


def write_zeroshot(model, image, gen):
    """Zero-shot head: 3 classes x 2 templates; weights = normalised mean of
    the normalised text features of each class, re-normalised."""
    rows = torch.zeros(3, 2, CONTEXT, dtype=torch.int64)
    for c in range(3):
        for t in range(2):
            ids = [SOT] + [100 + 10 * t + k for k in range(2 + t)] + [500 + 7 * c, 269, EOT]
            rows[c, t, : len(ids)] = torch.tensor(ids)
    with torch.no_grad():
        g = model.encode_text(rows.reshape(-1, CONTEXT)).reshape(3, 2, -1)
        g = g / g.norm(dim=-1, keepdim=True)
        w = g.mean(dim=1)
        w = w / w.norm(dim=-1, keepdim=True)
        f = model.encode_image(image)
        f = f / f.norm(dim=-1, keepdim=True)
        logits = 100.0 * f @ w.t()
    save_npy("zeroshot_tokens", rows)
    save_npy("zeroshot_weights", w)
    save_npy("zeroshot_logits", logits)


def build(cfg, gen):
    m = TinyCLIP(**cfg).eval()
    randomize(m, gen)
    return m, round_to_fp16(m)


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(20240611)

    vit_cfg = dict(embed_dim=32, resolution=32, vision_layers=2, vision_width=64, patch=8,
                   context=CONTEXT, vocab=VOCAB, text_width=128, text_layers=2)
    vit, vit16 = build(vit_cfg, gen)
    vit_images = torch.randn(4, 3, 32, 32, generator=gen)
    tokens = token_rows()
    save_torchscript(vit, vit16, os.path.join(HERE, "vit.pt"), vit_images, tokens)
    torch.save(half_state_dict(vit, vit16), os.path.join(HERE, "vit_sd.pt"))
    write_reference("vit", vit, vit_images, tokens, gen)
    write_listing(os.path.join(HERE, "vit.pt"), "vit_script")
    write_listing(os.path.join(HERE, "vit_sd.pt"), "vit_sd")
    write_zeroshot(vit, vit_images, gen)

    rn_cfg = dict(embed_dim=32, resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16,
                  patch=None, context=CONTEXT, vocab=VOCAB, text_width=64, text_layers=2)
    rn, rn16 = build(rn_cfg, gen)
    rn_images = torch.randn(2, 3, 64, 64, generator=gen)
    save_torchscript(rn, rn16, os.path.join(HERE, "rn.pt"), rn_images, tokens)
    write_reference("rn", rn, rn_images, tokens, gen)
    write_listing(os.path.join(HERE, "rn.pt"), "rn_script")

    tiny_cfg = dict(embed_dim=16, resolution=16, vision_layers=1, vision_width=64, patch=8,
                    context=8, vocab=16, text_width=64, text_layers=1)
    tiny, tiny16 = build(tiny_cfg, gen)
    sd = half_state_dict(tiny, tiny16)
    del sd["ln_final.bias"]
    sd["visual.extra.weight"] = torch.zeros(3)
    torch.save(sd, os.path.join(HERE, "tiny_keys.pt"))
    sd = half_state_dict(tiny, tiny16)
    k = "transformer.resblocks.0.mlp.c_fc.weight"
    sd[k] = sd[k].t().contiguous()
    torch.save(sd, os.path.join(HERE, "tiny_shape.pt"))

    # A scripted module keeps a plain tensor attribute next to its
    # parameters and buffers; only the latter belong to the state dict.
    attr = torch.jit.script(WithAttribute().eval())
    attr.save(os.path.join(HERE, "attr.pt"))
    write_listing(os.path.join(HERE, "attr.pt"), "attr_script")

    mlp = tnn.Sequential(tnn.Linear(3, 4), tnn.ReLU(), tnn.Linear(4, 2)).eval()
    torch.jit.trace(mlp, torch.zeros(1, 3)).save(os.path.join(HERE, "notclip.pt"))

    total = 0
    for f in sorted(os.listdir(HERE)):
        if f.endswith((".pt", ".npy", ".json")):
            total += os.path.getsize(os.path.join(HERE, f))
    print("clip fixtures: %.2f MB in total (torch %s)" % (total / 1e6, torch.__version__))


if __name__ == "__main__":
    main()
