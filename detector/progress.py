"""Progress where a person looks, lines where a log is read.

On a terminal, :func:`progress` is a tqdm bar. Elsewhere (Slurm's output file, ``2> log``, a
pipe) a bar's carriage returns would pile every update into one line of the file, so it is a
plain line through ``logging`` every ``interval`` seconds and one at the end: what, how far,
the rate, the time left and the bar's postfix (the losses, while training).
"""
import logging
import sys
import time
from typing import Any, Iterable, Optional

from tqdm import tqdm

logger = logging.getLogger("detector.progress")

INTERVAL_S = 30.0  # between two lines in a log


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "", unit: str = "it",
             disable: bool = False, initial: int = 0, leave: bool = True, interval: float = INTERVAL_S):
    """``tqdm(iterable, total=..., desc=..., ...)`` on a terminal, :class:`LineProgress` elsewhere."""
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, initial=initial, leave=leave,
                    dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, disable=disable, initial=initial,
                        interval=interval)


class LineProgress:
    """The part of tqdm's interface the package uses (iteration, ``update``, ``set_postfix``,
    ``close``, ``with``), written as a line every ``interval`` seconds and one at the end."""

    def __init__(self, iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", disable: bool = False, initial: int = 0, interval: float = INTERVAL_S) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.disable, self.interval = desc, unit, disable, interval
        self.n = self.initial = initial
        self.postfix = ""
        self.started = self.last = time.monotonic()
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._write(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        if self.disable:
            return
        done = self.n - self.initial
        rate = done / max(now - self.started, 1e-9)
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.0f} {self.unit}/s" if rate >= 100 else f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{_duration((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        logger.info("%s: %s", self.desc or "progress", ", ".join(parts))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"
