#!/usr/bin/env python3
"""Writes the OpenCLIP parity fixtures under clip/testdata/openclip/ and
clip/preprocess/testdata/openclip/.

Needs open_clip_torch (PyPI), torch, torchvision, safetensors, numpy and
Pillow 9.4, e.g. a venv with `pip install open_clip_torch safetensors
pillow==9.4.0`. Pillow 9.4 is the resampling reference of the whole
preprocess package (Debian's; it always runs the horizontal pass first);
Pillow 13 runs the vertical pass first for some size pairs (e.g. 23x50 to
32x32), which moves some pixels by one level. Run from
the repository root:

    python clip/testdata/gen_openclip.py

Models: small randomly initialised CLIP models that OpenCLIP builds itself
(open_clip.model.CLIP with a vision_cfg/text_cfg of the standard
architecture), one with exact GELU and one with QuickGELU. Their head
width (32) and MLP ratio (3) differ from OpenAI's 64 and 4, so that the
loader has to take them from the configuration. Each model is saved by
OpenCLIP's conventions in its own folder with open_clip_config.json:

  gelu/open_clip_model.safetensors        safetensors (safetensors.torch)
  gelu/open_clip_pytorch_model.bin        torch.save(state_dict)
  quickgelu/open_clip_model.safetensors
  quickgelu/open_clip_pytorch_model.bin   torch.save of a training checkpoint
                                          {"epoch", "state_dict"} whose keys
                                          carry DataParallel's "module." prefix
  rn/open_clip_model.safetensors          a tiny ModifiedResNet (GELU text)

and the reference outputs of OpenCLIP's encode_image / encode_text
(inputs.npz-style .npy files next to them).

Preprocessing: for a few images of odd sizes, OpenCLIP's own test transform
(open_clip.image_transform) with each resize mode and interpolation and a
non-CLIP mean/std; input pixels and outputs as .npy.
"""
import json
import os

import numpy as np
import open_clip
import PIL
import torch
import torchvision
from open_clip.model import CLIP
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(ROOT, "openclip")
PRE = os.path.join(ROOT, "..", "preprocess", "testdata", "openclip")

VOCAB, CTX = 1000, 16


def model_cfg(vit=True, quick=False):
    if vit:
        vision = {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "mlp_ratio": 3.0, "patch_size": 8}
    else:
        vision = {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32, "patch_size": None}
    text = {"context_length": CTX, "vocab_size": VOCAB, "width": 64, "heads": 2, "layers": 2, "mlp_ratio": 3.0}
    return {"embed_dim": 32, "quick_gelu": quick, "vision_cfg": vision, "text_cfg": text}


def perturb(model, seed):
    """Gives LayerNorm/BatchNorm parameters and statistics non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "bn" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(1 + 0.2 * torch.rand(b.shape, generator=g))


def build(cfg, seed):
    torch.manual_seed(seed)
    m = CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"], quick_gelu=cfg["quick_gelu"])
    perturb(m, seed + 1)
    return m.eval()


def tokens(seed):
    """Token rows: random ids below VOCAB-1, end-of-text (VOCAB-1, the largest)
    at varying positions, zero padding after it."""
    g = np.random.default_rng(seed)
    rows = np.zeros((4, CTX), dtype=np.int64)
    for i, n in enumerate([3, 7, CTX - 1, 1]):
        rows[i, :n] = g.integers(1, VOCAB - 1, n)
        rows[i, n] = VOCAB - 1
    return rows


def write_model(name, cfg, seed, formats):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    m = build(cfg, seed)
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    pre = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "interpolation": "bicubic", "resize_mode": "shortest"}
    with open(os.path.join(d, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": cfg, "preprocess_cfg": pre}, f, indent=2)
    for fmt in formats:
        if fmt == "safetensors":
            save_file(sd, os.path.join(d, "open_clip_model.safetensors"))
        elif fmt == "bin":
            torch.save(sd, os.path.join(d, "open_clip_pytorch_model.bin"))
        elif fmt == "bin-wrapped":
            wrapped = {"epoch": 3, "name": name, "state_dict": {"module." + k: v for k, v in sd.items()}}
            torch.save(wrapped, os.path.join(d, "open_clip_pytorch_model.bin"))
    # Round trip through OpenCLIP's own loader, to be sure the files are
    # what OpenCLIP reads.
    for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        p = os.path.join(d, fname)
        if os.path.exists(p):
            again = CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"], quick_gelu=cfg["quick_gelu"])
            open_clip.load_checkpoint(again, p)
            for k, v in again.state_dict().items():
                assert torch.equal(v, sd[k]), (p, k)
    g = torch.Generator().manual_seed(seed + 2)
    size = cfg["vision_cfg"]["image_size"]
    images = torch.randn(3, 3, size, size, generator=g)
    tok = tokens(seed + 3)
    with torch.no_grad():
        img = m.encode_image(images)
        txt = m.encode_text(torch.from_numpy(tok))
    np.save(os.path.join(d, "images.npy"), images.numpy().astype(np.float32))
    np.save(os.path.join(d, "tokens.npy"), tok)
    np.save(os.path.join(d, "image_features.npy"), img.numpy().astype(np.float32))
    np.save(os.path.join(d, "text_features.npy"), txt.numpy().astype(np.float32))


def write_preprocess():
    os.makedirs(PRE, exist_ok=True)
    g = np.random.default_rng(7)
    sizes = [(37, 23), (23, 50), (40, 40), (9, 70)]
    cases = []
    for i, (w, h) in enumerate(sizes):
        # Smooth gradients plus noise: resampling differences show.
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 127 / (w + h)], -1)
        pix = np.clip(base + g.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
        src = "src%d.npy" % i
        np.save(os.path.join(PRE, src), pix.astype(np.int64))  # int64: what the Go npy reader reads
        for mode in ("shortest", "longest", "squash"):
            for interp in ("bicubic", "bilinear"):
                tf = open_clip.image_transform(32, is_train=False, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                                               resize_mode=mode, interpolation=interp)
                out = tf(Image.fromarray(pix, "RGB")).numpy().astype(np.float32)
                ref = "out%d_%s_%s.npy" % (i, mode, interp)
                np.save(os.path.join(PRE, ref), out)
                cases.append({"src": src, "ref": ref, "size": 32, "resize_mode": mode, "interpolation": interp})
    with open(os.path.join(PRE, "manifest.json"), "w") as f:
        json.dump({"versions": {"open_clip": open_clip.__version__, "torch": torch.__version__,
                                "torchvision": torchvision.__version__, "pillow": PIL.__version__},
                   "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "cases": cases}, f, indent=1)


def main():
    torch.set_num_threads(1)
    write_model("gelu", model_cfg(quick=False), 10, ["safetensors", "bin"])
    write_model("quickgelu", model_cfg(quick=True), 20, ["safetensors", "bin-wrapped"])
    write_model("rn", model_cfg(vit=False, quick=False), 30, ["safetensors"])
    write_preprocess()
    with open(os.path.join(OUT, "versions.json"), "w") as f:
        json.dump({"open_clip": open_clip.__version__, "torch": torch.__version__}, f)


if __name__ == "__main__":
    main()
