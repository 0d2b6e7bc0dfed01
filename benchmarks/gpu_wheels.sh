#!/usr/bin/env bash
# Run HERE (a machine with the package registries), before a GPU session: the packages the
# device machine lacks, as wheels for its Python 3.12, into .whl/ (git-ignored). benchmarks/gpu.sh
# installs them there; name .whl in the device tool's carry. The versions are this venv's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
packages=$("$PY" -m pip list --format=freeze 2>/dev/null | grep -i -E \
    '^(pycocotools|hotcoco|albumentations|albucore|stringzilla|simsimd|pydantic|pydantic_core|annotated-types|typing-inspection)==')
platforms=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
rm -rf .whl && mkdir .whl
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl $packages
ls .whl
