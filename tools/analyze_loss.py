"""Thin wrapper: ``python tools/analyze_loss.py ...`` is ``detector analyze-loss ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze-loss", *sys.argv[1:]]))
