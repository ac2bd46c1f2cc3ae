#!/usr/bin/env bash
# Shared launcher of every experiments/<Dataset>/<setting>/run.sh.
#   bash run.sh                                 one process (CPU, or one GPU)
#   CUDA_VISIBLE_DEVICES=0,1,2,3 bash run.sh 4  torchrun with 4 processes (DDP)
#   bash run.sh 1 --resume --opts trainer.epochs=10   extra arguments go to tools/train_val.py
set -euo pipefail
config="$1"; shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
nproc=1
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then nproc="$1"; shift; fi
if [[ "$nproc" -gt 1 ]]; then
  exec torchrun --standalone --nproc_per_node="$nproc" "$root/tools/train_val.py" --config "$config" "$@"
fi
exec python "$root/tools/train_val.py" --config "$config" "$@"
