"""Progress a log file can show: one line per training step when stdout is not a terminal.

A terminal gets the rich bar (`Trainer.run`); output sent to a file, ``nohup`` or SLURM gets nothing from
a live bar until the run ends, so there each step prints one line instead: the step of the total, its
phase, the step's own numbers (the bar's text: loss or reward, tokens/s), elapsed time and an estimate
of the time left from the steps so far.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class StepRecords:
    """Prints step lines to `stream` when `enabled` (default: when the stream is not a terminal)."""

    def __init__(self, total: int, start: int = 0, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = (not isatty()) if enabled is None else enabled
        self.total, self.start = total, start
        self.began = time.perf_counter()

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def step(self, step: int, phase: str, info: str) -> None:
        elapsed = time.perf_counter() - self.began
        done = step - self.start
        left = elapsed / done * (self.total - step) if done > 0 else float("nan")
        eta = f"{left:.0f}s" if left == left else "?"
        self.line(f"step {step}/{self.total} [{phase}] {info.strip()} | {elapsed:.0f}s elapsed, eta {eta}")
