"""Thin wrapper: ``python tools/predict.py ...`` is ``detector predict ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
