#!/usr/bin/env bash
# GPU check, for a session that is lent a CUDA machine (about 5-10 minutes on one GPU).
#   bash benchmarks/gpu_check.sh [LOG]        (default LOG: outputs/gpu_check.log)
# 1. the CUDA-only tests (mamba-ssm kernel vs our scan where mamba-ssm imports; model in bf16 on CUDA);
# 2. NCCL DDP with every visible GPU: a tiny Synthetic3D 2-step run through torchrun;
# 3. benchmarks/throughput.py on CUDA with bf16 autocast.
set -uo pipefail
status=0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log="${1:-$root/outputs/gpu_check.log}"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1
cd "$root"
echo "== $(date -u) $(python -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))')"
python -c 'import mamba_ssm; print("mamba-ssm", mamba_ssm.__version__)' 2>/dev/null || echo "mamba-ssm: not importable (kernel comparison skipped)"

echo "== 1. CUDA tests"
IUMAD_TEST_CUDA=1 python -m pytest -q -m cuda -rs tests || status=1

echo "== 2. NCCL DDP on $(python -c 'import torch; print(torch.cuda.device_count())') GPU(s)"
work="$(mktemp -d)"
python A_ori_dataset_split/Synthetic3D/make_synthetic_3d.py --out "$work/data" --size 64 --train-per-class 8 \
  --test-per-class 6 --classes ball box cone > /dev/null
ngpu="$(python -c 'import torch; print(torch.cuda.device_count())')"
cat > "$work/config.yaml" <<YAML
_base_: [$root/experiments/_base_/ib_iumad.yaml, $root/experiments/_base_/synthetic3d.yaml]
dataset: {root: $work/data, image_size: 64, batch_size: 8}
trainer: {epochs: 2, incremental_epochs: 1}
incremental:
  steps: [{classes: [ball, box]}, {classes: [cone]}]
YAML
python -m torch.distributed.run --standalone --nproc_per_node="$ngpu" tools/train_val.py \
  --config "$work/config.yaml" --output "$work/out" \
  && python -c "import json,sys; print(json.load(open(sys.argv[1]))['final'])" "$work/out/results.json" || status=1

echo "== 3. throughput on CUDA (bf16)"
python benchmarks/throughput.py --device cuda --train-batch 16 --infer-batch 32 --iters 10 || status=1
echo "== done (status $status): $log"
exit "$status"
