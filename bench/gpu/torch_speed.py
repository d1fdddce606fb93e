"""The PyTorch half of the GPU encoder benchmark (bench/gpu/run.sh): image
encoder throughput of PyTorch eager on the same archives as the Go side.

    torch_speed.py model   --model FILE.pt --precision fp16|fp32 [--batch 256] [--iters 20]
                           [--channels-last] [--compile] [--in X.npy --out F.npy]
    torch_speed.py e2e     --model FILE.pt --precision fp16|fp32 [--batch 256] [--workers 16] IMG...

The model is bench/encoder/eager.py's: the eager CLIP with the archive's
own weights, fp16 as OpenAI's clip.load has it on a GPU.

model: images/s of encode_image alone on a random input already on the GPU
(--iters timed batches after 3 warm-up ones, CUDA-synchronised), and the
peak GPU memory. --channels-last converts the model and input to
channels-last (what a user of a ResNet may pick); --compile wraps
encode_image with torch.compile (the ceiling a user could pick instead of
eager; compile time reported apart). With --in, the features of the first
rows of X.npy (float32 [N, 3, R, R]) are written to --out for the Go side's
comparison (X.npy is written first, 8 seeded images at the model's
resolution, when it does not exist).

e2e: images/s from JPEG files to features, as an official-style loop does
it: a DataLoader with --workers processes opens each file with PIL and
applies CLIP's test transform (bench/encoder/torch_encode.py's), batches of
--batch are copied to the GPU (pinned memory) and encoded. The clock starts
before the first batch is loaded and stops after the last feature is back
on the host.

Last line: "torch: <what> <arch> <precision> batch B: X images/s ...".
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "encoder"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from eager import load_eager  # noqa: E402
from torch_encode import clip_transform  # noqa: E402


def dtype_of(precision):
    return torch.float16 if precision == "fp16" else torch.float32


def cmd_model(a):
    dev = torch.device(a.device)
    model, res = load_eager(a.model, a.precision, dev)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    encode = model.encode_image
    compile_s = 0.0
    if a.compile:
        encode = torch.compile(model.encode_image)
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(a.batch, 3, res, res, device=dev, generator=gen).to(dtype_of(a.precision)).contiguous(memory_format=fmt)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        t = time.perf_counter()
        encode(x)
        sync()
        first = time.perf_counter() - t
        if a.compile:
            compile_s = first
        for _ in range(2):
            encode(x)
        sync()
        t = time.perf_counter()
        for _ in range(a.iters):
            encode(x)
        sync()
        secs = time.perf_counter() - t
        if a.inp:
            if not os.path.exists(a.inp):  # 8 fixed images at this model's resolution
                np.save(a.inp, np.random.default_rng(0).standard_normal((8, 3, res, res)).astype(np.float32))
            xin = torch.from_numpy(np.load(a.inp)).to(dev, dtype_of(a.precision)).contiguous(memory_format=fmt)
            np.save(a.out, encode(xin).float().cpu().numpy())
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    what = "model" + ("+channels-last" if a.channels_last else "") + ("+compile" if a.compile else "")
    extra = " (compile %.1f s)" % compile_s if a.compile else ""
    print("torch: %s %s %s batch %d: %.1f images/s, %.2f ms per batch, peak GPU memory %.0f MiB%s; torch %s"
          % (what, a.arch, a.precision, a.batch, a.iters * a.batch / secs, 1000 * secs / a.iters, peak, extra,
             torch.__version__))


class Files(torch.utils.data.Dataset):
    def __init__(self, paths, res):
        self.paths, self.tf = paths, clip_transform(res)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image
        with Image.open(self.paths[i]) as im:
            return self.tf(im)


def cmd_e2e(a):
    dev = torch.device(a.device)
    model, res = load_eager(a.model, a.precision, dev)
    dl = torch.utils.data.DataLoader(Files(a.images, res), batch_size=a.batch, num_workers=a.workers,
                                     pin_memory=dev.type == "cuda", shuffle=False)
    feats = []
    with torch.no_grad():
        model.encode_image(torch.zeros(2, 3, res, res, device=dev, dtype=dtype_of(a.precision)))  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for x in dl:
            x = x.to(dev, dtype_of(a.precision), non_blocking=True)
            feats.append(model.encode_image(x).float().cpu())
        secs = time.perf_counter() - t
    n = sum(f.shape[0] for f in feats)
    if a.out:
        np.save(a.out, torch.cat(feats).numpy())
    print("torch: e2e %s %s batch %d: %.1f images/s (%d JPEGs in %.2f s, %d workers); torch %s"
          % (a.arch, a.precision, a.batch, n / secs, n, secs, a.workers, torch.__version__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("model", "e2e"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--arch", default="")
        p.add_argument("--precision", choices=["fp16", "fp32"], default="fp16")
        p.add_argument("--batch", type=int, default=256)
        p.add_argument("--out", default="")
        p.add_argument("--device", default="cuda", help="cuda (cpu only to try the script out)")
        if name == "model":
            p.add_argument("--iters", type=int, default=20)
            p.add_argument("--channels-last", action="store_true")
            p.add_argument("--compile", action="store_true")
            p.add_argument("--in", dest="inp", default="")
        else:
            p.add_argument("--workers", type=int, default=16)
            p.add_argument("images", nargs="+")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("torch_speed.py: no CUDA device")
    a.arch = a.arch or os.path.basename(a.model)
    cmd_model(a) if a.cmd == "model" else cmd_e2e(a)


if __name__ == "__main__":
    main()
