#!/usr/bin/env bash
# Distributed evaluation under torchrun, one process per GPU:
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options]
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on each. Without GPUs it runs GPUS CPU processes.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
TOOLS=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-$( [ -x "$TOOLS/../.venv/bin/python" ] && echo "$TOOLS/../.venv/bin/python" || echo python )}

# python -m torch.distributed.run is torchrun, run by the interpreter that has the stack installed.
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
  --nproc_per_node="$GPUS" \
  "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
