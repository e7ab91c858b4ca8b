#!/usr/bin/env bash
# GPU acceptance run, in one command (make gpu-check), sized for ~5 minutes on an H100/H200 after set-up:
#   1. pytest -m gpu tests/gpu: the real configs train a step under AMP fp16 and bf16 with mmcv's CUDA ops, the
#      backbone equals timm's and mmpretrain's on CUDA, channels_last / with_cp / compile match the plain path
#      (runs beside step 2, which measures memory only: separate processes, separate allocators);
#   2. leanest settings: Cascade Mask R-CNN T/S/B, ConvNeXt and Swin, with_cp (activation checkpointing), AMP;
#   3. default settings: the same six configs at the paper's setting (AMP, batch 2, 1333x800), memory and step time
#      (memory steps: one GPU of a distributed run, DDP in a one-process group, as --estimate);
#   4. ConvNeXt-B with our fastest settings (channels_last + compile);
#   5. the ConvNeXt-B backbone forward+backward in bf16: ours vs mmpretrain eager vs timm channels_last + compiled;
#   6. tools/analysis_tools/results_table.py: the README results table (device, torch, CUDA, target ratios) from the JSON.
# Each step has its own time limit and a failed step does not stop the others: what was measured is kept. Everything
# goes to OUT (default work_dirs/gpu_check), with one log per step and steps.txt (step, exit status, seconds).
# Exits 2 without CUDA, 1 when a step failed. CHECK=memory (make gpu-memory-check) runs the memory measurements that the
# CPU estimates are checked against instead (see that branch below).
set -uo pipefail
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
    echo "  On a CPU, compare memory with tools/analysis_tools/benchmark_memory.py --estimate CONFIG... instead." >&2
    exit 2
fi
mkdir -p "$OUT"
: > "$OUT/steps.txt"
"$PYTHON" -c 'import torch; print("gpu_check on", torch.cuda.get_device_name(0), "| torch", torch.__version__,
                                  "| CUDA", torch.version.cuda)' | tee "$OUT/device.txt"

# mmdet's models import mmpretrain's when it is installed, and mmpretrain's BLIP models break on transformers 5.x;
# the benchmarks need neither, so where that import fails, a sitecustomize stubs mmpretrain's multimodal package.
if ! "$PYTHON" -c 'import mmdet.models' 2>/dev/null; then
    mkdir -p "$OUT/site"
    printf '%s\n' 'import sys, types' \
        "sys.modules.setdefault('mmpretrain.models.multimodal', types.ModuleType('mmpretrain.models.multimodal'))" \
        > "$OUT/site/sitecustomize.py"
    export PYTHONPATH="$(cd "$OUT/site" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
    echo "gpu_check: import mmdet.models fails here (mmpretrain's multimodal models); stubbed them for this run"
fi
failed=0
deadline=$(( SECONDS + ${BUDGET_SECONDS:-1800} ))
# step NAME SECONDS COMMAND...: run COMMAND under a time limit (cut to what is left of BUDGET_SECONDS), its output in
# OUT/NAME.log, its status in steps.txt; a step with under 20 s left is skipped and counts as failed.
step() {
    local name=$1 limit=$2 start=$SECONDS rc=0
    shift 2
    (( limit > deadline - SECONDS )) && limit=$(( deadline - SECONDS ))
    if (( limit < 20 )); then
        echo "$name skipped (out of time: BUDGET_SECONDS=${BUDGET_SECONDS:-1800})" | tee -a "$OUT/steps.txt"
        return 1
    fi
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1 || rc=$?
    echo "$name $rc $(( SECONDS - start ))s" | tee -a "$OUT/steps.txt"
    if [ "$rc" != 0 ]; then tail -n 30 "$OUT/$name.log"; fi
    return "$rc"
}

if [ "${CHECK:-acceptance}" = memory ]; then
    # make gpu-memory-check: the GPU measurements that the CPU estimates of tools/train.py steps are checked against
    # (README, "Results on a GPU"): Cascade Mask R-CNN T and B, ConvNeXt and Swin, at the default and the leanest
    # setting, Mask R-CNN T and UperNet T, each under --launcher pytorch and --launcher none (~6 minutes on an H200).
    # The estimates of the same runs need no GPU: the commands printed at the end run them on any machine.
    BOTH=(configs/cascade_rcnn/{convnext,swin}_{t,b}_3x.py)
    OTHERS=(configs/mask_rcnn/convnext_t_3x.py configs/upernet/convnext_t_160k_ade20k.py)
    for launcher in pytorch none; do
        step "${launcher}_default" 200 "$PYTHON" tools/analysis_tools/benchmark_memory.py "${BOTH[@]}" "${OTHERS[@]}" \
            --iters 4 --warmup 2 --device cuda --launcher "$launcher" --out-dir "$OUT/${launcher}_default" || failed=1
        step "${launcher}_leanest" 150 "$PYTHON" tools/analysis_tools/benchmark_memory.py "${BOTH[@]}" --iters 4 \
            --warmup 2 --device cuda --launcher "$launcher" --out-dir "$OUT/${launcher}_leanest" \
            --cfg-options model.backbone.with_cp=True || failed=1
    done
    echo "gpu_check: now, on any machine, the estimates of the same runs beside these measurements:"
    for run in {pytorch,none}_{default,leanest}; do
        echo "  python tools/analysis_tools/benchmark_memory.py --estimate --against $OUT/$run/benchmark_memory.json" \
             "--out-dir $OUT/$run/estimate"
    done
    exit "$failed"
fi

CASCADE=(configs/cascade_rcnn/{convnext,swin}_{t,s,b}_3x.py)
[ -n "${SKIP_TESTS:-}" ] || step gpu_tests 240 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/gpu --junitxml="$OUT/pytest_gpu.xml" &
tests=$!
step memory_leanest 240 "$PYTHON" tools/analysis_tools/benchmark_memory.py "${CASCADE[@]}" --iters 4 --warmup 2 --device cuda \
    --out-dir "$OUT/memory_leanest" --cfg-options model.backbone.with_cp=True || failed=1
wait "$tests" || failed=1

MEMORY=(--iters "$ITERS" --warmup "$WARMUP" --device cuda)
step memory_default 240 "$PYTHON" tools/analysis_tools/benchmark_memory.py "${CASCADE[@]}" "${MEMORY[@]}" \
    --out-dir "$OUT/memory_default" || failed=1
step backbone 180 "$PYTHON" tools/analysis_tools/benchmark_backbone.py --arch base --amp bf16 --iters "$ITERS" --warmup "$WARMUP" \
    --device cuda --out-dir "$OUT/backbone" || failed=1
step memory_fastest 180 "$PYTHON" tools/analysis_tools/benchmark_memory.py configs/cascade_rcnn/convnext_b_3x.py "${MEMORY[@]}" \
    --out-dir "$OUT/memory_fastest" --cfg-options model.backbone.channels_last=True model.backbone.compile=True \
    || failed=1

deadline=$(( SECONDS + 60 ))  # the table of whatever was measured, whatever the budget
step results_table 60 "$PYTHON" tools/analysis_tools/results_table.py "$OUT" || failed=1
cat "$OUT/RESULTS.md" 2>/dev/null
exit "$failed"
