"""Running a study: one subprocess after another, a lock per run, signals passed on, resumable.

A run is ``python -m toolrl.main`` subprocesses (:func:`experiments.study.plan.default_commands`),
each writing ``<run_dir>/<step>.log``; when all succeed the run's result file is written, last and
atomically, so that a study killed at any point and restarted redoes exactly the unfinished runs
(the trainer itself resumes from its last checkpoint). Parallel workers share the disk through
:class:`RunLock`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from experiments.study.collect import collect_result, record_attempt
from experiments.study.files import (REPO_ROOT, is_finished, read_json, read_metrics, read_result, resolve,
                                     write_json_atomic)
from experiments.study.plan import CommandFn, RunSpec, StudySettings, default_commands, plan, settings_changed
from experiments.study.report import write_summary


def process_start(pid: int) -> str | None:
    """When process `pid` started (the workdir lock's reading of /proc; a reused pid has another start)."""
    from toolrl.rl.workdir import process_start as start_of

    return start_of(pid)


class RunLock:
    """``<run_dir>/.lock`` (created exclusively, holding host, pid and the process's start time): one
    worker per run.

    Parallel workers (W&B agents on a shared filesystem, or two local studies) must not run the same
    run. A lock left by a dead process on this host is stale and taken over, and so is one whose pid
    now belongs to another process (its start time differs); a lock of another host is honoured (the
    caller waits for that run or leaves it). (The trainer's own flock on the workdir,
    toolrl/rl/workdir.py, guards the workdir itself.)
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / ".lock"
        self.held = False

    def owner(self) -> tuple[str, int] | None:
        record = self._record()
        return None if record is None else (record[0], record[1])

    def _record(self) -> tuple[str, int, str | None] | None:
        """(host, pid, start time or None for a lock written before start times were kept)."""
        try:
            parts = self.path.read_text().split()
            if len(parts) not in (2, 3):
                return None
            return parts[0], int(parts[1]), parts[2] if len(parts) == 3 else None
        except (OSError, ValueError):
            return None

    def stale(self) -> bool:
        record = self._record()
        if record is None or record[0] != os.uname().nodename:
            return False
        host, pid, started = record
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's: compare start times below
        now = process_start(pid)
        return started is not None and now is not None and now != started

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self.stale():
                    self.path.unlink(missing_ok=True)
                    continue
                return False
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.uname().nodename} {os.getpid()} {process_start(os.getpid()) or '?'}")
            self.held = True
            return True
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class Stopped(RuntimeError):
    """The study got SIGTERM / SIGINT: it was forwarded to the running subprocess, which has ended."""

    def __init__(self, message: str, signum: int, returncode: int):
        super().__init__(message)
        self.signum = signum
        self.returncode = returncode


def _die_with_parent() -> None:
    """In the child (Linux): SIGTERM when the study process dies, even by SIGKILL, so no orphan trains on."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_child(argv: Sequence[str], stdout: Any, env: Mapping[str, str], cwd: str | os.PathLike) -> int:
    """Runs `argv` to its end and returns its exit code; raises `Stopped` if the study was signalled.

    SIGTERM / SIGINT received meanwhile are forwarded to the child (in its own session, so a terminal's
    Ctrl-C reaches it once, through here), and its exit is awaited: the trainer saves its step and
    stops. (Handlers are installed from the main thread only.)"""
    proc = subprocess.Popen(list(argv), stdout=stdout, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd,
                            start_new_session=True, preexec_fn=_die_with_parent)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        del frame
        received.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise Stopped(f"stopped by {signal.Signals(received[0]).name}: forwarded to {argv[0]} "
                      f"(pid {proc.pid}), which exited with {code}", received[0], code)
    return code


def subprocess_env(settings: StudySettings) -> dict[str, str]:
    """The subprocesses' environment: a shared JAX compilation cache (every run compiles the same
    programs), W&B offline unless WANDB_MODE is set, unbuffered output; then ``settings.env``."""
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(resolve(Path(settings.runs_dir) / settings.study / "jax_cache")),
           "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    env.setdefault("WANDB_MODE", "offline")
    return env | settings.env


EVAL_DONE_FILE = "done.json"


def latest_checkpoint(workdir: str | os.PathLike) -> int | None:
    """The newest checkpoint step saved in a run's workdir (None: none, e.g. the zero-shot model)."""
    steps = [int(p.name) for p in (resolve(workdir) / "checkpoints").glob("*") if p.name.isdigit()]
    return max(steps) if steps else None


def eval_done(marker: Path, done: Mapping[str, Any]) -> bool:
    """Whether an evaluation finished with this command on this checkpoint: its marker (written after its
    eval_results.json) records both."""
    try:
        return (marker.parent / "eval_results.json").is_file() and read_json(marker) == dict(done)
    except (OSError, ValueError):
        return False


def execute(spec: RunSpec, settings: StudySettings, commands: CommandFn = default_commands,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs one spec's subprocesses in order (cwd: the repo root), then writes its result file.

    Each step's output goes to ``<run_dir>/<step>.log``. A failing step raises
    ``subprocess.CalledProcessError`` (a step that leaves no output it must: ``FileNotFoundError``)
    and no result file is written, so a restarted study redoes the run. An evaluation step that
    finished before, with the same command, of the same checkpoint (`eval_done`), is not redone: a
    run whose training and first evaluations ended before an interruption goes on at the next one.
    """
    run_dir = resolve(settings.run_dir(spec))
    run_dir.mkdir(parents=True, exist_ok=True)
    env = subprocess_env(settings)
    seconds: dict[str, float] = {}
    argvs: dict[str, list[str]] = {}
    for step, argv in commands(spec, settings):
        argvs[step] = argv
        marker = run_dir / "eval" / step[len("eval-"):] / EVAL_DONE_FILE if step.startswith("eval-") else None
        done = {"argv": [_portable(a) for a in argv], "checkpoint": latest_checkpoint(settings.workdir(spec))}
        if marker is not None and eval_done(marker, done):
            seconds[step] = 0.0  # its time is in the ledger (attempts.jsonl) already
            log(f"  {spec.name}: {step} done before (same command and checkpoint), not redone")
            continue
        t0 = time.perf_counter()
        with open(run_dir / f"{step}.log", "a", encoding="utf-8") as out:
            out.write(f"\n$ {' '.join(argv)}\n")
            out.flush()
            try:
                returncode = run_child(argv, out, env, REPO_ROOT)
            except Stopped as stopped:
                record_attempt(run_dir, step, time.perf_counter() - t0, stopped.returncode)
                raise
        seconds[step] = time.perf_counter() - t0
        record_attempt(run_dir, step, seconds[step], returncode)
        log(f"  {spec.name}: {step} rc={returncode} in {seconds[step]:.0f}s")
        if returncode != 0:
            raise subprocess.CalledProcessError(returncode, argv)
        if step.startswith("eval-"):
            expected = run_dir / "eval" / step[len("eval-"):] / "eval_results.json"
            if not expected.is_file():
                raise FileNotFoundError(f"{step} wrote no {expected}")
            write_json_atomic(marker, done)
        if step == "train" and not read_metrics(resolve(settings.workdir(spec)) / "metrics.jsonl"):
            raise FileNotFoundError(f"train wrote no records to {settings.workdir(spec) / 'metrics.jsonl'}")
    result = collect_result(spec, settings, {k: [_portable(a) for a in v] for k, v in argvs.items()}, seconds)
    write_json_atomic(resolve(settings.result_file(spec)), result)
    return result


def _portable(arg: str) -> str:
    """The interpreter's absolute path is machine-specific: recorded as "python"."""
    return "python" if arg == sys.executable else arg


def run_study(settings: StudySettings, commands: CommandFn = default_commands, log: Callable[[str], None] = print,
              max_runs: int | None = None) -> dict[str, str]:
    """Runs every unfinished run of the plan in order; returns name -> status.

    Statuses: "skipped" (finished before), "done", "failed: ...", "blocked" (the SFT start did not
    finish: every GRPO run needs its checkpoint), "locked" (another live worker runs it),
    "pending" (beyond ``max_runs``). A failure does not stop the study. The SFT start, locked by
    another worker, is waited for. ``summary.json`` is rewritten after every finished run.
    """
    status: dict[str, str] = {}
    # With sft_study the SFT start is another study's, finished there (pilots share the study's start).
    sft_ok = not settings.sft_study or is_finished(RunSpec("sft", seed=settings.sft_seed), settings)
    executed = 0
    runs = plan(settings)
    for i, spec in enumerate(runs):
        where = f"[{i + 1}/{len(runs)}] {spec.name}"
        done = read_result(resolve(settings.result_file(spec)))
        if done is not None:
            status[spec.name] = "skipped"
            changed = settings_changed(spec, settings, done)
            log(f"{where}: finished before, skipped" + (f" (NOTE: it ran with other flags: {changed})" if changed else ""))
            continue
        if spec.kind in ("grpo", "start") and not sft_ok:
            status[spec.name] = "blocked"
            log(f"{where}: blocked (the SFT start did not finish)")
            continue
        if max_runs is not None and executed >= max_runs:
            status[spec.name] = "pending"
            if spec.kind == "sft":
                sft_ok = False
            continue
        lock = RunLock(resolve(settings.run_dir(spec)))
        if not lock.acquire():
            if spec.kind == "sft" and wait_for(spec, settings, lock, log):
                status[spec.name] = "skipped"
                continue
            status[spec.name] = "locked"
            log(f"{where}: locked by {lock.owner()}, left to it")
            sft_ok = sft_ok and spec.kind != "sft"
            continue
        log(f"{where}: running")
        executed += 1
        try:
            execute(spec, settings, commands, log)
            status[spec.name] = "done"
            write_summary(settings.results_path())
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as err:
            status[spec.name] = f"failed: {err}"
            log(f"  {spec.name}: FAILED ({err}); see {settings.run_dir(spec)}/*.log")
            sft_ok = sft_ok and spec.kind != "sft"
        finally:
            lock.release()
    return status


def wait_for(spec: RunSpec, settings: StudySettings, lock: RunLock, log: Callable[[str], None],
             poll_s: float = 30.0, timeout_s: float = 6 * 3600) -> bool:
    """Waits while another process holds the run's lock; True when the run then is finished."""
    log(f"  {spec.name}: locked by {lock.owner()}, waiting for it")
    deadline = time.time() + timeout_s
    while lock.path.exists() and not lock.stale() and time.time() < deadline:
        time.sleep(poll_s)
    return is_finished(spec, settings)
