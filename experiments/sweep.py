"""The study runner: which runs, how each is executed, resuming, and the report from the result files.

A study is a plan of runs, executed one after another (or by several workers sharing the disk):

    zero_shot                 the untrained model, evaluated (no training)
    sft                       the SFT start, trained ONCE per study and evaluated
    sft_start                 (with ``sft_study``) another study's SFT start, evaluated on this study's sources
    <arm>_seed<S>             GRPO with ``configs/grpo.py:<arm>`` and ``--config.seed=S``, from the SFT start

Every run is ``python -m toolrl.main`` subprocesses: the training (``--config.mode=sft`` / ``grpo``,
one workdir per run, as toolrl/rl/workdir.py requires) and evaluations with ``--config.mode=eval``
(the run's own saved config; only ``config.eval`` comes from the command). All GRPO runs start from
the same SFT checkpoint (``--config.model.init_checkpoint=<sft workdir>``, ``--config.sft.num_steps=0``),
so "before GRPO" is the same policy for every arm and seed. A GRPO run evaluates its config's
``eval.source`` during training (``--config.eval.every``: at step 0, every N steps and at the end;
``metrics.jsonl`` records ``eval/*``); further sources (``--eval_sources``) are evaluated after training.

Files. Heavy artefacts go to ``<runs_dir>/<study>/<run>/`` (git-ignored: ``work/`` is the trainer's
workdir, ``<step>.log`` the subprocess output, ``eval/<source>/eval_results.json``). What is kept is
one small JSON per finished run, ``<results_dir>/<study>/<run>.json`` (schema: :func:`collect_result`),
written last and atomically: a run is finished exactly when that file exists, so a restarted study
skips finished runs and redoes the others (the trainer itself resumes from its last checkpoint).
``summary.json`` and :func:`markdown_report` are rebuilt from those files alone.

Aggregation: mean and a two-sided Student-t interval over seeds per arm (:func:`t_interval`), and
paired differences (per run: end minus its SFT start; per seed: arm minus the baseline arm).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
ARMS = ("graduated", "atomic", "orchestration", "binary")
BASELINE_ARM = "graduated"
# eval.every for "at step 0 and at the last step only": a period no run reaches (the trainer always
# evaluates at the start and at the end when eval.every > 0).
START_AND_END = 1_000_000_000
# Set by the runner for every run; an override of one of them would break the plan.
RESERVED_FIELDS = ("seed", "workdir", "mode", "model.init_checkpoint", "eval.output_dir", "eval.checkpoint")
EVAL_METRICS = ("turn_accuracy", "call_accuracy", "success_rate")
SCHEMA = "toolrl.study_run/1"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
CURVES_FILE = "curves.png"


def arm_slug(arm: str) -> str:
    """File-name form of an arm: variants "turn,binary" -> "turn+binary"."""
    return arm.replace(",", "+").replace(" ", "")


def source_slug(source: str) -> str:
    """Directory-name form of an eval source ("synthetic:test" -> "synthetic_test"; "" -> "default")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", source).strip("_") or "default"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the study.

    Attributes:
      kind: "zero_shot" (evaluation only), "sft" (the SFT start), "start" (evaluation only: another
        study's SFT start, with ``sft_study``, on this study's held-out budgets) or "grpo" (one arm, one seed).
      arm: config variants of a GRPO run (e.g. "atomic", "turn,binary").
      seed: training seed (``--config.seed``); None for zero_shot.
    """

    kind: str
    arm: str = ""
    seed: int | None = None

    @property
    def name(self) -> str:
        if self.kind in ("zero_shot", "sft"):
            return self.kind
        if self.kind == "start":
            return "sft_start"
        return f"{arm_slug(self.arm)}_seed{self.seed}"


@dataclasses.dataclass
class StudySettings:
    """The whole study.

    Attributes:
      study: its name (directory names under runs_dir and results_dir).
      arms, seeds: the GRPO grid; an arm is a variant argument of the config file (configs/grpo.py VARIANTS).
      variants: variants common to every run, applied before the arm (e.g. "paper").
      config_file: the training config file.
      sft_seed: seed of the one SFT start.
      sft_steps, grpo_steps: --config.sft.num_steps / --config.train.num_steps (0 = the config's).
      eval_every: --config.eval.every of the GRPO runs (0 = at the start and the end only).
      eval_sources: eval sources; the first is evaluated during training, all after the SFT start
        and the zero-shot model, the others after each GRPO run ((): the config's eval.source only).
      overrides: extra ``--config.x=y`` flags for every subprocess (last, so they win).
      zero_shot: also evaluate the untrained model.
      runs_dir, results_dir: where heavy artefacts / the small result files go (relative = to the repo root).
      sft_study: start every GRPO run from this other study's SFT run (trained and evaluated there;
        e.g. pilots sharing the study's start) instead of training one ("" = this study's own).
      python: interpreter of the subprocesses.
      env: extra environment for the subprocesses.
    """

    study: str = "ablation"
    arms: tuple[str, ...] = ARMS
    seeds: tuple[int, ...] = (0, 1, 2)
    variants: str = ""
    config_file: str = "configs/grpo.py"
    sft_seed: int = 0
    sft_steps: int = 0
    grpo_steps: int = 0
    eval_every: int = 0
    eval_sources: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    zero_shot: bool = True
    runs_dir: str = "runs/studies"
    results_dir: str = "experiments/results"
    sft_study: str = ""
    python: str = sys.executable
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_overrides(self.overrides)
        slugs = [arm_slug(a) for a in self.arms]
        if len(set(slugs)) != len(slugs) or any(s in ("", "zero_shot", "sft", "sft_start") for s in slugs):
            raise ValueError(f"arms must be distinct, non-empty and not 'zero_shot' / 'sft' / 'sft_start': {list(self.arms)}")
        for flag, name in (("--study", self.study), ("--sft_study", self.sft_study)):
            # A plain directory name: "..", "a/b" or an absolute path would put files outside the
            # runs and results directories.
            if (name or flag == "--study") and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
                raise ValueError(f"{flag}={name!r} must be a plain name (letters, digits, '_', '-', '.'; "
                                 "not starting with '.' or '-')")

    # Paths as given (relative ones are relative to the repo root, the subprocesses' directory).
    def run_dir(self, spec: RunSpec) -> Path:
        if spec.kind == "sft" and self.sft_study:
            return Path(self.runs_dir) / self.sft_study / spec.name
        return Path(self.runs_dir) / self.study / spec.name

    def workdir(self, spec: RunSpec) -> Path:
        if spec.kind == "start":  # evaluates the other study's SFT checkpoint where it lies
            return self.workdir(RunSpec("sft", seed=self.sft_seed))
        return self.run_dir(spec) / "work"

    def results_path(self) -> Path:
        return Path(self.results_dir) / self.study

    def result_file(self, spec: RunSpec) -> Path:
        if spec.kind == "sft" and self.sft_study:
            return Path(self.results_dir) / self.sft_study / f"{spec.name}.json"
        return self.results_path() / f"{spec.name}.json"

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("python")
        out.pop("env")
        return out


def resolve(path: str | os.PathLike) -> Path:
    """A settings path on disk: relative paths are relative to the repo root."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def check_overrides(overrides: Sequence[str]) -> None:
    """Overrides must be ``--config.x=y`` and must not set what the runner sets per run."""
    for item in overrides:
        m = re.fullmatch(r"--config\.([A-Za-z0-9_.]+)=(.*)", item, re.S)
        if not m:
            raise ValueError(f"override {item!r} is not of the form --config.field=value")
        if m.group(1) in RESERVED_FIELDS:
            raise ValueError(f"override {item!r}: {m.group(1)} is set by the study runner for each run")


def plan(settings: StudySettings) -> list[RunSpec]:
    """Runs in execution order: zero-shot, the SFT start, then seed by seed every arm.

    Seed-major order makes a partial study useful: after the first seed every arm has one run.
    """
    runs = [RunSpec("zero_shot")] if settings.zero_shot else []
    if settings.arms and not settings.sft_study:
        runs.append(RunSpec("sft", seed=settings.sft_seed))
    if settings.arms and settings.sft_study:
        # The shared start, evaluated here too: this study's sources and budgets may differ from its own.
        runs.append(RunSpec("start", seed=settings.sft_seed))
    for seed in settings.seeds:
        runs += [RunSpec("grpo", arm, int(seed)) for arm in settings.arms]
    return runs


# ----------------------------------------------------------------------------- commands


def config_arg(settings: StudySettings, arm: str = "") -> str:
    variants = ",".join(v for v in (settings.variants, arm) if v)
    return f"--config={settings.config_file}" + (f":{variants}" if variants else "")


def _toolrl(settings: StudySettings) -> list[str]:
    return [settings.python, "-m", "toolrl.main"]


def train_command(spec: RunSpec, settings: StudySettings) -> list[str] | None:
    """argv of the training subprocess; None for the evaluation-only kinds (zero-shot, start)."""
    if spec.kind in ("zero_shot", "start"):
        return None
    common = [f"--config.seed={spec.seed}", f"--config.workdir={settings.workdir(spec)}",
              "--config.train.progress=False", f"--config.wandb.run_name={settings.study}-{spec.name}"]
    if spec.kind == "sft":
        steps = [f"--config.sft.num_steps={settings.sft_steps}"] if settings.sft_steps else []
        return [*_toolrl(settings), config_arg(settings), "--config.mode=sft", *common, *steps,
                "--config.eval.every=0", *settings.overrides]
    sft = settings.workdir(RunSpec("sft", seed=settings.sft_seed))
    steps = [f"--config.train.num_steps={settings.grpo_steps}"] if settings.grpo_steps else []
    source = [f"--config.eval.source={settings.eval_sources[0]}"] if settings.eval_sources else []
    return [*_toolrl(settings), config_arg(settings, spec.arm), "--config.mode=grpo", *common,
            f"--config.model.init_checkpoint={sft}", "--config.sft.num_steps=0", *steps,
            f"--config.eval.every={settings.eval_every or START_AND_END}",
            # Step 0 is the SFT checkpoint, already evaluated by the SFT run (greedy decoding: same numbers).
            "--config.eval.at_start=False", *source, *settings.overrides]


def eval_sources_after(spec: RunSpec, settings: StudySettings) -> list[str]:
    """Sources evaluated after the run ("" = the config's eval.source)."""
    sources = list(settings.eval_sources) or [""]
    return sources[1:] if spec.kind == "grpo" else sources


def eval_step_name(source: str) -> str:
    return f"eval-{source_slug(source)}"


def eval_output_dir(spec: RunSpec, settings: StudySettings, source: str) -> Path:
    return settings.run_dir(spec) / "eval" / source_slug(source)


def eval_command(spec: RunSpec, settings: StudySettings, source: str) -> list[str]:
    """argv of one evaluation (``--config.mode=eval``): the run's workdir (its own saved config and
    checkpoint), or for zero-shot a workdir without a run, which evaluates the configured model."""
    seed = settings.sft_seed if spec.seed is None else spec.seed
    name, _, protocol = source.partition("@")  # "eval_100@official": the benchmark's own protocol
    chosen = [f"--config.eval.source={name}"] if name else []
    chosen += [f"--config.eval.protocol={protocol}"] if protocol else []
    return [*_toolrl(settings), config_arg(settings, spec.arm), "--config.mode=eval", f"--config.seed={seed}",
            f"--config.workdir={settings.workdir(spec)}", *chosen,
            f"--config.eval.output_dir={eval_output_dir(spec, settings, source)}", *settings.overrides]


# A command builder: (spec, settings) -> [(step name, argv)]; tests substitute fake commands. Step
# "train" trains; a step "eval-<slug>" must leave <run_dir>/eval/<slug>/eval_results.json.
CommandFn = Callable[[RunSpec, StudySettings], list[tuple[str, list[str]]]]


def default_commands(spec: RunSpec, settings: StudySettings) -> list[tuple[str, list[str]]]:
    steps = []
    train = train_command(spec, settings)
    if train is not None:
        steps.append(("train", train))
    steps += [(eval_step_name(s), eval_command(spec, settings, s)) for s in eval_sources_after(spec, settings)]
    return steps


# ----------------------------------------------------------------------------- files


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


def _mean(values: Iterable[Any]) -> float | None:
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(xs) / len(xs) if xs else None


def train_summary(metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a result keeps of a training log: step counts, reward, degenerate groups, SFT loss."""
    grpo = [r for r in metrics if r.get("phase") == "grpo"]
    sft = [r for r in metrics if r.get("phase") == "sft" and r.get("sft/nll") is not None]
    rewards = [r["reward/mean"] for r in grpo if r.get("reward/mean") is not None]
    return {
        "grpo_steps": len(grpo),
        "sft_steps": len(sft),
        "reward_mean": _mean(rewards),
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
        "degenerate_fraction": _mean(r.get("grpo/degenerate_fraction") for r in grpo),
        "sft_nll_first": sft[0]["sft/nll"] if sft else None,
        "sft_nll_last": sft[-1]["sft/nll"] if sft else None,
        "step_seconds_mean": _mean(r.get("time/step_s") for r in metrics if r.get("phase") in ("sft", "grpo")),
    }


def learning_curves(metrics: Sequence[Mapping[str, Any]]) -> dict[str, list[list[Any]]]:
    """Per-step curves of a run (small; kept in its result file so plots need no run directory):
    ``train``: [step, reward/mean, grpo/degenerate_fraction] per GRPO step; ``eval``: [step,
    turn_accuracy, call_accuracy, success_rate] per evaluation during training (a resumed step: the last)."""
    train: dict[int, list[Any]] = {}
    evals: dict[int, list[Any]] = {}
    for r in metrics:
        step = int(r.get("step", 0))
        if r.get("phase") == "grpo" and r.get("reward/mean") is not None:
            train[step] = [step, r.get("reward/mean"), r.get("grpo/degenerate_fraction")]
        if r.get("eval/turn_accuracy", "absent") != "absent":
            evals[step] = [step] + [r.get(f"eval/{m}") for m in EVAL_METRICS]
    return {"train": [train[k] for k in sorted(train)], "eval": [evals[k] for k in sorted(evals)]}


def reward_rise(train_curve: Sequence[Sequence[Any]]) -> float | None:
    """Mean training reward of a run's second half of GRPO steps minus its first half (the middle
    step of an odd count left out); None under 2 steps. ``train_curve``: rows [step, reward, ...] as
    :func:`learning_curves` keeps them. A noisy but unit-free trend: each step draws new prompts."""
    rewards = [row[1] for row in train_curve if row[1] is not None]
    half = len(rewards) // 2
    if half == 0:
        return None
    return _mean(rewards[-half:]) - _mean(rewards[:half])


def report_overall(report: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics kept of an evaluator report (eval_results.json / eval/step_*.json): the complete-
    history bucket when it has turns (as the trainer logs it), else all turns."""
    metrics = report.get("metrics", {})
    complete = (metrics.get("complete") or {}).get("overall") or {}
    overall = complete if complete.get("turns") else (metrics.get("all") or {}).get("overall") or {}
    free = overall.get("free_calls") or 0
    out = {k: overall.get(k) for k in (*EVAL_METRICS, "turns")}
    out["free_call_match_rate"] = overall.get("free_calls_matched", 0) / free if free else None
    out["errors"] = {k: v for k, v in (overall.get("errors") or {}).items() if v}
    # Per-turn verdicts, so two evaluations of the same turns can be compared turn by turn (McNemar).
    turns = [t for t in report.get("turns") or [] if t.get("complete") or overall is not complete]
    if turns and len(turns) == overall.get("turns"):
        out["verdicts"] = "".join("1" if t.get("correct") else "0" for t in turns)
        ids = "|".join(f"{t.get('sample_id')}#{t.get('turn')}" for t in turns)
        out["turn_ids"] = hashlib.sha1(ids.encode()).hexdigest()[:12]
    return out


def training_evals(metrics: Sequence[Mapping[str, Any]], workdir: Path) -> tuple[dict | None, dict | None]:
    """(start, end) of the evaluations logged during training (metrics.jsonl ``eval/*`` records),
    completed from the step's report (``workdir/eval/step_XXXXXX.json``) when it is there."""
    records = [r for r in metrics if r.get("eval/turn_accuracy", "absent") != "absent"]
    if not records:
        return None, None

    def entry(record: Mapping[str, Any]) -> dict[str, Any]:
        step = int(record.get("step", 0))
        out: dict[str, Any] = {"step": step}
        try:
            out |= report_overall(read_json(workdir / "eval" / f"step_{step:06d}.json"))
        except (OSError, ValueError):
            pass
        out |= {k: record.get(f"eval/{k}") for k in (*EVAL_METRICS, "turns")}
        return out

    starts = [r for r in records if r.get("phase") == "start" or int(r.get("step", 0)) == 0]
    last = max(records, key=lambda r: int(r.get("step", 0)))  # the last of equal steps (a resume redoes steps)
    last = [r for r in records if int(r.get("step", 0)) == int(last.get("step", 0))][-1]
    return (entry(starts[0]) if starts else None), entry(last)


FIT_RE = re.compile(r"fit: (\d+)/(\d+) tasks \((\d+)%\)")


def parse_fit(log_text: str) -> dict[str, Any] | None:
    """The last ``fit: K/N tasks (P%)`` line a training printed."""
    found = FIT_RE.findall(log_text)
    if not found:
        return None
    k, n, _ = found[-1]
    return {"fit": int(k), "total": int(n), "share": int(k) / int(n) if int(n) else None}


KEY_FIELDS = (
    "model.preset", "model.path", "model.dtype", "model.init_checkpoint", "data.train_file", "data.tool_view",
    "data.max_distractors", "data.max_steps_per_sample", "reward.family", "reward.mode", "reward.paper_compat",
    "rollout.mode", "rollout.group_size", "rollout.prompts_per_step", "rollout.max_turns",
    "rollout.max_new_tokens", "rollout.max_seq_len", "grpo.beta", "grpo.aggregation", "grpo.scale_by_std",
    "optim.learning_rate", "sft.num_steps", "sft.learning_rate", "train.num_steps", "eval.source",
    "eval.max_turns", "eval.max_new_tokens", "eval.max_rounds", "eval.every",
)


def dotted(tree: Any, path: str) -> Any:
    """A value by dotted path, e.g. ``eval.eval_100.end.turn_accuracy``; None when missing."""
    node = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


ATTEMPTS_FILE = "attempts.jsonl"


def record_attempt(run_dir: Path, step: str, seconds: float, returncode: int) -> None:
    """Appends one finished or failed subprocess of a run to ``<run_dir>/attempts.jsonl``: a run
    killed and resumed (the trainer restarts from its last checkpoint) then reports all the compute it
    took, not only its last attempt's."""
    with open(run_dir / ATTEMPTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "seconds": round(seconds, 3), "rc": returncode,
                            "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")


def attempt_seconds(run_dir: Path, seconds: Mapping[str, float]) -> tuple[dict[str, float], dict[str, int]]:
    """({step: seconds summed over its attempts}, {step: attempts}) from the run's ledger, for the
    steps of ``seconds`` (this attempt's, used as they are where the ledger lacks a step)."""
    spent = {step: 0.0 for step in seconds}
    count = {step: 0 for step in seconds}
    for row in read_metrics(run_dir / ATTEMPTS_FILE):  # JSON lines, a torn last line skipped
        if row.get("step") in spent:
            spent[row["step"]] += float(row.get("seconds") or 0.0)
            count[row["step"]] += 1
    for step, s in seconds.items():
        if count[step] == 0:
            spent[step], count[step] = float(s), 1
    return spent, count


def collect_evals(run_dir: Path, work: Path, metrics: Sequence[Mapping[str, Any]], run_config: Any,
                  slugs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{source: {start, end}}: the evaluations during training (the config's ``eval.source``), then each
    evaluation after it (``<run_dir>/eval/<slug>/eval_results.json``; another protocol is its own source)."""
    evals: dict[str, dict[str, Any]] = {}
    start, end = training_evals(metrics, work)
    if end is not None:
        evals[dotted(run_config, "eval.source") or "default"] = {"start": start, "end": end}
    for slug in slugs:
        report = read_json(run_dir / "eval" / slug / "eval_results.json")
        source = dotted(report, "settings.source") or slug
        if report.get("protocol", "turn") != "turn":
            source = f"{source}@{report['protocol']}"
        evals.setdefault(source, {"start": None, "end": None})["end"] = report_overall(report)
    return evals


def add_missing_verdicts(settings: StudySettings) -> list[str]:
    """Adds per-turn verdicts (``verdicts``, ``turn_ids``) to the finished result files written before
    they were kept, from the runs' own files under ``runs_dir``; every other number stays as written,
    and an evaluation whose recomputed accuracy or turn count differs from the file is left alone.
    Returns the names of the files changed."""
    changed = []
    for path in sorted(settings.results_path().glob("*.json")):
        result = read_result(path)
        if not result or result.get("schema") != SCHEMA:
            continue
        kind = result.get("kind")
        spec = RunSpec(kind, result.get("arm", "") if kind == "grpo" else "", result.get("seed"))
        run_dir, work = resolve(settings.run_dir(spec)), resolve(settings.workdir(spec))
        if not run_dir.is_dir():
            continue
        try:
            run_config = read_json(work / "config.json")
        except (OSError, ValueError):
            run_config = None
        slugs = [p.parent.name for p in sorted((run_dir / "eval").glob("*/eval_results.json"))]
        fresh = collect_evals(run_dir, work, read_metrics(work / "metrics.jsonl"), run_config, slugs)
        updated = False
        for source, entries in (result.get("eval") or {}).items():
            for when, entry in entries.items():
                new = (fresh.get(source) or {}).get(when)
                if not entry or not new or "verdicts" in entry or "verdicts" not in new:
                    continue
                if new.get("turns") != entry.get("turns") or new.get("turn_accuracy") != entry.get("turn_accuracy"):
                    continue
                entry["verdicts"], entry["turn_ids"] = new["verdicts"], new["turn_ids"]
                updated = True
        if updated:
            write_json_atomic(path, result)
            changed.append(result.get("name", path.stem))
    return changed


def collect_result(spec: RunSpec, settings: StudySettings, argvs: Mapping[str, list[str]],
                   seconds: Mapping[str, float]) -> dict[str, Any]:
    """The small result of a finished run (``<results_dir>/<study>/<run>.json``)::

        schema, study, name, kind ("zero_shot" | "sft" | "grpo"), arm, seed, status ("done"), finished (UTC),
        config: {arg (--config=...), resolved (the run's config.json, under runs_dir), overrides
                 (the --config.* flags of its training command), key (selected resolved fields)},
        steps: last step logged,
        eval: {<source>: {start: M | null, end: M | null}} with M = {step?, turn_accuracy,
               call_accuracy, success_rate, turns, free_call_match_rate?, errors?},
        train: {grpo_steps, sft_steps, reward_mean, reward_first, reward_last, degenerate_fraction,
                sft_nll_first, sft_nll_last, step_seconds_mean},
        curves: {train: [[step, reward_mean, degenerate_fraction]], eval: [[step, turn, call, success]]},
        fit: {fit, total, share} | null,
        wall_seconds: {<step>: s, ..., total: s}  (every attempt of each step, ``attempts.jsonl``),
        attempts: how many times each step was started
    """
    run_dir, work = resolve(settings.run_dir(spec)), resolve(settings.workdir(spec))
    metrics = read_metrics(work / "metrics.jsonl")
    spent, attempts = attempt_seconds(run_dir, seconds)
    try:
        run_config = read_json(work / "config.json")
    except (OSError, ValueError):
        run_config = None
    evals = collect_evals(run_dir, work, metrics, run_config,
                          [step[len("eval-"):] for step in argvs if step.startswith("eval-")])
    try:
        fit = parse_fit((run_dir / "train.log").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        fit = None
    train_argv = argvs.get("train", [])
    curves = learning_curves(metrics)
    if spec.kind == "grpo" and not any(row[0] == 0 for row in curves["eval"]):
        # The run did not evaluate its start (eval.at_start=False): it is the SFT run's checkpoint.
        sft = read_result(resolve(settings.result_file(RunSpec("sft", seed=settings.sft_seed))))
        source = dotted(run_config, "eval.source")
        start_metrics = dotted(sft, f"eval.{source}.end") if sft and source else None
        if start_metrics and curves["eval"]:
            curves["eval"].insert(0, [0] + [start_metrics.get(m) for m in EVAL_METRICS])
            curves["eval_start"] = "the SFT run's evaluation"
    return finite({
        "schema": SCHEMA, "study": settings.study, "name": spec.name, "kind": spec.kind,
        "arm": spec.arm or spec.kind, "seed": spec.seed, "status": "done",
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {
            "arg": config_arg(settings, spec.arm)[len("--config="):],
            "resolved": str(settings.workdir(spec) / "config.json") if run_config is not None else None,
            "overrides": [a for a in train_argv if a.startswith("--config.")]
            or [a for a in next(iter(argvs.values()), []) if a.startswith("--config.")],
            "key": {k: dotted(run_config, k) for k in KEY_FIELDS} if run_config is not None else None,
        },
        "steps": max((int(r.get("step", 0)) for r in metrics), default=0),
        "eval": evals,
        "train": train_summary(metrics),
        "curves": curves,
        "fit": fit,
        "wall_seconds": dict(spent) | {"total": sum(spent.values())},
        "attempts": attempts,
    })


# ----------------------------------------------------------------------------- running


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


def execute(spec: RunSpec, settings: StudySettings, commands: CommandFn = default_commands,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs one spec's subprocesses in order (cwd: the repo root), then writes its result file.

    Each step's output goes to ``<run_dir>/<step>.log``. A failing step raises
    ``subprocess.CalledProcessError`` (a step that leaves no output it must: ``FileNotFoundError``)
    and no result file is written, so a restarted study redoes the run.
    """
    run_dir = resolve(settings.run_dir(spec))
    run_dir.mkdir(parents=True, exist_ok=True)
    env = subprocess_env(settings)
    seconds: dict[str, float] = {}
    argvs: dict[str, list[str]] = {}
    for step, argv in commands(spec, settings):
        argvs[step] = argv
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


def planned_flags(spec: RunSpec, settings: StudySettings) -> list[str]:
    """The --config.* flags of a run's training command (zero-shot: of its first evaluation)."""
    steps = dict(default_commands(spec, settings))
    argv = steps.get("train") or next(iter(steps.values()), [])
    return [a for a in argv if a.startswith("--config.")]


def settings_changed(spec: RunSpec, settings: StudySettings, result: Mapping[str, Any]) -> str:
    """"" when a finished run's recorded flags are the planned ones, else what differs (a finished
    run is never redone: delete its result file to redo it)."""
    recorded = dotted(result, "config.overrides")
    if not isinstance(recorded, list):
        return ""
    planned = planned_flags(spec, settings)
    gone, new = [a for a in recorded if a not in planned], [a for a in planned if a not in recorded]
    return "; ".join(x for x in (f"then {' '.join(gone)}" if gone else "", f"now {' '.join(new)}" if new else "") if x)


def wait_for(spec: RunSpec, settings: StudySettings, lock: RunLock, log: Callable[[str], None],
             poll_s: float = 30.0, timeout_s: float = 6 * 3600) -> bool:
    """Waits while another process holds the run's lock; True when the run then is finished."""
    log(f"  {spec.name}: locked by {lock.owner()}, waiting for it")
    deadline = time.time() + timeout_s
    while lock.path.exists() and not lock.stale() and time.time() < deadline:
        time.sleep(poll_s)
    return is_finished(spec, settings)


# ----------------------------------------------------------------------------- the report


def load_results(results_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every finished run's result file in ``<results_dir>/<study>`` (sorted by name)."""
    out = []
    for path in sorted(resolve(results_path).glob("*.json")):
        if path.name == SUMMARY_FILE:
            continue
        data = read_result(path)
        if data is not None:
            out.append(data)
    return out


def t_critical(df: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value t_{(1+confidence)/2, df}."""
    from scipy import stats

    return float(stats.t.ppf((1 + confidence) / 2, df))


def t_interval(values: Sequence[Any], confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half width, n) of the t-interval mean ± t · s / sqrt(n); half width NaN when n < 2.
    None / NaN values are left out."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(xs) / n
    if n < 2:
        return mean, float("nan"), n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, t_critical(n - 1, confidence) * sd / math.sqrt(n), n


def _stat(values: Sequence[Any], confidence: float) -> dict[str, Any]:
    mean, half, n = t_interval(values, confidence)
    return finite({"mean": mean, "half_width": half, "n": n})


def arm_order(results: Sequence[Mapping[str, Any]], baseline: str = BASELINE_ARM) -> list[str]:
    """GRPO arms present: the baseline first, then ARMS order, then the rest by name."""
    arms = {r["arm"] for r in results if r.get("kind") == "grpo"}
    known = [baseline, *[a for a in ARMS if a != baseline]]
    return [a for a in known if a in arms] + sorted(arms - set(known))


def eval_sources(results: Sequence[Mapping[str, Any]]) -> list[str]:
    found: list[str] = []
    for r in results:
        for source in r.get("eval", {}):
            if source not in found:
                found.append(source)
    return sorted(found, key=lambda s: (s != "eval_100", s))


def _end(result: Mapping[str, Any], source: str, metric: str) -> Any:
    return dotted(result, f"eval.{source}.end.{metric}") if source in result.get("eval", {}) else None


def turn_flips(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """(gained, lost): turns wrong in ``before`` and right in ``after``, and the reverse. None unless
    both evaluations carry per-turn verdicts of the same turns (``verdicts``, ``turn_ids``)."""
    if not before or not after or not before.get("verdicts") or before.get("turn_ids") != after.get("turn_ids"):
        return None
    a, b = before["verdicts"], after.get("verdicts") or ""
    if len(a) != len(b):
        return None
    return sum(x == "0" and y == "1" for x, y in zip(a, b)), sum(x == "1" and y == "0" for x, y in zip(a, b))


def mcnemar_exact_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: under no change, each of the g + l discordant turns is a gain
    with probability 1/2, so p = min(1, 2 · P(Binomial(g + l, 1/2) <= min(g, l)))."""
    n, k = gained + lost, min(gained, lost)
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def start_entry(result: Mapping[str, Any], source: str, sft: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A GRPO run's start on ``source``: its own step-0 evaluation when logged, else the SFT run's end."""
    own = dotted(result, f"eval.{source}.start")
    if own:
        return own
    return dotted(sft, f"eval.{source}.end") if sft is not None and source in sft.get("eval", {}) else None


def _flip_record(seed: Any, flips: tuple[int, int]) -> dict[str, Any]:
    return {"seed": seed, "gained": flips[0], "lost": flips[1], "p": mcnemar_exact_p(*flips)}


POOLED_SEED = "all"


def pooled_flips(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One test over all seeds of a comparison: the per-seed gains and losses summed, with the exact
    McNemar p of the sums (seed ``"all"``). Under no difference every discordant turn of every seed
    is a gain with probability 1/2, independently across seeds (separate runs), so the summed gains
    are Binomial(total discordant, 1/2) whichever seed they came from: the stratified sign test. None
    below two seeds, where it would only repeat the seed's row."""
    if len(records) < 2:
        return None
    gained, lost = sum(r["gained"] for r in records), sum(r["lost"] for r in records)
    return _flip_record(POOLED_SEED, (gained, lost))


# Report rows of the single runs, and the result kinds that fill them: a study that starts from another
# study's SFT run reports its own evaluation of that start ("start") as the SFT start.
SINGLE_KINDS = {"zero_shot": ("zero_shot",), "sft": ("sft", "start")}


def summarize(results: Sequence[Mapping[str, Any]], baseline: str = BASELINE_ARM,
              confidence: float = 0.95) -> dict[str, Any]:
    """The study's numbers from its result files alone.

    Returns::

        {confidence, baseline_arm, runs: [names], arms: [...],
         sources: {<source>: {
             end: {<row>: {<metric>: {mean, half_width, n}}}        rows: zero_shot, sft, each arm
             vs_sft: {<arm>: {<metric>: {...}}}                     per run: end - its SFT start
             vs_baseline: {<arm>: {<metric>: {...}}}                per seed: arm end - baseline end
             flips_vs_sft: {<arm>: [{seed, gained, lost, p}]}       per run, turn by turn (exact McNemar p)
             flips_vs_baseline: {<arm>: [{seed, gained, lost, p}]}  per seed, arm end vs baseline end
             flips_pooled: {flips_vs_sft | flips_vs_baseline: {<arm>: {seed: "all", gained, lost, p}}}
                                                                    summed over seeds (stratified exact test)
         }},
         train: {<row>: {reward_mean, degenerate_fraction, steps, wall_seconds: {mean, half_width, n}},
                 fit: ...}}

    The SFT start of a GRPO run is its own step-0 evaluation when logged, else the SFT run's.
    """
    by_arm: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        if r.get("kind") == "grpo":
            by_arm.setdefault(r["arm"], []).append(r)
    singles = {kind: next((r for r in results if r.get("kind") in SINGLE_KINDS[kind]), None) for kind in SINGLE_KINDS}
    arms = arm_order(results, baseline)
    rows = [k for k in ("zero_shot", "sft") if singles[k] is not None] + arms
    members = {k: [singles[k]] for k in ("zero_shot", "sft") if singles[k] is not None} | {a: by_arm[a] for a in arms}
    sources: dict[str, Any] = {}
    for source in eval_sources(results):
        end = {row: {m: _stat([_end(r, source, m) for r in members[row]], confidence) for m in EVAL_METRICS}
               for row in rows}
        sft = singles["sft"]
        vs_sft, vs_base = {}, {}
        flips_sft: dict[str, list[dict[str, Any]]] = {}
        flips_base: dict[str, list[dict[str, Any]]] = {}
        for arm in arms:
            diffs: dict[str, list[float]] = {m: [] for m in EVAL_METRICS}
            for r in by_arm[arm]:
                for m in EVAL_METRICS:
                    start = dotted(r, f"eval.{source}.start.{m}")
                    if start is None and sft is not None:
                        start = _end(sft, source, m)
                    after = _end(r, source, m)
                    if start is not None and after is not None:
                        diffs[m].append(after - start)
            vs_sft[arm] = {m: _stat(diffs[m], confidence) for m in EVAL_METRICS}
            flips = [(r["seed"], turn_flips(start_entry(r, source, sft), dotted(r, f"eval.{source}.end")))
                     for r in by_arm[arm]]
            flips_sft[arm] = [_flip_record(seed, f) for seed, f in flips if f is not None]
            if arm != baseline and baseline in by_arm:
                base = {r["seed"]: r for r in by_arm[baseline]}
                paired: dict[str, list[float]] = {m: [] for m in EVAL_METRICS}
                for r in by_arm[arm]:
                    if r["seed"] in base:
                        for m in EVAL_METRICS:
                            a, b = _end(r, source, m), _end(base[r["seed"]], source, m)
                            if a is not None and b is not None:
                                paired[m].append(a - b)
                vs_base[arm] = {m: _stat(paired[m], confidence) for m in EVAL_METRICS}
                flips = [(r["seed"], turn_flips(dotted(base[r["seed"]], f"eval.{source}.end"),
                                                dotted(r, f"eval.{source}.end")))
                         for r in by_arm[arm] if r["seed"] in base]
                flips_base[arm] = [_flip_record(seed, f) for seed, f in flips if f is not None]
        pooled = {kind: {arm: p for arm, rows in flips.items() if (p := pooled_flips(rows))}
                  for kind, flips in (("flips_vs_sft", flips_sft), ("flips_vs_baseline", flips_base))}
        sources[source] = {"end": end, "vs_sft": vs_sft, "vs_baseline": vs_base,
                           "flips_vs_sft": flips_sft, "flips_vs_baseline": flips_base, "flips_pooled": pooled}
    train = {}
    for row in rows:
        runs = members[row]
        train[row] = {
            "reward_mean": _stat([dotted(r, "train.reward_mean") for r in runs], confidence),
            "reward_rise": _stat([reward_rise(dotted(r, "curves.train") or []) for r in runs], confidence),
            "degenerate_fraction": _stat([dotted(r, "train.degenerate_fraction") for r in runs], confidence),
            "steps": _stat([r.get("steps") for r in runs], confidence),
            "wall_seconds": _stat([dotted(r, "wall_seconds.total") for r in runs], confidence),
            "fit": _stat([dotted(r, "fit.share") for r in runs], confidence),
            "seeds": sorted(r["seed"] for r in runs if r.get("seed") is not None),
        }
    return {"confidence": confidence, "baseline_arm": baseline, "runs": sorted(r["name"] for r in results),
            "arms": arms, "sources": sources, "train": train}


def fmt_ci(stat: Mapping[str, Any], scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
    """"mean ± half (n=k)"; "mean (n=1)" without an interval; "–" without values."""
    if not stat or not stat.get("n") or stat.get("mean") is None:
        return "–"
    value = f"{scale * stat['mean']:{'+' if sign else ''}.{digits}f}"
    if stat.get("half_width") is None:
        return f"{value} (n={stat['n']})"
    return f"{value} ± {scale * stat['half_width']:.{digits}f} (n={stat['n']})"


ROW_LABELS = {"zero_shot": "zero-shot", "sft": "SFT start"}
METRIC_LABELS = {"turn_accuracy": "turn acc", "call_accuracy": "call acc", "success_rate": "success"}


def markdown_report(summary: Mapping[str, Any], study: str = "") -> str:
    """The study's tables: per eval source the end-of-run metrics (%) and the paired differences
    (percentage points), then training (reward, degenerate groups, fit, wall time)."""
    conf = round(100 * summary["confidence"])
    base = summary["baseline_arm"]
    lines = [f"# Study {study}".rstrip(), "",
             f"{len(summary['runs'])} finished runs. Cells: mean ± {conf}% Student-t half width over seeds (n runs)."]
    if any(pooled for s in summary["sources"].values() for pooled in s.get("flips_pooled", {}).values()):
        lines[-1] += (" Rows 'all seeds, summed': the seeds' turns gained and lost added up, with the exact"
                      " McNemar p of the sums (a sign test stratified by seed).")
    for source, s in summary["sources"].items():
        lines += ["", f"## {source}: end of run (%)", "",
                  "| run | " + " | ".join(f"{METRIC_LABELS[m]} %" for m in EVAL_METRICS) + " |",
                  "|---|" + "---|" * len(EVAL_METRICS)]
        for row, per in s["end"].items():
            lines.append(f"| {ROW_LABELS.get(row, row)} | " + " | ".join(fmt_ci(per[m]) for m in EVAL_METRICS) + " |")
        if s["vs_sft"]:
            cols = [(f"Δ {METRIC_LABELS[m]} vs SFT start", "vs_sft", m) for m in EVAL_METRICS]
            cols += [(f"Δ {METRIC_LABELS[m]} vs {base}", "vs_baseline", m) for m in EVAL_METRICS]
            lines += ["", f"## {source}: paired differences (percentage points)", "",
                      "| arm | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---|" * len(cols)]
            for arm in s["vs_sft"]:
                cells = [fmt_ci(s[kind].get(arm, {}).get(m, {}), sign=True) for _, kind, m in cols]
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        flips = [(kind, title) for kind, title in (("flips_vs_sft", "vs its SFT start"), ("flips_vs_baseline", f"vs {base}, same seed"))
                 if any(s.get(kind, {}).values())]
        for kind, title in flips:
            by_seed = {(f["seed"], arm): f for arm, rows in s[kind].items() for f in rows}
            arms = [a for a in s[kind] if s[kind][a]]
            lines += ["", f"## {source}: turns gained / lost {title} (exact McNemar p)", "",
                      "| seed | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
            for seed in sorted({seed for seed, _ in by_seed}):
                lines.append(f"| {seed} | " + " | ".join(fmt_flips(by_seed.get((seed, a))) for a in arms) + " |")
            pooled = s.get("flips_pooled", {}).get(kind, {})
            if pooled:
                lines.append("| all seeds, summed | " + " | ".join(fmt_flips(pooled.get(a)) for a in arms) + " |")
    lines += ["", "## Training", "",
              "| run | seeds | steps | mean train reward | train reward rise (2nd - 1st half) | degenerate groups % "
              "| fit % | wall min / run |",
              "|---|---|---|---|---|---|---|---|"]
    for row, t in summary["train"].items():
        seeds = ",".join(str(x) for x in t["seeds"]) or "–"
        lines.append(f"| {ROW_LABELS.get(row, row)} | {seeds} | {fmt_ci(t['steps'], 1.0, 0)} | "
                     f"{fmt_ci(t['reward_mean'], 1.0, 3)} | {fmt_ci(t['reward_rise'], 1.0, 3, sign=True)} | "
                     f"{fmt_ci(t['degenerate_fraction'])} | "
                     f"{fmt_ci(t['fit'], 100.0, 0)} | {fmt_ci(t['wall_seconds'], 1 / 60, 1)} |")
    return "\n".join(lines) + "\n"


def readme_markers(study: str) -> tuple[str, str]:
    """The lines around a study's block of tables in a README: one block per study, so the README can
    hold several studies (a finished one and the next stage) each rebuilt from its own result files."""
    return (f"<!-- study-table:begin {study} (python -m experiments.run_ablation --study={study} --report "
            f"--readme=README.md) -->", f"<!-- study-table:end {study} -->")


def compact_table(summary: Mapping[str, Any]) -> str:
    """One markdown table of the study for the README: per run row, for each eval source its turn
    accuracy and call accuracy (%) and the paired turn-accuracy differences to the SFT start and to
    the baseline arm (points), then the mean training reward, the share of degenerate groups and the
    wall minutes per run. Cells as in `markdown_report` (mean ± t half width, n runs)."""
    base = summary["baseline_arm"]
    sources = list(summary["sources"])
    header = ["run", "seeds"]
    for source in sources:
        header += [f"{source} turn acc %", f"{source} call acc %", f"{source} Δ turn vs SFT start",
                   f"{source} Δ turn vs {base}"]
    header += ["mean train reward", "degenerate groups %", "wall min / run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, t in summary["train"].items():
        cells = [ROW_LABELS.get(row, row), ",".join(str(x) for x in t["seeds"]) or "–"]
        for source in sources:
            s = summary["sources"][source]
            end = s["end"].get(row, {})
            cells += [fmt_ci(end.get("turn_accuracy", {})), fmt_ci(end.get("call_accuracy", {})),
                      fmt_ci(s["vs_sft"].get(row, {}).get("turn_accuracy", {}), sign=True),
                      fmt_ci(s["vs_baseline"].get(row, {}).get("turn_accuracy", {}), sign=True)]
        cells += [fmt_ci(t["reward_mean"], 1.0, 3), fmt_ci(t["degenerate_fraction"]),
                  fmt_ci(t["wall_seconds"], 1 / 60, 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fmt_flips(record: Mapping[str, Any] | None) -> str:
    """``+g −l (p 0.125)``, or – without per-turn verdicts."""
    if not record:
        return "–"
    return f"+{record['gained']} −{record['lost']} (p {record['p']:.3g})"


def turns_right_table(results: Sequence[Mapping[str, Any]], source: str, baseline: str = BASELINE_ARM) -> str:
    """Per seed (rows) and arm (columns): held-out turns right / turns scored on ``source`` at the end of
    each run, the raw counts behind the intervals, with the turns gained and lost against the run's
    start where both carry per-turn verdicts; the SFT start's count heads the table."""
    def turns_right(r: Mapping[str, Any] | None) -> str | None:
        turns = _end(r, source, "turns") if r else None
        accuracy = _end(r, source, "turn_accuracy") if r else None
        return f"{round(accuracy * turns)}/{turns}" if turns and accuracy is not None else None

    arms = arm_order(results, baseline)
    sft = next((r for r in results if r.get("kind") in SINGLE_KINDS["sft"]), None)
    cells: dict[tuple[int, str], str] = {}
    for r in results:
        count = turns_right(r) if r.get("kind") == "grpo" else None
        if count:
            flips = turn_flips(start_entry(r, source, sft), dotted(r, f"eval.{source}.end"))
            cells[(r["seed"], r["arm"])] = count + (f" (+{flips[0]} −{flips[1]})" if flips else "")
    start = turns_right(sft) or "–"
    note = "; in brackets the turns gained and lost against the run's start" if any("(+" in c for c in cells.values()) else ""
    lines = [f"Turns right per run on {source} (the SFT start: {start}{note}):", "",
             "| seed | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for seed in sorted({seed for seed, _ in cells}):
        lines.append(f"| {seed} | " + " | ".join(cells.get((seed, arm), "–") for arm in arms) + " |")
    return "\n".join(lines) + "\n"


def readme_tables(summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                  baseline: str = BASELINE_ARM) -> str:
    """What `--report --readme` writes: the compact table, then the turns-right counts per source."""
    tables = [compact_table(summary)] + [turns_right_table(results, source, baseline) for source in summary["sources"]]
    return "\n".join(tables)


def splice_readme(readme: str | os.PathLike, table: str, study: str) -> Path:
    """Replaces the text between ``study``'s markers (:func:`readme_markers`) in ``readme`` with ``table``
    (atomic write).

    Raises ValueError when the markers are missing or out of order: the table has nowhere to go."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    first, last = readme_markers(study)
    begin, end = text.find(first), text.find(last)
    if begin < 0 or end < begin:
        raise ValueError(f"{path} has no '{first}' ... '{last}' block for the study table")
    new = text[:begin + len(first)] + "\n" + table + text[end:]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
    return path


def curve_bands(results: Sequence[Mapping[str, Any]], arm: str, kind: str, column: int,
                confidence: float = 0.95) -> tuple[list[int], list[float], list[float], list[float]]:
    """(steps, mean, low, high) over the seeds of an arm of one curve column (``kind`` "train" or
    "eval"; column 1 = reward / turn accuracy); steps where not every seed has a value are dropped."""
    runs = [r for r in results if r.get("kind") == "grpo" and r.get("arm") == arm]
    by_step: dict[int, list[float]] = {}
    for r in runs:
        for row in dotted(r, f"curves.{kind}") or []:
            if row[column] is not None:
                by_step.setdefault(int(row[0]), []).append(float(row[column]))
    steps = [k for k in sorted(by_step) if len(by_step[k]) == len(runs)]
    mean, low, high = [], [], []
    for k in steps:
        m, half, _ = t_interval(by_step[k], confidence)
        mean.append(m)
        low.append(m - (half or 0.0))
        high.append(m + (half or 0.0))
    return steps, mean, low, high


def plot_curves(results: Sequence[Mapping[str, Any]], out: str | os.PathLike, baseline: str = BASELINE_ARM,
                confidence: float = 0.95) -> Path | None:
    """Learning curves per arm (mean over seeds, t-band): training reward and held-out turn accuracy,
    written as a PNG; None when no run has curves (or matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    arms = arm_order(results, baseline)
    if not any(dotted(r, "curves.train") for r in results):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (kind, column, label) in zip(axes, (("train", 1, "mean training reward"),
                                                ("eval", 1, "held-out turn accuracy"))):
        for arm in arms:
            steps, mean, low, high = curve_bands(results, arm, kind, column, confidence)
            if steps:
                ax.plot(steps, mean, marker="o", label=arm)
                ax.fill_between(steps, low, high, alpha=0.15)
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"mean over seeds, {round(100 * confidence)}% t-band")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_summary(results_path: str | os.PathLike, baseline: str = BASELINE_ARM,
                  confidence: float = 0.95) -> tuple[dict[str, Any], str]:
    """Rebuilds ``summary.json`` and ``report.md`` in ``results_path`` from its result files alone."""
    path = resolve(results_path)
    results = load_results(path)
    summary = summarize(results, baseline, confidence)
    text = markdown_report(summary, path.name)
    write_json_atomic(path / SUMMARY_FILE, summary)
    tmp = path / f".{REPORT_FILE}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path / REPORT_FILE)
    plot_curves(results, path / CURVES_FILE, baseline, confidence)
    return summary, text
