#!/usr/bin/env bash
# Training on a SLURM cluster, one task per GPU, with mmdet's conventions:
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SIGNAL_SECONDS=300] [SRUN_ARGS="--time=2-00:00:00"] \
#     tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options]
# GPUS tasks (default 8) on GPUS / GPUS_PER_NODE nodes (GPUS_PER_NODE defaults to 8, or GPUS when fewer); mmengine
# takes each task's rank, the world size and the master address from SLURM's environment.
# SLURM sends SIGUSR1 SIGNAL_SECONDS (default 300) before the time limit, and SIGTERM on preemption: training saves
# after the current iteration, asks SLURM to requeue the job and exits with status 75; the requeued job resumes.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SIGNAL_SECONDS=${SIGNAL_SECONDS:-300}
read -r -a SRUN_EXTRA <<< "${SRUN_ARGS:-}"  # split on spaces, as mmdet's script does
if (( GPUS < 1 || GPUS_PER_NODE < 1 || GPUS % GPUS_PER_NODE )); then
  echo "error: GPUS=$GPUS must be a positive multiple of GPUS_PER_NODE=$GPUS_PER_NODE (whole nodes)" >&2
  exit 2
fi
if ! command -v srun > /dev/null; then
  echo "error: srun not found: run this on a SLURM login node, or use tools/dist_train.sh on each machine" >&2
  exit 2
fi
TOOLS=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-$( [ -x "$TOOLS/../.venv/bin/python" ] && echo "$TOOLS/../.venv/bin/python" || echo python )}

exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 \
  --signal=USR1@"$SIGNAL_SECONDS" "${SRUN_EXTRA[@]}" \
  "$PYTHON" -u "$TOOLS/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "$@"
