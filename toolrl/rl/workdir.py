"""A run's working directory: one live run at a time, and never two configurations in one run.

``open_workdir(path, config)`` is called once, by the process that writes the run (on a multi-host
job: process 0 only), before anything else touches the directory:

1. it creates the directory and takes an exclusive, non-blocking ``flock`` on ``path/.lock``. If
   another live process holds it, :class:`WorkdirError` is raised at once, naming that process
   (the lock file records pid, host, the process's start time (``pid_start``: with the pid it names
   one process, a reused pid has another), the lock's time and command line; it is informational
   only: the kernel releases a flock when its process dies, so the lock file of a dead run, or one
   whose pid now belongs to another process, is simply taken over);
2. if ``path/config.json`` exists (an earlier run, e.g. the one being resumed), the fields that
   determine results (:func:`fingerprint_fields`) of the saved and the new configuration are
   compared. A difference raises :class:`WorkdirError` with one line naming every differing field
   (``old -> new``) and the way out; with ``allow_changes=True`` (``--config.train.allow_config_change``)
   it warns (:class:`WorkdirWarning`) and continues, keeping the old file as
   ``config.prev-<UTC time>.json``;
3. it writes the resolved configuration to ``config.json`` and its fingerprint to
   ``fingerprint.json`` (each atomically: temporary file + rename). The fingerprint also holds
   ``data.content``, a content hash of the input files the run reads (:func:`data_content_hash`: the
   benchmark directory as resolved, ``$TOOLRL_DATA_DIR`` included, file sources, the synthesized
   dataset), so a resume on other data is refused like a changed setting (a run recorded before the
   hash existed is not checked for it).

A run refused before its first step (nothing fits, a config or data error) leaves no state:
:meth:`Workdir.discard` removes what its open wrote (the whole directory when the open created it),
so the corrected command is not refused as "a run with other settings".

Fields left out of the fingerprint are bookkeeping that may change between a run and its resume:
``workdir``, ``distributed``, ``wandb.*``, ``eval.*``, ``mesh.*`` and ``train.*`` except
``train.num_steps``. :func:`load_run_config` reads a run's ``config.json`` back (the Policy loads a
run's model with the run's own settings this way). This module does not import the trainer.

A workdir is a local or mounted (NFS, gcsfuse) directory: :func:`check_local_path` refuses an
object-store URL such as ``gs://bucket/run`` in one line, before anything could create a local
directory named ``gs:`` (``pathlib`` turns ``gs://bucket/run`` into the relative path ``gs:/bucket/run``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections

DATA_CONTENT_FIELD = "data.content"
_WHOLE_FILE_BYTES = 64 << 20  # larger files are hashed by size, modification time and their two ends

CONFIG_FILE = "config.json"
FINGERPRINT_FILE = "fingerprint.json"
LOCK_FILE = ".lock"

# Whole sections that determine results, and single fields of the others.
FINGERPRINT_SECTIONS = ("model", "data", "reward", "rollout", "grpo", "optim", "sft")
FINGERPRINT_SINGLE_FIELDS = ("train.num_steps", "seed", "mode")

_ABSENT = "(absent)"


class WorkdirError(RuntimeError):
    """The workdir cannot be used for this run (in use by another process, or other settings)."""


# A URL scheme at the start of a path ("gs://", "s3://", "hdfs://", ...; also "gs:/" as pathlib leaves it).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


def check_local_path(path: str | os.PathLike, field: str = "workdir") -> Path:
    """``path`` as a local ``Path``; an object-store URL raises :class:`WorkdirError` naming why.

    A run's workdir takes an ``fcntl`` lock, renames files into place atomically and appends to
    ``metrics.jsonl``: object stores (gs://, s3://) offer none of the three, and ``pathlib`` would
    silently turn ``gs://bucket/run`` into a local directory ``gs:/bucket/run``. Checkpoints on a
    bucket go through a mount (gcsfuse with a local cache, or a shared file system) instead.
    """
    text = os.fspath(path)
    if _URL.match(text):
        scheme = text.split(":", 1)[0]
        raise WorkdirError(
            f"--config.{field}={text!r} is an object-store URL ({scheme}://): a run's {field} must be a local or "
            f"mounted directory (it is locked with flock and written by atomic renames, which {scheme}:// cannot "
            f"do); mount the bucket (e.g. gcsfuse) and pass the mount point")
    return Path(text)


class WorkdirWarning(UserWarning):
    """A workdir is continued with changed settings (allow_changes=True), or has no saved config."""


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _jsonable(value: Any) -> Any:
    """The value as it reads back from config.json (tuples -> lists, unknown objects -> str)."""
    return json.loads(json.dumps(value, default=str))


def fingerprint_fields(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """The flattened (dotted names) fields of `config` that determine a run's results.

    model.*, data.*, reward.*, rollout.*, grpo.*, optim.*, sft.*, train.num_steps, seed and mode,
    less the execution options of `EXECUTION_FIELDS`; sections or fields absent from `config` are skipped. Values are JSON-normalised (tuples become
    lists), so a config and the same config read back from config.json have the same fingerprint.
    """
    tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    out: dict[str, Any] = {}
    for section in FINGERPRINT_SECTIONS:
        if section in tree:
            _flatten(tree[section], section, out)
    for dotted in FINGERPRINT_SINGLE_FIELDS:
        node: Any = tree
        for name in dotted.split("."):
            if not isinstance(node, Mapping) or name not in node:
                break
            node = node[name]
        else:
            out[dotted] = node
    return {key: _jsonable(out[key]) for key in sorted(out) if key not in EXECUTION_FIELDS}


# Fields that change how a run executes (memory, speed, which update path), never its numbers: a
# resume may change them. Each one has a test that it gives the same numbers as the plain path.
# data.build_missing only decides whether absent data is built before the run; what a run reads is
# checked by its stamp (toolrl/data/provenance.py), so turning it on or off cannot change its numbers.
EXECUTION_FIELDS = frozenset({"model.attention_impl", "model.attention_query_chunk", "model.remat",
                              "grpo.micro_batches", "grpo.loss_positions_only", "grpo.shared_prefix",
                              "sft.micro_batches", "data.build_missing"})


# Fields renamed since runs were saved: old dotted name -> new (the old stays as a deprecated alias).
RENAMED_FIELDS = {"rollout.mode": "rollout.game"}


def _current_names(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` with renamed fields under their new names (a deprecated alias left empty is dropped)."""
    out = dict(fields)
    for old_name, new_name in RENAMED_FIELDS.items():
        value = out.pop(old_name, _ABSENT)
        if value not in (_ABSENT, "") and out.get(new_name, "") in ("", _ABSENT):
            out[new_name] = value
    return out


def _defaults() -> dict[str, Any]:
    from toolrl.rl.config import base_config  # local: the config module imports nothing from here

    return fingerprint_fields(base_config())


def fingerprint_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """name -> (old, new) for every field that differs; a field missing on one side is "(absent)".

    A run saved before a field existed is compared as if it had the field's default: a field added
    later, at its default, is no change (a new option that is off cannot change old numbers), and a
    renamed field (`RENAMED_FIELDS`) is compared under its new name."""
    old, new = _current_names(old), _current_names(new)
    defaults = _defaults()
    changes = {}
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name, _ABSENT), new.get(name, _ABSENT)
        if before == _ABSENT and name in defaults and after == defaults[name]:
            continue
        # 1 == 1.0 is the same setting; True == 1 is not.
        if before != after or isinstance(before, bool) != isinstance(after, bool):
            changes[name] = (before, after)
    return changes


def _show(value: Any) -> str:
    return value if value == _ABSENT else json.dumps(value)


def format_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{name} {_show(a)} -> {_show(b)}" for name, (a, b) in changes.items())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _config_json(config: ml_collections.ConfigDict | Mapping[str, Any]) -> str:
    if hasattr(config, "to_json_best_effort"):
        return config.to_json_best_effort(indent=2, sort_keys=True) + "\n"
    return json.dumps(config, indent=2, sort_keys=True, default=str) + "\n"


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def load_run_config(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """The resolved configuration a run saved in its workdir (``path/config.json``).

    Raises FileNotFoundError naming the file when it is absent (not a toolrl run directory), and
    WorkdirError when it is not a JSON object.
    """
    config_path = check_local_path(path) / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            errno.ENOENT,
            f"{config_path} does not exist: {Path(path)} is not a toolrl run directory (a run writes its "
            f"resolved config there when it starts)", str(config_path))
    try:
        tree = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WorkdirError(f"{config_path} is not valid JSON ({err}); the run's config file is damaged") from err
    if not isinstance(tree, dict):
        raise WorkdirError(f"{config_path} does not hold a JSON object")
    return ml_collections.ConfigDict(tree)


class Workdir:
    """An open workdir: holds the lock until :meth:`close` (or the end of a ``with`` block).

    Attributes:
      path: the directory.
      config_path: ``path/config.json``, the run's resolved configuration.
      fingerprint_path: ``path/fingerprint.json``.
      changes: field -> (old, new) accepted with allow_changes=True (empty otherwise).
      resumed: whether the directory held a run's config.json before.
    """

    def __init__(self, path: Path, lock_fd: int, created: bool = False):
        self.path = path
        self.created = created  # the open created the directory
        # What was there before the open: a refused run removes only what it added (config, fingerprint,
        # lock, the compilation cache, ...), never the user's own files.
        self.preexisting = frozenset(os.listdir(path)) if not created and path.is_dir() else frozenset()
        self.config_path = path / CONFIG_FILE
        self.fingerprint_path = path / FINGERPRINT_FILE
        self.lock_path = path / LOCK_FILE
        self.changes: dict[str, tuple[Any, Any]] = {}
        self.resumed = False
        self._lock_fd: int | None = lock_fd

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def discard(self) -> None:
        """Undoes a fresh open (a run refused before its first step): removes the directory when the open
        created it, else the config, fingerprint and lock files it wrote; releases the lock. A resumed
        workdir (it held a run before) is left as it is."""
        if self.resumed:
            self.close()
            return
        try:
            if self.created:
                import shutil

                shutil.rmtree(self.path, ignore_errors=True)
            else:
                import shutil

                added = set(os.listdir(self.path)) - self.preexisting
                for name in added | ({CONFIG_FILE, FINGERPRINT_FILE, LOCK_FILE} & set(os.listdir(self.path))):
                    target = self.path / name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        target.unlink(missing_ok=True)
        finally:
            self.close()

    def close(self) -> None:
        """Releases the lock (the lock file stays; its content is informational)."""
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> "Workdir":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close must not leak the descriptor
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"Workdir({str(self.path)!r}, locked={self.locked})"


def _holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text(encoding="utf-8"))
        where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
        return f"pid {info.get('pid', '?')}{where} (started {info.get('started', '?')})"
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot, /proc/<pid>/stat field 22); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def _lock(path: Path) -> int:
    lock_path = path / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkdirError(f"workdir {path} is in use by {_holder(lock_path)}; use another --config.workdir "
                           f"(or wait for that run to end)") from None
    except BaseException:
        os.close(fd)
        raise
    info = {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": process_start(os.getpid()),
            "started": _utc_now(), "argv": sys.argv}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return fd


def _file_digest(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.blake2b(f"{stat.st_size}".encode(), digest_size=16)
    with open(path, "rb") as handle:
        if stat.st_size <= _WHOLE_FILE_BYTES:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(f"{stat.st_mtime_ns}".encode())
            digest.update(handle.read(1 << 20))
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return []


def data_content_hash(config: ml_collections.ConfigDict | Mapping[str, Any]) -> str | None:
    """A content hash of the input files a run reads; None when the config names no data section.

    Covers the benchmark data directory as the loaders resolve it (``data.data_dir``, else
    ``$TOOLRL_DATA_DIR``, else the bundled one), the sources of ``data.train_file`` and
    ``data.decontaminate`` that are file paths, and ``data.synth_dir`` when a ``synthetic:`` source is
    read. Each file counts by its name and its bytes (files over 64 MiB: size, time and both ends)."""
    data = config.get("data") if hasattr(config, "get") else None
    if not data:
        return None
    from toolrl.data import paths

    try:
        data_dir = paths.default_data_dir(data.get("data_dir") or None)
    except FileNotFoundError:
        data_dir = None
    sources = [s.strip() for field in ("train_file", "decontaminate")
               for s in str(data.get(field, "") or "").split(",") if s.strip()]
    roots: list[tuple[str, Path]] = [("data", data_dir)] if data_dir is not None else []
    roots += [(f"source:{s}", Path(s).expanduser()) for s in sources if Path(s).expanduser().exists()]
    if data.get("synth_dir") and any(s.startswith("synthetic:") for s in sources):
        roots.append(("synth", Path(str(data.get("synth_dir"))).expanduser()))
    digest = hashlib.blake2b(digest_size=16)
    for label, root in roots:
        for file in _files(root):
            name = file.name if root.is_file() else str(file.relative_to(root))
            digest.update(f"{label}/{name}={_file_digest(file)}\n".encode())
    return digest.hexdigest()


def _recorded_content(path: Path) -> str | None:
    """The data content hash of the run in `path` (None: not recorded, e.g. a run of an older toolrl)."""
    try:
        value = json.loads((path / FINGERPRINT_FILE).read_text(encoding="utf-8")).get(DATA_CONTENT_FIELD)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def open_workdir(path: str | os.PathLike, config: ml_collections.ConfigDict,
                 allow_changes: bool = False) -> Workdir:
    """Locks the workdir, checks it against an earlier run's settings and records this run's config.

    Args:
      path: the run directory (created if absent).
      config: the resolved configuration of this run.
      allow_changes: continue a run whose results-determining settings changed (warns instead of
        raising; --config.train.allow_config_change=True).

    Returns:
      the open :class:`Workdir` (holds the lock until closed; a context manager).

    Raises:
      WorkdirError: another live process holds the workdir, or the settings differ (without
        allow_changes), or the saved config.json is damaged, or ``path`` is an object-store URL.
    """
    path = check_local_path(path)
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"workdir {path} exists and is not a directory; use another --config.workdir")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    workdir = Workdir(path, _lock(path), created)
    try:
        new = fingerprint_fields(config)
        content = data_content_hash(config)
        if workdir.config_path.exists():
            workdir.resumed = True
            try:
                old = fingerprint_fields(load_run_config(path))
            except WorkdirError as err:
                raise WorkdirError(f"{err}; move it away to start this workdir afresh, or use another "
                                   f"--config.workdir") from err
            changes = fingerprint_changes(old, new)
            recorded = _recorded_content(path)
            if recorded is not None and content is not None and recorded != content:
                changes[DATA_CONTENT_FIELD] = (recorded, content)  # same settings, other input files
            if changes and not allow_changes:
                raise WorkdirError(
                    f"workdir {path} holds a run with other settings: {format_changes(changes)}; use a new "
                    f"--config.workdir, or pass --config.train.allow_config_change=True to continue this run "
                    f"with the new settings")
            if changes:
                workdir.changes = changes
                warnings.warn(f"workdir {path}: continuing the run with changed settings: "
                              f"{format_changes(changes)} (previous config kept in config.prev-*.json)",
                              WorkdirWarning, stacklevel=2)
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                _write_atomic(path / f"config.prev-{stamp}.json", workdir.config_path.read_text(encoding="utf-8"))
        elif (path / "checkpoints").exists():
            warnings.warn(f"workdir {path} has checkpoints but no {CONFIG_FILE} (written by an older toolrl): "
                          f"its settings cannot be checked against this config", WorkdirWarning, stacklevel=2)
        _write_atomic(workdir.config_path, _config_json(config))
        recorded_fields = dict(new, **({DATA_CONTENT_FIELD: content} if content is not None else {}))
        _write_atomic(workdir.fingerprint_path, json.dumps(recorded_fields, indent=2, sort_keys=True) + "\n")
    except BaseException:
        workdir.close()
        raise
    return workdir
