"""What a study is: its runs, its settings, where their files go and the commands that make them.

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

This module only builds names, paths and argv lists; nothing here runs or reads a run.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from experiments.study.files import dotted

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
      eval_every: --config.eval.every of the GRPO runs (0 = at the start and the end only; -1 = no
        evaluation in the training process: every source in its own evaluation process after training,
        so an evaluation's memory never adds to the training state's).
      eval_sources: eval sources; the first is evaluated during training, all after the SFT start
        and the zero-shot model, the others after each GRPO run ((): the config's eval.source only).
      overrides: extra ``--config.x=y`` flags for every subprocess (last, so they win).
      zero_shot: also evaluate the untrained model.
      runs_dir, results_dir: where heavy artefacts / the small result files go (relative = to the repo root).
      sft_study: start every GRPO run from this other study's SFT run (trained and evaluated there;
        e.g. pilots sharing the study's start) instead of training one ("" = this study's own).
      arm_seeds: (arm, n) pairs: that arm runs only the first n of ``seeds`` (a design with fewer seeds
        for some arms, e.g. the natural study's 3 for atomic and orchestration against 5 for the rest;
        () = every arm every seed).
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
    arm_seeds: tuple[tuple[str, int], ...] = ()
    python: str = sys.executable
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_overrides(self.overrides)
        slugs = [arm_slug(a) for a in self.arms]
        if len(set(slugs)) != len(slugs) or any(s in ("", "zero_shot", "sft", "sft_start") for s in slugs):
            raise ValueError(f"arms must be distinct, non-empty and not 'zero_shot' / 'sft' / 'sft_start': {list(self.arms)}")
        if self.eval_every < -1:
            raise ValueError(f"eval_every must be >= -1 (-1: evaluate only after training), got {self.eval_every}")
        unknown = [arm for arm, n in self.arm_seeds if arm_slug(arm) not in slugs or int(n) < 1]
        if unknown:
            raise ValueError(f"arm_seeds {unknown} name no arm of {list(self.arms)} or give fewer than 1 seed")
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
    limit = {arm_slug(arm): int(n) for arm, n in settings.arm_seeds}
    for index, seed in enumerate(settings.seeds):
        runs += [RunSpec("grpo", arm, int(seed)) for arm in settings.arms if index < limit.get(arm_slug(arm), index + 1)]
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
            f"--config.eval.every={0 if settings.eval_every < 0 else settings.eval_every or START_AND_END}",
            # Step 0 is the SFT checkpoint, already evaluated by the SFT run (greedy decoding: same numbers).
            "--config.eval.at_start=False", *source, *settings.overrides]


def eval_sources_after(spec: RunSpec, settings: StudySettings) -> list[str]:
    """Sources evaluated after the run ("" = the config's eval.source)."""
    sources = list(settings.eval_sources) or [""]
    return sources[1:] if spec.kind == "grpo" and settings.eval_every >= 0 else sources


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
    chosen += [f"--config.eval.game={protocol}"] if protocol else []
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


# ----------------------------------------------------------------------------- a finished run's flags


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
