"""Writes the fixtures of package clip/preprocess: small synthetic test
images in the formats and modes the decoder handles, and what Pillow and
torchvision compute from them (the reference the Go tests compare with).

Everything is synthetic and deterministic (numpy.random.RandomState seeds).
Outputs, all in this directory:

  img/*            encoded test images (JPEG, PNG, GIF, WebP, BMP, TIFF, and
                   broken files)
  decoded/*.npy    np.asarray(Image.open(f).convert("RGB")), uint8 HxWx3
  resize/*.npy     Image.resize((w, h), Image.BICUBIC) of the PNG sources
  crop/*.npy       Image.crop, torchvision center_crop, FLIP_LEFT_RIGHT,
                   torchvision resized_crop (+ hflip)
  test/*.npy       CLIP's test transform (Resize(n, bicubic), CenterCrop(n),
                   ToTensor, Normalize(CLIP mean/std)), float32 3xnxn, and
                   (*_u8.npy) the uint8 crop before ToTensor
  modes/*          sources in every mode Pillow opens (1, L, LA, P with and
                   without transparency, RGB, RGBA, CMYK, I, I;16 as files;
                   I and F also as raw .npy arrays) and the uint8 RGB
                   output of CLIP's test transform in OpenAI's order (resize
                   and crop the image as opened, convert("RGB") last) and
                   Dassl's (convert first), plus resized crops in the mode
  bench_500x375.jpg  the benchmark image
  manifest.json    the cases above, library versions, and statistics of
                   torchvision's RandomResizedCrop.get_params over many draws

Run through `make fixtures`, or directly with a Python that has torch,
torchvision, Pillow and numpy (the script finds one: $PYTHON,
/usr/bin/python3, python3).
"""
import io
import json
import os
import struct
import sys
import zlib

NEEDED = "torch, torchvision, PIL, numpy"


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("torch", "torchvision", "PIL", "numpy")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
import torchvision.transforms as T  # noqa: E402
import torchvision.transforms.functional as TF  # noqa: E402
from PIL import Image, features  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BICUBIC = Image.BICUBIC
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

manifest = {
    "versions": {"PIL": PIL.__version__, "torch": torch.__version__,
                 "torchvision": torchvision.__version__, "numpy": np.__version__,
                 "libjpeg": features.version("jpg"), "libwebp": features.version("webp")},
    "decode": [], "decode_errors": [], "resize": [], "crop": [], "resized_crop": [],
    "test_transform": [], "rrc_stats": [],
}


def out(*parts):
    path = os.path.join(HERE, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def rel(path):
    return os.path.relpath(path, HERE)


# ---------------------------------------------------------------------------
# Synthetic images


def synth(w, h, seed, noise=3.0):
    """A photo-like RGB image: smooth gradients and waves, hard-edged
    ellipses and rectangles, a patch of fine stripes (aliasing) and mild
    noise."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    s = float(max(w, h))
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b = rs.uniform(-120, 120, size=2)
        f1, f2, p = rs.uniform(2, 9), rs.uniform(2, 9), rs.uniform(0, 6.3)
        img[..., c] = 128 + a * xx / s + b * yy / s + 40 * np.sin(f1 * xx / s + f2 * yy / s + p)
    for _ in range(6):
        cx, cy = rs.uniform(0, w), rs.uniform(0, h)
        rx, ry = rs.uniform(0.05, 0.3) * s, rs.uniform(0.05, 0.3) * s
        color = rs.uniform(0, 255, size=3)
        mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        img[mask] = color
    x0, y0 = int(rs.uniform(0, w * 0.6)), int(rs.uniform(0, h * 0.6))
    x1, y1 = min(w, x0 + max(4, w // 4)), min(h, y0 + max(4, h // 4))
    img[y0:y1, x0:x1] = rs.uniform(0, 255, size=3)
    sx0, sy0 = int(w * 0.55), int(h * 0.1)
    stripes = ((xx + yy) % 3 < 1.5)[sy0:sy0 + h // 4, sx0:sx0 + w // 3]
    img[sy0:sy0 + h // 4, sx0:sx0 + w // 3][stripes] = (250, 250, 250)
    img += rs.normal(0, noise, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def tiles(w, h, seed, tile=16):
    """Constant-color 16x16 tiles (aligned to JPEG MCUs): a JPEG of this at
    quality 100 decodes to exact constant planes in any decoder, so only
    chroma upsampling and color conversion can differ."""
    rs = np.random.RandomState(seed)
    img = np.zeros((h, w, 3), np.uint8)
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            img[ty:ty + tile, tx:tx + tile] = rs.randint(0, 256, size=3)
    return img


def save_u8(path, arr):
    np.save(path, np.ascontiguousarray(arr, dtype=np.uint8))


# ---------------------------------------------------------------------------
# Hand-written PNG encoder for the 16-bit variants Pillow cannot write.


def write_png(path, data, color_type, bit_depth):
    """data: HxWxC array of the samples (uint16 for 16-bit)."""
    h, w = data.shape[:2]
    if bit_depth == 16:
        raw = data.astype(">u2").reshape(h, -1).tobytes()
        row = len(raw) // h
    else:
        raw = data.astype(np.uint8).reshape(h, -1).tobytes()
        row = len(raw) // h
    body = b"".join(b"\x00" + raw[y * row:(y + 1) * row] for y in range(h))

    def chunk(kind, payload):
        c = struct.pack(">I", len(payload)) + kind + payload
        return c + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(body, 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# ---------------------------------------------------------------------------
# GIF helper: move the first frame inside a larger logical screen.


def gif_offset(data, screen_w, screen_h, left, top):
    b = bytearray(data)
    struct.pack_into("<HH", b, 6, screen_w, screen_h)
    pos = 13
    if b[10] & 0x80:
        pos += 3 * (2 << (b[10] & 7))
    while b[pos] == 0x21:
        pos += 2
        while b[pos]:
            pos += b[pos] + 1
        pos += 1
    assert b[pos] == 0x2C, "no image descriptor"
    struct.pack_into("<HH", b, pos + 1, left, top)
    return bytes(b)


# ---------------------------------------------------------------------------
# Decoding fixtures


def add_decode(name, data_or_image=None, **save_kw):
    """Writes img/<name> (bytes, or a PIL image saved with save_kw) and the
    RGB array Pillow decodes from it."""
    path = out("img", name)
    if isinstance(data_or_image, (bytes, bytearray)):
        with open(path, "wb") as f:
            f.write(data_or_image)
    elif data_or_image is not None:
        data_or_image.save(path, **save_kw)
    im = Image.open(path)
    mode = im.mode
    rgb = np.asarray(im.convert("RGB"))
    ref = out("decoded", os.path.splitext(name)[0] + ".npy")
    save_u8(ref, rgb)
    manifest["decode"].append({"file": rel(path), "ref": rel(ref), "pil_mode": mode,
                               "format": Image.open(path).format})


photo = synth(45, 33, 1)
photo_img = Image.fromarray(photo)
even = Image.fromarray(synth(44, 32, 2))

# JPEG
add_decode("jpeg_444.jpg", photo_img, quality=90, subsampling=0)
add_decode("jpeg_422.jpg", photo_img, quality=90, subsampling=1)
add_decode("jpeg_420.jpg", photo_img, quality=90, subsampling=2)
add_decode("jpeg_420_even.jpg", even, quality=90, subsampling=2)
add_decode("jpeg_progressive.jpg", photo_img, quality=85, subsampling=2, progressive=True)
add_decode("jpeg_gray.jpg", photo_img.convert("L"), quality=90)
add_decode("jpeg_cmyk.jpg", photo_img.convert("CMYK"), quality=90)
for ss, tag in ((0, "444"), (1, "422"), (2, "420")):
    add_decode("tiles_%s.jpg" % tag, Image.fromarray(tiles(45, 33, 3)), quality=100, subsampling=ss)
# chroma width <= 2: libjpeg falls back to replication
add_decode("tiles_420_narrow.jpg", Image.fromarray(tiles(4, 37, 4, tile=16)), quality=100, subsampling=2)
add_decode("tiles_422_narrow.jpg", Image.fromarray(tiles(3, 20, 5, tile=16)), quality=100, subsampling=1)

# PNG
add_decode("png_rgb.png", photo_img)
add_decode("png_l.png", photo_img.convert("L"))
add_decode("png_1bit.png", photo_img.convert("1"))
add_decode("png_p.png", photo_img.quantize(colors=37))
p_trns = photo_img.quantize(colors=16)
p_trns.info["transparency"] = 3
add_decode("png_p_trns.png", p_trns, transparency=3)
rs = np.random.RandomState(7)
alpha = rs.randint(0, 256, size=photo.shape[:2]).astype(np.uint8)
alpha[:5] = 0
add_decode("png_rgba.png", Image.fromarray(np.dstack([photo, alpha]), "RGBA"))
add_decode("png_la.png", Image.fromarray(np.dstack([np.asarray(photo_img.convert("L")), alpha]), "LA"))
g16 = (photo[..., 0].astype(np.uint16) * 257 // 3 + rs.randint(0, 50, size=photo.shape[:2])).astype(np.uint16)
g16[:3] = rs.randint(0, 256, size=(3, photo.shape[1]))  # some values below 256 (not clipped)
write_png(out("img", "png_gray16.png"), g16[..., None], 0, 16)
add_decode("png_gray16.png")
rgb16 = photo.astype(np.uint16) * 257 + rs.randint(0, 257, size=photo.shape).astype(np.uint16)
write_png(out("img", "png_rgb16.png"), rgb16, 2, 16)
add_decode("png_rgb16.png")
a16 = alpha.astype(np.uint16) * 257
write_png(out("img", "png_rgba16.png"), np.dstack([rgb16, a16]), 6, 16)
add_decode("png_rgba16.png")
write_png(out("img", "png_la16.png"), np.dstack([g16, a16]), 4, 16)
add_decode("png_la16.png")

# GIF
gif_p = photo_img.quantize(colors=64)
add_decode("gif_p.gif", gif_p)
buf = io.BytesIO()
trns = int(np.bincount(np.asarray(gif_p).ravel()).argmax())  # a color that is used
gif_p.save(buf, "GIF", transparency=trns, optimize=False)  # optimize would drop it
add_decode("gif_trns.gif", buf.getvalue())
buf = io.BytesIO()
Image.fromarray(synth(20, 10, 6)).quantize(colors=8).save(buf, "GIF", transparency=2)
add_decode("gif_offset.gif", gif_offset(buf.getvalue(), 26, 15, 3, 2))
buf = io.BytesIO()
Image.fromarray(synth(20, 10, 6)).quantize(colors=8).save(buf, "GIF")
add_decode("gif_offset_opaque.gif", gif_offset(buf.getvalue(), 26, 15, 3, 2))

# WebP
add_decode("webp_lossy.webp", photo_img, quality=80)
add_decode("webp_lossy_even.webp", even, quality=70)
add_decode("webp_lossless.webp", photo_img, lossless=True)
add_decode("webp_alpha.webp", Image.fromarray(np.dstack([photo, alpha]), "RGBA"), quality=80)

# BMP, TIFF
add_decode("bmp_rgb.bmp", photo_img)
add_decode("tiff_rgb.tif", photo_img)

# Broken files: Pillow cannot decode them either.
with open(out("img", "jpeg_420.jpg"), "rb") as f:
    jpg = f.read()
with open(out("img", "png_rgb.png"), "rb") as f:
    png = f.read()
broken = {
    "bad_truncated.jpg": jpg[:len(jpg) // 2],
    "bad_truncated.png": png[:len(png) // 2],
    "bad_garbage.jpg": b"\xff\xd8\xff\xe0" + bytes(np.random.RandomState(8).randint(0, 256, 200, dtype=np.uint8)),
    "bad_unknown.bin": b"this is not an image\n",
    "bad_empty.png": b"",
}
for name, data in broken.items():
    path = out("img", name)
    with open(path, "wb") as f:
        f.write(data)
    try:
        Image.open(path).convert("RGB")
        raise SystemExit("Pillow decoded broken fixture " + name)
    except (OSError, SyntaxError, ValueError):
        pass
    manifest["decode_errors"].append(rel(path))

# ---------------------------------------------------------------------------
# Resize fixtures (PNG sources, so decoding is exact)

src_a = Image.fromarray(synth(37, 53, 10))
src_b = Image.fromarray(synth(211, 157, 11))
for name, im in (("a_37x53.png", src_a), ("b_211x157.png", src_b)):
    im.save(out("img", name))

resize_cases = {
    "a_37x53.png": [(80, 100), (74, 106), (38, 54), (36, 52), (100, 31), (37, 20), (15, 53), (37, 90),
                    (1, 1), (3, 200), (5, 7)],
    "b_211x157.png": [(112, 84), (105, 78), (211, 30), (30, 157), (17, 13), (5, 3), (1, 1), (210, 20),
                      (299, 20), (7, 150)],
}
for name, sizes in resize_cases.items():
    im = Image.open(out("img", name)).convert("RGB")
    for w, h in sizes:
        ref = out("resize", "%s_%dx%d.npy" % (os.path.splitext(name)[0], w, h))
        save_u8(ref, np.asarray(im.resize((w, h), BICUBIC)))
        manifest["resize"].append({"src": "img/" + name, "w": w, "h": h, "ref": rel(ref)})

# Resize(shorter side) alone (torchvision), for the size computation.
for name, size in (("a_37x53.png", 50), ("b_211x157.png", 100)):
    im = Image.open(out("img", name)).convert("RGB")
    r = TF.resize(im, size, interpolation=T.InterpolationMode.BICUBIC)
    ref = out("resize", "%s_short%d.npy" % (os.path.splitext(name)[0], size))
    save_u8(ref, np.asarray(r))
    manifest["resize"].append({"src": "img/" + name, "shorter": size, "w": r.size[0], "h": r.size[1],
                               "ref": rel(ref)})

# ---------------------------------------------------------------------------
# Crop / flip fixtures

a = Image.open(out("img", "a_37x53.png")).convert("RGB")
crops = [
    {"op": "crop", "box": [10, 7, 25, 16]},
    {"op": "crop", "box": [-5, 10, 15, 80]},
    {"op": "crop", "box": [30, 50, 45, 60]},
    {"op": "center_crop", "size": 36},
    {"op": "center_crop", "size": 37},
    {"op": "center_crop", "size": 20},
    {"op": "center_crop", "size": 45},
    {"op": "center_crop", "size": 60},
    {"op": "hflip"},
]
for i, c in enumerate(crops):
    if c["op"] == "crop":
        l, t, r, b = c["box"]
        res = a.crop((l, t, r, b))
    elif c["op"] == "center_crop":
        res = TF.center_crop(a, c["size"])
    else:
        res = a.transpose(Image.FLIP_LEFT_RIGHT)
    ref = out("crop", "a_%d_%s.npy" % (i, c["op"]))
    save_u8(ref, np.asarray(res))
    manifest["crop"].append(dict(c, src="img/a_37x53.png", ref=rel(ref)))

b = Image.open(out("img", "b_211x157.png")).convert("RGB")
for src_name, im, (top, left, h, w), size, flip in (
        ("b_211x157.png", b, (30, 17, 120, 150), 64, False),
        ("b_211x157.png", b, (30, 17, 120, 150), 64, True),
        ("b_211x157.png", b, (0, 0, 157, 211), 61, False),
        ("b_211x157.png", b, (100, 160, 50, 50), 50, True),
        ("a_37x53.png", a, (5, 3, 30, 20), 50, False)):
    res = TF.resized_crop(im, top, left, h, w, [size, size], interpolation=T.InterpolationMode.BICUBIC)
    if flip:
        res = TF.hflip(res)
    ref = out("crop", "rrc_%s_%d_%d_%d_%d_%d%s.npy" % (src_name[0], top, left, h, w, size, "_flip" if flip else ""))
    save_u8(ref, np.asarray(res))
    manifest["resized_crop"].append({"src": "img/" + src_name, "top": top, "left": left, "h": h, "w": w,
                                     "size": size, "flip": flip, "ref": rel(ref)})

# ---------------------------------------------------------------------------
# CLIP's test transform (clip.py _transform)


def clip_transform(n):
    return T.Compose([
        T.Resize(n, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(n),
        lambda im: im.convert("RGB"),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


for name, n in (("b_211x157.png", 224), ("b_211x157.png", 97), ("a_37x53.png", 64), ("a_37x53.png", 37)):
    im = Image.open(out("img", name)).convert("RGB")
    x = clip_transform(n)(im).numpy().astype(np.float32)
    ref = out("test", "%s_%d.npy" % (os.path.splitext(name)[0], n))
    np.save(ref, x)
    # the uint8 crop before ToTensor, to tell resampling from float errors
    crop = T.CenterCrop(n)(T.Resize(n, interpolation=T.InterpolationMode.BICUBIC)(im))
    entry = {"src": "img/" + name, "size": n, "ref": rel(ref)}
    if n < 224:  # (kept out for 224 to save space)
        cref = out("test", "%s_%d_u8.npy" % (os.path.splitext(name)[0], n))
        save_u8(cref, np.asarray(crop))
        entry["ref_u8"] = rel(cref)
    manifest["test_transform"].append(entry)

# ---------------------------------------------------------------------------
# RandomResizedCrop statistics: torch's RNG cannot be reproduced, so the Go
# tests compare the distribution of the crop boxes.

torch.manual_seed(0)
N = 20000
for (W, H), scale in (((500, 375), (0.08, 1.0)), ((500, 375), (0.5, 1.0)), ((1000, 60), (0.08, 1.0)),
                      ((60, 1000), (0.08, 1.0)), ((37, 53), (0.08, 1.0))):
    dummy = Image.new("RGB", (W, H))
    ratio = (3.0 / 4.0, 4.0 / 3.0)
    boxes = np.array([T.RandomResizedCrop.get_params(dummy, list(scale), list(ratio)) for _ in range(N)],
                     dtype=np.float64)  # i (top), j (left), h, w
    top, left, h, w = boxes.T
    stats = {}
    for key, v in (("x", left), ("y", top), ("w", w), ("h", h), ("area", w * h / (W * H)), ("aspect", w / h)):
        stats[key] = {"mean": float(v.mean()), "std": float(v.std())}
    in_ratio = W / H
    if in_ratio < ratio[0]:
        fw, fh = W, int(round(W / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(H * ratio[1])), H
    else:
        fw, fh = W, H
    fb = ((H - fh) // 2, (W - fw) // 2, fh, fw)
    stats["fallback_box"] = {"x": fb[1], "y": fb[0], "w": fw, "h": fh}
    stats["fallback_frac"] = float(np.mean(np.all(boxes == np.array(fb, dtype=np.float64), axis=1)))
    manifest["rrc_stats"].append({"W": W, "H": H, "scale": list(scale), "ratio": list(ratio), "n": N,
                                  "stats": stats})

# ---------------------------------------------------------------------------
# Image modes and the two orders (modes/): OpenAI's preprocess resizes and
# crops the image in the mode Image.open gives it and converts to RGB at
# the end; Dassl's loader (CoOp, CLIP-Adapter) converts first. Sources in
# every mode Pillow opens (as files where a format carries the mode, as
# raw .npy arrays for I and F), the uint8 RGB crop of each order, for
# down- and up-scaling and odd sizes.

manifest["modes"] = []


def mode_sources():
    rs = np.random.RandomState(30)
    base = synth(33, 25, 31)
    img = Image.fromarray(base)
    yy, xx = np.mgrid[0:25, 0:33]
    # alpha: fully transparent regions, a ramp and noise
    alpha = np.clip(xx * 9 - 40 + rs.randint(-30, 30, size=xx.shape), 0, 255).astype(np.uint8)
    alpha[:, :6] = 0
    alpha[18:, 20:] = 255
    # transparent pixels keep (random) stored colors
    srcs = {}
    srcs["rgba.png"] = Image.fromarray(np.dstack([base, alpha]), "RGBA")
    srcs["la.png"] = Image.fromarray(np.dstack([np.asarray(img.convert("L")), alpha]), "LA")
    srcs["p.png"] = img.quantize(colors=40)
    pt = img.quantize(colors=24)
    srcs["p_trns.png"] = (pt, {"transparency": 5})
    srcs["p.gif"] = (img.quantize(colors=32), {"transparency": 3, "optimize": False})
    srcs["l.png"] = img.convert("L")
    srcs["rgb.png"] = img
    # Pillow's RGB->CMYK conversion leaves K at 0, where CMYK->RGB is linear
    # and the orders agree: use a K channel of its own.
    k = np.clip(base[..., 1].astype(np.int64) // 2 + xx * 3 - 20, 0, 255).astype(np.uint8)
    srcs["cmyk.jpg"] = (Image.fromarray(np.dstack([255 - base, k]), "CMYK"), {"quality": 90})
    srcs["bit1.png"] = img.convert("1")
    srcs["p.bmp"] = img.quantize(colors=20)
    srcs["l_ramp.bmp"] = img.convert("L").convert("P")  # gray ramp palette: Pillow opens L
    srcs["rgba_lossless.webp"] = (Image.fromarray(np.dstack([base, alpha]), "RGBA"), {"lossless": True})
    # 16-bit gray PNG opens as I (values up to 65535)
    g16 = (base[..., 1].astype(np.int64) * 3 + rs.randint(0, 40, size=xx.shape)).astype(np.uint16)
    g16[:4] = rs.randint(0, 256, size=(4, 33))
    g16[10:14, 5:20] = 65535
    srcs["gray16.png"] = ("png16", g16)
    # I;16 (16-bit TIFF)
    srcs["i16.tif"] = Image.fromarray(g16, "I;16")
    # raw arrays for I (signed, wide range) and F (fractions, negative, NaN-free)
    ia = (base[..., 0].astype(np.int32) - 60) * 5 + rs.randint(-3, 3, size=xx.shape).astype(np.int32)
    srcs["i.npy"] = ("I", ia.astype(np.int32))
    fa = base[..., 2].astype(np.float32) * 1.3 - 40 + rs.uniform(0, 1, size=xx.shape).astype(np.float32)
    srcs["f.npy"] = ("F", fa.astype(np.float32))
    return srcs


def open_mode_source(name, spec):
    path = out("modes", name)
    if isinstance(spec, tuple) and spec[0] == "png16":
        write_png(path, spec[1][..., None], 0, 16)
    elif isinstance(spec, tuple) and spec[0] in ("I", "F"):
        np.save(path, spec[1])
        return Image.fromarray(spec[1], spec[0])
    elif isinstance(spec, tuple):
        spec[0].save(path, **spec[1])
    else:
        spec.save(path)
    return Image.open(path)


def openai_order(im, n, resize_mode="shortest", interp=BICUBIC):
    """CLIP's (and OpenCLIP's) test transform up to the tensor: resize and
    crop the PIL image as it is, then convert to RGB."""
    mode = T.InterpolationMode.BICUBIC if interp == BICUBIC else T.InterpolationMode.BILINEAR
    if resize_mode == "shortest":
        im = TF.center_crop(TF.resize(im, n, interpolation=mode), n)
    elif resize_mode == "squash":
        im = TF.resize(im, [n, n], interpolation=mode)
    else:  # longest: scale the longer side to n, pad (fill 0) / crop centred
        w, h = im.size
        r = max(w / n, h / n)
        im = TF.resize(im, [round(h / r), round(w / r)], interpolation=mode)
        w, h = im.size
        if w < n or h < n:
            pl, pt = max(n - w, 0) // 2, max(n - h, 0) // 2
            im = TF.pad(im, [pl, pt, max(n - w, 0) - pl, max(n - h, 0) - pt], fill=0)
            w, h = im.size
        im = TF.crop(im, int(round((h - n) / 2.0)), int(round((w - n) / 2.0)), n, n)
    return im.convert("RGB")


for name, spec in mode_sources().items():
    im = open_mode_source(name, spec)
    im.load()
    entry = {"src": "modes/" + name, "pil_mode": im.mode, "w": im.size[0], "h": im.size[1], "cases": []}
    cases = [("openai", n, "shortest", "bicubic") for n in (11, 25, 29, 40)] + [("dassl", 29, "shortest", "bicubic")]
    if name in ("p.png", "cmyk.jpg", "rgba.png", "f.npy"):
        cases += [("openai", 30, "longest", "bilinear"), ("openai", 18, "squash", "bicubic")]
    if name in ("rgba.png", "la.png", "p.gif", "p_trns.png", "cmyk.jpg", "gray16.png"):
        cases.append(("openai", 32, "shortest", "bicubic"))  # cmd/clip's test model (R = 32)
    for order, n, rmode, interp in cases:
        base = name.replace(".", "_")
        ref = out("modes", "%s_%s_%d_%s_%s.npy" % (base, order, n, rmode, interp))
        src = im if order == "openai" else im.convert("RGB")
        c = {"order": order, "size": n, "resize_mode": rmode, "interpolation": interp}
        try:
            res = openai_order(src, n, rmode, BICUBIC if interp == "bicubic" else Image.BILINEAR)
        except ValueError as e:  # Pillow cannot resize I;16 with bicubic
            c["error"] = str(e)
            entry["cases"].append(c)
            continue
        save_u8(ref, np.asarray(res))
        c["ref"] = rel(ref)
        entry["cases"].append(c)
    # torchvision's resized_crop (RandomResizedCrop's operation) in the
    # image's mode, then RGB
    entry["resized_crop"] = []
    if im.mode not in ("I;16",):
        for top, left, h, w, n in ((3, 5, 17, 21, 16), (0, 0, 25, 33, 7)):
            res = TF.resized_crop(im, top, left, h, w, [n, n], interpolation=T.InterpolationMode.BICUBIC)
            ref = out("modes", "%s_rrc_%d_%d_%d_%d_%d.npy" % (name.replace(".", "_"), top, left, h, w, n))
            save_u8(ref, np.asarray(res.convert("RGB")))
            entry["resized_crop"].append({"top": top, "left": left, "h": h, "w": w, "size": n, "ref": rel(ref)})
    manifest["modes"].append(entry)

# ---------------------------------------------------------------------------
# Benchmark image

Image.fromarray(synth(500, 375, 20)).save(out("bench_500x375.jpg"), quality=90)

with open(out("manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.write("\n")
total = 0
for root, _, names in os.walk(HERE):
    for n in names:
        total += os.path.getsize(os.path.join(root, n))
print("fixtures written to %s (%.0f KB in total)" % (HERE, total / 1024))
