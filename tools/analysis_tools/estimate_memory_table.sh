#!/usr/bin/env bash
# ConvNeXt against Swin in peak GPU training memory, on a CPU: the CPU estimate
# (tools/analysis_tools/benchmark_memory.py --estimate, one GPU of a distributed run) of Cascade Mask R-CNN T/S/B at
# the recipes' default and at the leanest setting (activation checkpointing in the backbone, AMP as the recipes have
# it), the step-time cost of the leanest setting measured on the CPU for the B configs (fp32: AMP needs CUDA), then the
# README's table (tools/analysis_tools/results_table.py). It takes tens of minutes on a few CPU cores;
# tools/gpu_check.sh measures the same rows on a GPU.
#
#   tools/analysis_tools/estimate_memory_table.sh [OUT_DIR]     # default work_dirs/memory_estimate
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python )}
OUT=${1:-work_dirs/memory_estimate}
CASCADE=("$REPO"/configs/cascade_rcnn/{convnext,swin}_{t,s,b}_3x.py)
LEANEST=(model.backbone.with_cp=True)
"$PYTHON" "$REPO/tools/analysis_tools/benchmark_memory.py" --estimate "${CASCADE[@]}" --out-dir "$OUT/memory_default"
"$PYTHON" "$REPO/tools/analysis_tools/benchmark_memory.py" --estimate "${CASCADE[@]}" --out-dir "$OUT/memory_leanest" \
  --cfg-options "${LEANEST[@]}"
CPU_STEPS=("$REPO"/configs/cascade_rcnn/{convnext,swin}_b_3x.py --device cpu --launcher none --iters 2 --warmup 1)
"$PYTHON" "$REPO/tools/analysis_tools/benchmark_memory.py" "${CPU_STEPS[@]}" --out-dir "$OUT/cpu_steps_default"
"$PYTHON" "$REPO/tools/analysis_tools/benchmark_memory.py" "${CPU_STEPS[@]}" --out-dir "$OUT/cpu_steps_leanest" \
  --cfg-options "${LEANEST[@]}"
"$PYTHON" "$REPO/tools/analysis_tools/results_table.py" "$OUT"
