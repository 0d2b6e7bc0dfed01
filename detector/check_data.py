"""``detector check-data``: build both splits (which validates them), open every image and
print what is in them, and how imbalanced the training anchors are."""
from .analysis.anchor_stats import anchor_statistics, format_anchor_statistics
from .config import training_scale_note
from .data import DatasetError, build_dataset


def check_data(cfg, progress: bool = True) -> bool:
    """Print statistics and problems for the configured splits; True when none has problems."""
    ok = True
    note, warning = training_scale_note(cfg)
    print(f"[scale] {'WARNING: ' if warning else ''}{note}")
    for split in ("train", "val"):
        if not getattr(cfg.data, split).ann_file:
            print(f"[{split}] not configured (data.{split}.ann_file is empty)")
            continue
        try:
            dataset = build_dataset(cfg, split, training=False)
        except DatasetError as e:
            print(f"[{split}] ERROR: {e}")
            ok = False
            continue
        stats = dataset.statistics()
        problems = dataset.check_images(progress)
        print(f"[{split}] {dataset.ann_file}")
        print(f"  images: {stats['images']} ({stats['images_without_boxes']} without boxes)")
        print(f"  boxes: {stats['boxes']}  small/medium/large: " +
              "/".join(str(v) for v in stats["box_sizes"].values()))
        width = max(len(n) for n in stats["boxes_per_class"])
        for name, count in stats["boxes_per_class"].items():
            print(f"    {name:<{width}} {count:7d}")
        print(f"  skipped: {stats['degenerate_boxes_skipped']} degenerate boxes (side <= 1 px after "
              f"clipping), {stats['crowd_boxes_skipped']} crowd boxes")
        if problems:
            ok = False
            print(f"  PROBLEMS ({len(problems)}):")
            for p in problems[:20]:
                print(f"    {p}")
            if len(problems) > 20:
                print(f"    ... and {len(problems) - 20} more")
        else:
            print("  problems: none")
        if split == "train":
            print("  " + format_anchor_statistics(anchor_statistics(cfg, split, dataset=dataset)).replace("\n", "\n  "))
    return ok
