"""Thin wrapper: ``python tools/config.py ...`` is ``detector config ...``."""
import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main(["config", *sys.argv[1:]]))
