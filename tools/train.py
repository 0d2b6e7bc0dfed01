"""Thin wrapper: ``python tools/train.py ...`` is ``detector train ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
