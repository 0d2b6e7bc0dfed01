#!/usr/bin/env bash
# The paper-regime study, start to end, as it was run for docs/results/paper_regime_rare/ (from a
# clean checkout of one commit, in the repository root, with .venv from `make venv`). Every step is
# resumable: run it again after an interruption and it continues.
#   1. data: the demo's shapes (for the backbone) and the rare preset (for the study)
#   2. a backbone: the demo trained with CE on the shapes, its ResNet taken out
#   3. the main table: CE, alpha-CE (0.75), FL (0.25, 2), five seeds each
#   4. the successors table: FL (0.25, 2) (seeds 0-2 shared with the main table) against FL*, Poly-1,
#      Varifocal, Quality Focal, GHM-C and FL + ATSS, three seeds each
# The thread count and the CPU's vector kernels change a run like another seed does
# (../../shared/FINDINGS.md): every run of both tables used the same (environment.json of each run).
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

mkdir -p $OUT/successors
for seed in 0 1 2; do  # the same runs: same commit, config, seed, threads and kernels
    [ -e $OUT/successors/alpha0.25_gamma2_seed$seed ] || ln -s ../main/alpha0.25_gamma2_seed$seed $OUT/successors/
done
$PY -m detector ablate configs/paper_regime/rare_focal.yaml --grid successors --seeds 3 --output-dir $OUT/successors
