"""Writes the .npy fixtures for package internal/npy with NumPy's own writer
(numpy.save / numpy.lib.format.write_array), plus expected.json listing
every file's shape and values as NumPy reads them back. Needs numpy; run
through `make fixtures` or directly with a Python that has it."""
import json
import math
import os
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("numpy")

import numpy as np  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))


def enc(v):
    """JSON-safe number: NaN and infinities as strings."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


files = {}


def save(name, arr, version=None):
    path = os.path.join(here, name)
    if version is None:
        np.save(path, arr)
    else:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, arr, version=version)
    back = np.load(path)
    files[name] = {
        "shape": list(back.shape),
        "descr": np.lib.format.dtype_to_descr(back.dtype),
        "fortran": bool(np.isfortran(back)) and back.ndim > 1,
        # values in C order, as Go returns them
        "values": [enc(v) if back.dtype.kind == "f" else int(v)
                   for v in np.ascontiguousarray(back).ravel()],
    }


f4 = (np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.5) - np.float32(1)).astype(np.float32)
f4[0, 1] = np.float32(1) / np.float32(3)
save("f4_2x3.npy", f4)
save("f4_1d.npy", np.array([0.1, -2.5, 3e38, 1e-45, -0.0], dtype=np.float32))
save("f4_0d.npy", np.array(7.25, dtype=np.float32))
save("f4_empty.npy", np.zeros((0, 3), dtype=np.float32))
save("f4_long.npy", (np.arange(120 * 3, dtype=np.float32) / np.float32(8) - np.float32(20)).reshape(120, 3))
save("f4_fortran.npy", np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4)))
save("f4_big_endian.npy", np.array([[1.5, -2.25], [1e-3, 65504]], dtype=">f4"))
save("f4_v2.npy", np.arange(4, dtype=np.float32).reshape(2, 2) / np.float32(7), version=(2, 0))
save("f8_2x2.npy", np.array([[1 / 3, -1e-310], [1e300, 2.5]], dtype=np.float64))
save("f2_special.npy", np.array([0, -0.0, 1, -2, 65504, 6e-8, 1e-5, np.inf, -np.inf, np.nan, 0.333],
                                dtype=np.float16))
save("i8_labels.npy", np.array([0, 5, -3, 2**40, -(2**62)], dtype=np.int64))
save("i4_2x2.npy", np.array([[1, -2], [2**31 - 1, -(2**31)]], dtype=np.int32))
save("u1_3.npy", np.array([0, 128, 255], dtype=np.uint8))
save("i2_fortran.npy", np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3) - 3))

with open(os.path.join(here, "expected.json"), "w") as f:
    f.write('{"numpy": %s, "files": {\n' % json.dumps(np.__version__))
    f.write(",\n".join("%s: %s" % (json.dumps(k), json.dumps(files[k], sort_keys=True))
                       for k in sorted(files)))
    f.write("\n}}\n")
print("wrote", len(files), "fixtures to", here)
