"""Writes the reference features of command clip's tests: what PyTorch
computes for the committed fixture models of package clip (clip/testdata/
vit.pt and rn.pt, small random CLIP models in the format of OpenAI's
archives) on image files of package clip/preprocess (PNG, so that decoding
is exact in both languages).

Each image goes through CLIP's test transform (torchvision: Resize(R,
bicubic) of the shorter side, CenterCrop(R), RGB, ToTensor, Normalize with
CLIP's mean and std; R is the model's input resolution) and then through
the archive's traced encode_image, run in fp32 (the archive's fp16 weights
converted to fp32, as OpenAI's loader does on a CPU), without gradients.

Outputs (in this directory):
  vit_png_features.npy  float32 [3, 32], rows in the order of IMAGES
  rn_png_features.npy   float32 [3, 32]

Run through `make fixtures`, or directly with a Python that has torch,
torchvision, Pillow and numpy (the script finds one: $PYTHON,
/usr/bin/python3, python3).
"""
import os
import sys

NEEDED = "torch, torchvision, PIL, numpy"


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("torch", "torchvision", "PIL", "numpy")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
MODELS = os.path.join(ROOT, "clip", "testdata")
IMAGES_DIR = os.path.join(ROOT, "clip", "preprocess", "testdata", "img")
IMAGES = ["a_37x53.png", "b_211x157.png", "png_rgb.png"]

# CLIP's normalization constants (docs/models.md §5).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def transform(n):
    return T.Compose([
        T.Resize(n, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(n),
        lambda im: im.convert("RGB"),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


def main():
    for name in ("vit", "rn"):
        model = torch.jit.load(os.path.join(MODELS, name + ".pt"), map_location="cpu").float().eval()
        res = int(model.input_resolution.item())
        tr = transform(res)
        x = torch.stack([tr(Image.open(os.path.join(IMAGES_DIR, f))) for f in IMAGES])
        with torch.no_grad():
            f = model.encode_image(x).float()
        assert torch.isfinite(f).all()
        np.save(os.path.join(HERE, name + "_png_features.npy"), f.numpy().astype(np.float32))
        print("%s: input %d, features %s (std %.3f)" % (name, res, tuple(f.shape), f.std().item()))


if __name__ == "__main__":
    main()
