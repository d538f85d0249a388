"""Reads back what an offline W&B run wrote (``<dir>/wandb/offline-run-*/run-<id>.wandb``), for tests.

The file is W&B's record log (what ``wandb sync`` uploads): a 7-byte header, then 32 KiB blocks of
chunks, each ``crc32 (4) | length (2) | kind (1) | data``; kind 1 is a whole record, 2/3/4 the first,
middle and last piece of one; a block's tail shorter than a chunk header is padding. Each record is a
``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Any

_HEADER = 7
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclasses.dataclass
class OfflineRun:
    path: Path  # the run's directory (offline-run-<time>-<id>)
    run_id: str
    job_type: str
    history: list[dict[str, Any]]  # one dict per logged step, values decoded from JSON
    config: dict[str, Any]


def _records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B record log"
    pos, pieces, out = _HEADER, [], []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        pos += _HEADER
        if kind == 0:  # zero padding at the end of the file
            break
        pieces.append(data[pos:pos + length])
        pos += length
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(pieces))
            out.append(record)
            pieces = []
    return out


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_runs(directory: str | Path) -> list[OfflineRun]:
    """Every offline run under ``directory`` (searched recursively), oldest first.

    `run.finish()` returns before W&B's service process has flushed the file; `wandb.teardown()` stops
    that service (flushing everything), so runs this process wrote are complete here."""
    import wandb

    wandb.teardown()
    runs = []
    for path in sorted(Path(directory).rglob("offline-run-*/run-*.wandb")):
        run_id, job_type, history, config = "", "", [], {}
        for record in _records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":  # the first carries everything; later ones (updates) may leave fields empty
                run_id, job_type = run_id or record.run.run_id, job_type or record.run.job_type
            if kind in ("run", "config"):
                for item in (record.run.config if kind == "run" else record.config).update:
                    config[_item_key(item)] = json.loads(item.value_json)
            elif kind == "history":
                history.append({_item_key(i): json.loads(i.value_json) for i in record.history.item})
        runs.append(OfflineRun(path.parent, run_id, job_type, history, config))
    return runs


def table_rows(run: OfflineRun, entry: dict[str, Any], key: str) -> list[list[Any]]:
    """The rows of the table logged under ``key`` in the history entry ``entry``."""
    table = json.loads((run.path / "files" / entry[f"{key}/path"]).read_text())
    return table["data"]
