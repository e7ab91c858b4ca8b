#!/usr/bin/env bash
# The end-to-end demo, on a CPU and with no downloads: write the synthetic data set under ./data/demo (if absent),
# train Mask R-CNN with a ConvNeXt-atto backbone on it, evaluate the last checkpoint with tools/test.py (box and mask
# AP), then the same for UperNet (mIoU). The models start from random weights. At the end it draws pictures and
# prints their paths: both models' predictions on a few validation images (tools/misc/image_demo.py), the training curves
# (tools/analysis_tools/plot_curves.py) and the backbone's four output maps for one image (tools/analysis_tools/vis_features.py). While a model
# trains it shows mmengine's progress lines (epoch / iteration, ETA, losses); the full logs are in WORK_DIR/*.log.
#
#   tools/run_demo.sh [WORK_DIR]                 # default ./work_dirs/demo
#   SKIP_UPERNET=1 tools/run_demo.sh             # detection only
#   DET_EPOCHS=N SEG_ITERS=N tools/run_demo.sh   # longer runs learn more
#   SEED=N tools/run_demo.sh work_dirs/demo_N    # a fixed random seed (randomness.seed), e.g. to compare seeds
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python )}
WORK_DIR=${1:-work_dirs/demo}
DET_EPOCHS=${DET_EPOCHS:-12}
SEG_ITERS=${SEG_ITERS:-200}
[[ "${SEED:-0}" =~ ^[0-9]+$ ]] || { echo "SEED must be a non-negative integer, got '$SEED'" >&2; exit 2; }
# OpenMP threads that spin while they wait crawl when anything else wants the same cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

if [ ! -f data/demo/coco/annotations/instances_val2017.json ] || [ ! -d data/demo/ade/ADEChallengeData2016 ]; then
  "$PYTHON" "$REPO/tools/misc/make_demo_data.py" --out data/demo
fi

# progress: mmengine's training and validation lines without the learning rates, timings and memory, fields two
# spaces apart (mmengine versions pad differently), cut to 160 characters, line by line as they come (GNU sed -u; mawk would hold its input until the run ends); never fails.
progress() {
  sed -u -n -E '/(Epoch|Iter)\((train|val)\)/{
    s/.*((Epoch|Iter)\((train|val)\))/\1/
    s/ +(base_lr|lr|time|data_time|memory|grad_norm): [^ ]+//g
    s/ {3,}/  /g
    s/^(.{157}).*/\1/
    s/^/   /
    p
  }'
}

# train_and_test CONFIG NAME CFG_OPTIONS...: train (showing progress), evaluate the last checkpoint, keep the
# metrics line.
train_and_test() {
  local config=$REPO/configs/demo/$1 name=$2
  shift 2
  local work=$WORK_DIR/$name
  echo "== $name: training $config (log: $work.train.log)"
  # pipefail: the pipeline fails when train.py does; the log keeps all of its output.
  "$PYTHON" "$REPO/tools/train.py" "$config" --work-dir "$work" \
    --cfg-options "$@" ${SEED:+"randomness.seed=$SEED"} 2>&1 | tee "$work.train.log" | progress \
    || { tail -n 40 "$work.train.log"; exit 1; }
  local checkpoint
  checkpoint=$(cat "$work/last_checkpoint")
  echo "== $name: testing $checkpoint (log: $work.test.log)"
  "$PYTHON" "$REPO/tools/test.py" "$config" "$checkpoint" --work-dir "$work/test" > "$work.test.log" 2>&1 \
    || { tail -n 40 "$work.test.log"; exit 1; }
  grep '^metrics: ' "$work.test.log" > "$work/metrics.txt"
}

mkdir -p "$WORK_DIR"
rm -f "$WORK_DIR"/*/metrics.txt
start=$SECONDS
train_and_test mask_rcnn_convnext_atto_demo.py mask_rcnn \
  "train_cfg.max_epochs=$DET_EPOCHS" "train_cfg.val_interval=$DET_EPOCHS"
if [ -z "${SKIP_UPERNET:-}" ]; then
  train_and_test upernet_convnext_atto_demo.py upernet \
    "train_cfg.max_iters=$SEG_ITERS" "train_cfg.val_interval=$SEG_ITERS"
fi

"$PYTHON" - "$WORK_DIR" $((SECONDS - start)) <<'PY'
import json, sys
from pathlib import Path
work_dir, seconds = Path(sys.argv[1]), int(sys.argv[2])
print(f'== demo finished in {seconds // 60} min {seconds % 60} s')
for name, keys in (('mask_rcnn', ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50')),
                   ('upernet', ('mIoU', 'mAcc', 'aAcc'))):
    path = work_dir / name / 'metrics.txt'
    if path.exists():
        metrics = json.loads(path.read_text().split('metrics: ', 1)[1])
        print(f'{name:10} ' + '  '.join(f'{key}={metrics[key]:.3f}' for key in keys))
PY

# pictures NAME TOOL ARGS...: run a picture tool (log: $WORK_DIR/NAME.log) and print the PNGs it wrote.
pictures() {
  local log=$WORK_DIR/$1.log tool=$REPO/tools/$2
  shift 2
  "$PYTHON" "$tool" "$@" > "$log" 2>&1 || { tail -n 40 "$log"; exit 1; }
  grep -E '\.png$' "$log"
}

NUM_PICTURES=4
det_images=(data/demo/coco/val2017/*.jpg)
echo "== pictures: predictions on $NUM_PICTURES validation images, training curves, backbone outputs"
pictures mask_rcnn.pictures misc/image_demo.py "$REPO/configs/demo/mask_rcnn_convnext_atto_demo.py" \
  "$(cat "$WORK_DIR/mask_rcnn/last_checkpoint")" "${det_images[@]:0:NUM_PICTURES}" \
  --out-dir "$WORK_DIR/mask_rcnn/pictures"
curve_dirs=("$WORK_DIR/mask_rcnn")
if [ -z "${SKIP_UPERNET:-}" ]; then
  seg_images=(data/demo/ade/ADEChallengeData2016/images/validation/*.jpg)
  pictures upernet.pictures misc/image_demo.py "$REPO/configs/demo/upernet_convnext_atto_demo.py" \
    "$(cat "$WORK_DIR/upernet/last_checkpoint")" "${seg_images[@]:0:NUM_PICTURES}" \
    --out-dir "$WORK_DIR/upernet/pictures"
  curve_dirs+=("$WORK_DIR/upernet")
fi
pictures curves analysis_tools/plot_curves.py "${curve_dirs[@]}" --out "$WORK_DIR/curves.png"
pictures features analysis_tools/vis_features.py "$REPO/configs/demo/mask_rcnn_convnext_atto_demo.py" "${det_images[0]}" \
  --checkpoint "$(cat "$WORK_DIR/mask_rcnn/last_checkpoint")" --out "$WORK_DIR/mask_rcnn/features.png"
