#!/usr/bin/env bash
# Synthetic3D 10_0_with_0_step. Usage: bash run.sh [NUM_PROCESSES] [train_val.py arguments]
# Makes the dataset under data/Synthetic3D first if it is not there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
bash "$repo/A_ori_dataset_split/Synthetic3D/ensure_dataset.sh" "$repo/data/Synthetic3D"
exec bash "$here/../../_base_/run_setting.sh" "$here/config.yaml" "$@"
