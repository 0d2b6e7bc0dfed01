#!/usr/bin/env bash
# The GPU check, one command: the GPU test suite (tests/gpu), then the benchmark against
# torchvision's RetinaNet R50-FPN: the trainer fed by its loader against torchvision's reference
# training loop (ordinary settings, then cudnn.benchmark + channels_last), and one bare step at
# 800x1333 batch 16 in bf16, inference at batch 8, peak memory and host syncs per step.
# Writes docs/results/gpu_tests.txt and docs/results/gpu_benchmark.{json,md}.
#
# Run from the repository root: bash benchmarks/gpu.sh (make venv first, or set PYTHON).
# On a lent device machine, whose python3 has torch but not our other packages: here, run
# benchmarks/gpu_wheels.sh once; there, `bash benchmarks/gpu.sh` with .whl carried. It takes
# about 5 minutes on an H100 (the device tool allows 10 a call).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${RESULTS:-docs/results}
mkdir -p "$OUT_DIR"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv | tee "$OUT_DIR/gpu_benchmark.md"
"$PYTHON" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
    | tee -a "$OUT_DIR/gpu_benchmark.md"
# The suite first: a failing test is a result too, and the timing below still runs.
"$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT_DIR/gpu_tests.txt"
tests=${PIPESTATUS[0]}
"$PYTHON" -m benchmarks.gpu --device cuda --height 800 --width 1333 --batch 16 --infer-batch 8 \
    --dtype bfloat16 --steps 10 --json "$OUT_DIR/gpu_benchmark.json" "$@" | tee -a "$OUT_DIR/gpu_benchmark.md"
bench=${PIPESTATUS[0]}
echo "GPU suite exit code $tests, benchmark exit code $bench"
exit $(( tests != 0 ? tests : bench ))
