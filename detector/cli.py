"""``detector <command>``: train, evaluate, predict, export, ablate and inspect RetinaNet models.

Each command is a few lines over a library call, imported when the command runs, so that
``detector --help`` answers at once. Errors a user can fix (a bad config, data, option or
checkpoint; files; running out of memory) end in a message and exit code 2; ``--debug``
adds the traceback. Anything else is a bug: its traceback is printed and the exit code is 1.
"""
import argparse
import logging
import sys
import traceback
from typing import List, Optional

logger = logging.getLogger("detector")

OUT_OF_MEMORY = ("the {device} ran out of memory. Lower solver.ims_per_batch (and solver.base_lr with it), turn on "
                 "train.amp=true, lower input.max_size, or set eval.ims_per_batch lower for evaluation")


def _load(args):
    """The config of a command, with its registered names checked (plugins loaded)."""
    from .config import load_config
    from .modeling import check_names

    cfg = load_config(args.config, args.overrides)
    check_names(cfg)
    if getattr(args, "output_dir", None):
        cfg.output_dir = args.output_dir
    return cfg


def cmd_config(args) -> None:
    from .config import to_yaml

    print(to_yaml(_load(args)), end="")


def cmd_train(args) -> None:
    from .engine.trainer import train

    train(_load(args), resume=args.resume)


def cmd_eval(args) -> None:
    from .data import build_dataset
    from .engine.lock import DirectoryLock
    from .evaluation import evaluate
    from .inference import Detector

    cfg = _load(args)
    dataset = build_dataset(cfg, "val", training=False)
    detector = Detector.from_checkpoint(args.weights, args.config, args.overrides, device=args.device)
    with DirectoryLock(cfg.output_dir, "evaluation"):
        stats = evaluate(detector.model, cfg, dataset, cfg.output_dir, detector.device)
    plots = ", ".join(stats.get("plots", [])) or "no plots (no detections)"
    print(f"wrote {cfg.output_dir}/metrics.json, detections.json; plots: {plots}")


def cmd_predict(args) -> None:
    from .errors import UserError
    from .inference import Detector, OnnxDetector, find_images, predict

    image_ids = None
    if args.split:  # the images of a data split, with their ids for coco_results.json
        from .data import build_dataset

        dataset = build_dataset(_load(args), args.split, training=False)
        paths, image_ids = [dataset.image_path(i) for i in range(len(dataset))], list(dataset.ids)
    elif args.inputs:
        paths = find_images(args.inputs)
    else:
        raise UserError("name images or directories to predict on, or a data split with --split")
    if args.weights.endswith(".onnx"):  # an exported graph, run by ONNX Runtime
        detect = OnnxDetector(args.weights, max_image_pixels=_load(args).data.max_image_pixels)
        runner = "ONNX Runtime"
    else:
        detect = Detector.from_checkpoint(args.weights, args.config, args.overrides, device=args.device)
        runner = f"PyTorch on {detect.device}"
    records = predict(detect, paths, args.output_dir, args.score_thresh, image_ids=image_ids)
    failed = [r for r in records if "error" in r]
    coco = " and coco_results.json" if image_ids is not None else ""
    print(f"wrote {len(records) - len(failed)} drawn images and predictions.json{coco} to {args.output_dir} ({runner})")
    if failed:
        raise UserError(f"{len(failed)} of {len(records)} images could not be read (listed in predictions.json): "
                        + "; ".join(r["error"] for r in failed[:3]))


def cmd_export(args) -> None:
    from .export import check_against_eager, export_onnx, sample_images
    from .inference import Detector

    if args.opset is not None:  # checked as the config key it sets
        args.overrides = [*args.overrides, f"export.opset={args.opset}"]
    cfg = _load(args)
    detector = Detector.from_checkpoint(args.weights, args.config, args.overrides, device="cpu")
    export_onnx(detector.model, args.output, cfg.export.opset, detector.metadata)
    print(f"wrote {args.output}: input 'image' [H, W, 3] uint8 RGB; outputs 'boxes' [D, 4] xyxy in input "
          f"pixels, 'scores' [D], 'labels' [D] (0..K-1); class names and category ids in its metadata")
    if args.no_check:
        return
    images, source = sample_images(cfg, args.check_images)
    report = check_against_eager(detector.model, args.output, images)
    if report["problems"]:
        raise RuntimeError("the exported graph does not give the eager model's detections:\n  "
                           + "\n  ".join(report["problems"][:10]))
    print(f"checked with ONNX Runtime on {report['images']} {source}: the same {report['detections']} "
          f"detections as PyTorch (largest box difference {report['max_box_diff_px']:.2g} px, score "
          f"{report['max_score_rel_diff']:.2g} relative)")


def cmd_check_data(args) -> None:
    from .check_data import check_data
    from .errors import UserError

    if not check_data(_load(args)):
        raise UserError("problems found in the data (listed above)")


def cmd_make_synthetic(args) -> None:
    from .data import make_synthetic_dataset
    from .data.synthetic import PRESETS

    paths = make_synthetic_dataset(args.out_dir, args.num_train, args.num_val, args.seed, **PRESETS[args.preset])
    print(f"wrote {args.num_train} train and {args.num_val} val images; annotations: "
          f"{paths['train']}, {paths['val']}")


def cmd_ablate(args) -> None:
    from .ablation import LocalLauncher, SlurmLauncher, SlurmOptions, ablate, build_points, parse_seeds, with_seeds
    from .ablation.grid import parse_list
    from .ablation.local import parse_devices
    from .modeling import check_names

    cfg = _load(args)  # the config and the shared overrides are valid before any point is looked at
    runs = with_seeds(build_points(args.grid, parse_list(args.alpha), parse_list(args.gamma), args.axis or ()),
                      parse_seeds(args.seeds))
    if args.collect:
        launcher = None
    elif args.launcher == "local":
        launcher = LocalLauncher(args.jobs, parse_devices((args.devices or "").replace(",", " ").split()))
    else:
        options = SlurmOptions(partition=args.partition, gpus_per_run=args.gpus_per_run, cpus_per_gpu=args.cpus_per_gpu,
                               time_min=args.time_min, signal_delay_s=args.signal_delay_s)
        launcher = SlurmLauncher("slurm" if args.launcher == "slurm" else "local", options, args.wait)
    ablate(args.config, cfg.output_dir, runs, launcher, args.overrides, args.reference, check_names)


def cmd_visualize(args) -> None:
    from .visualize import visualize

    paths = visualize(_load(args), args.output_dir, data=args.data, predictions=args.predictions,
                      errors=args.errors, per_sheet=args.per_sheet, max_images=args.max_images,
                      single=args.single, score_thresh=args.score_thresh)
    print(f"wrote {len(paths)} PNG files to {args.output_dir}" + (f", e.g. {paths[0]}" if paths else ""))


def cmd_analyze_loss(args) -> None:
    from .analysis import run_analysis
    from .config import load_config
    from .errors import UserError

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
    from .modeling.weights import convert_checkpoint

    n = convert_checkpoint(args.source, args.input, args.output)
    print(f"wrote {args.output} ({n} tensors)" + {
        "torchvision": "; load it with a config such as configs/retinanet/retinanet_r50_fpn_torchvision.yaml",
        "backbone": "; initialise a backbone with it: model.backbone.weights=" + args.output}[args.source])


# ----------------------------------------------------------------------------- the parser

EXAMPLES = {
    "train": "detector train configs/demo/shapes_focal.yaml --output-dir output/mine train.max_iter=100",
    "eval": "detector eval configs/demo/shapes_focal.yaml --weights output/demo/shapes_focal/model_final.pth",
    "predict": "detector predict configs/demo/shapes_focal.yaml --weights output/demo/shapes_focal/model_final.pth "
               "photos/ --output-dir preds",
    "export": "detector export configs/demo/shapes_focal.yaml --weights output/demo/shapes_focal/model_final.pth "
              "--output model.onnx",
    "ablate": "detector ablate configs/demo/shapes_focal.yaml --grid regimes --seeds 3 --output-dir output/abl",
    "visualize": "detector visualize configs/demo/shapes_focal.yaml --predictions output/demo/shapes_focal "
                 "--output-dir output/vis",
    "analyze-loss": "detector analyze-loss --output-dir output/analysis",
    "check-data": "detector check-data configs/demo/shapes_focal.yaml",
    "config": "detector config configs/demo/shapes_focal.yaml loss.cls.gamma=0",
    "make-synthetic": "detector make-synthetic data/shapes",
    "convert": "detector convert torchvision retinanet_resnet50_fpn_coco.pth ours.pth",
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _command(sub, name: str, help: str):
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                          epilog=f"example:\n  {EXAMPLES[name]}", formatter_class=_Formatter)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and the example as written."""


def _config_args(p, output_dir: bool = True) -> None:
    p.add_argument("config", metavar="CONFIG", help="YAML config file")
    if output_dir:
        p.add_argument("--output-dir", metavar="DIR", help="where outputs go (overrides output_dir)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. train.max_iter=100")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description=__doc__.splitlines()[0],
                                     epilog=f"example:\n  {EXAMPLES['train']}\n\n'detector COMMAND --help' for one "
                                            "command's options", formatter_class=_Formatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "train", "train a model; ends with a COCO evaluation when a val split is set")
    _config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output dir")
    p.set_defaults(func=cmd_train)

    p = _command(sub, "eval", "COCO evaluation of a checkpoint on the val split")
    _config_args(p)
    p.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint (.pth)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (the best device here, whatever the checkpoint trained on), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_eval)

    p = _command(sub, "predict", "detect objects in images; writes predictions.json and drawn images")
    p.add_argument("config", metavar="CONFIG", help="YAML config file")
    p.add_argument("--weights", required=True, metavar="CKPT_OR_ONNX",
                   help="checkpoint (.pth), or a graph from 'detector export' (.onnx, run by ONNX Runtime)")
    p.add_argument("inputs", nargs="*", metavar="IMAGE_OR_DIR")
    p.add_argument("--split", choices=["train", "val"],
                   help="predict on the config's split instead; also writes coco_results.json (COCO results format)")
    p.add_argument("--output-dir", required=True, metavar="DIR")
    p.add_argument("--score-thresh", type=float, default=0.3, metavar="S", help="draw and keep detections above this")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (the best device here, whatever the checkpoint trained on), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_predict)

    p = _command(sub, "export", "write the whole detector (preprocessing to NMS) as one ONNX graph")
    _config_args(p, output_dir=False)
    p.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint (.pth)")
    p.add_argument("--output", required=True, metavar="ONNX", help="the .onnx file to write")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (>= 11; default: the config's export.opset)")
    p.add_argument("--check-images", type=_positive_int, default=8, metavar="N",
                   help="val images (or random ones without a val split) to compare with PyTorch")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    p.set_defaults(func=cmd_export)

    p = _command(sub, "ablate", "train + evaluate one run per point and seed, and tabulate them")
    _config_args(p)
    p.add_argument("--grid", metavar="NAME",
                   help="a named grid (paper_regime, successors, regimes, table1a, table1b, ...) or a grid YAML")
    p.add_argument("--alpha", metavar="LIST", help="comma-separated alphas, e.g. 0.25,0.75 (-1: no balancing), "
                                                   "with --gamma")
    p.add_argument("--gamma", metavar="LIST", help="comma-separated gammas, e.g. 0,0.5,2, with --alpha")
    p.add_argument("--axis", action="append", metavar="KEY=V1,V2",
                   help="a config key and its values; several --axis give their product "
                        "(e.g. --axis loss.cls.name=sigmoid_focal,varifocal --axis model.matcher.name=iou,atss)")
    p.add_argument("--seeds", metavar="N_OR_LIST",
                   help="runs per point: a count N (train.seed 0..N-1) or a comma-separated list")
    p.add_argument("--reference", metavar="NAME",
                   help="the point others are compared with (default: FL (0.25, 2) when present, else the first)")
    p.add_argument("--launcher", choices=["local", "slurm", "submitit-local"], default="local",
                   help="local: subprocesses here; slurm: one Slurm job per run (submitit); submitit-local: "
                        "the Slurm job path as local processes, to try a sweep before submitting it")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N", help="local launcher: runs at a time")
    p.add_argument("--devices", metavar="LIST",
                   help="local launcher: GPU indices as this process sees them (0,1 or cuda:0,cuda:1) or cpu; "
                        "each run takes a free one")
    p.add_argument("--partition", metavar="NAME", help="slurm: partition")
    p.add_argument("--gpus-per-run", type=_positive_int, default=1, metavar="N",
                   help="slurm: GPUs per run (>1: torchrun)")
    p.add_argument("--cpus-per-gpu", type=_positive_int, default=8, metavar="N",
                   help="slurm: CPU cores per GPU (data loading)")
    p.add_argument("--time-min", type=_positive_int, default=24 * 60, metavar="MIN",
                   help="slurm: time limit per job, minutes")
    p.add_argument("--signal-delay-s", type=_positive_int, default=120, metavar="S",
                   help="slurm: seconds before the time limit at which a job checkpoints and requeues")
    p.add_argument("--wait", action="store_true", help="slurm: wait for the jobs and write the final table")
    p.add_argument("--collect", action="store_true",
                   help="start nothing: tabulate the runs finished so far (of a study still running elsewhere)")
    p.set_defaults(func=cmd_ablate)

    p = _command(sub, "visualize", "draw the ground truth as the model sees it, or a run's detections and errors")
    _config_args(p, output_dir=False)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--data", action="store_true", help="the train split after the train transforms and resize")
    mode.add_argument("--predictions", metavar="RUN_DIR",
                      help="a run (or eval) directory with detections.json: each box coloured by its error type")
    p.add_argument("--output-dir", required=True, metavar="DIR")
    p.add_argument("--errors", metavar="TYPE", help="with --predictions: only the images where this error costs "
                   "most (classification, localization, both, duplicate, background, missed)")
    p.add_argument("--per-sheet", type=_positive_int, default=16, metavar="N", help="images per contact sheet")
    p.add_argument("--max-images", type=_positive_int, default=64, metavar="N", help="images to draw")
    p.add_argument("--single", action="store_true", help="also one file per image")
    p.add_argument("--score-thresh", type=float, default=0.3, metavar="S",
                   help="--predictions: draw detections above this")
    p.set_defaults(func=cmd_visualize)

    p = _command(sub, "analyze-loss", "curves, gradients and the max-margin view of the focal loss")
    p.add_argument("--output-dir", default="output/analysis", metavar="DIR")
    p.add_argument("--config", metavar="CONFIG",
                   help="with --weights: also the loss distribution of that trained model")
    p.add_argument("--weights", metavar="CKPT")
    p.add_argument("--max-images", type=_positive_int, default=200, metavar="N")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for --config")
    p.set_defaults(func=cmd_analyze_loss)

    p = _command(sub, "check-data", "validate the train and val splits and print statistics")
    _config_args(p, output_dir=False)
    p.set_defaults(func=cmd_check_data)

    p = _command(sub, "config", "print the fully resolved config as YAML")
    _config_args(p, output_dir=False)
    p.set_defaults(func=cmd_config)

    p = _command(sub, "make-synthetic", "write the built-in synthetic COCO-format dataset")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--num-train", type=_positive_int, default=2000, metavar="N")
    p.add_argument("--num-val", type=_positive_int, default=300, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--preset", choices=["shapes", "sparse", "rare"], default="shapes", metavar="{shapes,sparse,rare}",
                   help="shapes: the demo's set (128 px, mild imbalance); sparse: 256 px, at most 2 objects and "
                        "hollow decoys; rare: 128 px, at most one small object (sparse and rare: beyond 1:1000)")
    p.set_defaults(func=cmd_make_synthetic)

    p = _command(sub, "convert", "convert weights: torchvision's RetinaNet into ours, or a detector's backbone alone")
    p.add_argument("source", choices=["torchvision", "backbone"],
                   help="torchvision: a torchvision RetinaNet state dict; backbone: the ResNet of a checkpoint of ours")
    p.add_argument("input", metavar="IN.pth", help="the source (.pth)")
    p.add_argument("output", metavar="OUT.pth", help="where to write the converted weights (.pth)")
    p.set_defaults(func=cmd_convert)
    for p in sub.choices.values():  # --debug before or after the command
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    return parser


def synopsis() -> List[str]:
    """One usage line per command, as ``--help`` gives it (less -h and --debug, which every
    command takes): the README's command-line synopsis is these lines (a test compares them)."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    lines = []
    for parser in commands.choices.values():
        usage = " ".join(parser.format_usage().split()).removeprefix("usage: ")
        lines.append(usage.replace(" [-h]", "").replace(" [--debug]", ""))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    # argparse gives positionals after an option (CONFIG --output-dir D KEY=VALUE) to no one:
    # collect such KEY=VALUE words into the overrides (predict's image paths into its images).
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "inputs"):  # predict: images named after an option go to the images
        args.inputs = [*args.inputs, *(w for w in extra if not w.startswith("-"))]
        extra = [w for w in extra if w.startswith("-")]
    if extra:
        if not hasattr(args, "overrides") or any(w.startswith("-") or "=" not in w for w in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)  # also when the host program configured logging already
    from .engine.stopping import TrainingInterrupted
    from .errors import UserError

    try:
        args.func(args)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except (UserError, OSError) as e:  # OSError: files missing, unreadable or unwritable
        return _user_error(str(e), args.debug)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (a bug: its traceback, exit 1; or memory ran out)
        device = _out_of_memory(e)
        if device:
            return _user_error(OUT_OF_MEMORY.format(device=device), args.debug)
        traceback.print_exc()
        return 1
    finally:
        _end_worker_processes()
    return 0


def _out_of_memory(error: Exception) -> Optional[str]:
    """"GPU" or "CPU" when ``error`` is torch running out of that memory, else None."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return "GPU"
    if isinstance(error, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(error):
        return "CPU"
    return None


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
    import signal

    children = multiprocessing.active_children()
    if children:  # torch's SIGCHLD handler would report these kills as a worker failure
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
        child.join(timeout=10)


if __name__ == "__main__":  # python detector/cli.py; the package's entry points are __main__ and `detector`
    sys.exit(main())
