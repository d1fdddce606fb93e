"""The PyTorch half of the data loading benchmark (bench/data/run.sh).

    python3 torch_loader.py --root DIR [--workers 2] [--n 2000] [--size 224] [--batch 32]

Loads the JPEGs of the image folder DIR/<class>/<image> (torchvision's
ImageFolder: classes and files sorted, the same list as the Go side) the
way the reference code does for training: PIL open + convert("RGB"),
RandomResizedCrop(size, bicubic), RandomHorizontalFlip, ToTensor,
Normalize with CLIP's mean and std, batched by a torch DataLoader with
num_workers worker processes. The list is repeated until n images are
loaded. The clock starts when the first batch arrives and stops after the
last. Besides wall-clock images/s it reports the CPU time per image over
the same span, of the main process and the worker processes together
(read from /proc, Linux only), which is less sensitive to other load on
the machine. The last line printed is "images/s R".
"""

import argparse
import os
import sys
import time

try:
    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision import datasets, transforms
    from torchvision.transforms import InterpolationMode
except ImportError as e:  # pragma: no cover
    sys.exit(f"torch_loader.py needs torch and torchvision ({e}); use Debian's /usr/bin/python3")

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class Repeated(Dataset):
    """The samples of an ImageFolder, repeated to n items."""

    def __init__(self, folder, n):
        self.folder, self.n = folder, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.folder[i % len(self.folder)]


def proc_cpu(pid):
    """User + system CPU seconds of process pid (all threads), or 0."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 (utime, stime), counted from 1 with the comm field
    # as field 2; fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(it):
    """CPU seconds used so far by this process and the iterator's worker processes."""
    return proc_cpu(os.getpid()) + sum(proc_cpu(w.pid) for w in getattr(it, "_workers", []))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    if a.n < 2 * a.batch:
        sys.exit(f"--n {a.n} must be at least two batches")
    tf = transforms.Compose([
        transforms.RandomResizedCrop(a.size, interpolation=InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    folder = datasets.ImageFolder(a.root, transform=tf)
    loader = DataLoader(Repeated(folder, a.n), batch_size=a.batch, shuffle=False, num_workers=a.workers)
    torch.manual_seed(1)
    total_batches = len(loader)
    start, counted, batches = None, 0, 0
    it = iter(loader)
    for x, y in it:
        if batches == 0:
            start, start_cpu = time.perf_counter(), cpu_seconds(it)
        else:
            counted += x.shape[0]
        batches += 1
        if batches == total_batches:
            # Read the workers' CPU time before the iterator shuts them down.
            elapsed, cpu = time.perf_counter() - start, cpu_seconds(it) - start_cpu
    print(f"torch {torch.__version__}, torchvision, PIL: {len(folder)} files, {a.n} images in {batches} batches "
          f"of {a.batch} (workers {a.workers}, main threads {torch.get_num_threads()}); "
          f"timed {counted} images in {elapsed:.2f} s")
    print(f"cpu ms/image {1000 * cpu / counted:.2f}")
    print(f"images/s {counted / elapsed:.1f}")


if __name__ == "__main__":
    main()
