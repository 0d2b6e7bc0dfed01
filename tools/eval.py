"""Thin wrapper: ``python tools/eval.py ...`` is ``detector eval ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
