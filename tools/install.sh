#!/usr/bin/env bash
# Create .venv/ with the pinned stack, mmcv's compiled ops included, and convnext_dense in editable mode.
#
# onedl-mmcv is on PyPI as an sdist only, and a plain install silently builds it without ops (no nms, no RoIAlign).
# So the wheel is taken from a wheelhouse ($PIP_FIND_LINKS, or the cache below), or built once from the sdist with
# torch 2.14's required -std=c++20 and MMCV_WITH_OPS=1 (~27 min on 2 cores), then cached for every later install.
# The script ends by importing mmcv.ops and fails loudly if it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
MMCV_VERSION=2.3.6
WHEEL_CACHE=${CONVNEXT_DENSE_WHEEL_CACHE:-$HOME/.cache/convnext-dense/wheels}
mkdir -p "$WHEEL_CACHE"
# Our cache first, then whatever wheelhouse the caller gave (pip reads a space-separated list from the environment).
export PIP_FIND_LINKS="$WHEEL_CACHE${PIP_FIND_LINKS:+ $PIP_FIND_LINKS}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q)
"${pip[@]}" --upgrade pip setuptools wheel ninja
"${pip[@]}" torch==2.14.1 torchvision==0.29.1

have_mmcv_wheel() {
  "$VENV/bin/python" -m pip download -q --no-deps --no-index --only-binary=:all: \
    -d "$(mktemp -d)" "onedl-mmcv==$MMCV_VERSION" >/dev/null 2>&1
}

build_mmcv_wheel() {
  echo "install: no onedl-mmcv $MMCV_VERSION wheel found; building it with ops (about 27 minutes on 2 cores)" >&2
  local src
  src=$(mktemp -d)
  "$VENV/bin/python" -m pip download -q --no-deps --no-binary=:all: -d "$src" "onedl-mmcv==$MMCV_VERSION"
  tar xzf "$src"/onedl_mmcv-*.tar.gz -C "$src"
  (
    cd "$src"/onedl_mmcv-*/
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' setup.py
    grep -q -- '-std=c++20' setup.py || { echo "install: could not patch mmcv's setup.py for C++20" >&2; exit 1; }
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "$OLDPWD/$VENV/bin/python" -m pip wheel -q --no-build-isolation \
      --no-deps . -w "$WHEEL_CACHE"
  )
}

have_mmcv_wheel || build_mmcv_wheel
# --only-binary: never fall back to the ops-less sdist build.
"${pip[@]}" --only-binary=onedl-mmcv "onedl-mmcv==$MMCV_VERSION"
"${pip[@]}" --only-binary=onedl-mmcv -r requirements.txt -r requirements-test.txt
"${pip[@]}" --no-deps -e .

"$VENV/bin/python" - <<'EOF'
import sys
try:
    from mmcv.ops import nms, RoIAlign  # noqa: F401
except Exception as exc:  # the message must reach CI logs and users, whatever the failure
    sys.exit(f'install: FAILED: mmcv was installed without its compiled ops ({exc}). '
             'Delete the cached onedl_mmcv wheel and run tools/install.sh again.')
import convnext_dense, mmcv, mmdet, mmseg, torch
print(f'install: OK: torch {torch.__version__}, mmcv {mmcv.__version__} with ops, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, convnext_dense {convnext_dense.__version__}')
EOF
