"""``detector <subcommand>``: each subcommand is a few lines over a library call.

Errors a user can fix (:class:`~detector.errors.UserError`: bad config, data, option or
checkpoint; and file errors) end in a one-paragraph message and exit code 2, as does running
out of GPU memory (with the settings that fix it); ``--debug`` shows the traceback instead.
Anything else is a bug: its traceback is printed and the exit code is 1.
"""
import argparse
import logging
import os
import sys
import traceback
from typing import List, Optional

import torch

from .config import load_config, to_yaml
from .errors import UserError
from .export import DEFAULT_OPSET, MIN_OPSET

logger = logging.getLogger("detector")

USER_ERRORS = (UserError, OSError)  # OSError: files missing, unreadable or unwritable
OUT_OF_MEMORY = ("the GPU ran out of memory. Lower solver.ims_per_batch (and solver.base_lr with it), "
                 "turn on train.amp=true, lower input.max_size, or set eval.ims_per_batch lower for evaluation")


def _load(args):
    cfg = load_config(args.config, args.overrides)
    if getattr(args, "output_dir", None):
        cfg.output_dir = args.output_dir
    return cfg


def cmd_config(args) -> None:
    print(to_yaml(_load(args)), end="")


def cmd_train(args) -> None:
    from .engine import train

    train(_load(args), resume=args.resume)


def _model_with_weights(cfg, weights: str, device: Optional[str] = None):
    from .engine import load_model_weights, resolve_device
    from .modeling import build_model

    device = resolve_device(device or cfg.train.device)
    model = build_model(cfg)
    load_model_weights(model, weights)
    return model.to(device).eval(), device


def cmd_eval(args) -> None:
    from .data import build_dataset
    from .evaluation import evaluate

    cfg = _load(args)
    dataset = build_dataset(cfg, "val", training=False)
    model, device = _model_with_weights(cfg, args.weights)
    evaluate(model, cfg, dataset, cfg.output_dir, device)
    print(f"wrote {cfg.output_dir}/metrics.json, detections.json and pr_curves.png")


def cmd_predict(args) -> None:
    from .export import OnnxDetector, torch_detector
    from .predict import find_images, predict

    cfg = _load(args)
    paths = find_images(args.inputs)
    if args.weights.endswith(".onnx"):  # an exported graph, run by ONNX Runtime
        detect, runner = OnnxDetector(args.weights), "ONNX Runtime"
    else:
        detect, runner = torch_detector(*_model_with_weights(cfg, args.weights)), "PyTorch"
    predict(detect, paths, _class_names(cfg), args.output_dir, args.score_thresh,
            max_image_pixels=cfg.data.max_image_pixels)
    print(f"wrote {len(paths)} drawn images and predictions.json to {args.output_dir} ({runner})")


def cmd_export(args) -> None:
    from .export import check_against_eager, export_onnx, sample_images

    cfg = _load(args)
    model, _ = _model_with_weights(cfg, args.weights, device="cpu")
    export_onnx(model, args.output, args.opset)
    print(f"wrote {args.output}: input 'image' [H, W, 3] uint8 RGB; outputs 'boxes' [D, 4] xyxy in input "
          "pixels, 'scores' [D], 'labels' [D] (0..K-1)")
    if args.no_check:
        return
    images, source = sample_images(cfg, args.check_images)
    report = check_against_eager(model, args.output, images)
    if report["problems"]:
        raise RuntimeError("the exported graph does not give the eager model's detections:\n  "
                           + "\n  ".join(report["problems"][:10]))
    print(f"checked with ONNX Runtime on {report['images']} {source}: the same {report['detections']} "
          f"detections as PyTorch (largest box difference {report['max_box_diff_px']:.2g} px, score "
          f"{report['max_score_rel_diff']:.2g} relative)")


def _class_names(cfg):
    """Label -> name from the train (or val) annotation file when there is one, else class_<i>.
    Labels are the sorted category ids' positions, or, with ``data.category_ids_as_labels``
    (torchvision's 91 COCO slots), the ids themselves."""
    from .data.coco import _load_json

    fallback = [f"class_{i}" for i in range(cfg.model.num_classes)]
    for split in (cfg.data.train, cfg.data.val):
        if split.ann_file and os.path.isfile(split.ann_file):
            cats = sorted(_load_json(split.ann_file).get("categories", []), key=lambda c: c["id"])
            if cfg.data.category_ids_as_labels:
                by_id = {c["id"]: c["name"] for c in cats}
                return [by_id.get(i, name) for i, name in enumerate(fallback)]
            if len(cats) == cfg.model.num_classes:
                return [c["name"] for c in cats]
    return fallback


def cmd_check_data(args) -> None:
    from .data.check import check_data

    ok = check_data(_load(args))
    if not ok:
        raise UserError("problems found in the data (listed above)")


def cmd_make_synthetic(args) -> None:
    from .data import make_synthetic_dataset
    from .data.synthetic import PRESETS

    paths = make_synthetic_dataset(args.out_dir, args.num_train, args.num_val, args.seed, **PRESETS[args.preset])
    print(f"wrote {args.num_train} train and {args.num_val} val images; annotations: "
          f"{paths['train']}, {paths['val']}")


def cmd_ablate(args) -> None:
    from .ablation import (
        expand_grid,
        parse_list,
        parse_seeds,
        run_ablation,
        submit_ablation,
        wait_for_jobs,
        with_seeds,
        write_summary,
    )
    from .launcher import SlurmOptions

    cfg = _load(args)  # validates the config and the overrides before any run starts
    specs = with_seeds(expand_grid(parse_list(args.alpha), parse_list(args.gamma), args.grid), parse_seeds(args.seeds))
    if args.launcher == "local":
        devices = [d for d in (args.devices or "").replace(",", " ").split() if d]
        specs = run_ablation(args.config, cfg.output_dir, specs, args.overrides, args.jobs, devices)
    else:
        options = SlurmOptions(partition=args.partition, gpus_per_run=args.gpus_per_run, cpus_per_gpu=args.cpus_per_gpu,
                               time_min=args.time_min, signal_delay_s=args.signal_delay_s)
        cluster = "slurm" if args.launcher == "slurm" else "local"
        submitted = submit_ablation(args.config, cfg.output_dir, specs, args.overrides, cluster, options)
        if args.wait:
            wait_for_jobs(submitted, cfg.output_dir)
        write_summary(specs, cfg.output_dir)
        queued = [s for s in specs if s.status == "queued"]
        print(f"{len(specs) - len(queued)} of {len(specs)} runs finished (table: {cfg.output_dir}/ablation.md); "
              + (f"{len(queued)} queued or running: run the same command again to collect them" if queued else
                 "all collected"))
    failed = [s for s in specs if s.status == "failed"]
    if failed:
        raise UserError(f"{len(failed)} of {len(specs)} runs failed (marked in {cfg.output_dir}/ablation.md)")


def cmd_analyze_loss(args) -> None:
    from .analysis import run_analysis

    if bool(args.config) != bool(args.weights):
        raise UserError("analyze-loss: --config and --weights go together (the trained-model part needs both)")
    cfg = load_config(args.config, args.overrides) if args.config else None
    key = run_analysis(args.output_dir, cfg, args.weights, args.max_images)
    w = key["worked_example"]
    print("softmax of [0.3, 0.7]:", [f"{v:.8f}" for v in w["softmax"]])
    for name in ("ce", "softmax_fl", "sigmoid_fl"):
        print(f"d{name}/dz: {[f'{v:.8f}' for v in w['grad_' + name]]}  sum {w['sum_' + name][0]:.3g}")
    print("FL/CE at p_t=0.9:", {g: f"{r:.3g}" for g, r in key["fl_over_ce_at_pt_0.9"].items()})
    print("largest gap, focal loss vs max-margin form:", {g: f"{v:.3f}" for g, v in key["max_gap"].items()})
    if "easiest_90pct_negatives_share" in key:
        print("share of the loss on the easiest 90% of negatives:",
              {g: f"{v:.3f}" for g, v in key["easiest_90pct_negatives_share"].items()})
    print(f"wrote {args.output_dir}/analysis.md and its plots")


def cmd_convert(args) -> None:
    from .engine.checkpoint import convert_checkpoint

    n = convert_checkpoint(args.source, args.input, args.output)
    print(f"wrote {args.output} ({n} tensors); load it with a config such as "
          "configs/retinanet/retinanet_r50_fpn_torchvision.yaml")


def _config_args(p, output_dir: bool = True) -> None:
    p.add_argument("config", help="YAML config file")
    if output_dir:
        p.add_argument("--output-dir", help="where outputs go (overrides output_dir)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model; ends with a COCO evaluation when val is set")
    _config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output dir")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="COCO evaluation of a checkpoint on the val split")
    _config_args(p)
    p.add_argument("--weights", required=True, help="checkpoint (.pth)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="detect objects in images; writes JSON and drawn images")
    p.add_argument("config")
    p.add_argument("--weights", required=True,
                   help="checkpoint (.pth), or a graph from 'detector export' (.onnx, run by ONNX Runtime)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--score-thresh", type=float, default=0.3, help="draw and keep detections above this")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write the whole detector (preprocessing to NMS) as one ONNX graph")
    _config_args(p, output_dir=False)
    p.add_argument("--weights", required=True, help="checkpoint (.pth)")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    p.add_argument("--check-images", type=int, default=8,
                   help="val images (or random ones without a val split) to compare with PyTorch")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("ablate", help="train + evaluate one run per (alpha, gamma) and tabulate them")
    _config_args(p)
    p.add_argument("--alpha", help="comma-separated alphas, e.g. 0.25,0.75 (-1: no balancing)")
    p.add_argument("--gamma", help="comma-separated gammas, e.g. 0,0.5,2")
    p.add_argument("--grid", help="a named grid instead (table1a, table1b) or a grid YAML file")
    p.add_argument("--seeds", help="runs per point: a count N (train.seed 0..N-1) or a comma-separated list")
    p.add_argument("--launcher", choices=["local", "slurm", "submitit-local"], default="local",
                   help="local: subprocesses here; slurm: one Slurm job per run (submitit); submitit-local: "
                        "the Slurm job path as local processes, to try a sweep before submitting it")
    p.add_argument("--jobs", type=int, default=1, help="local launcher: runs at a time")
    p.add_argument("--devices", help="local launcher: comma-separated devices, one per concurrent run (e.g. 0,1)")
    p.add_argument("--partition", help="slurm: partition")
    p.add_argument("--gpus-per-run", type=int, default=1, help="slurm: GPUs per run (>1: torchrun on one node)")
    p.add_argument("--cpus-per-gpu", type=int, default=8, help="slurm: CPU cores per GPU (data loading)")
    p.add_argument("--time-min", type=int, default=24 * 60, help="slurm: time limit per job, minutes")
    p.add_argument("--signal-delay-s", type=int, default=120,
                   help="slurm: seconds before the time limit at which a job checkpoints and requeues")
    p.add_argument("--wait", action="store_true", help="slurm: wait for the jobs and write the final table")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("analyze-loss", help="curves, gradients and the max-margin view of the focal loss")
    p.add_argument("--output-dir", default="output/analysis")
    p.add_argument("--config", help="with --weights: also the loss distribution of that trained model")
    p.add_argument("--weights")
    p.add_argument("--max-images", type=int, default=200)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for --config")
    p.set_defaults(func=cmd_analyze_loss)

    p = sub.add_parser("check-data", help="validate the train and val splits and print statistics")
    _config_args(p, output_dir=False)
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("config", help="print the fully resolved config as YAML")
    _config_args(p, output_dir=False)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("make-synthetic", help="write the built-in synthetic COCO-format dataset")
    p.add_argument("out_dir")
    p.add_argument("--num-train", type=int, default=2000)
    p.add_argument("--num-val", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", choices=["shapes", "sparse"], default="shapes",
                   help="shapes: the demo's set (128 px, mild imbalance); sparse: the paper's regime (256 px, "
                        "at most 2 objects, hollow decoys; beyond 1:1000 foreground:background)")
    p.set_defaults(func=cmd_make_synthetic)

    p = sub.add_parser("convert", help="convert another framework's weights into ours")
    p.add_argument("source", choices=["torchvision"], help="where the weights come from")
    p.add_argument("input", help="the source state dict (.pth)")
    p.add_argument("output", help="where to write the converted checkpoint (.pth)")
    p.set_defaults(func=cmd_convert)
    for p in sub.choices.values():  # --debug before or after the subcommand
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    # argparse gives positionals after an option (CONFIG --output-dir D KEY=VALUE) to no one:
    # collect such KEY=VALUE words into the overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(w.startswith("-") or "=" not in w for w in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)  # also when the host program configured logging already
    from .engine.trainer import TrainingInterrupted

    try:
        args.func(args)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except USER_ERRORS as e:
        return _user_error(str(e), args.debug)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (a bug: its traceback, exit 1; or the GPU ran out of memory)
        if isinstance(e, torch.cuda.OutOfMemoryError):
            return _user_error(OUT_OF_MEMORY, args.debug)
        traceback.print_exc()
        return 1
    finally:
        _end_worker_processes()
    return 0


def _user_error(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    else:
        print(f"error: {message}\n(run with --debug for the traceback)", file=sys.stderr)
    return 2


def _end_worker_processes() -> None:
    """Kill data-loader workers that outlived the command. They ignore SIGTERM (they leave
    stop signals to this process), and at exit multiprocessing would send them SIGTERM and
    wait for them forever: a run that failed would print its traceback and never end."""
    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
        child.join(timeout=10)
