"""Shared fixtures: a tiny synthetic COCO dataset and a tiny, fast config on top of it."""
import os

import pytest

from detector.data import make_synthetic_dataset

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
