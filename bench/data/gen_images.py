"""Write photo-like JPEGs for the data loading benchmark (bench/data/run.sh).

    python3 gen_images.py OUT [--images 500] [--classes 10] [--seed 0]

OUT/<class>/img_NNNN.jpg, image sizes around 500x375 (both orientations,
like ImageNet/Caltech photos): smooth colour gradients, a few overlapping
filled shapes, fine texture noise and a mild blur, saved with PIL at
quality 90 and 4:2:0 chroma subsampling (PIL's default), so the files have
the size and entropy of ordinary photos rather than of flat synthetic
images. The output depends only on the arguments.
"""

import argparse
import os
import sys

try:
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter
except ImportError as e:  # pragma: no cover
    sys.exit(f"gen_images.py needs numpy and PIL ({e}); use Debian's /usr/bin/python3")


def draw(rng, w, h):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    base = rng.uniform(40, 220, 3)
    gx, gy = rng.uniform(-90, 90, 3), rng.uniform(-90, 90, 3)
    for c in range(3):
        img[..., c] = base[c] + gx[c] * xx / w + gy[c] * yy / h
    # Low-frequency "lighting": a few broad blobs.
    for _ in range(3):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.2, 0.6) * max(w, h)
        amp = rng.uniform(-50, 50, 3)
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        img += g[..., None] * amp
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(rng.integers(4, 12)):
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * w, y0 + rng.uniform(0.05, 0.5) * h
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            d.ellipse([x0, y0, x1, y1], fill=fill)
        elif kind == 1:
            d.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            d.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=fill)
    pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.6)))
    arr = np.asarray(pil).astype(np.float32)
    arr += rng.normal(0, rng.uniform(4, 10), arr.shape[:2])[..., None]  # luminance grain
    arr += rng.normal(0, 3, arr.shape)  # colour grain
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    for i in range(a.images):
        cls = f"class_{i % a.classes:02d}"
        os.makedirs(os.path.join(a.out, cls), exist_ok=True)
        long, short = int(rng.integers(440, 561)), int(rng.integers(300, 421))
        w, h = (long, short) if rng.random() < 0.75 else (short, long)
        path = os.path.join(a.out, cls, f"img_{i:04d}.jpg")
        draw(rng, w, h).save(path + ".tmp", "JPEG", quality=90)
        os.replace(path + ".tmp", path)
    print(f"wrote {a.images} images to {a.out}")


if __name__ == "__main__":
    main()
