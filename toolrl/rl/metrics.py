"""Where training metrics go: a local JSONL file (the source of truth) and W&B.

`MetricsLog` appends one JSON object per line with a "step" key and flushes + fsyncs each record,
so a killed run loses at most the record being written. `MetricsLog.truncate_after(step)` is called
on resume: records beyond the restored step (written after the last checkpoint), a torn last
line and repeated records of one step (all but the last) are dropped, so the resumed run neither
loses nor duplicates records.
"""

from __future__ import annotations

import json
import math
import netrc
import uuid
import warnings
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / jax arrays and scalars
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Append-only JSONL metrics file with resume-time truncation."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = None

    def truncate_after(self, step: int) -> int:
        """Rewrites the file for a run resumed at `step`; returns how many records were dropped.

        Drops records with record["step"] > step (written after the last checkpoint), torn lines
        (a killed run's last write), and all but the LAST record of each step (an earlier resume
        that did not truncate, e.g. of an older version, left the same step twice): a resumed run
        then writes each later step exactly once. Order is kept; records without a "step" are kept.
        """
        if not self.path.exists():
            return 0
        records: list[tuple[Any, str]] = []
        dropped = 0
        # errors="replace": a write torn inside a multi-byte character is a bad line, not a crash.
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # torn write of a killed run
                    dropped += 1
                    continue
                if not isinstance(record, dict):
                    dropped += 1
                    continue
                record_step = record.get("step")
                if not isinstance(record_step, (int, float)) or isinstance(record_step, bool):
                    record_step = None  # not a step record: kept as it is
                elif record_step > step:
                    dropped += 1
                    continue
                records.append((record_step, line if line.endswith("\n") else line + "\n"))
        last_index = {s: i for i, (s, _) in enumerate(records) if s is not None}
        kept = [line for i, (s, line) in enumerate(records) if s is None or last_index[s] == i]
        dropped += len(records) - len(kept)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return dropped

    def write(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(_jsonable(record), sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def evaluated_steps(self) -> set[int]:
        """Steps whose record holds a held-out evaluation (``eval/turn_accuracy``)."""
        if not self.path.exists():
            return set()
        return {int(r["step"]) for r in read_metrics(self.path)
                if "eval/turn_accuracy" in r and isinstance(r.get("step"), (int, float))}


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics file (a torn last line is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def wandb_logged_in() -> bool:
    """Whether W&B credentials are configured (an API key in the environment or a netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    """"auto" -> "online" when logged in, else "offline"; $WANDB_MODE overrides everything."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    if mode == "auto":
        return "online" if wandb_logged_in() else "offline"
    return mode


def sweep_run_id() -> str | None:
    """The W&B run id a sweep agent started this process for, else None.

    `wandb agent` runs the sweep's command with WANDB_SWEEP_ID and WANDB_RUN_ID (and the run's
    parameters) in the environment; ``wandb.agent(..., function=f)`` sets the same variables in its own
    process before calling f. That run is the one to log to: `WandbRun` neither starts another nor
    resumes one of its own, and `sweep_workdir` gives it a workdir of its own."""
    run_id = os.environ.get("WANDB_RUN_ID", "").strip()
    return run_id if os.environ.get("WANDB_SWEEP_ID", "").strip() and run_id else None


def sweep_workdir(workdir: str) -> str:
    """``workdir`` suffixed with the sweep run's id inside a sweep agent (``runs/grpo`` ->
    ``runs/grpo-<run id>``), so agents sharing a filesystem never share a workdir and a sweep run the
    agent restarts resumes its own; unchanged outside a sweep and when the suffix is already there."""
    run_id = sweep_run_id()
    if run_id is None:
        return workdir
    base = workdir.rstrip("/")
    return base if base.endswith(f"-{run_id}") else f"{base}-{run_id}"


def eval_scalars(report: Any, prefix: str = "eval") -> dict[str, Any]:
    """An evaluation report's scalars as the metrics log and W&B name them (``eval/turn_accuracy``, ...):
    the complete-history bucket when it has turns (the turn game), else all (the benchmark game)."""
    buckets = report.metrics
    complete = report.overall("complete") if "complete" in buckets else None
    m = complete if complete is not None and complete.turns else report.overall("all")
    return {f"{prefix}/turn_accuracy": m.turn_accuracy, f"{prefix}/call_accuracy": m.call_accuracy,
            f"{prefix}/success_rate": m.success_rate, f"{prefix}/turns": m.turns}


def eval_completion_rows(report: Any) -> list[tuple[str, float, str]]:
    """The completions table of an evaluation, in the training table's columns (task, reward, completion):
    task = ``sample@turn`` (the turn game's task id) or the sample id (the benchmark game), reward = the
    verdict (1.0 right, 0.0 wrong), completion = the policy's outputs over its rounds."""
    rows = []
    for result in report.results:
        turn = getattr(result, "turn", None)
        task = result.sample_id if turn is None else f"{result.sample_id}@{turn}"
        verdict = result.correct if hasattr(result, "correct") else result.success
        rows.append((task, float(bool(verdict)), "\n".join(result.texts)))
    return rows


_INIT_ATTEMPTS = 5
_INIT_RETRY_S = 2.0


class WandbRun:
    """A thin W&B wrapper: resumable run id kept in the workdir, scalars and histograms.

    Inside a sweep agent (`sweep_run_id`) the agent's run is used: the one ``wandb.run`` already holds,
    else the run WANDB_RUN_ID names; no id of our own is kept or resumed. Only such a run that this
    object started is finished by `finish`.

    Args:
      workdir: the run's directory (W&B files go to workdir/wandb; the id to workdir/wandb_id).
      config: a plain dict logged as the run config.
      project, entity, name, mode: W&B settings (mode as in `resolve_wandb_mode`).
      job_type: W&B's job type ("eval" for an evaluation's run); None = W&B's default.
      resume: keep the run id in workdir/wandb_id and continue that run on a restart; False = a new
        run each time (an evaluation is one event, not a continuation).
    """

    def __init__(self, workdir: str | os.PathLike, config: dict[str, Any], project: str, entity: str = "",
                 name: str = "", mode: str = "auto", job_type: str | None = None, resume: bool = True):
        self.mode = resolve_wandb_mode(mode)
        self.run = None
        self._owned = True
        if self.mode == "disabled":
            return  # wandb is not even imported: a machine without it (a bare GPU image) still trains
        import wandb  # local: importing wandb is slow and tests of the math do not need it

        self._wandb = wandb
        workdir = Path(workdir).absolute()
        settings = wandb.Settings(x_disable_stats=True, console="off")
        if sweep_run_id() is not None:
            if wandb.run is not None:  # wandb.agent's function already started it: log there, leave it open
                self.run, self._owned = wandb.run, False
                self.run.config.update(config, allow_val_change=True)
                return
            # No id, no resume, no name: wandb takes the agent's WANDB_RUN_ID (and its sweep parameters)
            # itself, and the sweep names its runs (a variant's run_name would be the same for every cell).
            workdir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=project, entity=entity or None, dir=str(workdir),
                                  config=config, mode=self.mode, job_type=job_type, settings=settings)
            return
        id_file = workdir / "wandb_id"
        if resume:
            run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
            id_file.write_text(run_id)
        else:
            run_id = uuid.uuid4().hex[:8]
            workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_INIT_ATTEMPTS + 1):
            try:
                self.run = wandb.init(
                    project=project, entity=entity or None, name=name or None, id=run_id,
                    resume="allow" if resume else None, dir=str(workdir), config=config, mode=self.mode,
                    job_type=job_type,
                    # No system-metrics sampler or console capture: on a 2-core CPU box they cost training time.
                    settings=settings,
                )
                break
            except Exception as err:  # wandb raises its own error types
                # A killed run's W&B service can outlive it and hold the run id. Wait a little, then log to
                # a new W&B run (metrics.jsonl stays the complete record) rather than fail the resume.
                if "in use" not in str(err) or attempt == _INIT_ATTEMPTS:
                    raise
                if attempt == _INIT_ATTEMPTS - 1:
                    new_id = uuid.uuid4().hex[:8]
                    warnings.warn(f"W&B run {run_id} is held by another (killed?) process; logging to a new W&B "
                                  f"run {new_id} (metrics.jsonl in {workdir} has every step)", RuntimeWarning)
                    run_id = new_id
                    if resume:
                        id_file.write_text(run_id)
                    continue
                time.sleep(_INIT_RETRY_S)

    @property
    def location(self) -> str:
        if self.run is None:
            return "disabled"
        if self.mode == "offline":
            return f"{self.run.dir} (offline; upload with `wandb sync {Path(self.run.dir).parent}`)"
        return str(self.run.url)

    def log(self, step: int, scalars: Mapping[str, Any], histograms: Mapping[str, Any] | None = None,
            phase: str | None = None) -> None:
        """Numbers of `scalars`, histograms and ``table/*`` rows of `histograms`, at `step`; `phase` ("sft",
        "grpo", "start", "eval") is logged as the string field ``phase`` so a run's phases can be told apart."""
        if self.run is None:
            return
        data: dict[str, Any] = {k: v for k, v in _jsonable(scalars).items() if isinstance(v, (int, float))}
        if phase is not None:
            data["phase"] = phase
        for key, values in (histograms or {}).items():
            if key.startswith("table/"):  # rows of (task, reward, completion text)
                data[key] = self._wandb.Table(columns=["task", "reward", "completion"], data=[list(r) for r in values])
                continue
            values = np.asarray(values).ravel()
            if values.size:
                data[key] = self._wandb.Histogram(values)
        self.run.log(data, step=step)

    def finish(self) -> None:
        if self.run is not None and self._owned:
            self.run.finish()


def log_evaluation(report: Any, config: Any, directory: str | os.PathLike, step: int = 0) -> str:
    """Eval mode's W&B record: a new run (job type "eval", W&B files under `directory`) with the report's
    `eval_scalars` and its completions table (`eval_completion_rows`) at `step` (the evaluated
    checkpoint's step; 0 for a model that never trained). Returns where it went ("disabled" when
    config.wandb.mode or $WANDB_MODE says so). Call it on process 0 only."""
    w = config.wandb
    name = w.run_name or Path(directory).absolute().parent.name
    run = WandbRun(directory, config.to_dict(), w.project, w.entity, f"{name}-eval", w.mode, job_type="eval",
                   resume=False)
    try:
        run.log(step, eval_scalars(report), {"table/completions": eval_completion_rows(report)}, phase="eval")
    finally:
        run.finish()
    return run.location
