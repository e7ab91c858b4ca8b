#!/usr/bin/env bash
# Create a virtual environment holding one of the two stacks CI tests, mmcv's compiled ops included, and
# convnext_dense in editable mode:
#
#   tools/install.sh                    # development stack, requirements/dev.txt, into .venv/
#   STACK=official tools/install.sh     # official OpenMMLab releases, requirements/official.txt, into .venv-official/
#
# mmcv is on PyPI as an sdist only, and a plain install silently builds it without ops (no nms, no RoIAlign). So its
# wheel is taken from a wheelhouse or built once from the sdist with MMCV_WITH_OPS=1 and cached. The cache keeps
# builds apart by mmcv version, torch version and CPU / CUDA, so a CPU-only wheel never lands on a GPU machine; on a
# machine with CUDA the build compiles the CUDA ops with all cores, and wheelhouses ($PIP_FIND_LINKS, CPU builds) are not
# used for mmcv. The script ends by running nms and RoIAlign (on the GPU too when one is visible) and fails loudly if
# they do not work.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=${STACK:-dev}
case $STACK in
  # torch 2.14's headers need C++20, torch 2.13's C++17; the sdists ask for C++14/17.
  dev) MMCV_DIST=onedl-mmcv; CXX_STD=c++20; DEFAULT_VENV=.venv ;;
  official) MMCV_DIST=mmcv; CXX_STD=c++17; DEFAULT_VENV=.venv-official ;;
  *) echo "install: STACK must be dev or official, got '$STACK'" >&2; exit 2 ;;
esac
LOCK=requirements/$STACK.txt
MMCV_VERSION=$(sed -n "s/^$MMCV_DIST==//p" "$LOCK")
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-$DEFAULT_VENV}
WHEEL_CACHE=${CONVNEXT_DENSE_WHEEL_CACHE:-$HOME/.cache/convnext-dense/wheels}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
py="$VENV/bin/python"
# Every install is constrained by the lock, so no step can move a pinned package (torch above all).
pip=("$py" -m pip install -q -c "$LOCK")
"${pip[@]}" --upgrade pip setuptools wheel ninja
"${pip[@]}" $(grep -E '^(torch|torchvision)==' "$LOCK")

read -r TORCH_VERSION VARIANT < <("$py" -c "import torch
print(torch.__version__.split('+')[0], f'cu{torch.version.cuda}' if torch.cuda.is_available() else 'cpu')")
CACHE="$WHEEL_CACHE/$MMCV_DIST-$MMCV_VERSION-torch$TORCH_VERSION-$VARIANT"
mkdir -p "$CACHE"
if [ "$VARIANT" = cpu ]; then
  MMCV_LINKS="$CACHE${PIP_FIND_LINKS:+ $PIP_FIND_LINKS}"
else
  MMCV_LINKS=$CACHE
fi

# The mmcv wheel, from the cache or the CPU wheelhouses only (never an index: that would be the ops-less sdist).
mmcv_pip() {
  local sub=$1
  shift
  local links=()
  for dir in $MMCV_LINKS; do links+=(--find-links "$dir"); done
  PIP_FIND_LINKS= "$py" -m pip "$sub" -q --no-deps --no-index --only-binary=:all: "${links[@]}" "$@" \
    "$MMCV_DIST==$MMCV_VERSION"
}

build_mmcv_wheel() {
  local jobs=${MAX_JOBS:-$(nproc)}
  echo "install: no $MMCV_DIST $MMCV_VERSION wheel for torch $TORCH_VERSION ($VARIANT); building it with ops on" \
       "$jobs cores (about 25 minutes on 2 cores without CUDA)" >&2
  local src
  src=$(mktemp -d)
  "$py" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$src" "$MMCV_DIST==$MMCV_VERSION"
  tar xzf "$src"/*.tar.gz -C "$src"
  local tree
  tree=$(find "$src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  sed -i -E "s/-std=c\+\+1[47]/-std=$CXX_STD/g" "$tree/setup.py"
  grep -q -- "-std=$CXX_STD" "$tree/setup.py" || { echo "install: could not patch mmcv's setup.py for $CXX_STD" >&2; exit 1; }
  local cuda=()
  [ "$VARIANT" = cpu ] || cuda=(FORCE_CUDA=1)
  (cd "$tree" && env MMCV_WITH_OPS=1 MAX_JOBS="$jobs" "${cuda[@]}" "$OLDPWD/$py" -m pip wheel -q \
     --no-build-isolation --no-deps . -w "$CACHE")
}

mmcv_pip download -d "$(mktemp -d)" >/dev/null 2>&1 || build_mmcv_wheel
mmcv_pip install
# --only-binary: a later resolution can never fall back to the ops-less sdist.
"${pip[@]}" --only-binary="$MMCV_DIST" -r "$LOCK"
"${pip[@]}" -e .

"$py" - <<'EOF'
import sys
try:
    import torch
    from mmcv.ops import RoIAlign, nms
    boxes, scores = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]]), torch.tensor([.9, .8])
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    for device in devices:
        nms(boxes.to(device), scores.to(device), 0.5)
        RoIAlign((2, 2), 1.0, 0)(torch.ones(1, 1, 8, 8, device=device), rois.to(device))
except Exception as exc:  # the message must reach CI logs and users, whatever the failure
    sys.exit(f'install: FAILED: mmcv has no working compiled ops ({type(exc).__name__}: {exc}). '
             'Delete the cached mmcv wheel (~/.cache/convnext-dense/wheels) and run tools/install.sh again.')
import mmcv, mmdet, mmengine, mmseg
import convnext_dense
print(f'install: OK: torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__} with ops '
      f'({", ".join(devices)}), mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
      f'convnext_dense {convnext_dense.__version__}')
EOF
