#!/usr/bin/env bash
# Prints the path of a Python that can import every module named as an
# argument (default: torch). Tries $PYTHON, /usr/bin/python3, then python3 on
# PATH. Fixture generators use it; the toolkit itself never runs Python.
set -u
mods=("$@")
[ ${#mods[@]} -gt 0 ] || mods=(torch)
imports=$(IFS=,; echo "${mods[*]}")
for py in "${PYTHON:-}" /usr/bin/python3 "$(command -v python3 2>/dev/null)"; do
  [ -n "$py" ] && [ -x "$py" ] || continue
  if "$py" -c "import $imports" >/dev/null 2>&1; then
    echo "$py"
    exit 0
  fi
done
echo "find-python: no Python can import $imports (tried \$PYTHON, /usr/bin/python3, python3); install the Debian packages that provide them ('make python-deps' does: python3-torch, python3-torchvision, python3-pil, python3-numpy, python3-sklearn, python3-regex: they install for /usr/bin/python3), or set PYTHON" >&2
exit 1
