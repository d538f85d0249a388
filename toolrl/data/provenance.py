"""Provenance of a synthesized dataset: who built it from what, checked before a run reads it.

``experiments.study_data`` (or ``toolrl.synth``) writes ``<synth_dir>/toolrl_traces/stamp.json``: the stamp id
the configs name (``data.synth_stamp``), the response cache's sha256 and the files it excluded, the query
writer, the seed and the synthesis settings. A run or check whose ``data.synth_stamp`` is set refuses a
dataset with no stamp or another stamp id, in one line naming the command that builds the right one, so a
dataset synthesized from the wrong cache (e.g. by ``--config.mode=check`` before the study's data existed)
is never trained on silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from toolrl.cli import UserError

STAMP_FILE = "stamp.json"
BUILD_COMMAND = "python -m experiments.study_data"


class ProvenanceError(UserError):
    """The synthesized data is missing, unstamped, or stamped for something else."""


def stamp_path(synth_dir: str | os.PathLike) -> Path:
    return Path(synth_dir) / "toolrl_traces" / STAMP_FILE


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_stamp(synth_dir: str | os.PathLike, stamp_id: str, **fields: Any) -> Path:
    path = stamp_path(synth_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"id": stamp_id, **fields}, indent=2, default=str) + "\n")
    return path


def read_stamp(synth_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = stamp_path(synth_dir)
    return json.loads(path.read_text()) if path.exists() else None


def dataset_exists(synth_dir: str | os.PathLike, config: str = "synthetic") -> bool:
    """Whether a prepared ``toolrl_traces/<config>`` is there (TFDS would otherwise build one on read)."""
    root = Path(synth_dir) / "toolrl_traces" / config
    return any((version / "dataset_info.json").exists() for version in root.glob("*")) if root.is_dir() else False


def require_stamp(data: Any, command: str = BUILD_COMMAND) -> dict[str, Any] | None:
    """Refuses (ProvenanceError, one line) when ``data.synth_stamp`` is set and the synthesized data in
    ``data.synth_dir`` is missing or carries another stamp; returns the stamp (None when unchecked)."""
    expected = str(data.get("synth_stamp", "") or "")
    uses_synthetic = any(s.strip().startswith("synthetic:") for s in str(data.get("train_file", "")).split(","))
    if not expected or not data.get("synth_dir"):
        return None
    if not dataset_exists(data.synth_dir):
        if not uses_synthetic:
            return None
        raise ProvenanceError(f"no synthesized dataset in {data.synth_dir}; build it with `{command}`")
    stamp = read_stamp(data.synth_dir)
    if stamp is None:
        raise ProvenanceError(f"the synthesized dataset in {data.synth_dir} has no provenance stamp (expected "
                              f"{expected!r}); rebuild it with `{command} --rebuild`")
    if stamp.get("id") != expected:
        raise ProvenanceError(f"the synthesized dataset in {data.synth_dir} is stamped {stamp.get('id')!r}, not "
                              f"{expected!r} (data.synth_stamp); rebuild it with `{command} --rebuild`")
    return stamp
