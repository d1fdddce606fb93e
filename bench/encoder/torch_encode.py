"""The PyTorch half of the encoder benchmark (bench/encoder/run.sh): encodes
image files with a CLIP TorchScript archive the way OpenAI's code does on a
CPU, and reports the throughput.

    torch_encode.py --model FILE.pt --out FEATURES.npy [--batch 16] [--threads 2]
                    [--device cpu|cuda] [--precision fp32|fp16] [--eager] IMG...

The archive is loaded with torch.jit.load onto --device and converted to
fp32, or kept in fp16 with --precision fp16 on CUDA (what clip.load does
on a CPU and on a GPU). With --eager its weights run in the eager model of
eager.py instead (what clip.load(jit=False) does: PyTorch eager). Each image is opened with PIL and put through
CLIP's test transform, written here with PIL and numpy as torchvision
computes it (Resize(R, bicubic) of the shorter side, CenterCrop(R), RGB,
ToTensor, Normalize with CLIP's mean and std; R is the archive's
input_resolution), so the script needs no torchvision; batches of --batch
images are stacked and encoded with encode_image under torch.no_grad(),
with torch.set_num_threads(--threads). The features [N, D] are saved to
--out.

The clock starts after the model is loaded and stops after the last
batch; it covers decoding, preprocessing and encoding, like the Go side's
-timing. Per batch it prints the time, the time in encode_image and the
resident memory; the last line is

    encode: N images in X s (Y images/s; model Z s; CPU C ms per item), peak RSS P MiB, RSS after each batch A-B MiB

where C is the process's CPU time (all threads) per image over the same
span.
"""
import argparse
import os
import resource
import sys
import time

try:
    import numpy as np
    import torch
    from PIL import Image
except ImportError as e:  # pragma: no cover
    sys.exit(f"torch_encode.py needs torch, PIL and numpy ({e}); use Debian's /usr/bin/python3")

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def clip_transform(res):
    """CLIP's test transform as torchvision applies it to a PIL image."""
    mean = np.array(MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.array(STD, dtype=np.float32).reshape(3, 1, 1)

    def tf(im):
        w, h = im.size
        if w <= h:
            size = (res, int(res * h / w))
        else:
            size = (int(res * w / h), res)
        if size != (w, h):
            im = im.resize(size, Image.BICUBIC)
        w, h = im.size
        left, top = int(round((w - res) / 2.0)), int(round((h - res) / 2.0))
        im = im.crop((left, top, left + res, top + res)).convert("RGB")
        x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((x - mean) / std)

    return tf


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave the default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16"], help="fp16 needs cuda")
    ap.add_argument("--eager", action="store_true",
                    help="run the eager model (eager.py: clip.load(jit=False)) instead of the TorchScript archive")
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    if a.precision == "fp16" and a.device == "cpu":
        sys.exit("torch_encode.py: --precision fp16 needs --device cuda")
    if a.eager:
        from eager import load_eager
        model, res = load_eager(a.model, a.precision, torch.device(a.device))
    else:
        model = torch.jit.load(a.model, map_location=a.device).eval()
        model = model.half() if a.precision == "fp16" else model.float()
        res = int(model.input_resolution.item())
    print(f"load: {a.model} in {time.perf_counter() - t0:.2f} s, input {res}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {a.device} {a.precision}{' eager' if a.eager else ' torchscript'}", file=sys.stderr)
    tf = clip_transform(res)

    feats, rss = [], []
    batches = (len(a.images) + a.batch - 1) // a.batch
    forward = 0.0
    cpu0 = time.process_time()
    start = last = time.perf_counter()
    for b in range(batches):
        paths = a.images[b * a.batch:(b + 1) * a.batch]
        x = torch.stack([tf(Image.open(p)) for p in paths])
        t = time.perf_counter()
        x = x.to(a.device, torch.float16 if a.precision == "fp16" else torch.float32)
        with torch.no_grad():
            f = model.encode_image(x)
        feats.append(f.float().cpu().numpy())  # the copy waits for the GPU
        now = time.perf_counter()
        forward += now - t
        rss.append(rss_mib())
        print(f"encode: batch {b + 1}/{batches}: {len(paths)} images in {now - last:.3f} s "
              f"(model {now - t:.3f} s), RSS {rss[-1]:.1f} MiB", file=sys.stderr)
        last = now
    secs = time.perf_counter() - start
    cpu_ms = (time.process_time() - cpu0) * 1000 / len(a.images)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(a.images)
    print(f"encode: {n} images in {secs:.3f} s ({n / secs:.2f} images/s; model {forward:.3f} s; "
          f"CPU {cpu_ms:.1f} ms per item), peak RSS {peak:.1f} MiB, RSS after each batch {min(rss):.1f}-{max(rss):.1f} MiB", file=sys.stderr)
    np.save(a.out, np.concatenate(feats).astype(np.float32))


if __name__ == "__main__":
    main()
