"""Evaluation entry points: ``evaluate`` (samples + policy -> report) and ``run_evaluation`` (config).

``toolrl.main`` calls ``run_evaluation(config, policy)``; the policy is a plain callable (see
:mod:`toolrl.eval.types`), so this module never touches a model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toolrl.eval.judge import JudgeSettings, make_judge
from toolrl.eval.match import CallMatcher, Judge, ResponseLookup, load_exact_match_values
from toolrl.eval.protocol import build_turn_tasks, render_response, run_protocol
from toolrl.eval.report import EvalReport
from toolrl.data.golden import load_samples as load_eval_samples
from toolrl.eval.types import EvalSample, Policy


def make_matcher(data_dir: str | os.PathLike | None = None, lookup: ResponseLookup | None = None,
                 judge: Judge | None = None) -> CallMatcher:
    """A matcher with the benchmark's exact-match parameters."""
    return CallMatcher(load_exact_match_values(data_dir), lookup, judge)


def evaluate(samples: Sequence[EvalSample], policy: Policy, matcher: CallMatcher, *, max_rounds: int = 3,
             batch_size: int = 64, render: Callable[[Any], str] = render_response,
             settings: dict[str, Any] | None = None) -> EvalReport:
    """Run the protocol (:mod:`toolrl.eval.protocol`) on every scored turn of ``samples``."""
    tasks = [task for sample in samples for task in build_turn_tasks(sample)]
    results = run_protocol(tasks, policy, matcher, max_rounds=max_rounds, batch_size=batch_size, render=render)
    return EvalReport.from_results(results, settings)


def run_evaluation(config, policy: Policy) -> EvalReport:
    """Evaluate ``policy`` as ``configs/eval.py`` describes; writes JSON and PNG to ``config.output_dir``.

    ``config`` is the eval ConfigDict (or the ``eval`` field of a larger config).
    """
    from toolrl.env.cache import open_default_cache
    from toolrl.env.booking import ViewPolicy

    data_dir = config.data_dir or None
    samples = load_eval_samples(config.split, data_dir, config.max_samples if config.max_samples > 0 else None)
    lookup = None
    if config.response_equivalence:
        cache = open_default_cache(data_dir, config.cache_path or None)
        lookup = cache.lookup
    judge = make_judge(JudgeSettings(config.judge.enabled, config.judge.endpoint, config.judge.model))
    view = ViewPolicy(max_list_items=config.view.max_list_items or None, max_chars=config.view.max_chars or None)
    settings = {"split": config.split, "max_samples": config.max_samples, "model": config.model_name,
                "checkpoint": config.checkpoint, "max_rounds": config.max_rounds,
                "response_equivalence": config.response_equivalence, "judge": config.judge.enabled}
    report = evaluate(samples, policy, make_matcher(data_dir, lookup, judge), max_rounds=config.max_rounds,
                      batch_size=config.batch_size, render=view.render, settings=settings)
    if config.output_dir:
        out = Path(config.output_dir)
        report.save_json(out / "eval_results.json")
        report.plot(out / "eval_by_domain.png")
    return report
