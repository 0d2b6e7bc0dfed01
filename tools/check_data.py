"""Thin wrapper: ``python tools/check_data.py ...`` is ``detector check-data ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["check-data", *sys.argv[1:]]))
