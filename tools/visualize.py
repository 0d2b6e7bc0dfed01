"""Thin wrapper: ``python tools/visualize.py ...`` is ``detector visualize ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["visualize", *sys.argv[1:]]))
