#!/usr/bin/env bash
# Every GPU-specific check of n2n-raw in one go, for a session that has a GPU for a few minutes:
#   1. the CUDA tests and the compile/precision tests,
#   2. training throughput at batch 4 and larger batches (sRGB 256², raw 4×128²), and an ablation without
#      compilation or CUDA graphs,
#   3. the reference implementation at batch 4 on the same GPU, if a checkout of it is at $REF,
#   4. bf16 vs fp32 training quality from the same seed,
#   5. submit-sidd on a full-size 40×32 block file.
# Two parts of at most ~5 minutes each, so each fits one device call: `speed` (steps 1-3) and `quality`
# (steps 4-5, and inference / prepare throughput); no argument runs both (~9 minutes).
# Output is appended to $OUT/gpu_check.log (OUT defaults to benchmarks/out).
# The GPU image lacks rawpy and pidng: carry their wheels in .whl/ (they are installed from there if present).
# The sRGB quality check needs the validation images: VALIDATION=DIR (Kodak, BSD300, Set14; 46 MB, so copy
# them into an ignored folder of the checkout and carry it); without them only the raw check runs.
# Usage: bash benchmarks/gpu_check.sh [all|speed|quality]
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/n2n-site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/n2n-site
fi
step() {  # step SECONDS CMD...: run with a time limit, log everything, keep going on failure
  local limit=$1; shift
  echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "== exit ${PIPESTATUS[0]}" | tee -a "$LOG"
}
PART=${1:-all}
step 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step 20 git log -1 --format='commit %h %s'
if [ "$PART" = all ] || [ "$PART" = speed ]; then  # about 5 minutes
  step 120 $PY -m pytest -q -x -p no:cacheprovider tests/test_cuda.py tests/test_accel.py
  step 90 $PY benchmarks/throughput.py --device cuda --batches 4 --patch 256 --steps 30 --warmup 20 --skip-extras
  step 150 $PY benchmarks/throughput.py --device cuda --batches 64,256 --patch 256 --steps 20 --warmup 10 \
    --modes srgb --skip-baseline --skip-extras
  step 45 $PY benchmarks/throughput.py --device cuda --batches 4 --patch 256 --steps 30 --warmup 5 --modes srgb \
    --compile off --cuda-graphs off --skip-baseline --skip-extras
  if [ -n "${REF:-}" ] && [ -d "$REF" ]; then
    step 100 $PY benchmarks/reference.py --reference "$REF" --device cuda --steps 50 --warmup 10
  fi
fi
if [ "$PART" = all ] || [ "$PART" = quality ]; then  # about 4 minutes
  VALIDATION=${VALIDATION:-../shared/data/validation}
  TASK=raw; [ -d "$VALIDATION/Set14" ] && TASK=both
  step 150 $PY benchmarks/convergence.py --task $TASK --steps 1000 --eval-every 100 --device cuda \
    --variants kaiming-fp32,kaiming-bf16 --validation "$VALIDATION" --out "$OUT/precision"
  step 90 $PY benchmarks/throughput.py --device cuda --batches 4 --steps 5 --warmup 2 --modes raw --skip-baseline \
    --skip-extras --submit-full
  step 60 $PY benchmarks/throughput.py --device cuda --batches 4 --steps 5 --warmup 2 --modes raw --skip-baseline
fi
