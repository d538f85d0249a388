"""The API response cache: real Booking.com responses keyed by tool + canonical arguments.

Storage is one SQLite file (the embedded default). Tables:
  ``entries(key, function, arguments, response, sources, n_variants)``: what a lookup answers;
  ``variants(key, response_hash, response, count, first_seen, source)``: every distinct response
  recorded for a key, so conflicting recordings are kept, not lost;
  ``meta(name, value)``: format version and the build summary.

Rules:
  * only successful responses are cached (non-empty; a dict must have no ``error`` key and a
    ``status`` that is not false); empty and error responses are counted and skipped;
  * duplicate keys with conflicting responses: all variants are stored; the lookup answers the
    variant recorded most often, ties going to the first one seen (source order, then file order);
  * a build writes to a temporary file beside the target (``.NAME.PID.XXXX.building``) and renames
    it over the target only when complete, so an interrupted build never damages a good cache. The
    temporary file is removed on any failure, on Ctrl-C and on SIGTERM; one left by a build that was
    killed outright (SIGKILL, power loss) is removed by the next build of the same target (its PID
    is no longer alive on this machine). The new file keeps the permissions of the one it replaces
    (0644, less the umask, for a new one);
  * ``--out`` is checked before any source is read: it must not be a directory nor one of the
    sources (building over a source would destroy it);
  * ``--exclude KIND:PATH`` (decontamination): no key called in an excluded source is entered, whatever
    source records it, so a cache built with ``--exclude traces:eval_100.json`` cannot answer, and
    synthesis from it cannot produce, any call of the benchmark's test samples (counted in the summary);
  * readers open the file read-only (``mode=ro``), one connection per process, so many rollout
    workers can look up at once;
  * every payload served is checked against the checksum stored with it (``variants.response_hash``,
    blake2b of the key-sorted JSON, written by every build of this format, old files included): a
    damaged payload (a flipped digit that is still valid JSON) raises CacheError naming the call.

CLI: ``python -m toolrl.env.cache build --out PATH [--source KIND:PATH ...] [--exclude KIND:PATH ...]`` where KIND is
``traces`` (eval_100 / bfcl_training files), ``benchmark`` (ComplexFuncBench JSONL) or ``dump``
(the authors' ``{function: [{arguments, response}]}`` file); with no ``--source`` it builds from the
two bundled trace files. User errors (a bad ``--out``, an unknown KIND, a missing or malformed
source) print one line on stderr and exit 2 (``--verbose`` for the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
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

from toolrl.cli import UserError, run_cli
from toolrl.data import paths
from toolrl.data.complexfuncbench import RecordedCall, iter_cache_dump, load_benchmark_jsonl
from toolrl.data.traces import load_trace_file
from toolrl.data.validation import DataFormatError
from toolrl.env.canonical import KEY_SEPARATOR, canonical_json, cache_key, function_name_problem

FORMAT_VERSION = "1"
SOURCE_KINDS = ("traces", "benchmark", "dump")
_INSERT_BATCH = 10_000


class CacheError(RuntimeError):
    """The cache file is missing, truncated, corrupted or of another format."""


class CacheBuildError(UserError):
    """A build cannot start: bad ``--out`` or source specification (nothing was read or written)."""


def is_success_response(response: Any) -> bool:
    """True for a real, usable API response: non-empty, and for dicts no error and status not false."""
    if response is None or response == "" or response == {} or response == []:
        return False
    if isinstance(response, dict):
        return "error" not in response and response.get("status", True) is not False
    return isinstance(response, (list, str, int, float))


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


def response_checksum(response: Any) -> str:
    """The checksum stored with a response: blake2b of its key-sorted JSON (responses that differ only
    in key order are the same response)."""
    ordered = json.dumps(response, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(ordered.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def canonical_response_json(response: Any) -> str:
    """Responses are stored as recorded (no numeric-string conversion), key order kept."""
    return json.dumps(response, ensure_ascii=False, separators=(",", ":"))


class ResponseCache:
    """Read-only lookups in a built cache file. One instance per process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise CacheError(f"cache file {self.path} does not exist; build it with `python -m toolrl.env.cache build --out {self.path}`")
        try:
            self._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            page_count = self._connection.execute("PRAGMA page_count").fetchone()[0]
            page_size = self._connection.execute("PRAGMA page_size").fetchone()[0]
            meta = dict(self._connection.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            raise CacheError(f"cache file {self.path} is not a readable toolrl cache ({err}); rebuild it") from err
        size = self.path.stat().st_size
        if page_count * page_size != size:
            raise CacheError(
                f"cache file {self.path} is truncated or corrupted: header says {page_count * page_size} bytes, "
                f"file has {size}; rebuild it")
        if meta.get("format_version") != FORMAT_VERSION:
            raise CacheError(f"cache file {self.path} has format {meta.get('format_version')!r}, expected {FORMAT_VERSION!r}; rebuild it")
        self.summary = json.loads(meta.get("summary", "{}"))

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._connection.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as err:
            raise CacheError(f"cache file {self.path} is corrupted ({err}); rebuild it") from err

    def _decode(self, text: Any, key: str, table: str = "entries") -> Any:
        """A stored JSON payload; a damaged one raises CacheError naming the file and the key."""
        try:
            return json.loads(text)
        except (TypeError, ValueError) as err:  # JSONDecodeError, or bytes that are not UTF-8
            function, _, arguments = str(key).partition(KEY_SEPARATOR)
            raise CacheError(
                f"cache file {self.path} is corrupted: the {table} payload stored for {function}({arguments[:200]}) "
                f"is not valid JSON ({err}); rebuild it with `python -m toolrl.env.cache build --out {self.path}`"
            ) from err

    def _verified(self, text: Any, key: str, checksums: Iterable[str], table: str = "entries") -> Any:
        """The decoded payload, if its checksum is one of `checksums` (CacheError otherwise)."""
        value = self._decode(text, key, table)
        if response_checksum(value) not in set(checksums):
            function, _, arguments = str(key).partition(KEY_SEPARATOR)
            raise CacheError(
                f"cache file {self.path} is corrupted: the {table} payload stored for {function}({arguments[:200]}) "
                f"does not match its checksum; rebuild it with `python -m toolrl.env.cache build --out {self.path}`")
        return value

    def lookup(self, function: str, arguments: dict[str, Any]) -> Any | None:
        """The cached response of a call, or None on a miss.

        Raises TypeError / ValueError for non-JSON arguments, CacheError when the stored response is damaged
        (not JSON, or not matching its checksum)."""
        key = cache_key(function, arguments)
        rows = self._query("SELECT response FROM entries WHERE key = ?", (key,))
        if not rows:
            return None
        checksums = [r[0] for r in self._query("SELECT response_hash FROM variants WHERE key = ?", (key,))]
        return self._verified(rows[0][0], key, checksums)

    def variants(self, function: str, arguments: dict[str, Any]) -> list[Any]:
        """Every distinct response recorded for the call, most frequent first."""
        key = cache_key(function, arguments)
        rows = self._query("SELECT response, response_hash FROM variants WHERE key = ? "
                           "ORDER BY count DESC, first_seen ASC", (key,))
        return [self._verified(r[0], key, [r[1]], "variants") for r in rows]

    def __len__(self) -> int:
        return self._query("SELECT COUNT(*) FROM entries")[0][0]

    def functions(self) -> dict[str, int]:
        """Entries per function."""
        return dict(self._query("SELECT function, COUNT(*) FROM entries GROUP BY function ORDER BY function"))

    def iter_entries(self, function: str | None = None) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """(function, canonical arguments, response) for every entry, optionally of one function."""
        sql = ("SELECT e.function, e.arguments, e.response, group_concat(v.response_hash) FROM entries e "
               "LEFT JOIN variants v ON v.key = e.key")
        params: tuple = ()
        if function is not None:
            sql += " WHERE e.function = ?"
            params = (function,)
        for fn, arguments, response, checksums in self._query(sql + " GROUP BY e.key ORDER BY e.key", params):
            key = f"{fn}{KEY_SEPARATOR}{arguments}"
            yield fn, self._decode(arguments, key), self._verified(response, key, str(checksums or "").split(","))

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_cache_path(data_dir: str | os.PathLike | None = None) -> Path:
    """The user-cache file for the default sources of ``data_dir``.

    Its name carries a fingerprint of those sources (path, size, modification time), so pointing
    toolrl at other data, or editing the data, builds a fresh cache instead of serving a stale one."""
    fingerprint = hashlib.blake2b(digest_size=6)
    for source in default_sources(data_dir):
        stat = source.path.stat()
        fingerprint.update(f"{source.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns};".encode())
    return paths.toolrl_home() / f"booking_cache-{fingerprint.hexdigest()}.sqlite"


def open_default_cache(data_dir: str | os.PathLike | None = None, path: str | os.PathLike | None = None) -> ResponseCache:
    """Open the cache at ``path`` (default: the user cache dir), building it from the bundled traces if absent."""
    path = Path(path) if path else default_cache_path(data_dir)
    if not path.is_file():
        build_cache(path, default_sources(data_dir))
    return ResponseCache(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolrl.env.cache", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a cache file")
    build.add_argument("--out", required=True, help="the SQLite file to write")
    build.add_argument("--source", action="append", default=[], help="KIND:PATH with KIND in traces/benchmark/dump (repeatable)")
    build.add_argument("--exclude", action="append", default=[],
                       help="KIND:PATH whose called keys are left out (decontamination; repeatable)")
    build.add_argument("--data-dir", default=None, help="benchmark data directory for the default sources")
    info = sub.add_parser("info", help="summarise a cache file")
    info.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "build":
        # --out is checked against the sources before any of them is opened.
        check_output(args.out, [Source.path_of(spec) for spec in args.source + args.exclude])
        sources = [Source.parse(spec) for spec in args.source] or default_sources(args.data_dir)
        summary = build_cache(args.out, sources, [Source.parse(spec) for spec in args.exclude])
        print(f"built {args.out}\n{summary.format()}")
    else:
        with ResponseCache(args.path) as cache:
            print(json.dumps(cache.summary, indent=2))
            for function, count in cache.functions().items():
                print(f"{function:40s} {count}")
    return 0


if __name__ == "__main__":
    run_cli(main, prog="python -m toolrl.env.cache", user_errors=(CacheError,))
