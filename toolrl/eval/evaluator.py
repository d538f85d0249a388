"""Evaluation entry points: ``evaluate`` (samples + any policy callable -> report) and
:class:`Evaluation` / ``run_evaluation`` (the training config's ``eval`` section + a
:class:`toolrl.policy.runtime.Policy`, which renders the same prompts as training).

Two evaluation games (``eval.game``, :mod:`toolrl.games`): ``turn`` (the default; teacher-forced
scored turns, :mod:`toolrl.eval.protocol`, the game training's turn rollouts play) and ``benchmark``
(old name ``official``: the benchmark's own free-running runner and rules, :mod:`toolrl.eval.official`,
numbers comparable with published ones).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toolrl import games
from toolrl.data.golden import load_samples, select_ids
from toolrl.env.booking import SALIENT_KEYS, ViewPolicy
from toolrl.env.cache import open_default_cache
from toolrl.eval.judge import JudgeSettings, make_judge
from toolrl.eval.match import CallMatcher, Judge, ResponseLookup, load_exact_match_values
from toolrl.eval.progress import EvalProgress
from toolrl.eval.protocol import build_turn_tasks, render_response
from toolrl.eval.report import EvalReport
from toolrl.eval.selection import novel_tasks, stratified_subset, training_turn_sets, turn_id
from toolrl.eval.types import EvalSample, Policy
from toolrl.rl.run_data import load_training_samples


def make_matcher(data_dir: str | os.PathLike | None = None, lookup: ResponseLookup | None = None,
                 judge: Judge | None = None) -> CallMatcher:
    """A matcher with the benchmark's exact-match parameters."""
    return CallMatcher(load_exact_match_values(data_dir), lookup, judge)


def config_matcher(config: Any, judge: Judge | None = None) -> CallMatcher:
    """The matcher ``config.eval`` asks for: the benchmark's exact-match parameters, the response cache
    when ``eval.response_equivalence`` (``eval.cache_path``), and ``judge``. The evaluator and a rollout
    game judged by the matcher (the trainer's turn game, without the judge) build it here."""
    e, data_dir = config.eval, config.data.data_dir or None
    lookup = open_default_cache(data_dir, e.cache_path or None).lookup if e.response_equivalence else None
    return make_matcher(data_dir, lookup, judge)


def check_protocol(protocol: str) -> str:
    """The registered evaluation game `protocol` names (an old name maps onto it); ValueError otherwise."""
    return games.get(protocol, field="eval.game (eval.protocol)", evaluable=True).name


def evaluate(samples: Sequence[EvalSample], policy: Policy, matcher: CallMatcher, *, max_rounds: int = 3,
             batch_size: int = 64, render: Callable[[Any], str] = render_response,
             settings: dict[str, Any] | None = None, protocol: str = "turn", game: str = "") -> EvalReport:
    """Play an evaluation game on ``samples`` (``game``, or its old keyword ``protocol``): ``turn``
    (:mod:`toolrl.eval.protocol`, every scored turn after its golden history) or ``benchmark`` / its
    old name ``official`` (:mod:`toolrl.eval.official`, each sample free-running with the benchmark's
    rules; ``matcher`` gives its exact parameters, cache and judge)."""
    chosen = games.get(game or protocol, field="eval.game (eval.protocol)", evaluable=True)
    tasks = [task for sample in samples for task in build_turn_tasks(sample)]
    units = chosen.eval_units(samples, tasks, False)
    results = chosen.evaluate(units, policy, matcher, max_rounds=max_rounds, batch_size=batch_size, render=render)
    return EvalReport.from_results(results, settings, protocol=chosen.name)


def response_view(config: Any):
    """The view policy for tool responses in prompts: the training config's (data.response_*)."""
    keep = config.data.get("response_keep", "all")  # runs saved before the field existed: the plain cut
    return ViewPolicy(max_list_items=config.data.response_max_list_items or None,
                      max_chars=config.data.response_max_chars or None,
                      keep_keys=SALIENT_KEYS if keep == "salient" else None)


class Evaluation:
    """The scored turns, matcher and view of ``config.eval``, prepared once and run on any policy.

    Prompts use the training view (``data.tool_view``, ``data.response_*``, ``data.max_distractors``), so
    a checkpoint is evaluated on the prompts it was trained on. ``eval.max_turns`` keeps N scored turns
    whose golden history is complete (a fixed subset for evaluation during training); a game played on
    whole samples (``eval.game="benchmark"``) runs the samples of those turns, free-running.
    """

    def __init__(self, config: Any, samples: Sequence[Any] | None = None, max_turns: int | None = None):
        """``samples`` (with ``max_turns``) evaluates those samples' scored turns instead of ``eval.source``'s,
        e.g. the run's own training tasks (``eval.train_turns``); ``eval.heldout`` does not apply to them."""
        e = config.eval
        data_dir = config.data.data_dir or None
        self.config = config
        self.source = str(e.source) if samples is None else "training tasks"
        if samples is None:
            self.samples = select_ids(load_samples(e.source, data_dir, e.max_samples or None,
                                                   config.data.max_distractors, config.data.synth_dir or None),
                                      e.sample_ids)
        else:
            self.samples = list(samples)
        self.max_turns = int(e.max_turns if max_turns is None else max_turns)
        tasks = [task for sample in self.samples for task in build_turn_tasks(sample)]
        heldout = str(e.get("heldout", "all")) if samples is None else "all"
        self.heldout = heldout
        if heldout == "novel" or e.get("complete_only", False) or self.max_turns:
            tasks = [t for t in tasks if t.complete]
        if heldout == "novel":
            tasks = novel_tasks(tasks, training_turn_sets(load_training_samples(config)))
        if self.max_turns:
            if e.get("subset", "stratified") == "stratified":
                tasks = stratified_subset(tasks, self.max_turns, int(e.get("subset_seed", 0)))
            else:  # "first": the first N in source order (runs saved before stratified subsets)
                tasks = tasks[: self.max_turns]
        if not tasks:
            raise ValueError(f"eval.source={self.source!r} (max_samples={e.max_samples}, heldout={heldout!r}) gives "
                             f"no scored turn")
        self.tasks = tasks
        self.game = games.eval_game(config)
        self.protocol = self.game.report_name  # what the report and its settings call the game
        self.units = self.game.eval_units(self.samples, tasks, bool(self.max_turns))
        if self.game.unit == "samples":
            self.samples = self.units
        self.matcher = config_matcher(config, make_judge(JudgeSettings.from_config(e.judge)))
        self.render = response_view(config).render
        self.max_new_tokens = int(e.max_new_tokens or config.rollout.max_new_tokens)

    def settings(self, policy_name: str = "") -> dict[str, Any]:
        c = self.config
        return {"protocol": self.protocol, "source": self.source, "max_samples": c.eval.max_samples,
                "max_turns": self.max_turns, "turns": len(self.tasks), "samples": len(self.samples),
                "model": policy_name, "max_rounds": c.eval.max_rounds,
                "max_new_tokens": self.max_new_tokens, "tool_view": c.data.tool_view,
                "response_max_chars": c.data.response_max_chars,
                "response_max_list_items": c.data.response_max_list_items,
                "response_equivalence": c.eval.response_equivalence, "judge": c.eval.judge.enabled,
                "heldout": self.heldout, "subset": str(c.eval.get("subset", "stratified")),
                "subset_seed": int(c.eval.get("subset_seed", 0)),
                "turn_ids": [turn_id(t) for t in self.tasks]}

    def run(self, policy: Any, progress: EvalProgress | None = None) -> EvalReport:
        """Evaluate a :class:`toolrl.policy.runtime.Policy` (greedy, the training prompts), or any
        evaluator policy callable (`toolrl.eval.types.Policy`, e.g. the golden or a scripted one).

        ``progress`` hears how many turns (samples) are done after every generate call; by default a
        line every 30 s when stdout is not a terminal (a log file), nothing on a terminal."""
        e = self.config.eval
        if progress is None:
            progress = EvalProgress(f"eval {self.source} [{self.game.name}]", self.game.unit)
        batched = policy
        if hasattr(policy, "as_eval_policy"):
            batched = policy.as_eval_policy(tool_view=self.config.data.tool_view, max_new_tokens=self.max_new_tokens,
                                            batch_size=e.batch_size, pad_multiple=self.config.rollout.pad_multiple)
        try:
            results = self.game.evaluate(self.units, batched, self.matcher, max_rounds=e.max_rounds,
                                         batch_size=e.batch_size, render=self.render, progress=progress)
        finally:
            progress.close()
        settings = self.settings(getattr(policy, "name", type(policy).__name__))
        if hasattr(batched, "stats"):
            settings["policy_stats"] = batched.stats.to_json()
        if isinstance(getattr(self.matcher.judge, "stats", None), dict):
            settings["judge_stats"] = dict(self.matcher.judge.stats)
        return EvalReport.from_results(results, settings, protocol=self.protocol)


def run_evaluation(config: Any, policy: Any, output_dir: str | os.PathLike | None = None,
                   bar: bool = False) -> EvalReport:
    """Evaluate ``policy`` as ``config.eval`` says; writes eval_results.json and eval_by_domain.png to
    ``output_dir`` (None: nowhere). ``bar``: a progress bar on a terminal (lines in a log file either way)."""
    evaluation = Evaluation(config)
    label = f"eval {evaluation.source} [{evaluation.game.name}]"
    report = evaluation.run(policy, EvalProgress(label, evaluation.game.unit, bar=bar))
    if output_dir:
        out = Path(output_dir)
        report.save_json(out / "eval_results.json")
        report.plot(out / "eval_by_domain.png")
    return report
