"""The study's small files on disk: atomic JSON writes, tolerant reads, and dotted look-ups.

A run is finished exactly when its result file exists, parses and says ``"status": "done"``
(:func:`read_result`); writes go through a temporary file and a rename so that a reader, or a study
killed mid-write, never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # plan imports this module (dotted); the types are only annotations here
    from experiments.study.plan import RunSpec, StudySettings

# Relative settings paths are relative to the repo root, the subprocesses' working directory.
REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve(path: str | os.PathLike) -> Path:
    """A settings path on disk: relative paths are relative to the repo root."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """JSON through a temporary file, fsync and a rename: readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def finite(data: Any) -> Any:
    """``data`` with NaN / infinities as None (JSON has no NaN; an undefined rate is null)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_result(path: str | os.PathLike) -> dict[str, Any] | None:
    """A run's result file when it exists, parses and is finished; else None."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") == "done" and data.get("name") else None


def is_finished(spec: RunSpec, settings: StudySettings) -> bool:
    return read_result(resolve(settings.result_file(spec))) is not None


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a trainer metrics.jsonl (torn or non-object lines skipped); [] when absent."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    out.append(record)
    except OSError:
        return []
    return out


def dotted(tree: Any, path: str) -> Any:
    """A value by dotted path, e.g. ``eval.eval_100.end.turn_accuracy``; None when missing."""
    node = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
