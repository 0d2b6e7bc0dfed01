"""Stopping a run cleanly: SIGTERM or SIGINT (Ctrl-C, a cluster's preemption notice) lets the
current step finish; the trainer then writes a checkpoint and raises
:class:`TrainingInterrupted`, whose message says how to resume."""
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, Optional


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived; a checkpoint was written. ``exit_code`` is 128 + signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


@contextmanager
def stop_on_signals() -> Iterator[Dict[str, Optional[int]]]:
    """While the block runs, SIGTERM and SIGINT only set ``flag["signal"]`` (the flag it yields):
    the loop finishes its step, writes a checkpoint and stops (under DDP at the next logging
    step, where all ranks agree to stop after the same iteration). Outside the main thread,
    where Python cannot install handlers, the flag stays None."""
    flag: Dict[str, Optional[int]] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, frame):
        flag["signal"] = signum

    for s in previous:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def interrupted(signum: int, iteration: int, max_iter: int, checkpoint: str) -> TrainingInterrupted:
    """The exception that ends a run stopped by ``signum`` after ``iteration``."""
    argv = [a for a in sys.argv[1:] if a != "--resume"]
    return TrainingInterrupted(
        f"{signal.Signals(signum).name} received: stopped after iteration {iteration} of {max_iter} and saved "
        f"{checkpoint}. Continue with: detector {' '.join(argv)} --resume", signum)
