"""Official-style CoOp step and zero-shot classifier building in PyTorch, the
PyTorch half of bench/coop/run.sh.

The text tower is the one of package clip's fixture generator
(clip/testdata/gen.py: pre-LayerNorm blocks with torch's
nn.MultiheadAttention and CLIP's causal mask), randomly initialized at the
given size. A CoOp step does what CoOp's released trainer does on its text
side, written here from the description in docs/methods.md section 3: the
prompts [start token, 16 learned context vectors, class name, ".", end,
padding] are assembled in full (77 positions) for every class, run through
the text transformer over all 77 positions, ln_final, the end-of-text rows
projected, normalized; logits = 100 * normalized image features @ class
features^T, cross-entropy, backward, SGD (momentum 0.9, weight decay 5e-4).
The image features are a fixed random batch (cached, as on the Go side), so
the step is the text side's work. The zero-shot mode encodes every class
name in the 7 ImageNet templates (77 positions each), normalizes, averages
per class and normalizes again.

    torch_coop.py TOKENS.npy --width 512 --layers 12 [--steps 3] [--warmup 1] [--batch 32] [--threads N]
    torch_coop.py --zeroshot NAMES.txt --width 256 --layers 4 [--threads N]
    torch_coop.py TOKENS.npy --device cuda [--half] [--images]   (the GPU epoch benchmark, bench/gpu/epoch.sh)

Prints "steps/s X cpu_s/step Y" or "classifier_seconds X cpu_s Y" (wall
time and process CPU time).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clip", "testdata"))

import gen as clipgen  # noqa: E402  (re-executes under a Python with torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CONTEXT, VOCAB = 77, 49408
TEMPLATES = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
             "a {} in a video game.", "art of the {}.", "a photo of the small {}."]


class TextTower(nn.Module):
    def __init__(self, width, layers, embed_dim):
        super().__init__()
        mask = torch.full((CONTEXT, CONTEXT), float("-inf")).triu(1)
        self.transformer = clipgen.Transformer(width, layers, width // 64, mask)
        self.token_embedding = nn.Embedding(VOCAB, width)
        self.positional_embedding = nn.Parameter(torch.randn(CONTEXT, width) * 0.01)
        self.ln_final = clipgen.LayerNorm32(width)
        self.text_projection = nn.Parameter(torch.randn(width, embed_dim) * width ** -0.5)
        for p in self.transformer.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=width ** -0.5)
        for p in self.parameters():
            p.requires_grad_(False)

    def encode(self, x, eot):
        x = x + self.positional_embedding.to(x.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def coop_steps(a):
    device = torch.device(a.device)
    dtype = torch.float16 if a.half else torch.float32
    tokens = torch.from_numpy(np.load(a.tokens)).long().to(device)
    n_cls, n_ctx = tokens.shape[0], 16
    torch.manual_seed(1)
    tower = TextTower(a.width, a.layers, a.embed_dim).to(device)
    if a.half:
        # As CLIP's fp16 checkpoints (CoOp's default precision): linear
        # weights fp16, LayerNorm computing in fp32.
        for mod in tower.modules():
            if isinstance(mod, (nn.Linear, nn.MultiheadAttention)):
                mod.half()
        tower.text_projection.data = tower.text_projection.data.half()
    with torch.no_grad():
        emb = tower.token_embedding(tokens).to(dtype)
    prefix, suffix = emb[:, :1], emb[:, 1 + n_ctx:]
    eot = tokens.argmax(dim=-1)
    ctx = nn.Parameter(torch.randn(n_ctx, a.width, device=device, dtype=dtype) * 0.02)
    opt = torch.optim.SGD([ctx], lr=0.002, momentum=0.9, weight_decay=5e-4)
    feats = F.normalize(torch.randn(a.batch, a.embed_dim, device=device), dim=-1)
    labels = (torch.arange(a.batch) % n_cls).to(device)
    image_tower = None
    if a.images:
        # Official CoOp encodes the step's images every step: RN50's image
        # tower (random weights) on a random batch already on the device.
        image_tower = clipgen.ResNetTower((3, 4, 6, 3), 64, 224, 32, a.embed_dim).to(device).to(dtype).eval()
        for p in image_tower.parameters():
            p.requires_grad_(False)
        images = torch.randn(a.batch, 3, 224, 224, device=device, dtype=dtype)

    def step():
        f = feats
        if image_tower is not None:
            with torch.no_grad():
                f = F.normalize(image_tower(images).float(), dim=-1)
        prompts = torch.cat([prefix, ctx.unsqueeze(0).expand(n_cls, -1, -1), suffix], dim=1)
        g = F.normalize(tower.encode(prompts, eot).float(), dim=-1)
        loss = F.cross_entropy(100.0 * f @ g.t(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, c0 = time.time(), time.process_time()
    for _ in range(a.steps):
        step()
    sync(device)
    el, cpu = time.time() - t0, time.process_time() - c0
    if device.type == "cuda":
        print("peak_allocated_GiB %.2f" % (torch.cuda.max_memory_allocated(device) / 2**30))
    print("steps/s %.4f cpu_s/step %.4f (%d classes, %d steps in %.2f s)" % (a.steps / el, cpu / a.steps, n_cls, a.steps, el))


def zeroshot(a):
    # Token ids of the prompts come from the Go side's BPE (one row per
    # class and template, class-major), so that both sides encode the same.
    tokens = torch.from_numpy(np.load(a.zeroshot)).long()
    torch.manual_seed(1)
    tower = TextTower(a.width, a.layers, a.embed_dim)
    t0, c0 = time.time(), time.process_time()
    with torch.no_grad():
        per_class = len(TEMPLATES)
        out = []
        for lo in range(0, tokens.shape[0], 256):
            t = tokens[lo:lo + 256]
            out.append(F.normalize(tower.encode(tower.token_embedding(t), t.argmax(dim=-1)), dim=-1))
        f = torch.cat(out).view(-1, per_class, a.embed_dim).mean(dim=1)
        w = F.normalize(f, dim=-1)
    el, cpu = time.time() - t0, time.process_time() - c0
    print("classifier_seconds %.3f cpu_s %.3f (%d classes x %d templates)" % (el, cpu, w.shape[0], per_class))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokens", nargs="?")
    ap.add_argument("--zeroshot", help=".npy of the zero-shot prompts' token ids [C*7, 77]")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--embed-dim", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--half", action="store_true", help="fp16 encoders (CUDA), as CoOp's default precision")
    ap.add_argument("--images", action="store_true", help="encode a batch of images every step (official CoOp)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.zeroshot:
        zeroshot(a)
    else:
        coop_steps(a)


if __name__ == "__main__":
    main()
