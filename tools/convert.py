"""Thin wrapper: ``python tools/convert.py ...`` is ``detector convert ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
