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

This module is the reader (:class:`ResponseCache`, read-only lookups with checksums), the default
cache of the bundled traces and the CLI (docs/design.md, "Response cache and environment"). The
build (``Source``, ``build_cache``, also importable from here) is :mod:`toolrl.env.cache_build`; the
format version, the success rule and the checksum are :mod:`toolrl.env.cache_format`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from toolrl.cli import run_cli
from toolrl.data import paths
from toolrl.env.cache_build import Source, build_cache, check_output, default_sources
from toolrl.env.cache_format import FORMAT_VERSION, CacheError, response_checksum
from toolrl.env.canonical import KEY_SEPARATOR, cache_key


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
