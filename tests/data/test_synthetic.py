import filecmp
import json
import os

from pycocotools.coco import COCO

from detector.data import make_synthetic_dataset
from detector.data.synthetic import CLASSES


def test_deterministic_for_a_seed_and_loads_in_pycocotools(tmp_path):
    a = make_synthetic_dataset(str(tmp_path / "a"), num_train=6, num_val=3, seed=5, image_size=64)
    b = make_synthetic_dataset(str(tmp_path / "b"), num_train=6, num_val=3, seed=5, image_size=64)
    c = make_synthetic_dataset(str(tmp_path / "c"), num_train=6, num_val=3, seed=6, image_size=64)
    for split in ("train", "val"):
        with open(a[split]) as fa, open(b[split]) as fb, open(c[split]) as fc:
            ja, jb, jc = json.load(fa), json.load(fb), json.load(fc)
        assert ja == jb
        assert ja["annotations"] != jc["annotations"]
        for im in ja["images"]:
            assert filecmp.cmp(os.path.join(tmp_path, "a", split, im["file_name"]),
                               os.path.join(tmp_path, "b", split, im["file_name"]), shallow=False)
        coco = COCO(a[split])
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
        for ann in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = ann["bbox"]
            assert w > 1 and h > 1 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64


def test_val_split_does_not_depend_on_train_size(tmp_path):
    a = make_synthetic_dataset(str(tmp_path / "a"), num_train=2, num_val=3, seed=1, image_size=64)
    b = make_synthetic_dataset(str(tmp_path / "b"), num_train=5, num_val=3, seed=1, image_size=64)
    with open(a["val"]) as fa, open(b["val"]) as fb:
        assert json.load(fa)["annotations"] == json.load(fb)["annotations"]


def test_long_tail_and_mostly_small(tmp_path):
    paths = make_synthetic_dataset(str(tmp_path), num_train=200, num_val=1, seed=0)
    with open(paths["train"]) as f:
        anns = json.load(f)["annotations"]
    counts = [sum(a["category_id"] == k + 1 for a in anns) for k in range(len(CLASSES))]
    assert counts == sorted(counts, reverse=True) and counts[0] > 3 * counts[-1]
    small = sum(a["area"] < 32 ** 2 for a in anns)
    assert small > 0.6 * len(anns)


def test_sparse_preset_is_in_the_papers_regime(tmp_path):
    from detector.analysis.anchor_stats import anchor_statistics
    from detector.config import load_config
    from detector.data.synthetic import PRESETS

    root = tmp_path / "sparse"
    paths = make_synthetic_dataset(str(root), num_train=150, num_val=1, seed=0, **PRESETS["sparse"])
    with open(paths["train"]) as f:
        data = json.load(f)
    per_image = [sum(a["image_id"] == im["id"] for a in data["annotations"]) for im in data["images"]]
    assert max(per_image) <= 2 and 0.7 < sum(per_image) / len(per_image) < 1.3
    assert all(im["width"] == 256 for im in data["images"])
    cfg = load_config("configs/demo/sparse_focal.yaml", [f"data.train.ann_file={paths['train']}",
                                                           f"data.train.img_dir={root / 'train'}"])
    stats = anchor_statistics(cfg)
    assert stats["anchors"]["mean"] == 12276  # (32^2 + 16^2 + 8^2 + 4^2 + 2^2) cells x 9 anchors
    assert stats["negatives_per_positive"] >= 1000  # the paper's regime, against ~150 for shapes
