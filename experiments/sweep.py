"""The reward-ablation sweep: which runs, how each is executed, resuming, and aggregating results.

A sweep directory holds one directory per run::

    <sweep_dir>/zero_shot/                  the untrained model, evaluated (no training)
    <sweep_dir>/sft/seed<k>/                the SFT warm start of seed k, evaluated ("before" GRPO)
    <sweep_dir>/<mode>/seed<k>/             GRPO with reward mode <mode> from sft/seed<k>, evaluated

and in each: ``work/`` (the trainer's workdir: checkpoints, metrics.jsonl, W&B), ``train.log``,
``eval.log``, ``eval.json`` and, written last and atomically, ``results.json``. A run is finished
exactly when its ``results.json`` exists with ``"status": "done"``; a restarted sweep skips finished
runs and redoes unfinished ones (the trainer itself resumes from its last checkpoint). Every
finished run is also appended to ``<sweep_dir>/results.jsonl``.

The SFT warm start does not depend on the reward, so it runs once per seed and the four GRPO runs
of that seed start from its checkpoint (``model.init_checkpoint``): the modes differ only in the
reward, and "before" is the same policy for all of them.

Aggregation: mean and a two-sided Student-t confidence interval over seeds per mode
(:func:`t_interval`), written as a markdown table (:func:`markdown_table`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

MODES = ("binary", "atomic", "orchestration", "graduated")
KINDS = ("zero_shot", "sft", "grpo")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the sweep.

    Attributes:
      kind: "zero_shot" (evaluation only), "sft" (warm start), or "grpo" (one reward mode).
      mode: the reward ablation mode (grpo only).
      seed: training seed (data order, sampling); zero_shot has none.
    """

    kind: str
    mode: str = ""
    seed: int = 0

    @property
    def name(self) -> str:
        if self.kind == "zero_shot":
            return "zero_shot"
        if self.kind == "sft":
            return f"sft/seed{self.seed}"
        return f"{self.mode}/seed{self.seed}"

    def directory(self, sweep_dir: str | os.PathLike) -> Path:
        return Path(sweep_dir) / self.name


@dataclasses.dataclass
class EvalSettings:
    """How every run is evaluated (flags of ``experiments.evaluate_run``)."""

    max_turns: int = 16
    max_new_tokens: int = 96
    batch_size: int = 8
    max_rounds: int = 2
    tool_view: str = "compact"
    view_max_chars: int = 300
    view_max_items: int = 2
    synth_dir: str = ""
    synth_max_turns: int = 16

    def flags(self) -> list[str]:
        return [f"--{k}={v}" for k, v in dataclasses.asdict(self).items()]


@dataclasses.dataclass
class SweepSettings:
    """The whole sweep.

    Attributes:
      sweep_dir: where runs go (keep it under runs/, which git ignores).
      modes, seeds: the grid.
      family: reward family of the GRPO runs (the paper's ablation used "paper").
      sft_steps, grpo_steps: training budget per run.
      train_overrides: extra ``--config.x=y`` flags for every training run (CPU sizing).
      eval: evaluation settings.
      zero_shot: also evaluate the untrained model.
      python: interpreter for the subprocesses.
      env: extra environment for the subprocesses (e.g. WANDB_MODE, JAX cache dir).
    """

    sweep_dir: str = "runs/ablation"
    modes: tuple[str, ...] = MODES
    seeds: tuple[int, ...] = (0, 1, 2)
    family: str = "paper"
    sft_steps: int = 8
    grpo_steps: int = 8
    train_overrides: tuple[str, ...] = ()
    eval: EvalSettings = dataclasses.field(default_factory=EvalSettings)
    zero_shot: bool = True
    python: str = sys.executable
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("python")
        return out


def plan(settings: SweepSettings) -> list[RunSpec]:
    """Runs in execution order: zero-shot, then seed by seed its SFT and every mode.

    Seed-major order makes a partial sweep useful: after the first seed every mode has one run.
    """
    runs = [RunSpec("zero_shot")] if settings.zero_shot else []
    for seed in settings.seeds:
        runs.append(RunSpec("sft", seed=seed))
        runs += [RunSpec("grpo", mode, seed) for mode in settings.modes]
    return runs


# ----------------------------------------------------------------------------- commands


def train_command(spec: RunSpec, settings: SweepSettings) -> list[str] | None:
    """argv of the training subprocess (``python -m toolrl.main``), None for zero-shot."""
    if spec.kind == "zero_shot":
        return None
    work = spec.directory(settings.sweep_dir) / "work"
    common = [f"--config.seed={spec.seed}", f"--config.workdir={work}", "--config.train.progress=False"]
    if spec.kind == "sft":
        return [settings.python, "-m", "toolrl.main", "--config=configs/grpo.py", "--config.mode=sft",
                f"--config.sft.num_steps={settings.sft_steps}", f"--config.wandb.run_name=ablation-sft-seed{spec.seed}",
                *common, *settings.train_overrides]
    sft_work = RunSpec("sft", seed=spec.seed).directory(settings.sweep_dir) / "work"
    return [settings.python, "-m", "toolrl.main", f"--config=configs/ablations/{spec.mode}.py",
            f"--config.reward.family={settings.family}", "--config.sft.num_steps=0",
            f"--config.train.num_steps={settings.grpo_steps}", f"--config.train.save_every={max(settings.grpo_steps, 1)}",
            f"--config.model.init_checkpoint={sft_work}",
            f"--config.wandb.run_name=ablation-{spec.mode}-seed{spec.seed}", *common, *settings.train_overrides]


def eval_command(spec: RunSpec, settings: SweepSettings) -> list[str]:
    """argv of the evaluation subprocess (``python -m experiments.evaluate_run``)."""
    run_dir = spec.directory(settings.sweep_dir)
    workdir = "" if spec.kind == "zero_shot" else str(run_dir / "work")
    return [settings.python, "-m", "experiments.evaluate_run", f"--workdir={workdir}",
            f"--out={run_dir / 'eval.json'}", f"--run_name=ablation-{spec.name.replace('/', '-')}",
            *settings.eval.flags()]


# A command builder: (spec, settings) -> [(step name, argv)]; tests substitute fake commands.
CommandFn = Callable[[RunSpec, SweepSettings], list[tuple[str, list[str]]]]


def default_commands(spec: RunSpec, settings: SweepSettings) -> list[tuple[str, list[str]]]:
    steps = []
    train = train_command(spec, settings)
    if train is not None:
        steps.append(("train", train))
    steps.append(("eval", eval_command(spec, settings)))
    return steps


# ----------------------------------------------------------------------------- files


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON through a temporary file and a rename: readers never see a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_finished(run_dir: str | os.PathLike) -> bool:
    """True when the run's results.json exists, parses, and says it is done."""
    path = Path(run_dir) / "results.json"
    try:
        return read_json(path).get("status") == "done"
    except (OSError, ValueError, AttributeError):
        return False


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a trainer metrics.jsonl (a torn last line is skipped); [] when absent."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        return []
    return out


def train_summary(metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What results.json keeps of a training log: steps, reward trajectory, timing."""
    grpo = [r for r in metrics if r.get("phase") == "grpo"]
    sft = [r for r in metrics if r.get("phase") == "sft"]
    rewards = [r["reward/mean"] for r in grpo if r.get("reward/mean") is not None]
    half = max(len(rewards) // 2, 1)
    return {
        "steps": max((int(r.get("step", 0)) for r in metrics), default=0),
        "sft_steps": len(sft),
        "grpo_steps": len(grpo),
        "sft_nll_first": sft[0].get("sft/nll") if sft else None,
        "sft_nll_last": sft[-1].get("sft/nll") if sft else None,
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
        "reward_mean": sum(rewards) / len(rewards) if rewards else None,
        "reward_mean_first_half": sum(rewards[:half]) / half if rewards else None,
        "reward_mean_second_half": sum(rewards[-half:]) / half if rewards else None,
        "degenerate_fraction_mean": _mean(r.get("grpo/degenerate_fraction") for r in grpo),
        "step_seconds_mean": _mean(r.get("time/step_s") for r in metrics),
    }


def _mean(values: Iterable[Any]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def eval_summary(eval_json: Mapping[str, Any]) -> dict[str, Any]:
    """Per split: the overall complete-bucket metrics (counts, rates, errors), policy counters, and
    denser signals for small budgets: the share of optional (free, location-lookup) golden calls
    matched, and per evaluated turn the mean number of predicted calls and of unparseable blocks."""
    out = {}
    for split, s in eval_json.get("splits", {}).items():
        overall = dict(s["overall"])
        free = overall.get("free_calls") or 0
        overall["free_call_match_rate"] = overall.get("free_calls_matched", 0) / free if free else None
        turns = s.get("turns") or []
        overall["calls_per_turn"] = sum(len(t.get("predicted", [])) for t in turns) / len(turns) if turns else None
        overall["format_errors_per_turn"] = sum(t.get("format_errors", 0) for t in turns) / len(turns) if turns else None
        out[split] = {"overall": overall, "by_domain": s.get("by_domain", {}), "policy": s.get("policy", {}),
                      "seconds": s.get("seconds")}
    return out


# ----------------------------------------------------------------------------- running


class RunLock:
    """``<run_dir>/.lock`` (created exclusively, holding host and pid): one process per run.

    Parallel workers (W&B agents on a shared filesystem, or two local sweeps) must not train into
    the same workdir. A lock left by a dead process on this host is stale and taken over; a lock of
    another host is honoured (the caller waits for that run or skips it).
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / ".lock"
        self.held = False

    def owner(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None

    def stale(self) -> bool:
        owner = self.owner()
        if owner is None or owner[0] != os.uname().nodename:
            return False
        try:
            os.kill(owner[1], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

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
                f.write(f"{os.uname().nodename} {os.getpid()}")
            self.held = True
            return True
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def execute(spec: RunSpec, settings: SweepSettings, commands: CommandFn = default_commands,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs one spec's subprocesses in order, then writes its results.json (and appends results.jsonl).

    Each step's stdout/stderr go to ``<run_dir>/<step>.log``. A failing step raises
    ``subprocess.CalledProcessError`` and leaves no results.json, so a restarted sweep redoes the run.
    """
    run_dir = spec.directory(settings.sweep_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.env}
    timings: dict[str, float] = {}
    argvs: dict[str, list[str]] = {}
    started = time.time()
    for step, argv in commands(spec, settings):
        argvs[step] = argv
        t0 = time.perf_counter()
        with open(run_dir / f"{step}.log", "a", encoding="utf-8") as out:
            out.write(f"\n$ {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd())
        timings[step] = time.perf_counter() - t0
        log(f"  {spec.name}: {step} rc={proc.returncode} in {timings[step]:.0f}s")
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, argv)
    eval_path = run_dir / "eval.json"
    results = {
        "name": spec.name, "kind": spec.kind, "mode": spec.mode, "seed": spec.seed if spec.kind != "zero_shot" else None,
        "status": "done", "started": started, "finished": time.time(),
        "seconds": timings | {"total": sum(timings.values())},
        "train": train_summary(read_metrics(run_dir / "work" / "metrics.jsonl")),
        "eval": eval_summary(read_json(eval_path)) if eval_path.exists() else {},
        "commands": argvs,
        "settings": settings.to_json(),
    }
    write_json_atomic(run_dir / "results.json", results)
    with open(Path(settings.sweep_dir) / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({k: v for k, v in results.items() if k != "settings"}, ensure_ascii=False) + "\n")
    return results


def run_sweep(settings: SweepSettings, commands: CommandFn = default_commands, log: Callable[[str], None] = print,
              max_runs: int | None = None) -> dict[str, str]:
    """Runs every unfinished run of the plan in order; returns name -> "skipped" / "done" / "failed: ...".

    A failed SFT run marks the GRPO runs of its seed "blocked" (they need its checkpoint); other
    failures do not stop the sweep. ``max_runs`` stops after that many executed runs (sizing). A run
    locked by another live process (:class:`RunLock`) is waited for when later runs need it (an SFT
    run), else reported "locked" and left to its owner.
    """
    sweep_dir = Path(settings.sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(sweep_dir / "sweep_settings.json", settings.to_json())
    status: dict[str, str] = {}
    failed_sft: set[int] = set()
    executed = 0
    runs = plan(settings)
    for i, spec in enumerate(runs):
        if is_finished(spec.directory(sweep_dir)):
            status[spec.name] = "skipped"
            log(f"[{i + 1}/{len(runs)}] {spec.name}: finished before, skipped")
            continue
        if spec.kind == "grpo" and spec.seed in failed_sft:
            status[spec.name] = "blocked"
            log(f"[{i + 1}/{len(runs)}] {spec.name}: blocked (its SFT run failed)")
            continue
        if max_runs is not None and executed >= max_runs:
            status[spec.name] = "pending"
            continue
        lock = RunLock(spec.directory(sweep_dir))
        if not lock.acquire():
            if spec.kind == "sft" and wait_for(spec.directory(sweep_dir), lock, log):
                status[spec.name] = "skipped"
                continue
            status[spec.name] = "locked"
            log(f"[{i + 1}/{len(runs)}] {spec.name}: locked by {lock.owner()}, left to it")
            if spec.kind == "sft":
                failed_sft.add(spec.seed)
            continue
        log(f"[{i + 1}/{len(runs)}] {spec.name}: running")
        executed += 1
        try:
            execute(spec, settings, commands, log)
            status[spec.name] = "done"
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as err:
            status[spec.name] = f"failed: {err}"
            log(f"  {spec.name}: FAILED ({err}); see {spec.directory(sweep_dir)}/*.log")
            if spec.kind == "sft":
                failed_sft.add(spec.seed)
        finally:
            lock.release()
    return status


def wait_for(run_dir: Path, lock: RunLock, log: Callable[[str], None], poll_s: float = 30.0,
             timeout_s: float = 6 * 3600) -> bool:
    """Waits while another process holds ``run_dir``'s lock; True when the run then is finished."""
    log(f"  {run_dir}: locked by {lock.owner()}, waiting for it")
    deadline = time.time() + timeout_s
    while lock.path.exists() and not lock.stale() and time.time() < deadline:
        time.sleep(poll_s)
    return is_finished(run_dir)


# ----------------------------------------------------------------------------- aggregation


def load_results(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every finished run's results.json under ``sweep_dir`` (sorted by name)."""
    out = []
    for path in sorted(Path(sweep_dir).glob("**/results.json")):
        try:
            data = read_json(path)
        except (OSError, ValueError):
            continue
        if data.get("status") == "done":
            out.append(data)
    return out


def t_critical(df: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value t_{(1+confidence)/2, df}."""
    from scipy import stats

    return float(stats.t.ppf((1 + confidence) / 2, df))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half width, n) of the t-interval mean ± t · s / sqrt(n); half width NaN when n < 2."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(xs) / n
    if n < 2:
        return mean, float("nan"), n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, t_critical(n - 1, confidence) * sd / math.sqrt(n), n


def metric(result: Mapping[str, Any], path: str) -> Any:
    """A value by dotted path, e.g. ``eval.eval_100.overall.turn_accuracy``; None when missing."""
    node: Any = result
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def group(results: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Results by row label: "zero_shot", "sft (before)", then each mode."""
    rows: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        label = {"zero_shot": "zero-shot", "sft": "SFT warm start (before GRPO)"}.get(r["kind"], r.get("mode", ""))
        rows.setdefault(label, []).append(r)
    order = ["zero-shot", "SFT warm start (before GRPO)", *MODES]
    return {k: rows[k] for k in sorted(rows, key=lambda k: (order.index(k) if k in order else len(order), k))}


def aggregate(results: Sequence[Mapping[str, Any]], metrics: Sequence[str],
              confidence: float = 0.95) -> dict[str, dict[str, tuple[float, float, int]]]:
    """label -> metric path -> (mean, CI half width, n seeds)."""
    return {label: {m: t_interval([metric(r, m) for r in runs], confidence) for m in metrics}
            for label, runs in group(results).items()}


def fmt_ci(mean: float, half: float, n: int, scale: float = 100.0, digits: int = 1) -> str:
    if n == 0 or mean != mean:
        return "–"
    if half != half:
        return f"{scale * mean:.{digits}f} (n={n})"
    return f"{scale * mean:.{digits}f} ± {scale * half:.{digits}f} (n={n})"


TABLE_METRICS = (
    ("turn acc %", "eval.eval_100.overall.turn_accuracy", 100.0),
    ("call acc %", "eval.eval_100.overall.call_accuracy", 100.0),
    ("success %", "eval.eval_100.overall.success_rate", 100.0),
    ("free calls matched %", "eval.eval_100.overall.free_call_match_rate", 100.0),
    ("calls / turn", "eval.eval_100.overall.calls_per_turn", 1.0),
    ("train reward (own mode, mean over steps)", "train.reward_mean", 1.0),
    ("degenerate GRPO groups", "train.degenerate_fraction_mean", 1.0),
)


def markdown_table(results: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, float]] = TABLE_METRICS,
                   confidence: float = 0.95) -> str:
    """Rows per label, cells "mean ± CI half width (n=seeds)"; rates in percent, rewards raw."""
    agg = aggregate(results, [c[1] for c in columns], confidence)
    lines = ["| run | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for label, per in agg.items():
        cells = [fmt_ci(*per[path], scale=scale, digits=1 if scale == 100.0 else 3) for _, path, scale in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def error_table(results: Sequence[Mapping[str, Any]], split: str = "eval_100") -> str:
    """Mean count per run of each error kind (leftover calls of the evaluated turns), per label."""
    groups = group(results)
    kinds: list[str] = []
    for runs in groups.values():
        for r in runs:
            for k in (metric(r, f"eval.{split}.overall.errors") or {}):
                if k not in kinds:
                    kinds.append(k)
    lines = ["| run | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for label, runs in groups.items():
        cells = []
        for k in kinds:
            values = [(metric(r, f"eval.{split}.overall.errors") or {}).get(k, 0) for r in runs]
            cells.append(f"{sum(values) / len(values):.1f}" if values else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wall_time_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Seconds spent per row label: runs, mean train and eval time per run, total."""
    lines = ["| run | runs | train s / run | eval s / run | total s |", "|---|---|---|---|---|"]
    grand = 0.0
    for label, runs in group(results).items():
        train = [r["seconds"].get("train") for r in runs if r["seconds"].get("train") is not None]
        evals = [r["seconds"].get("eval") for r in runs if r["seconds"].get("eval") is not None]
        total = sum(r["seconds"].get("total", 0.0) for r in runs)
        grand += total
        lines.append(f"| {label} | {len(runs)} | {sum(train) / len(train):.0f} | {sum(evals) / len(evals):.0f} | {total:.0f} |"
                     if train else f"| {label} | {len(runs)} | – | {sum(evals) / len(evals):.0f} | {total:.0f} |")
    lines.append(f"| all | {len(results)} | | | {grand:.0f} ({grand / 60:.1f} min) |")
    return "\n".join(lines)
