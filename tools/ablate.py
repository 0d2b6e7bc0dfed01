"""Thin wrapper: ``python tools/ablate.py ...`` is ``detector ablate ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["ablate", *sys.argv[1:]]))
