"""Writes the reference fixtures of package datasets with CPython's own
random and pickle modules. Needs only the standard library (any Python
3.8+); run through `make fixtures` or directly.

Dassl's generate_fewshot_dataset is restated below from docs/protocol.md §1 (it
is short); what makes these fixtures a reference is that the draws come
from CPython's random module itself.

Files written next to this script:
  fewshot_cases.json   label layouts and, per (layout, shots, seed[, repeat]),
                       the indices of the items CoOp's sampler picks for train
                       and val; plus digests of the picks for many more seeds
  mini_split_zhou_Caltech101.json
                       a small split file in Caltech101's format
  coop_cache/shot_K-seed_S.pkl
                       CoOp-style few-shot caches of that split: pickled dicts
                       {"train": [Datum], "val": [Datum]} whose impaths point
                       into another machine's data root (protocols 4 and 5)
  coop_cache_bad/shot_1-seed_1.pkl
                       a cache naming an image that is not in the split
  coop_cache_evil/shot_1-seed_1.pkl
                       a cache whose unpickling in Python would run a shell
                       command (written only; the Go reader must refuse it)
  imagenet_layout.json, imagenet_cache/shot_4-seed_1.pkl
                       a tiny ImageNet tree (for the Go test to create) and a
                       CoOp cache of it ({"train": [...]} only)
  imagenet_fewshot.json
                       the 4-shot seed-1 train draw of that tree and the val
                       list drawn after it from the remaining train images
  imagenet_preprocessed.pkl, imagenet_preprocessed.json
                       CoOp's folder-scan cache of that tree with files in
                       an unsorted order, and CoOp's 4-shot seed-1 draw from it
"""
import hashlib
import json
import os
import pickle
import random
import sys

here = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- sampler


def fewshot(items, k, repeat=False):
    """Dassl's generate_fewshot_dataset for one list of (index, label)."""
    if k < 1:
        return items
    groups = {}
    for it in items:
        groups.setdefault(it[1], []).append(it)
    out = []
    for _, group in groups.items():
        if len(group) >= k:
            out.extend(random.sample(group, k))
        elif repeat:
            out.extend(random.choices(group, k=k))
        else:
            out.extend(group)
    return out


def coop_split(train, val, shots, seed, repeat=False, val_too=True):
    """CoOp: random.seed(seed); fewshot(train, K); fewshot(val, min(K, 4))."""
    random.seed(seed)
    t = fewshot(train, shots, repeat)
    v = fewshot(val, min(shots, 4), repeat) if val_too else []
    return [i for i, _ in t], [i for i, _ in v]


def expand(rle):
    """[[label, count], ...] -> [(index, label), ...]"""
    out = []
    for label, count in rle:
        for _ in range(count):
            out.append((len(out), label))
    return out


def rle(labels):
    out = []
    for l in labels:
        if out and out[-1][0] == l:
            out[-1][1] += 1
        else:
            out.append([l, 1])
    return out


def interleave(sizes, labels, seed):
    """Items of the given sizes in a shuffled file order (gen's own RNG)."""
    seq = [l for l, n in zip(labels, sizes) for _ in range(n)]
    random.Random(seed).shuffle(seq)
    return rle(seq)


def sorted_layout(sizes, labels=None):
    labels = labels if labels is not None else list(range(len(sizes)))
    return [[l, n] for l, n in zip(labels, sizes) if n > 0]


layouts = {
    "caltech_like": (sorted_layout([16, 20, 3, 40, 100, 17, 1, 22]),
                     sorted_layout([6, 8, 1, 16, 40, 7, 1, 9])),
    "interleaved": (interleave([5, 30, 86, 85, 2, 12], [3, 0, 5, 1, 4, 2], 11),
                    interleave([2, 12, 34, 34, 1, 5], [3, 0, 5, 1, 4, 2], 12)),
    "eurosat_like": (sorted_layout([200, 150, 300, 90, 100, 250, 120, 95, 210, 160]),
                     sorted_layout([80, 60, 120, 36, 40, 100, 48, 38, 84, 64])),
    "tiny": (sorted_layout([1, 1]), []),
    "sparse_labels": (sorted_layout([7, 25, 3, 90], [5, 3, 9, 0]),
                      sorted_layout([2, 10, 1, 36], [5, 3, 9, 0])),
    "exact_sizes": (sorted_layout([16, 8, 4, 2, 1, 32]), sorted_layout([4, 4, 3, 2, 1, 5])),
    "one_big_class": (sorted_layout([1000]), sorted_layout([300])),
    "set_boundaries": (sorted_layout([21, 22, 85, 86, 6, 5]), sorted_layout([21, 22, 5, 4, 3, 2])),
    "interleaved_big": (interleave([120, 95, 300, 18], [0, 1, 2, 3], 13),
                        interleave([30, 24, 75, 5], [0, 1, 2, 3], 14)),
}

cases = []
for name, (tr, va) in layouts.items():
    train, val = expand(tr), expand(va)
    plan = [(k, s) for k in (1, 2, 3, 4, 5, 6, 7, 8, 16, 20, 32) for s in (1, 2, 3)]
    plan += [(k, s) for k in (1, 16) for s in (0, 7, 42, 12345, 2**32 + 1)]
    for shots, seed in plan:
        t, v = coop_split(train, val, shots, seed)
        cases.append({"layout": name, "shots": shots, "seed": seed, "train": t, "val": v})
    for shots in (4, 16):  # Tip-Adapter's repeat=True, train only
        t, _ = coop_split(train, val, shots, 1, repeat=True, val_too=False)
        cases.append({"layout": name, "shots": shots, "seed": 1, "repeat": True, "train": t, "val": []})


def digest(t, v):
    s = ",".join(map(str, t)) + "|" + ",".join(map(str, v))
    return hashlib.sha256(s.encode()).hexdigest()[:16]


digests = []
for name in ("caltech_like", "interleaved", "set_boundaries"):
    tr, va = layouts[name]
    train, val = expand(tr), expand(va)
    for shots in (1, 2, 4, 8, 16):
        d = [digest(*coop_split(train, val, shots, seed)) for seed in range(200)]
        digests.append({"layout": name, "shots": shots, "seeds": 200, "digests": d})

with open(os.path.join(here, "fewshot_cases.json"), "w") as f:
    json.dump({"python": sys.version.split()[0],
               "layouts": {k: {"train": v[0], "val": v[1]} for k, v in layouts.items()},
               "cases": cases, "digests": digests}, f, separators=(",", ":"))
    f.write("\n")

# ---------------------------------------------------- split file and caches

# A stand-in for Dassl's Datum under the same module path, so that the
# pickles name the same class as CoOp's caches do.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from dassl_datum import datum_class  # noqa: E402

Datum = datum_class()

# Caltech101-like: Faces, Leopards, Motorbikes sort first and are renamed.
classes = [("Faces", "face", 20, 8), ("Leopards", "leopard", 9, 3), ("Motorbikes", "motorbike", 17, 6),
           ("accordion", "accordion", 3, 1), ("airplanes", "airplane", 25, 10),
           ("yin_yang", "yin_yang", 16, 4)]
split = {"train": [], "val": [], "test": []}
for label, (folder, name, ntr, nva) in enumerate(classes):
    nte = 3
    ids = list(range(1, ntr + nva + nte + 1))
    random.Random(100 + label).shuffle(ids)
    for key, part in (("train", ids[:ntr]), ("val", ids[ntr:ntr + nva]), ("test", ids[ntr + nva:])):
        for i in part:
            split[key].append(["%s/image_%04d.jpg" % (folder, i), label, name])
with open(os.path.join(here, "mini_split_zhou_Caltech101.json"), "w") as f:
    json.dump(split, f, indent=4)

ELSEWHERE = "/home/coop/DATA/caltech-101/101_ObjectCategories"


def datums(entries, prefix):
    return [Datum(impath=os.path.join(prefix, p), label=l, domain=0, classname=c) for p, l, c in entries]


def coop_cache(shots, seed):
    random.seed(seed)
    tr = fewshot(split["train"], shots)
    va = fewshot(split["val"], min(shots, 4))
    return {"train": datums(tr, ELSEWHERE), "val": datums(va, ELSEWHERE)}


os.makedirs(os.path.join(here, "coop_cache"), exist_ok=True)
for shots, seed, proto in ((4, 1, 4), (16, 2, 5), (1, 3, 4)):
    with open(os.path.join(here, "coop_cache", "shot_%d-seed_%d.pkl" % (shots, seed)), "wb") as f:
        pickle.dump(coop_cache(shots, seed), f, protocol=proto)

os.makedirs(os.path.join(here, "coop_cache_bad"), exist_ok=True)
bad = coop_cache(1, 1)
bad["train"][2] = Datum(impath=ELSEWHERE + "/Faces/image_9999.jpg", label=0, domain=0, classname="face")
with open(os.path.join(here, "coop_cache_bad", "shot_1-seed_1.pkl"), "wb") as f:
    pickle.dump(bad, f, protocol=4)


class RunCommand:
    """Unpickling this in Python would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


os.makedirs(os.path.join(here, "coop_cache_evil"), exist_ok=True)
with open(os.path.join(here, "coop_cache_evil", "shot_1-seed_1.pkl"), "wb") as f:
    pickle.dump({"train": [RunCommand()], "val": []}, f, protocol=4)

# A tiny ImageNet: CoOp lists wnid folders sorted and files in os.listdir
# order; the layout is given sorted (the Go test writes it as the
# package's listing file, so that this order is the one read).
wnids = [("n01440764", "tench", 10, 3), ("n01443537", "goldfish", 5, 2), ("n02102040", "English springer", 12, 4)]
train, test = [], []
for label, (w, name, ntr, nte) in enumerate(wnids):
    train += [("train/%s/%s_%03d.JPEG" % (w, w, i), label, name) for i in range(ntr)]
    test += [("val/%s/ILSVRC2012_val_%s_%02d.JPEG" % (w, w, i), label, name) for i in range(nte)]
with open(os.path.join(here, "imagenet_layout.json"), "w") as f:
    json.dump({"classnames": [[w, n] for w, n, _, _ in wnids], "train": train, "test": test}, f, indent=1)
random.seed(1)
picked = fewshot(train, 4)
# ImageNet has no val list: the toolkit draws its few-shot val on the same
# stream from the train images not picked, min(K, 4) per class
# (docs/protocol.md §7).
val_picked = fewshot([e for e in train if e not in picked], 4)
with open(os.path.join(here, "imagenet_fewshot.json"), "w") as f:
    json.dump({"shots": 4, "seed": 1, "train": [p for p, _, _ in picked], "val": [p for p, _, _ in val_picked]}, f, indent=1)
os.makedirs(os.path.join(here, "imagenet_cache"), exist_ok=True)
with open(os.path.join(here, "imagenet_cache", "shot_4-seed_1.pkl"), "wb") as f:
    pickle.dump({"train": datums(picked, "/mnt/old/imagenet/images")}, f, protocol=4)

# CoOp's imagenet/preprocessed.pkl with files in an unsorted (os.listdir-like)
# order inside each class, and what CoOp draws from it (4 shots, seed 1).
pre_train = []
for label in range(len(wnids)):
    files = [e for e in train if e[1] == label]
    random.Random(200 + label).shuffle(files)
    pre_train += files
random.seed(1)
pre_picked = fewshot(pre_train, 4)
with open(os.path.join(here, "imagenet_preprocessed.pkl"), "wb") as f:
    pickle.dump({"train": datums(pre_train, "/mnt/old/imagenet/images"),
                 "test": datums(test, "/mnt/old/imagenet/images")}, f, protocol=5)
with open(os.path.join(here, "imagenet_preprocessed.json"), "w") as f:
    json.dump({"train": [p for p, _, _ in pre_train], "fewshot_4_seed_1": [p for p, _, _ in pre_picked]}, f, indent=1)

print("wrote fewshot_cases.json (%d cases, %d digest rows), split, caches (Python %s)"
      % (len(cases), len(digests), sys.version.split()[0]))
