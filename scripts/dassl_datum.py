"""A stand-in for Dassl's Datum class under Dassl's module path.

CoOp's few-shot caches pickle dassl.data.datasets.base_dataset.Datum
instances; a pickle names the class by that path. datum_class() writes a
minimal package with that path into a temporary folder, puts it on
sys.path and returns the class, so that fixture generators can write
pickles that name the same class without Dassl installed.
"""
import os
import sys
import tempfile


def datum_class():
    """Returns a Datum class importable as Dassl's (impath, label, domain, classname)."""
    tmp = tempfile.mkdtemp()
    pkg = os.path.join(tmp, "dassl", "data", "datasets")
    os.makedirs(pkg)
    for d in ("dassl", "dassl/data", "dassl/data/datasets"):
        open(os.path.join(tmp, d, "__init__.py"), "w").close()
    with open(os.path.join(pkg, "base_dataset.py"), "w") as f:
        f.write(
            "class Datum:\n"
            "    def __init__(self, impath='', label=0, domain=0, classname=''):\n"
            "        self._impath = impath\n"
            "        self._label = label\n"
            "        self._domain = domain\n"
            "        self._classname = classname\n"
        )
    sys.path.insert(0, tmp)
    from dassl.data.datasets.base_dataset import Datum

    return Datum
