"""Writes pickles made by CPython's pickle module, and a JSON description
of what each one holds, as the reference for package pickle. Needs only the
standard library; run through `make fixtures` or directly with Python 3.8+.

Files written next to this script:
  values_p<N>.pkl  a dict of plain values, pickled with protocol N (0..5)
  objects_p<N>.pkl {"train": [...], "val": [...]} of instances of a stand-in
                   class dassl.data.datasets.base_dataset.Datum (N = 0, 2, 4, 5)
  expected.json    each values file's value, and the objects' value (key
                   "objects"), as a tagged tree (see describe)
  evil_p<N>.pkl    pickles that would run a command or evaluate code if a
                   Python unpickler loaded them (N = 2, 4); the Go reader
                   must refuse them (they are only written, never loaded)
"""
import json
import os
import pickle
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))

# A stand-in for Dassl's Datum under the same module path, so that the
# pickles name the same class as CoOp's caches do.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from dassl_datum import datum_class  # noqa: E402

Datum = datum_class()


def describe(v):
    """A tagged tree that the Go test rebuilds from the decoded value."""
    if v is None:
        return ["none"]
    if isinstance(v, bool):
        return ["bool", v]
    if isinstance(v, int):
        return ["int", str(v)]
    if isinstance(v, float):
        return ["float", struct.pack(">d", v).hex()]
    if isinstance(v, str):
        return ["str", v]
    if isinstance(v, (bytes, bytearray)):
        return ["bytes", bytes(v).hex()]
    if isinstance(v, list):
        return ["list"] + [describe(x) for x in v]
    if isinstance(v, tuple):
        return ["tuple"] + [describe(x) for x in v]
    if isinstance(v, dict):
        return ["dict"] + [[describe(k), describe(x)] for k, x in v.items()]
    if isinstance(v, frozenset):
        return ["frozenset"] + [describe(x) for x in v]
    if isinstance(v, set):
        return ["set"] + [describe(x) for x in v]
    if isinstance(v, Datum):
        cls = type(v)
        return ["obj", cls.__module__ + "." + cls.__qualname__, describe(v.__dict__)]
    raise TypeError(type(v))


def values(protocol):
    shared = [7, 8]
    v = {
        "small": 1, "zero": 0, "byte": 255, "u16": 300, "u16max": 65535,
        "i32": 70000, "neg": -5, "negbig32": -(2**31), "i64": 2**62,
        "big": 2**70 + 12345, "negbig": -(2**65) - 1, "minus1_long": -(2**64),
        "f": 0.1, "fneg": -2.5e-300, "finf": float("inf"),
        "s": "h\u00e9llo \u2603 \U0001f600", "long_s": "x" * 300, "empty_s": "",
        "tuple0": (), "tuple1": (1,), "tuple2": (1, "a"), "tuple3": (1, 2, 3),
        "tuple4": (1, 2, 3, (4,)), "list": [1, [2, 3], []],
        "shared": [shared, shared],
        "none": None, "t": True, "f0": False,
        "nested": {"a": {"b": [None, {"c": (True,)}]}},
        3: "int key", (1, 2): "tuple key",
    }
    if protocol in (1, 4):
        v["many"] = list(range(1001))  # more than one APPENDS batch
    if protocol >= 3:
        v["bytes"] = b"\x00\x01\xff"
    if protocol >= 4:
        v["set"] = {5}
        v["fset"] = frozenset([6])
    if protocol >= 5:
        v["ba"] = bytearray(b"xy")
    return v


def objects():
    out = []
    for i in range(90):  # enough memo entries to need LONG_BINGET/LONG_BINPUT
        out.append(Datum(impath="/h/caltech-101/101_ObjectCategories/c%d/%d.jpg" % (i % 7, i),
                         label=i % 7, domain=0, classname="class_%d" % (i % 7)))
    # "again" refers back to an object memoized late (LONG_BINGET).
    return {"train": out[:60], "val": out[60:], "again": out[-1]}


expected = {}
for p in range(0, pickle.HIGHEST_PROTOCOL + 1):
    name = "values_p%d.pkl" % p
    v = values(p)
    with open(os.path.join(here, name), "wb") as f:
        pickle.dump(v, f, protocol=p)
    expected[name] = describe(v)
# The same objects with every protocol; CoOp's caches use 4 or 5.
expected["objects"] = describe(objects())
for p in (0, 2, 4, 5):
    with open(os.path.join(here, "objects_p%d.pkl" % p), "wb") as f:
        pickle.dump(objects(), f, protocol=p)



class RunCommand:
    """Unpickling this in Python would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


class EvalCode:
    """Unpickling this in Python would call eval."""

    def __reduce__(self):
        return (eval, ("print('this must never run')",))


for p, evil in ((2, RunCommand()), (4, {"train": [EvalCode()]})):
    with open(os.path.join(here, "evil_p%d.pkl" % p), "wb") as f:
        pickle.dump(evil, f, protocol=p)

with open(os.path.join(here, "expected.json"), "w") as f:
    json.dump({"python": sys.version.split()[0], "files": expected}, f, separators=(",", ":"))
    f.write("\n")
print("wrote pickles and expected.json (Python %s)" % sys.version.split()[0])
