"""Shared fixtures: a tiny synthetic COCO dataset and a tiny, fast config on top of it."""
import os

import pytest
import torch

from detector.data import make_synthetic_dataset

# `make test` runs the suite in one worker process per core (pytest-xdist). Each worker and
# every process it starts (`detector train`, torchrun, data-loader workers) then gets its share
# of the cores. Oversubscribed, OpenMP's threads wait for cores another process holds: beside a
# 2-thread training on 2 cores, a 64-pixel step of the tiny config took 6.5 s with 2 threads and
# 0.18 s with 1.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)

TINY_MODEL = """
model:
  num_classes: 4
  backbone: {name: resnet18, weights: null, norm: bn, freeze_at: 0}
  fpn: {out_channels: 32}
  anchors: {base_sizes: [16, 32, 64, 128, 256]}
  head: {num_convs: 1, norm: gn}
input: {min_size: 64, max_size: 64}
data:
  train:
    ann_file: {root}/annotations/instances_train.json
    img_dir: {root}/train
    transforms: [{name: HorizontalFlip, p: 0.5}]
  val:
    ann_file: {root}/annotations/instances_val.json
    img_dir: {root}/val
  num_workers: 0
solver: {optimizer: adamw, base_lr: 0.001, ims_per_batch: 4, lr_schedule: cosine, warmup_iters: 2}
train: {max_iter: 6, device: cpu, log_period: 2, checkpoint_period: 3}
eval: {ims_per_batch: 4, backend: pycocotools}
"""


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    make_synthetic_dataset(root, num_train=16, num_val=8, seed=3, image_size=64, min_object=12, max_object=32)
    return root


@pytest.fixture(scope="session")
def tiny_config(tiny_dataset, tmp_path_factory):
    path = os.path.join(str(tmp_path_factory.mktemp("configs")), "tiny.yaml")
    with open(path, "w") as f:
        f.write(TINY_MODEL.replace("{root}", tiny_dataset))
    return path
