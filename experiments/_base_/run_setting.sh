#!/usr/bin/env bash
# Shared launcher of every experiments/<Dataset>/<setting>/run.sh.
#   bash run.sh                                 one process (CPU, or one GPU)
#   CUDA_VISIBLE_DEVICES=0,1,2,3 bash run.sh 4  torchrun with 4 processes (DDP)
#   bash run.sh 1 --resume --opts trainer.epochs=10   extra arguments go to tools/train_val.py
# Several machines: the same command on each, with NNODES (machines), NODE_RANK (0 .. NNODES-1),
# MASTER_ADDR (address of node 0) and MASTER_PORT (default 29500) set; NUM_PROCESSES is per machine.
set -euo pipefail
config="$1"; shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
nproc=1
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then nproc="$1"; shift; fi
nnodes="${NNODES:-1}"
if [[ "$nnodes" -gt 1 ]]; then
  : "${NODE_RANK:?set NODE_RANK (0 .. NNODES-1) on every machine}" "${MASTER_ADDR:?set MASTER_ADDR (node 0)}"
  exec torchrun --nnodes="$nnodes" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --master_port="${MASTER_PORT:-29500}" --nproc_per_node="$nproc" "$root/tools/train_val.py" --config "$config" "$@"
fi
if [[ "$nproc" -gt 1 ]]; then
  exec torchrun --standalone --nproc_per_node="$nproc" "$root/tools/train_val.py" --config "$config" "$@"
fi
exec python "$root/tools/train_val.py" --config "$config" "$@"
