"""Evaluation on ComplexFuncBench: golden turns, the benchmark protocol, metrics, reference policies.

Entry points: :func:`run_evaluation` (config + policy, what ``toolrl.main`` calls), :func:`evaluate`
(samples + policy + matcher), ``python -m toolrl.eval.score`` (score a predictions JSONL). Two
evaluation games (:mod:`toolrl.games`, ``eval.game``): ``turn`` (teacher-forced scored turns, the
default) and ``benchmark`` (old name ``official``: the benchmark's own free-running runner and rules,
:mod:`toolrl.eval.official`).
"""

from toolrl.eval.evaluator import evaluate, make_matcher, run_evaluation
from toolrl.eval.official import OfficialRules, SampleResult, official_golden_policy, run_official
from toolrl.eval.policies import CORRUPTIONS, corrupted_policy, golden_policy, no_calls_policy
from toolrl.eval.protocol import TurnResult, TurnTask, build_turn_tasks
from toolrl.eval.report import PROTOCOLS, EvalReport, Metrics
from toolrl.data.golden import load_samples as load_eval_samples
from toolrl.eval.types import FREE_FUNCTIONS, EvalSample, GoldenCall, GoldenTurn, Policy, PolicyRequest

__all__ = [
    "CORRUPTIONS", "FREE_FUNCTIONS", "PROTOCOLS", "EvalReport", "EvalSample", "GoldenCall", "GoldenTurn", "Metrics",
    "OfficialRules", "Policy", "PolicyRequest", "SampleResult", "TurnResult", "TurnTask", "build_turn_tasks",
    "corrupted_policy", "evaluate", "golden_policy", "load_eval_samples", "make_matcher", "no_calls_policy",
    "official_golden_policy", "run_evaluation", "run_official",
]
