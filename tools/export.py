"""Thin wrapper: ``python tools/export.py ...`` is ``detector export ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
