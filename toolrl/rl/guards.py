"""What stops or skips a training step: non-finite values, storage errors, SIGTERM / SIGINT.

The trainer (`toolrl.rl.trainer`) raises and catches these; they are here so that the loop reads as
the algorithm. See the trainer's docstring for the rules (what is applied and saved when).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
from typing import Any, Mapping

import numpy as np

from toolrl.cli import UserError

log = logging.getLogger("toolrl.rl.trainer")  # the trainer's messages, under the trainer's name


class NonFiniteError(RuntimeError):
    """A step's loss, gradient norm, rewards or parameters are not finite; nothing of it was applied or saved."""


class TrainingInterrupted(RuntimeError):
    """The run stopped on a signal (SIGTERM / SIGINT); `signum` is the signal, `saved` the step saved (or None)."""

    def __init__(self, message: str, signum: int, saved: int | None):
        super().__init__(message)
        self.signum = signum
        self.saved = saved


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (no space, read-only or not permitted); the message says which step."""


# Errors of the storage, not of the program: a save that meets one is reported in one line.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_STORAGE_TEXTS = tuple(os.strerror(e) for e in sorted(STORAGE_ERRNOS))


def storage_problem(error: BaseException) -> str | None:
    """The storage problem behind `error` (its strerror), also when a library wrapped the OSError; else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            return os.strerror(error.errno)
        text = str(error)
        for message in _STORAGE_TEXTS:
            if message in text:
                return message
        error = error.__cause__ or error.__context__
    return None


class SkipStep(Exception):
    """Raised inside a step with train.skip_nonfinite: the step's update is dropped."""


class Abandon(BaseException):
    """Raised by the signal handler on a second signal: leave the current step at once."""


def first_nonfinite(values: Mapping[str, Any]) -> str | None:
    """``"name = value"`` of the first entry (in order) with a non-finite element, or None."""
    for name, value in values.items():
        array = np.asarray(value, dtype=np.float64)
        bad = ~np.isfinite(array)
        if bad.any():
            return f"{name} = {array[bad].ravel()[0]}" + (f" ({int(bad.sum())} of {array.size})" if array.size > 1 else "")
    return None


def checked_first(metrics: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The step metrics in check order: loss, grad_norm, then the rest (named with `prefix`)."""
    order = [k for k in ("loss", "grad_norm") if k in metrics] + [k for k in metrics if k not in ("loss", "grad_norm")]
    return {prefix + k: metrics[k] for k in order}


class StopSignals:
    """SIGTERM / SIGINT handlers for the training loop (main thread only; elsewhere a no-op).

    The first signal sets `signum` (the loop finishes its step, saves and stops); a second one raises
    `Abandon` unless `hold` is set (the final save in progress)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: int | None = None
        self.hold = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        if self.signum is None:
            self.signum = signum
            log.warning("%s received: finishing the current step, then saving and stopping (send it again "
                        "to abandon the step)", signal.Signals(signum).name)
            return
        if not self.hold:
            raise Abandon()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
