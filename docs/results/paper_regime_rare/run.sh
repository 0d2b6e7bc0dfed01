#!/usr/bin/env bash
# The paper-regime study, start to end, as it was run for docs/results/paper_regime_rare/ (from a
# clean checkout of one commit, in the repository root, with .venv from `make venv`). Every step is
# resumable: run it again after an interruption and it continues.
#   1. data: the demo's shapes (for the backbone) and the rare preset (for the study)
#   2. a backbone: the demo trained with CE on the shapes, its ResNet taken out
#   3. the main table: CE, alpha-CE (0.75), FL (0.25, 2), five seeds each
#   4. the successors table: FL (0.25, 2) against FL*, Poly-1, Varifocal, Quality Focal, GHM-C and
#      FL + ATSS, three seeds each, seed by seed (all points at seed 0 first, so that a partial table
#      has every row)
# The thread count and the CPU's vector kernels change a run like another seed does: each table ran
# on one kernel set and thread count (environment.json of each run), the main table on AVX-512, the
# successors table on AVX2, which is why the successors table has FL runs of its own and the two
# tables are not compared row by row. `ablate` warns before it starts runs in another environment.
set -euo pipefail
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=output/paper_regime

[ -f data/shapes/annotations/instances_val.json ] || $PY -m detector make-synthetic data/shapes
[ -f data/rare/annotations/instances_val.json ] || \
    $PY -m detector make-synthetic data/rare --preset rare --num-train 3000 --num-val 1000
[ -f $OUT/pretrain_shapes_ce/model_final.pth ] || \
    $PY -m detector train configs/paper_regime/pretrain_shapes_ce.yaml --resume
$PY -m detector convert backbone $OUT/pretrain_shapes_ce/model_final.pth $OUT/backbone_shapes_ce.pth
$PY -m detector check-data configs/paper_regime/rare_focal.yaml | tee $OUT/check_data.txt

$PY -m detector ablate configs/paper_regime/rare_focal.yaml --grid paper_regime --seeds 5 --output-dir $OUT/main

for n in 1 2 3; do
    $PY -m detector ablate configs/paper_regime/rare_focal.yaml --grid successors --seeds $n --output-dir $OUT/successors
done
