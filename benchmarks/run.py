"""Side-by-side benchmarks against torchvision's RetinaNet: ``make bench`` or
``python -m benchmarks.run [--json OUT.json] [--cases loss_path,postprocess,...]``.

Every case (one module each in ``benchmarks/cases/``) first checks that ours and the
reference compute the same numbers, then times both in this process, on the same inputs and
threads, interleaved, after a warm-up, and returns rows with the medians and the ratio
reference time / our time (above 1: we are faster). The memory row reports our peak /
torchvision's (below 1: we use less). A case whose check fails is reported and not timed.
"""
import argparse
import json
import math
import platform
import sys
from typing import Callable, Dict, List

import torch

from benchmarks.cases import coco_eval, inference, loss_path, onnx_runtime, postprocess, train_loader, train_step
from benchmarks.common import CheckFailed

CASES: Dict[str, Callable[[argparse.Namespace], List[dict]]] = {
    "loss_path": loss_path.run,
    "postprocess": postprocess.run,
    "train_step": train_step.run,
    "train_step_defaults": train_step.run_defaults,
    "inference": inference.run,
    "onnx_runtime": onnx_runtime.run,
    "coco_eval": coco_eval.run,
    "train_loader": train_loader.run,
}


def _shown_ratio(ratio: float, target: str) -> str:
    """Two decimals, rounded towards missing the target, so that a printed ratio never
    looks met when it is not (1.1999 against >= 1.2 prints 1.19)."""
    hundredths = ratio * 100
    return f"{(math.ceil(hundredths) if target.startswith('<') else math.floor(hundredths)) / 100:.2f}"


def _format_table(rows: List[dict]) -> str:
    lines = ["| case | setting | reference | ours | reference | ratio | target | met |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        if r.get("unit") == "bytes":
            ours, ref = f"{r['ours'] / 2**20:.0f} MiB", f"{r['reference_value'] / 2**20:.0f} MiB"
        elif r.get("unit") == "images/s":
            ours, ref = f"{r['ours']:.1f} img/s", f"{r['reference_value']:.1f} img/s"
        else:
            ours, ref = f"{1000 * r['ours_s']:.1f} ms", f"{1000 * r['reference_s']:.1f} ms"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['case']} | {r['setting']} | {r['reference']} | {ours} | {ref} | "
                     f"{_shown_ratio(r['ratio'], r['target'])}x | {r['target']} | {met} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side for the slow cases")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--coco-images", type=int, default=5000, help="images in the COCO evaluation case")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; valid: {', '.join(CASES)}")
    rows: List[dict] = []
    failed = []
    for name in names:
        print(f"[{name}] ...", flush=True)
        try:
            case_rows = CASES[name](args)
        except CheckFailed as e:
            print(f"[{name}] not timed: {e}", flush=True)
            failed.append(name)
            continue
        for row in case_rows:
            rows.append(row)
            print(_format_table([row]).splitlines()[-1], flush=True)
    print()
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"float32, medians of interleaved calls")
    print(_format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "rows": rows}, f, indent=2)
        print(f"wrote {args.json}")
    if failed:
        print(f"checks failed, not timed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
