"""``detector analyze-loss``: the focal loss examined, with numbers that tests check."""
from .report import run_analysis

__all__ = ["run_analysis"]
