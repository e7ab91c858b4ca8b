#!/usr/bin/env bash
# GPU acceptance run, in one command under ~8 minutes on an H100 (make gpu-check):
#   1. pytest -m gpu tests/gpu: the real configs train a step under AMP fp16 and bf16 with mmcv's CUDA ops, the
#      backbone equals timm's and mmpretrain's on CUDA, channels_last / with_cp / compile match the plain path;
#   2. Cascade Mask R-CNN T/S/B, ConvNeXt vs Swin, AMP, batch 2, 1333x800: default settings, then ConvNeXt-B with our
#      fastest (channels_last + compile) and leanest (with_cp) settings;
#   3. the ConvNeXt-B backbone forward+backward in bf16: ours vs mmpretrain eager vs timm channels_last + compiled;
#   4. tools/results_table.py: the README results table (device, torch, CUDA, target ratios) from the JSON.
# Everything goes to OUT (default work_dirs/gpu_check). Exits non-zero without CUDA, or when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
OUT=${1:-work_dirs/gpu_check}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "gpu_check: $PYTHON cannot import torch; install the stack (tools/install.sh) or set PYTHON=..." >&2
    exit 2
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA device; this check needs a GPU machine with the stack installed." >&2
    echo "  On a CPU, compare memory with tools/benchmark_memory.py --estimate CONFIG... instead." >&2
    exit 2
fi
mkdir -p "$OUT"
"$PYTHON" -c 'import torch; print("gpu_check on", torch.cuda.get_device_name(0), "| torch", torch.__version__,
                                  "| CUDA", torch.version.cuda)'

"$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/gpu --junitxml="$OUT/pytest_gpu.xml"

MEMORY=(--iters "$ITERS" --warmup "$WARMUP" --device cuda)
"$PYTHON" tools/benchmark_memory.py configs/cascade_rcnn/{convnext,swin}_{t,s,b}_3x.py "${MEMORY[@]}" \
    --out-dir "$OUT/memory_default"
"$PYTHON" tools/benchmark_memory.py configs/cascade_rcnn/convnext_b_3x.py "${MEMORY[@]}" \
    --out-dir "$OUT/memory_fastest" --cfg-options model.backbone.channels_last=True model.backbone.compile=True
"$PYTHON" tools/benchmark_memory.py configs/cascade_rcnn/convnext_b_3x.py "${MEMORY[@]}" \
    --out-dir "$OUT/memory_leanest" --cfg-options model.backbone.with_cp=True
"$PYTHON" tools/benchmark_backbone.py --arch base --amp bf16 --iters "$ITERS" --warmup "$WARMUP" --device cuda \
    --out-dir "$OUT/backbone"

"$PYTHON" tools/results_table.py "$OUT"
