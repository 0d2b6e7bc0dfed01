"""The demo's shapes with two of their four classes merged (triangle and cross become one
class, "triangle_or_cross"): a data set with another class count, on the same images, for the
fine-tuning measurement in README.md here. Run from the repository root after `make demo`:

    .venv/bin/python docs/results/finetune/merge_classes.py data/shapes data/shapes3
"""
import json
import os
import sys

MERGED = {1: 1, 2: 2, 3: 3, 4: 3}  # category id -> new id (cross joins triangle)


def main(source: str, target: str) -> None:
    os.makedirs(os.path.join(target, "annotations"), exist_ok=True)
    for split in ("train", "val"):
        with open(os.path.join(source, "annotations", f"instances_{split}.json")) as f:
            data = json.load(f)
        for ann in data["annotations"]:
            ann["category_id"] = MERGED[ann["category_id"]]
        data["categories"] = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"},
                              {"id": 3, "name": "triangle_or_cross"}]
        with open(os.path.join(target, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(data, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
