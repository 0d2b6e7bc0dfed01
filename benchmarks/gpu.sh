#!/usr/bin/env bash
# GPU benchmark (one H200 or similar): ours vs torchvision's RetinaNet R50-FPN, training
# images/s at 800x1333 batch 16 in bf16, inference images/s at batch 8, peak memory and
# host syncs per training step. Writes docs/results/gpu_benchmark.{json,md}.
# Run from the repository root: bash benchmarks/gpu.sh  (make venv first, or set PYTHON).
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-docs/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_benchmark.md"
"$PYTHON" -m benchmarks.gpu --device cuda --height 800 --width 1333 --batch 16 --infer-batch 8 \
    --dtype bfloat16 --steps 10 --json "$OUT/gpu_benchmark.json" "$@" | tee -a "$OUT/gpu_benchmark.md"
