"""PyTorch's features of package clip's fixture models on the GPU, for
clip's TestCUDAMatchesPyTorchOnGPU (scripts/gpu-check.sh runs both).

    parity.py OUT_DIR

For clip/testdata/vit.pt and rn.pt it loads the archive's weights into the
eager model (bench/encoder/eager.py), on CUDA in fp32 and in fp16 as
clip.load has it, encodes the fixture inputs (<ref>_images.npy and
<ref>_tokens.npy) and writes OUT_DIR/<ref>_<image|text>_cuda_<fp32|fp16>.npy
(float32). It prints how far PyTorch's fp16 features are from its fp32 ones.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "encoder"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from eager import load_eager  # noqa: E402

TESTDATA = os.path.join(HERE, "..", "..", "clip", "testdata")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    dev = torch.device("cuda")
    for ref in ("vit", "rn"):
        images = torch.from_numpy(np.load(os.path.join(TESTDATA, ref + "_images.npy"))).to(dev)
        tokens = torch.from_numpy(np.load(os.path.join(TESTDATA, ref + "_tokens.npy"))).to(dev)
        feats = {}
        for prec in ("fp32", "fp16"):
            model, _ = load_eager(os.path.join(TESTDATA, ref + ".pt"), prec, dev)
            with torch.no_grad():
                feats[("image", prec)] = model.encode_image(images).float().cpu().numpy()
                feats[("text", prec)] = model.encode_text(tokens).float().cpu().numpy()
        for (kind, prec), f in feats.items():
            np.save(os.path.join(out, "%s_%s_cuda_%s.npy" % (ref, kind, prec)), f.astype(np.float32))
        for kind in ("image", "text"):
            a, b = feats[(kind, "fp16")], feats[(kind, "fp32")]
            print("parity: %s %s: PyTorch fp16 vs fp32 on CUDA: max |diff| / max |fp32| = %.3g"
                  % (ref, kind, np.abs(a - b).max() / np.abs(b).max()))


if __name__ == "__main__":
    main()
