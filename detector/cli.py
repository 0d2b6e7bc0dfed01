"""``detector <subcommand>``: each subcommand is a few lines over a library call.

Errors a user can fix (bad config, bad file, bad data) end in a one-paragraph message and
exit code 2; ``--debug`` shows the traceback instead.
"""
import argparse
import logging
import sys
from typing import List, Optional

from .config import ConfigError, load_config, to_yaml

logger = logging.getLogger("detector")

USER_ERRORS = (ConfigError, FileNotFoundError, KeyError, ValueError, RuntimeError, OSError)


def cmd_config(args) -> None:
    print(to_yaml(load_config(args.config, args.overrides)), end="")


def cmd_convert(args) -> None:
    from .checkpoint import convert_checkpoint

    n = convert_checkpoint(args.source, args.input, args.output)
    print(f"wrote {args.output} ({n} tensors); load it with a config such as "
          "configs/retinanet/retinanet_r50_fpn_torchvision.yaml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="print the fully resolved config as YAML")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("convert", help="convert another framework's weights into ours")
    p.add_argument("source", choices=["torchvision"], help="where the weights come from")
    p.add_argument("input", help="the source state dict (.pth)")
    p.add_argument("output", help="where to write the converted checkpoint (.pth)")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except USER_ERRORS as e:
        if args.debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}\n(run with --debug for the traceback)", file=sys.stderr)
        return 2
    return 0
