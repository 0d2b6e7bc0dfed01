"""``detector analyze-loss``: the focal loss examined, with numbers that tests check."""
from .loss_report import run_analysis

__all__ = ["run_analysis"]
