#!/usr/bin/env bash
# The one script that says whether a GPU machine runs this project (about 10 minutes on one GPU).
#   bash benchmarks/gpu_check.sh [LOG]        (default LOG: outputs/gpu_check/gpu_check.log)
# Checks, each a row of the summary table at the end (exit code 1 if any failed):
#   cuda-tests     the CUDA tests (model in bf16 on CUDA; mamba-ssm kernel vs the PyTorch scan where it imports)
#   nccl           a process group on NCCL (single rank when one GPU): object collectives and an all-reduce
#   run            a 2-step Synthetic3D run on CUDA; then --resume, --evaluate, --step 1 and tools/predict.py
#   cpu-agrees     the same run on CPU: predict's decisions agree on >= 90 % of the inputs, fused I-AUROC within 0.1
#   ddp            torchrun over every visible GPU (global batch 2 per GPU), when there are 2 or more
#   paper-paths    the paper config's code paths offline: EfficientNet-Lite2, 224 px, disk feature cache, 4 workers,
#                  the iuf update, bf16
#   throughput     fp32 vs bf16 training and inference images/s and peak memory (benchmarks/throughput.py)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log="${1:-$root/outputs/gpu_check/gpu_check.log}"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1
cd "$root"
work="$(mktemp -d)"
declare -a rows=()
status=0
check() {  # check NAME COMMAND...: run it, keep one summary row
  local name="$1"; shift
  local start=$SECONDS
  echo "== $name: $*"
  if "$@"; then rows+=("| $name | ok | $((SECONDS - start)) s |"); else rows+=("| $name | FAILED | $((SECONDS - start)) s |"); status=1; fi
}
echo "== $(date -u) $(python -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))')"
python -c 'import mamba_ssm; print("mamba-ssm", mamba_ssm.__version__)' 2>/dev/null || echo "mamba-ssm: not importable"
ngpu="$(python -c 'import torch; print(torch.cuda.device_count())')"

check cuda-tests env IUMAD_TEST_CUDA=1 python -m pytest -q -m cuda -rs tests

nccl_probe() {
  MASTER_ADDR=127.0.0.1 MASTER_PORT=29531 RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 python - <<'PY'
import torch, torch.distributed as dist
device = torch.device("cuda", 0)
torch.cuda.set_device(device)
dist.init_process_group("nccl", device_id=device)
box = [{"step": 3, "classes": ["ball"]}]
dist.broadcast_object_list(box, src=0)
gathered = [None]
dist.all_gather_object(gathered, {"rank": 0})
value = torch.ones(4, device=device)
dist.all_reduce(value)
assert box[0]["step"] == 3 and gathered == [{"rank": 0}] and value.sum().item() == 4
dist.destroy_process_group()
print("nccl: object collectives and all-reduce ok")
PY
}
check nccl nccl_probe

python A_ori_dataset_split/Synthetic3D/make_synthetic_3d.py --out "$work/data" --size 64 --train-per-class 8 \
  --test-per-class 6 --classes ball box cone > /dev/null
cat > "$work/config.yaml" <<YAML
_base_: [$root/experiments/_base_/ib_iumad.yaml, $root/experiments/_base_/synthetic3d.yaml]
dataset: {root: $work/data, image_size: 64, batch_size: 4}
trainer: {epochs: 3, incremental_epochs: 2, save_every_epochs: 1}
incremental:
  steps: [{classes: [ball, box]}, {classes: [cone]}]
YAML
train() { python tools/train_val.py --config "$work/config.yaml" "$@"; }
cuda_run() {
  train --output "$work/cuda" && train --output "$work/cuda" --resume && train --output "$work/cuda" --evaluate \
    && train --output "$work/cuda" --step 1 --overwrite \
    && python tools/predict.py --run "$work/cuda" --input "$work/data/cone/test" --device cuda --output "$work/pred_cuda" \
    && grep -q "selective scan:" "$work/cuda/train_val.log"
}
check run cuda_run
cpu_agrees() {
  CUDA_VISIBLE_DEVICES="" train --output "$work/cpu" \
    && CUDA_VISIBLE_DEVICES="" python tools/predict.py --run "$work/cpu" --input "$work/data/cone/test" \
      --device cpu --output "$work/pred_cpu" \
    && python - "$work" <<'PY'
import csv, json, sys
work = sys.argv[1]
rows = [list(csv.DictReader(open(f"{work}/pred_{d}/predictions.csv"))) for d in ("cuda", "cpu")]
same = sum(a["decision"] == b["decision"] for a, b in zip(*rows)) / len(rows[0])
gpu, cpu = (json.load(open(f"{work}/{d}/results.json"))["final"]["i_auroc"] for d in ("cuda", "cpu"))
print(f"decisions agree on {100 * same:.0f} % of {len(rows[0])} inputs; fused I-AUROC cuda {gpu:.3f}, cpu {cpu:.3f}")
sys.exit(0 if same >= 0.9 and abs(gpu - cpu) <= 0.1 else 1)
PY
}
check cpu-agrees cpu_agrees
if [[ "$ngpu" -gt 1 ]]; then
  check ddp python -m torch.distributed.run --standalone --nproc_per_node="$ngpu" tools/train_val.py \
    --config "$work/config.yaml" --output "$work/ddp" --opts "dataset.batch_size=$((2 * ngpu))"
else
  rows+=("| ddp | skipped (1 GPU) | 0 s |")
fi

paper_paths() {
  python A_ori_dataset_split/Synthetic3D/make_synthetic_3d.py --out "$work/data224" --size 224 --train-per-class 6 \
    --test-per-class 4 --classes ball box > /dev/null \
  && HF_HUB_OFFLINE=1 python tools/train_val.py --config experiments/MVTec_3DAD/9_1_with_1_step/config.yaml \
    --output "$work/paper" --opts "dataset.root=$work/data224" "incremental.steps=[{classes: [ball]}, {classes: [box]}]" \
    model.net.backbone.kwargs.model_name=tf_efficientnet_lite2 trainer.max_epochs_per_step=2 \
    trainer.feature_cache=disk dataset.workers=4 trainer.precision=bf16 dataset.batch_size=4
}
check paper-paths paper_paths
throughput() {
  for precision in fp32 bf16; do
    python benchmarks/throughput.py --device cuda --precision "$precision" --variants uniad,ib_iumad \
      --train-batch 24 --infer-batch 32 --iters 10 || return 1
  done
}
check throughput throughput

echo
echo "| check | result | time |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
echo "== done (status $status): $log"
exit "$status"
