"""Writes randomly initialized full-size CLIP models as TorchScript archives
in the format of OpenAI's releases, for the encoder benchmark
(bench/encoder/run.sh).

    make_model.py OUT_DIR [--seed 0] [ARCH ...]      (ARCH: ViT-B/32, ViT-B/16, ViT-L/14, RN50)

Each model is written to OUT_DIR/<official file name> (ViT-B-32.pt,
ViT-B-16.pt, ViT-L-14.pt, RN50.pt) unless that file exists already. The model code is the one of
package clip's fixture generator (clip/testdata/gen.py): its
architecture-generic CLIP implementation, random weights of a sensible
scale, the released archives' fp16 tensors stored as fp16, traced with
torch.jit.trace_module (forward, encode_image, encode_text) and saved with
the input_resolution, context_length and vocab_size buffers. Only the
hyper-parameters differ from the fixtures: these are the released
models' (docs/models.md section 2), full vocabulary included.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clip", "testdata"))

import gen as clipgen  # noqa: E402  (re-executes under a Python with torch)
import torch  # noqa: E402

# The released architectures (docs/models.md section 2), in gen.TinyCLIP's terms.
ARCHS = {
    "ViT-B/32": ("ViT-B-32.pt", dict(embed_dim=512, resolution=224, vision_layers=12, vision_width=768, patch=32,
                                     context=77, vocab=49408, text_width=512, text_layers=12)),
    "ViT-B/16": ("ViT-B-16.pt", dict(embed_dim=512, resolution=224, vision_layers=12, vision_width=768, patch=16,
                                     context=77, vocab=49408, text_width=512, text_layers=12)),
    "ViT-L/14": ("ViT-L-14.pt", dict(embed_dim=768, resolution=224, vision_layers=24, vision_width=1024, patch=14,
                                     context=77, vocab=49408, text_width=768, text_layers=12)),
    "RN50": ("RN50.pt", dict(embed_dim=1024, resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64, patch=None,
                             context=77, vocab=49408, text_width=512, text_layers=12)),
}
SOT, EOT = 49406, 49407


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("archs", nargs="*", default=list(ARCHS))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for arch in a.archs:
        if arch not in ARCHS:
            sys.exit("make_model.py: unknown architecture %r (want one of %s)" % (arch, ", ".join(ARCHS)))
        name, cfg = ARCHS[arch]
        path = os.path.join(a.out, name)
        if os.path.exists(path):
            print("%s: %s exists" % (arch, path))
            continue
        gen = torch.Generator().manual_seed(a.seed)
        model, fp16 = clipgen.build(cfg, gen)
        image = torch.randn(1, 3, cfg["resolution"], cfg["resolution"], generator=gen)
        tokens = torch.zeros(1, cfg["context"], dtype=torch.int64)
        tokens[0, :4] = torch.tensor([SOT, 320, 1125, EOT])
        tmp = path + ".tmp"
        clipgen.save_torchscript(model, fp16, tmp, image, tokens)
        os.replace(tmp, path)
        n = sum(p.numel() for p in model.parameters())
        print("%s: %s (%.1fM parameters, %.0f MB)" % (arch, path, n / 1e6, os.path.getsize(path) / 1e6))


if __name__ == "__main__":
    main()
