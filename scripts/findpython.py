"""Runs a fixture generator under a Python that can import what it needs.

Debian's python3-torch, python3-pil, python3-numpy and friends install for
/usr/bin/python3, which may not be the python3 first on PATH. A generator
calls reexec("torch", "numpy", ...) before importing those modules: when
the running Python can import them all it returns; otherwise it asks
scripts/find-python.sh (the one place that knows where to look: $PYTHON,
/usr/bin/python3, python3) for one that can, and re-runs the script there.
"""
import importlib.util
import os
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_MARK = "CLIPGO_FINDPYTHON_REEXEC"


def reexec(*modules):
    """Returns if this Python imports every module, else re-runs the script."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    script = os.path.basename(sys.argv[0])
    if os.environ.get(_MARK):
        sys.exit(f"{script}: {sys.executable} cannot import {', '.join(missing)}")
    found = subprocess.run([os.path.join(_HERE, "find-python.sh"), *modules], stdout=subprocess.PIPE, text=True)
    if found.returncode != 0:
        sys.exit(f"{script}: no Python to run it with (see above)")
    env = dict(os.environ, **{_MARK: "1"})
    sys.exit(subprocess.run([found.stdout.strip(), *sys.argv], env=env).returncode)
