"""Optional LLM judge: the last resort of call matching (ComplexEval's "LLM-based match").

Off by default. Only the interface is here: no HTTP client ships with toolrl (the evaluation machines
have no network). A judge is any ``Callable[[PredictedCall, GoldenCall], bool]``; pass one to
:func:`toolrl.eval.evaluator.evaluate`, or enable the config flag with an endpoint once a client exists.
"""

from __future__ import annotations

import dataclasses

from toolrl.eval.match import Judge


class JudgeConfigError(ValueError):
    """The judge is enabled but cannot be built."""


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """Attributes: enabled (use a judge at all); endpoint (URL of an OpenAI-compatible server); model."""

    enabled: bool = False
    endpoint: str = ""
    model: str = ""


def make_judge(settings: JudgeSettings) -> Judge | None:
    """None when disabled; a clear error when enabled without an endpoint (or, for now, with one)."""
    if not settings.enabled:
        return None
    if not settings.endpoint:
        raise JudgeConfigError(
            "the LLM judge is enabled (config.judge.enabled=True) but config.judge.endpoint is empty; "
            "set an endpoint or disable the judge")
    raise JudgeConfigError(
        f"no LLM judge client is implemented for endpoint {settings.endpoint!r}; pass a judge callable "
        "to toolrl.eval.evaluator.evaluate(..., judge=...) instead")
