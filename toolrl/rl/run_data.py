"""A run's tasks: the training samples as configured, fitted to the budgets, served in a reproducible order.

`load_training_samples` reads ``data.*`` (sources, decontamination, ids, sizes); `prepare_data` makes the
rollout game's tasks from them (`toolrl.games`: a sample per episode, a (sample, scored turn) pair per
turn) and the SFT episodes, each measured by the fit report (`toolrl.rl.fit`); `TaskStream` serves
them step by step, one integer of state.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Generic, Sequence, TypeVar

import jax
import ml_collections
import numpy as np

from toolrl import games
from toolrl.data.golden import GoldenSample, filter_by_calls, load_samples, select_ids
from toolrl.policy.runtime import Policy
from toolrl.rl.fit import FitReport, fit_report, require_fit
from toolrl.rl.rollout import episode_budget

T = TypeVar("T")
log = logging.getLogger("toolrl.rl.trainer")


class TaskStream(Generic[T]):
    """An infinite, reproducible order over tasks; position = number of tasks served so far.

    Epoch e = position // n is a permutation seeded by (seed, e); the state is one integer."""

    def __init__(self, tasks: Sequence[T], seed: int, shuffle: bool = True):
        if not tasks:
            raise ValueError("no tasks to serve")
        self.tasks = list(tasks)
        self.seed = seed
        self.shuffle = shuffle
        self._epoch: tuple[int, np.ndarray] | None = None

    def index(self, position: int) -> int:
        n = len(self.tasks)
        epoch = position // n
        if self._epoch is None or self._epoch[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._epoch = (epoch, order)
        return int(self._epoch[1][position % n])

    def take(self, position: int, count: int) -> list[T]:
        return [self.tasks[self.index(p)] for p in range(position, position + count)]


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class TrainingData:
    """The tasks of a run, filtered by the fit report.

    Attributes:
      rl: GRPO tasks that fit: the rollout game's tasks (`Game.training_tasks`): samples (episode)
        or (sample, scored turn) pairs (turn).
      sft: samples whose whole golden episode fits max_seq_len (SFT trains on it uncut).
      rl_fit, sft_fit: the reports.
    """

    rl: list[Any]
    sft: list[GoldenSample]
    rl_fit: FitReport
    sft_fit: FitReport

    def samples(self) -> list[GoldenSample]:
        """Every sample the run trains on (SFT episodes and GRPO tasks), once each, in first-seen order."""
        seen: dict[str, GoldenSample] = {}
        for task in [*self.sft, *self.rl]:
            sample = task[0] if isinstance(task, tuple) else task
            seen.setdefault(sample.sample_id, sample)
        return list(seen.values())


def build_missing_data(data: ml_collections.ConfigDict) -> None:
    """``data.build_missing``: builds the natural data in ``data.synth_dir`` when it is absent or an older
    version of it (toolrl.data.natural); a dataset stamped for anything else is left for `require_stamp`
    to refuse, never overwritten."""
    from toolrl.data import natural
    from toolrl.data.provenance import ProvenanceError, dataset_exists, read_stamp
    from toolrl.rl.config import ConfigError

    if data.synth_stamp != natural.NATURAL_STAMP:
        raise ConfigError(f"data.build_missing builds only the natural data: data.synth_stamp must be "
                          f"{natural.NATURAL_STAMP!r}, not {data.synth_stamp!r}")
    if not data.synth_dir:
        raise ConfigError("data.build_missing needs data.synth_dir (where to build the natural data)")
    if natural.is_current(data.synth_dir):
        return
    stamp = read_stamp(data.synth_dir) if dataset_exists(data.synth_dir) else None
    if dataset_exists(data.synth_dir) and not str((stamp or {}).get("id", "")).startswith("study:natural"):
        return  # someone else's dataset: require_stamp refuses it in one line
    if jax.process_count() > 1:  # several hosts writing one directory would clash
        raise ProvenanceError(f"no natural data in {data.synth_dir}; build it once before a multi-host run with "
                              "`python -m experiments.study_data`")
    print(f"data: building the decontaminated natural-query data in {data.synth_dir} (once, ~1 min)", flush=True)
    natural.build_natural_data(data.synth_dir, data_dir=data.data_dir or None,
                               builder="toolrl.main (data.build_missing)")


def load_training_samples(config: ml_collections.ConfigDict) -> list[GoldenSample]:
    """The training samples: every source of ``data.train_file`` (comma-separated), by id and size filters,
    without the samples that call a golden call of ``data.decontaminate`` (logged)."""
    d = config.data
    from toolrl.data.provenance import require_stamp

    if d.get("build_missing", False) and any(s.strip().startswith("synthetic:") for s in d.train_file.split(",")):
        build_missing_data(d)
    require_stamp(d)
    sources = [s.strip() for s in d.train_file.split(",") if s.strip()]
    samples = [s for source in sources
               for s in load_samples(source, d.data_dir or None, None, d.max_distractors, d.synth_dir or None)]
    if d.decontaminate:
        from toolrl.data.contamination import drop_overlapping, sample_keys

        test = load_samples(d.decontaminate, d.data_dir or None, synth_dir=d.synth_dir or None)
        samples, dropped = drop_overlapping(samples, sample_keys(test))
        log.info("decontamination: dropped %d of %d training samples calling a golden call of %s",
                 dropped, dropped + len(samples), d.decontaminate)
    try:
        samples = select_ids(samples, d.sample_ids)
    except ValueError as err:  # an unknown id: the user's mistake, one line naming the field
        from toolrl.rl.config import ConfigError

        raise ConfigError(f"data.sample_ids: {err} in data.train_file={d.train_file!r}") from err
    samples = filter_by_calls(samples, d.max_steps_per_sample)
    if d.max_samples:
        if d.get("subset", "first") == "balanced":
            from toolrl.eval.selection import balanced_subset

            samples = balanced_subset(samples, d.max_samples, config.seed)
        else:
            samples = samples[: d.max_samples]
    if not samples:
        raise ValueError(f"no training samples in data.train_file={d.train_file!r} "
                         f"(data.max_steps_per_sample={d.max_steps_per_sample}, data.max_samples={d.max_samples}, "
                         f"data.decontaminate={d.decontaminate!r})")
    return samples


def prepare_data(config: ml_collections.ConfigDict, policy: Policy, samples: Sequence[GoldenSample],
                 render: Callable[[Any], str], check: bool = True) -> TrainingData:
    """Fit reports for the GRPO tasks (the rollout game's, `games.rollout_game`) and the SFT episodes;
    raises ConfigError below data.min_fit."""
    r, view = config.rollout, config.data.tool_view
    game = games.rollout_game(config)
    budgets = dict(max_new_tokens=r.max_new_tokens, max_seq_len=r.max_seq_len)
    tasks = game.training_tasks(samples)
    rl = fit_report(game.fit_what, tasks, lambda task: game.budget(task, policy, view, render),
                    max_turns=r.max_turns, **budgets)
    # SFT episodes: the whole golden episode (with its final answer) within max_seq_len.
    sft = fit_report("SFT episodes", list(samples), lambda s: episode_budget(s, policy, view, render, True),
                     max_turns=10**9, max_new_tokens=10**9, max_seq_len=r.max_seq_len, rollout_rule=False)
    if not config.data.drop_unfit:
        return TrainingData(list(tasks), list(samples), rl, sft)
    if check:
        if config.mode == "grpo" and config.train.num_steps:
            require_fit(rl, config.data.min_fit)
        if config.sft.num_steps:
            require_fit(sft, config.data.min_fit)
    return TrainingData(rl.kept, sft.kept, rl, sft)
