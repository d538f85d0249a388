"""Building a response-cache file (docs/design.md, "Response cache and environment"): the sources
(``KIND:PATH``: ``traces``, ``benchmark``, ``dump``), ``--exclude`` decontamination, and the atomic,
interrupt-safe write of the SQLite file (the rules are listed in :mod:`toolrl.env.cache`, which also
holds the reader and the CLI).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from toolrl.cli import UserError
from toolrl.data import paths
from toolrl.data.complexfuncbench import RecordedCall, iter_cache_dump, load_benchmark_jsonl
from toolrl.data.traces import load_trace_file
from toolrl.env.cache_format import FORMAT_VERSION, canonical_response_json, is_success_response, response_checksum
from toolrl.env.canonical import cache_key

SOURCE_KINDS = ("traces", "benchmark", "dump")
_INSERT_BATCH = 10_000


class CacheBuildError(UserError):
    """A build cannot start: bad ``--out`` or source specification (nothing was read or written)."""


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str
    path: Path

    @classmethod
    def parse(cls, spec: str) -> "Source":
        """``KIND:PATH``, or a bare path whose kind is guessed (.jsonl -> benchmark, a JSON list -> traces, an object -> dump)."""
        kind, sep, rest = spec.partition(":")
        if sep and kind in SOURCE_KINDS:
            return cls(kind, Path(rest))
        path = Path(spec)
        if sep and not path.exists() and _looks_like_kind(kind):
            raise CacheBuildError(f"unknown source kind {kind!r} in {spec!r}; known kinds: {', '.join(SOURCE_KINDS)} "
                                  f"(KIND:PATH), or a bare path whose kind is guessed")
        if not path.is_file():
            raise FileNotFoundError(f"cache source {path} does not exist" + (" (not a file)" if path.exists() else ""))
        if path.suffix == ".jsonl":
            return cls("benchmark", path)
        with path.open("rb") as handle:
            head = handle.read(4096).lstrip()
        return cls("traces" if head.startswith(b"[") else "dump", path)

    @staticmethod
    def path_of(spec: str) -> Path:
        """The path a ``--source`` spec names, without reading anything."""
        kind, sep, rest = spec.partition(":")
        return Path(rest) if sep and kind in SOURCE_KINDS else Path(spec)

    def calls(self) -> Iterator[RecordedCall]:
        if not self.path.is_file():
            raise FileNotFoundError(f"cache source {self.path} does not exist")
        if self.kind == "traces":
            for sample in load_trace_file(self.path):
                for step in sample.steps:
                    yield RecordedCall(step.function, step.arguments, step.response)
        elif self.kind == "benchmark":
            for sample in load_benchmark_jsonl(self.path):
                yield from sample.calls
        elif self.kind == "dump":
            yield from iter_cache_dump(self.path)
        else:
            raise ValueError(f"unknown source kind {self.kind!r}; known: {SOURCE_KINDS}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


def _looks_like_kind(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]+", text) is not None  # not a Windows drive letter


def default_sources(data_dir: str | os.PathLike | None = None) -> list[Source]:
    return [Source("traces", paths.data_file(name, data_dir)) for name in paths.TRACE_FILES]


@dataclasses.dataclass
class BuildSummary:
    entries: int = 0
    functions: int = 0
    bytes: int = 0
    recorded_calls: int = 0
    skipped_empty: int = 0
    skipped_error: int = 0
    duplicate_keys_same_response: int = 0
    conflicting_keys: int = 0
    conflict_rule: str = "most frequently recorded response; ties to the first seen"
    sources: list[str] = dataclasses.field(default_factory=list)
    excluded_sources: list[str] = dataclasses.field(default_factory=list)
    excluded_keys: int = 0  # distinct keys called in the excluded sources
    skipped_excluded: int = 0  # recorded calls not entered because an excluded source calls their key
    seconds: float = 0.0

    def format(self) -> str:
        lines = [
            f"entries                       {self.entries}",
            f"functions                     {self.functions}",
            f"file size (bytes)             {self.bytes}",
            f"recorded calls read           {self.recorded_calls}",
            f"skipped: empty response       {self.skipped_empty}",
            f"skipped: error response       {self.skipped_error}",
            f"duplicate keys, same response {self.duplicate_keys_same_response}",
            f"keys with conflicting responses {self.conflicting_keys} (rule: {self.conflict_rule})",
            f"build time (s)                {self.seconds:.2f}",
            "sources:",
        ]
        lines += [f"  {source}" for source in self.sources]
        if self.excluded_sources:
            lines.append(f"excluded ({self.excluded_keys} keys, {self.skipped_excluded} recorded calls skipped):")
            lines += [f"  {source}" for source in self.excluded_sources]
        return "\n".join(lines)


_SCHEMA = """
CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE variants(
  key TEXT NOT NULL, response_hash TEXT NOT NULL, response TEXT NOT NULL,
  count INTEGER NOT NULL, first_seen INTEGER NOT NULL, source TEXT NOT NULL,
  PRIMARY KEY(key, response_hash));
"""


def check_output(out: str | os.PathLike, source_paths: Iterable[str | os.PathLike]) -> None:
    """Refuses an ``--out`` that is a directory or one of the sources. Reads nothing. Raises CacheBuildError."""
    out = Path(out)
    if out.is_dir():
        raise CacheBuildError(f"--out {out} is a directory; give the path of the SQLite file to write")
    resolved = out.resolve()
    for source in source_paths:
        source = Path(source)
        same = source.resolve() == resolved
        if not same and out.exists() and source.exists():
            try:
                same = os.path.samefile(out, source)
            except OSError:
                same = False
        if same:
            raise CacheBuildError(f"--out {out} is also a source ({source}); building would overwrite it: "
                                  f"write the cache to another file")


_BUILDING = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.building")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_builds(out: Path) -> list[Path]:
    """Removes ``.NAME.PID.XXXX.building`` files of ``out`` whose build process is dead; returns them."""
    removed = []
    for candidate in out.parent.glob(f".{out.name}.*.building"):
        match = _BUILDING.fullmatch(candidate.name)
        if not match or match["name"] != out.name or _pid_alive(int(match["pid"])):
            continue
        try:
            candidate.unlink()
            removed.append(candidate)
        except FileNotFoundError:
            pass
    return removed


def _new_file_mode(out: Path) -> int:
    """The mode of the file being replaced, or 0644 less the umask for a new one."""
    try:
        return os.stat(out).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o644 & ~umask


class _RemoveOnSignal:
    """While active (main thread only), SIGTERM removes the temporary file and ends the process with
    status 143 (or runs the handler that was installed before). SIGINT raises KeyboardInterrupt as
    usual and the build's cleanup removes the file."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.previous: Any = None
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> "_RemoveOnSignal":
        if self.active:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.tmp.unlink(missing_ok=True)
        if callable(self.previous):
            self.previous(signum, frame)
        raise SystemExit(128 + signum)

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)


def build_cache(out: str | os.PathLike, sources: Iterable[Source], exclude: Iterable[Source] = ()) -> BuildSummary:
    """Build a cache file from the given sources; atomically replaces ``out`` on success.

    Keys called anywhere in ``exclude`` are left out (decontamination). Raises CacheBuildError
    (before reading anything) when ``out`` is a directory or a source."""
    start = time.perf_counter()
    out = Path(out)
    sources, exclude = list(sources), list(exclude)
    check_output(out, [source.path for source in sources + exclude])
    excluded = {cache_key(call.function, call.arguments) for source in exclude for call in source.calls()}
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out)
    mode = _new_file_mode(out)
    summary = BuildSummary(sources=[str(s) for s in sources], excluded_sources=[str(s) for s in exclude],
                           excluded_keys=len(excluded))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".building", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _RemoveOnSignal(tmp):
            _write_cache(tmp, sources, summary, start, excluded)
            os.chmod(tmp, mode)
            os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    summary.bytes = out.stat().st_size
    return summary


def _write_cache(tmp: Path, sources: list[Source], summary: BuildSummary, start: float,
                 excluded: frozenset[str] | set[str] = frozenset()) -> None:
    """Fills the SQLite file ``tmp`` from the sources (the body of :func:`build_cache`)."""
    with contextlib.closing(sqlite3.connect(tmp)) as connection:
        _fill(connection, sources, summary, start, excluded)


def _fill(connection: sqlite3.Connection, sources: list[Source], summary: BuildSummary, start: float,
          excluded: frozenset[str] | set[str] = frozenset()) -> None:
    # The temporary file is thrown away on any failure, so durability during the build is moot.
    connection.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
    batch: list[tuple] = []
    order = 0
    for source in sources:
        for call in source.calls():
            summary.recorded_calls += 1
            key = cache_key(call.function, call.arguments)
            if key in excluded:
                summary.skipped_excluded += 1
                continue
            if not is_success_response(call.response):
                if call.response in ("", None, {}, []):
                    summary.skipped_empty += 1
                else:
                    summary.skipped_error += 1
                continue
            response = canonical_response_json(call.response)
            # Responses that differ only in key order are the same response.
            digest = response_checksum(call.response)
            batch.append((key, digest, response, order, str(source)))
            order += 1
            if len(batch) >= _INSERT_BATCH:
                _insert_variants(connection, batch)
                batch.clear()
    _insert_variants(connection, batch)
    connection.executescript(
        """
        CREATE TABLE entries AS
          SELECT key,
                 substr(key, 1, instr(key, char(31)) - 1) AS function,
                 substr(key, instr(key, char(31)) + 1) AS arguments,
                 response, source AS sources, n_variants
          FROM (SELECT v.*, COUNT(*) OVER (PARTITION BY key) AS n_variants,
                       ROW_NUMBER() OVER (PARTITION BY key ORDER BY count DESC, first_seen ASC) AS rank
                FROM variants v)
          WHERE rank = 1;
        CREATE UNIQUE INDEX entries_key ON entries(key);
        CREATE INDEX entries_function ON entries(function);
        """
    )
    (summary.entries,) = connection.execute("SELECT COUNT(*) FROM entries").fetchone()
    (summary.functions,) = connection.execute("SELECT COUNT(DISTINCT function) FROM entries").fetchone()
    (summary.conflicting_keys,) = connection.execute("SELECT COUNT(*) FROM entries WHERE n_variants > 1").fetchone()
    (summary.duplicate_keys_same_response,) = connection.execute(
        "SELECT COUNT(*) FROM variants WHERE count > 1").fetchone()
    summary.seconds = time.perf_counter() - start
    meta = {"format_version": FORMAT_VERSION, "summary": json.dumps(dataclasses.asdict(summary)), "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    connection.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    connection.commit()


def _insert_variants(connection: sqlite3.Connection, rows: list[tuple]) -> None:
    connection.executemany(
        """INSERT INTO variants(key, response_hash, response, count, first_seen, source)
           VALUES (?, ?, ?, 1, ?, ?)
           ON CONFLICT(key, response_hash) DO UPDATE SET count = count + 1""",
        rows,
    )

