#!/usr/bin/env bash
# Regenerates every committed test fixture with PyTorch/PIL references.
# Needs Debian's python3-torch, python3-torchvision, python3-pil, python3-numpy
# and python3-regex; the tests themselves never run Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(./scripts/find-python.sh torch numpy)
export PYTHON="$PY"
for gen in $(git ls-files '*testdata/gen*.py'); do
  echo "fixtures: $PY $gen"
  "$PY" "$gen"
done
