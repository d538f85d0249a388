"""Progress of an evaluation: how many turns (or samples) are done, the time so far and an estimate left.

An evaluation on a CPU takes minutes to hours (184 scored turns of SmolLM2: about 48 minutes) and used to
print nothing until it ended. `EvalProgress` is the `toolrl.eval.protocol.Progress` callback the batched
driver calls after every policy call. Sent to a file, ``nohup`` or SLURM it prints a line at most every
`every_s` seconds and one when the evaluation ends, in the format of the training step lines
(`toolrl.rl.progress.StepRecords`); on a terminal it draws a rich bar instead (``bar=True``), or stays
quiet (a training run's own live display owns the terminal then).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class EvalProgress:
    """Reports an evaluation's progress; call it as ``progress(done, total, asked)`` and `close` it at the end.

    Args:
      label: what is evaluated, at the start of each line (e.g. "eval synthetic:test [turn]").
      unit: what `done` counts ("turns" or "samples").
      stream: where lines go (default stdout).
      enabled: print lines (default: when `stream` is not a terminal).
      bar: on a terminal, draw a rich progress bar (ignored when lines are printed).
      every_s: the shortest time between two lines.
    """

    def __init__(self, label: str, unit: str = "turns", stream: TextIO | None = None, enabled: bool | None = None,
                 bar: bool = False, every_s: float = 30.0):
        self.stream = stream if stream is not None else sys.stdout
        terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = (not terminal) if enabled is None else enabled
        self.label, self.unit, self.every_s = label, unit, every_s
        self.began = time.perf_counter()
        self.last_line = float("-inf")
        self.state: tuple[int, int, int] | None = None
        self._bar: Any = None
        self._task: Any = None
        if bar and terminal and not self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                                 TimeRemainingColumn(), transient=True)
            self._bar.start()

    def line_text(self, done: int, total: int, asked: int, elapsed: float) -> str:
        left = elapsed / done * (total - done) if done > 0 else float("nan")
        eta = f"{left:.0f}s" if left == left else "?"
        return (f"{self.label}: {done}/{total} {self.unit} done, {asked} requests | "
                f"{elapsed:.0f}s elapsed, eta {eta}")

    def __call__(self, done: int, total: int, asked: int) -> None:
        self.state = (done, total, asked)
        now = time.perf_counter()
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(self.label, total=total)
            self._bar.update(self._task, completed=done)
        if self.enabled and (now - self.last_line >= self.every_s or done == total):
            self.last_line = now
            print(self.line_text(done, total, asked, now - self.began), file=self.stream, flush=True)

    def close(self) -> None:
        """Stops the bar (a last line was printed when the last run finished)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
