#!/usr/bin/env bash
# ConvNeXt against Swin in peak GPU training memory, on a CPU: the CPU estimate (tools/benchmark_memory.py
# --estimate) of Cascade Mask R-CNN T/S/B at the recipes' default and at the leanest setting (activation
# checkpointing in the backbone, AMP as the recipes have it), then the README's table (tools/results_table.py).
# About 15 minutes on 2 CPU cores; tools/gpu_check.sh measures the same rows on a GPU.
#
#   tools/estimate_memory_table.sh [OUT_DIR]     # default work_dirs/memory_estimate
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python )}
OUT=${1:-work_dirs/memory_estimate}
CASCADE=("$REPO"/configs/cascade_rcnn/{convnext,swin}_{t,s,b}_3x.py)
"$PYTHON" "$REPO/tools/benchmark_memory.py" --estimate "${CASCADE[@]}" --out-dir "$OUT/memory_default"
"$PYTHON" "$REPO/tools/benchmark_memory.py" --estimate "${CASCADE[@]}" --out-dir "$OUT/memory_leanest" \
  --cfg-options model.backbone.with_cp=True
"$PYTHON" "$REPO/tools/results_table.py" "$OUT"
