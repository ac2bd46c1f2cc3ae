#!/usr/bin/env bash
# MVTec_AD 14_1_with_1_step. Usage: bash run.sh [NUM_PROCESSES] [train_val.py arguments]
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../../_base_/run_setting.sh" "$here/config.yaml" "$@"
