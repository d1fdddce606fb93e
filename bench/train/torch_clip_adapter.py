"""Official-style CLIP-Adapter training loop in PyTorch, for bench/train/run.sh.

Like the released CLIP-Adapter trainer (a CoOp/Dassl trainer): every step
loads and augments its images (RandomResizedCrop 224 bicubic + flip +
normalize), runs the frozen CLIP image encoder on them, applies the visual
adapter (D -> D/4 -> D, no biases, ReLU after both, residual ratio alpha),
and takes an SGD step with CoOp's schedule (cosine per epoch, 1 warm-up
epoch at 1e-5). After the last epoch it evaluates the few-shot val split
once (resize 224 bicubic, center crop), as the Go run does for its
best-on-val selection, so both sides do the same work. Reads the few-shot
split that cmd/data wrote, so both sides train on the same images.

    torch_clip_adapter.py ARCHIVE SPLIT_JSON IMAGE_DIR CLASSNAMES_JSON --epochs E --batch B --workers W
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class Items(Dataset):
    def __init__(self, items, image_dir, tf):
        self.items, self.image_dir, self.tf = items, image_dir, tf

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        it = self.items[i]
        img = Image.open(os.path.join(self.image_dir, it["path"])).convert("RGB")
        return self.tf(img), it["label"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("archive")
    ap.add_argument("split")
    ap.add_argument("image_dir")
    ap.add_argument("tokens", help=".npy of tokenized class prompts [C, 77] (written by the Go side)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    t0 = time.time()
    model = torch.jit.load(args.archive, map_location="cpu").float().eval()
    items = json.load(open(args.split))["train"]
    import numpy as np
    tokens = torch.from_numpy(np.load(args.tokens)).long()
    with torch.no_grad():
        text = model.encode_text(tokens).float()
        text = text / text.norm(dim=-1, keepdim=True)
    dim = text.shape[1]
    adapter = nn.Sequential(nn.Linear(dim, dim // 4, bias=False), nn.ReLU(inplace=True),
                            nn.Linear(dim // 4, dim, bias=False), nn.ReLU(inplace=True))
    opt = torch.optim.SGD(adapter.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(224, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    loader = DataLoader(Items(items, args.image_dir, tf), batch_size=args.batch, shuffle=True,
                        num_workers=args.workers, drop_last=len(items) >= args.batch)
    setup = time.time() - t0
    t1 = time.time()
    for epoch in range(args.epochs):
        lr = 1e-5 if epoch == 0 else args.lr * (1 + math.cos(math.pi * (epoch - 1) / args.epochs)) / 2
        for g in opt.param_groups:
            g["lr"] = lr
        total, n = 0.0, 0
        for x, y in loader:
            with torch.no_grad():
                f = model.encode_image(x).float()
            f = args.alpha * adapter(f) + (1 - args.alpha) * f
            f = f / f.norm(dim=-1, keepdim=True)
            logits = model.logit_scale.exp().float() * f @ text.t() if hasattr(model, "logit_scale") else 100 * f @ text.t()
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            n += 1
        print(f"torch epoch {epoch + 1}/{args.epochs} loss {total / max(n, 1):.4f}", flush=True)
    train_s = time.time() - t1

    t2 = time.time()
    val = json.load(open(args.split)).get("val", [])
    eval_tf = transforms.Compose([
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224),
        transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    correct = 0
    adapter.eval()
    with torch.no_grad():
        for x, y in DataLoader(Items(val, args.image_dir, eval_tf), batch_size=args.batch, num_workers=args.workers):
            f = model.encode_image(x).float()
            f = args.alpha * adapter(f) + (1 - args.alpha) * f
            correct += (f @ text.t()).argmax(dim=-1).eq(y).sum().item()
    eval_s = time.time() - t2
    print(f"torch val top-1 {100 * correct / max(len(val), 1):.2f}% on {len(val)} images", flush=True)
    print(json.dumps({"setup_s": setup, "train_s": train_s, "eval_s": eval_s, "images": len(items) * args.epochs + len(val)}))


if __name__ == "__main__":
    main()
