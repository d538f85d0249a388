"""Evaluation on ComplexFuncBench: golden turns, the benchmark protocol, metrics, reference policies.

Entry points: :func:`run_evaluation` (config + policy, what ``toolrl.main`` calls), :func:`evaluate`
(samples + policy + matcher), ``python -m toolrl.eval.score`` (score a predictions JSONL). Two
evaluation games (:mod:`toolrl.games`, ``eval.game``): ``turn`` (teacher-forced scored turns, the
default) and ``benchmark`` (old name ``official``: the benchmark's own free-running runner and rules,
:mod:`toolrl.eval.official`).
"""

import importlib

# The package's names, loaded on first use (PEP 562). Eager imports here made every submodule import the
# evaluator, hence toolrl.games and toolrl.rl.rollout, which import toolrl.eval.protocol back: a cycle
# (rl.rollout -> eval -> evaluator -> games -> rl.rollout) and flax on the path of toolrl.eval.match.
_HOMES = {
    "toolrl.eval.evaluator": ("evaluate", "make_matcher", "run_evaluation"),
    "toolrl.eval.official": ("OfficialRules", "SampleResult", "official_golden_policy", "run_official"),
    "toolrl.eval.policies": ("CORRUPTIONS", "corrupted_policy", "golden_policy", "no_calls_policy"),
    "toolrl.eval.protocol": ("TurnResult", "TurnTask", "build_turn_tasks"),
    "toolrl.eval.report": ("PROTOCOLS", "EvalReport", "Metrics"),
    "toolrl.eval.types": ("FREE_FUNCTIONS", "EvalSample", "GoldenCall", "GoldenTurn", "Policy", "PolicyRequest"),
}
_HOME_OF = {name: (module, name) for module, names in _HOMES.items() for name in names}
_HOME_OF["load_eval_samples"] = ("toolrl.data.golden", "load_samples")


def __getattr__(name: str):
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _HOME_OF[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME_OF))


__all__ = sorted(_HOME_OF)
