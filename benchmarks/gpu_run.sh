#!/usr/bin/env bash
# The GPU-machine run of the training-speed and input-pipeline benchmarks, in one call.
#
# Here (CPU machine), from the project root:
#   bash ../shared/bench/gpu/prepare.sh            # wheels + the harness + keras_pose into .gpu/
#   mkdir -p .gpu/code/benchmarks && cp benchmarks/{train_speed_jax,torch_profile_gpu,data_scaling_numpy,data_pipeline}.py \
#       benchmarks/specs.json benchmarks/gpu_run.sh .gpu/code/benchmarks/
# Then with the device tool, carry [".gpu"]:  OUT=$OUT bash .gpu/code/benchmarks/gpu_run.sh
# (about 9 minutes: give it timeout_s 590). It writes scaling_{cpn,mspn2}.json (numpy input
# pipeline, 1-16 worker processes), torch.jsonl (MMPose, the harness), keras_jax.jsonl
# (keras-pose on JAX with its device profile) and torch_profile.jsonl under $OUT.
set -u
cd "$(dirname "$0")/../../.."
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .gpu/whl/*.whl > "$OUT/pip.log" 2>&1 || echo "pip failed"
export PYTHONPATH=/tmp/site:$PWD/.gpu/code PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
bench=.gpu/code/benchmarks
echo "== numpy input pipeline $(( $(date +%s) - T0 ))s"
for family in cpn mspn2; do
  timeout 100 python3 $bench/data_scaling_numpy.py --workers 1,2,4,8,16 --family $family \
    --seconds "${NSEC:-5}" --json "$OUT/scaling_$family.json" 2>&1 | tail -6
done
echo "== MMPose (harness) $(( $(date +%s) - T0 ))s"
REFBENCH=$PWD/.gpu/code BUDGET_S=${TORCH_BUDGET:-90} OUT=$OUT timeout 170 \
  python3 -W ignore .gpu/code/torch_peers.py 2>&1 | grep '^{' | cut -c1-400
echo "== keras-pose on JAX $(( $(date +%s) - T0 ))s"
KERAS_BACKEND=jax timeout "${KERAS_TIMEOUT:-290}" python3 -W ignore $bench/train_speed_jax.py \
  --plan "${PLAN:-rsn50:bf16,2xmspn50:bf16,cpn50:bf16}" --batch 64 --steps 20 --profile \
  --budget-s "${KERAS_BUDGET:-200}" --out "$OUT/keras_jax.jsonl" 2>&1 | grep '^{' | cut -c1-1500
echo "== MMPose profile $(( $(date +%s) - T0 ))s"
OUT=$OUT timeout 60 python3 -W ignore $bench/torch_profile_gpu.py 2>&1 | grep '^{' | cut -c1-1500
echo "END $(( $(date +%s) - T0 ))s"
