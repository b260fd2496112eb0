#!/usr/bin/env bash
# The GPU checks of one short lease, most needed first, each under its own limit inside one deadline, so
# one that hangs or fails costs only its own slot. Run from the repository root on the GPU machine:
#     OUT=/some/dir bash benchmarks/gpu_check.sh [total-seconds]
# Wheels in .whl/ (packages that machine lacks) are installed to /tmp/site first. Everything lands in
# $OUT/all.log; $OUT/summary.txt holds each check's exit code and seconds, $OUT/results.jsonl the
# benchmarks' JSON lines.
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
total=${1:-560}
start=$(date +%s)
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 2; }
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

check() {  # check NAME LIMIT COMMAND...: run it, keep its output, note rc and seconds
  local name=$1 limit=$2 left t0 rc
  shift 2
  left=$((total - ($(date +%s) - start)))
  if [ "$left" -lt 30 ]; then echo "$name skipped: ${left}s left" | tee -a "$OUT/summary.txt"; return 1; fi
  [ "$limit" -gt "$left" ] && limit=$left
  t0=$(date +%s)
  echo "=== $name (limit ${limit}s): $*" >>"$OUT/all.log"
  timeout -k 5 "$limit" "$@" >"$OUT/$name.part" 2>&1
  rc=$?
  cat "$OUT/$name.part" >>"$OUT/all.log"
  grep '^{' "$OUT/$name.part" | sed "s/^{/{\"check\": \"$name\", /" >>"$OUT/results.jsonl"
  rm -f "$OUT/$name.part"
  echo "$name rc=$rc $(($(date +%s) - t0))s" | tee -a "$OUT/summary.txt"
  return $rc
}

check smoke 90 $PY -c "
import torch, diffusers, peft, transformers
from lorastudio.engine.training.train import train_lora
from lorastudio.engine.generation.pipecache import PipelineCache
print(torch.__version__, diffusers.__version__, peft.__version__, transformers.__version__,
      torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
" || { tail -n 40 "$OUT/all.log"; exit 3; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$OUT/all.log" 2>&1

B=benchmarks
check cuda_tests 170 $PY -m pytest tests/engine/test_cuda.py -q -s -p no:cacheprovider -o addopts=-ra
check train_sd15_bf16 160 $PY $B/train_speed.py --model sd15-sized --resolution 768 --batch 1 --steps 60 --precision bf16 --mfu --json
# FLUX.1-sized at 1024 px, 6 of its 57 blocks (building all 12B random weights on the host takes minutes),
# bf16 base against the int8 one; MFU per step (issue 25).
check train_flux1_1024 200 $PY $B/train_speed.py --model flux1-sized --blocks 6 --resolution 1024 --batch 1 --steps 8 \
  --device cuda --variants plain,int8 --mfu --json
GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$GPUS" -gt 1 ]; then  # one LoRA on every GPU of the machine against one (issue 25)
  check train_sd15_devices 200 $PY $B/train_speed.py --model sd15-sized --resolution 768 --batch 1 --steps 30 \
    --precision bf16 --devices "$GPUS" --json
fi
check generate_sd15 150 $PY $B/generate_speed.py --model sd15-sized --size 768 --steps 20 --json
check levers_sd15 90 $PY $B/levers.py --latent 96 --steps 10 --json
check toyworld_base 75 $PY $B/toyworld_base_speed.py --profile --steps 30 --json
check train_sd15_fp16 100 $PY $B/train_speed.py --model sd15-sized --resolution 768 --batch 1 --steps 60 --precision fp16 --json
check levers_compile 150 $PY $B/levers.py --latent 96 --steps 10 --compile --only compile --json
check train_sdxl_bf16 200 $PY $B/train_speed.py --model sdxl-sized --resolution 1024 --batch 1 --steps 20 --precision bf16 --json

echo "--- summary"; cat "$OUT/summary.txt"
echo "--- results"; cat "$OUT/results.jsonl" 2>/dev/null
echo "--- tests"; grep -E "passed|failed|error|MB, .* steps/s|drift" "$OUT/all.log" | tail -n 15
