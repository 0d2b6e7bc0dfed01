"""Ablations of the loss, or of anything else in the config: points (a named grid, an
(alpha, gamma) grid or ``--axis`` products) times seeds, run here or on a Slurm cluster,
summarised with paired confidence intervals (:func:`ablate`)."""
from .ablate import ablate, write_summary
from .grid import Point, Run, build_points, classic_point, load_grid, parse_seeds, with_seeds
from .local import LocalLauncher
from .slurm import SlurmLauncher, SlurmOptions

__all__ = ["LocalLauncher", "Point", "Run", "SlurmLauncher", "SlurmOptions", "ablate", "build_points",
           "classic_point", "load_grid", "parse_seeds", "with_seeds", "write_summary"]
