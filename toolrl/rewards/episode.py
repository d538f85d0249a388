"""Rollout text + tool responses -> `EpisodeInput`: the public way from what a model wrote to what
the episode rewards score.

    ep = episode_from_text(assistant_texts, BookingEnvironment(...), sample)      # execute
    ep = episode_from_text(text, [resp0, resp1], sample.steps)                    # given responses
    out = score_episodes("paper", "graduated", [ep])
    out.levels["name"], out.call_levels["score"], out.error_codes

With ``paper_compat="official"`` the text is read as the authors' scorer reads it
(`parse.parse_tool_calls_official`) and responses are attached as it attaches them (see
`episode_from_text`); score that episode with the same setting.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, Sequence

from toolrl.rewards.parse import ParseError, ToolCall, parse_tool_calls, parse_tool_calls_official
from toolrl.rewards.types import EpisodeInput, GoldenStep, PredictedCall, check_paper_compat


class Executor(Protocol):
    """Anything that answers a call given as ``{"name": ..., "arguments": {...}}`` (e.g.
    `toolrl.env.booking.BookingEnvironment`)."""

    def execute(self, call: Any) -> Any: ...


_NOT_GIVEN = object()


def golden_steps(golden: Any) -> tuple[GoldenStep, ...]:
    """Golden steps from GoldenSteps, step-like objects (``function``, ``arguments``,
    ``depends_on``, e.g. `toolrl.data.traces.TraceStep`), dicts with those keys, or an object with
    a ``steps`` attribute (e.g. `toolrl.data.traces.TraceSample`)."""
    if hasattr(golden, "steps"):
        golden = golden.steps
    if isinstance(golden, tuple) and all(isinstance(s, GoldenStep) for s in golden):
        return golden  # the same object: the encoder encodes each distinct steps tuple once
    out = []
    for s in golden:
        if isinstance(s, GoldenStep):
            out.append(s)
        elif isinstance(s, dict):
            out.append(GoldenStep(s["function"], dict(s.get("arguments") or {}), tuple(s.get("depends_on") or ())))
        else:
            out.append(GoldenStep(s.function, dict(s.arguments), tuple(s.depends_on)))
    return tuple(out)


def _signature(call: ToolCall) -> str:
    """The official scorer's key for pairing calls with responses: name and sorted argument items."""
    try:
        return call.name + "\x00" + repr(sorted(call.arguments.items()))
    except (TypeError, ValueError, RecursionError):  # never raises; arguments are size-limited JSON
        return call.name + "\x00" + str(id(call))


def _execute(env: Executor, call: ToolCall) -> Any:
    try:
        return env.execute({"name": call.name, "arguments": call.arguments})
    except Exception as err:  # noqa: BLE001 - a broken environment must not crash the reward
        return {"error": f"environment raised {type(err).__name__}: {err}"}


def episode_from_text(
    text: str | Sequence[str],
    responses: Sequence[Any] | Executor | None,
    golden: Any,
    paper_compat: str = "ours",
) -> EpisodeInput:
    """Parses a rollout's assistant text(s) into calls, attaches the responses, builds the episode.

    Args:
      text: one assistant message, or the assistant messages of the rollout in order (their calls
        are concatenated).
      responses: either an `Executor` (``.execute(call_dict)``; each well-formed call is executed
        in order), or a sequence with one response per well-formed call in order (None: that call
        was not executed; a shorter sequence leaves the remaining calls unexecuted), or None (no
        call executed).
      golden: the sample's golden steps (see `golden_steps`).
      paper_compat: "ours" reads the text with `parse.parse_tool_calls` (every malformed block is an
        unparseable call that keeps its position); "official" with
        `parse.parse_tool_calls_official`, and gives calls with the same name and arguments the
        responses of that group in order (the official scorer pairs by that signature, so a call
        without a response takes the next unused response of an identical call).

    Returns:
      `EpisodeInput` with one `PredictedCall` per block (malformed ones `format_ok=False` with the
      parse reason in `format_error`).

    Raises:
      ValueError: an unknown `paper_compat`, or more responses than well-formed calls.
    """
    check_paper_compat(paper_compat)
    texts = [text] if isinstance(text, str) else list(text)
    parse = parse_tool_calls_official if paper_compat == "official" else parse_tool_calls
    blocks: list[ToolCall | ParseError] = [b for t in texts for b in parse(t).blocks]
    good = [b for b in blocks if isinstance(b, ToolCall)]

    if responses is None:
        answers: list[Any] = [_NOT_GIVEN] * len(good)
    elif hasattr(responses, "execute"):
        answers = [_execute(responses, c) for c in good]  # type: ignore[arg-type]
    else:
        given = list(responses)  # type: ignore[arg-type]
        if len(given) > len(good):
            raise ValueError(f"{len(given)} responses for {len(good)} well-formed tool calls")
        answers = [_NOT_GIVEN if r is None else r for r in given] + [_NOT_GIVEN] * (len(good) - len(given))

    if paper_compat == "official":
        pools: dict[str, list[Any]] = {}
        for c, r in zip(good, answers):
            if r is not _NOT_GIVEN:
                pools.setdefault(_signature(c), []).append(r)
        taken: dict[str, int] = {}
        reassigned = []
        for c in good:
            key = _signature(c)
            k = taken.get(key, 0)
            pool = pools.get(key, [])
            reassigned.append(pool[k] if k < len(pool) else _NOT_GIVEN)
            taken[key] = k + 1
        answers = reassigned

    it = iter(answers)
    calls = []
    for b in blocks:
        if isinstance(b, ParseError):
            calls.append(PredictedCall.unparseable(b.reason))
            continue
        r = next(it)
        executed = r is not _NOT_GIVEN
        calls.append(PredictedCall(b.name, b.arguments, executed=executed, response=r if executed else None))
    return EpisodeInput(tuple(calls), golden_steps(golden))


def episodes_from_texts(
    texts: Iterable[str | Sequence[str]], responses: Iterable[Any], goldens: Iterable[Any], paper_compat: str = "ours"
) -> list[EpisodeInput]:
    """`episode_from_text` over a batch (zipped)."""
    return [episode_from_text(t, r, g, paper_compat) for t, r, g in zip(texts, responses, goldens)]
