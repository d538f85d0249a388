"""Input validation shared by the loaders: every error names the file, the record and the field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from toolrl.cli import UserError


class DataFormatError(UserError):
    """A data file does not have the expected layout (a user error: CLIs print it as one line, exit 2).

    Attributes:
      path: the file.
      record: which record (index or id) was being read, or None for the file as a whole.
      field: the offending field, dotted (``steps[2].ground_truth.function``), or None.
    """

    def __init__(self, path: str | os.PathLike, record: Any, field: str | None, problem: str):
        self.path = str(path)
        self.record = record
        self.field = field
        where = [f"file {self.path}"]
        if record is not None:
            where.append(f"record {record}")
        if field:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {problem}")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a whole JSON file, turning a syntax error into a DataFormatError."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, None, None, f"malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from err


def iter_jsonl(path: str | os.PathLike):
    """Yield (line number, parsed object) for each non-blank line of a JSONL file."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(path, f"line {line_number}", None, f"malformed JSON: {err.msg}") from err


class RecordReader:
    """Typed field access on one JSON record that reports failures with full provenance."""

    def __init__(self, path: str | os.PathLike, record: Any, value: Any, prefix: str = ""):
        self.path = path
        self.record = record
        self.value = value
        self.prefix = prefix
        if not isinstance(value, dict):
            raise DataFormatError(path, record, prefix or None, f"expected an object, got {type(value).__name__}")

    def _name(self, field: str) -> str:
        return f"{self.prefix}.{field}" if self.prefix else field

    def fail(self, field: str, problem: str) -> DataFormatError:
        return DataFormatError(self.path, self.record, self._name(field), problem)

    def get(self, field: str, types: type | tuple[type, ...], default: Any = ..., allow_none: bool = False) -> Any:
        if field not in self.value:
            if default is not ...:
                return default
            raise self.fail(field, "missing")
        item = self.value[field]
        if item is None and allow_none:
            return None
        # bool is an int subclass; a boolean where a number is expected is a format error.
        if not isinstance(item, types) or (isinstance(item, bool) and bool not in _as_tuple(types)):
            names = "/".join(t.__name__ for t in _as_tuple(types))
            raise self.fail(field, f"expected {names}, got {type(item).__name__}")
        return item

    def child(self, field: str, value: Any | None = None) -> "RecordReader":
        value = self.get(field, dict) if value is None else value
        return RecordReader(self.path, self.record, value, self._name(field))


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
