"""Data classes shared by the reward reference, the encoder and the kernels.

The reward sees a rollout as plain data: what the model called (in order), what the environment
answered, and the golden steps of the sample.  Nothing here knows about text or tokens; see
`toolrl.rewards.parse` for text -> calls.

Conventions
- A *predicted call* that could not be parsed (malformed `<tool_call>` block) is still a call of the
  rollout: it keeps its position, has `format_ok=False` (and a `format_error` reason), never matches
  a golden step and scores 0.  This way "the model emitted garbage" costs reward instead of
  silently vanishing.  (`paper` with ``paper_compat="official"`` drops the ones whose JSON did not
  parse, as the authors' scorer does; see `OFFICIAL_COUNTED_REASONS`.)
- Limits: arguments nested deeper than `MAX_ARGUMENT_DEPTH`, or larger than the other limits below,
  make a call a format failure (`argument_problem`: "too_deep" / "too_large") in every family, the
  reference and the kernels alike, so that no model output can make the reward raise.
- Semantic success of a response (docs/design.md, "Rewards"): the call was executed and the
  response is a non-empty dict without an ``error`` key whose ``status`` is not ``False``.
  Deliberate extension: a non-empty *list* also counts as a success, because several real APIs of
  the benchmark answer with a bare list (e.g. ``Search_Flight_Location``: 67 responses in
  ``bfcl_training_3_per_workflow.json``); without it the golden rollouts of those samples could not
  score 1.  Anything else (``""``, ``None``, a string such as an error message, a number) fails.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping


class ErrorCode(enum.IntEnum):
    """Which check failed first for one predicted call (BFCL-style verdict taxonomy).

    Checks run in this order and the first failure is reported; OK means every check passed.
    PADDING marks encoded slots that hold no call.
    """

    PADDING = -1
    OK = 0
    FORMAT = 1  # the tool-call block did not parse (bad JSON, no name, arguments not a dict).
    WRONG_NAME = 2  # no golden step (of this turn) has this function name.
    REPEATED = 3  # the name exists, but every golden step with it was already matched.
    MISSING_KEY = 4  # a golden argument key is absent.
    EXTRA_KEY = 5  # an argument key the golden call does not have.
    WRONG_TYPE = 6  # a shared key whose value type differs (int and float agree).
    WRONG_VALUE = 7  # a shared key whose value differs after normalisation.
    DEPENDENCY_VIOLATION = 8  # right call, but a step it depends on was not matched before it.
    EXEC_FAILED = 9  # not executed, or the response is not a semantic success.
    PREMATURE = 10  # (turn) names a golden call of a later turn whose dependencies are not done.


@dataclasses.dataclass(frozen=True)
class PredictedCall:
    """One tool call of the model, in rollout order: the one predicted-call type of the project.

    Rewards read all of it; the evaluator (``toolrl.eval.match``, ``official_rules``) reads only the
    name and the arguments (its calls are parsed, never executed, so the other fields keep their
    defaults there).

    Attributes:
      name: function name ("" when the block did not parse).
      arguments: argument dict ({} when the block did not parse).
      executed: whether the environment executed it (False for unparseable calls).
      response: the environment's response (any JSON value; None when not executed).
      format_ok: False for an unparseable tool-call block.
    """

    name: str
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    executed: bool = True
    response: Any = None
    format_ok: bool = True
    format_error: str = ""

    @staticmethod
    def unparseable(reason: str = "unparseable") -> "PredictedCall":
        """A placeholder for a malformed tool-call block (keeps its position in the rollout).

        Args:
          reason: why it did not parse (a `toolrl.rewards.parse.ParseError` reason such as
            "invalid_json", "too_deep", "not_an_object"); decides whether the official scorer
            counts it (`OFFICIAL_COUNTED_REASONS`).
        """
        return PredictedCall(name="", arguments={}, executed=False, response=None, format_ok=False, format_error=reason)

    def as_dict(self) -> dict[str, Any]:
        """The call as the chat format and the benchmark write it: ``{"name": ..., "arguments": ...}``."""
        return {"name": self.name, "arguments": self.arguments}


@dataclasses.dataclass(frozen=True)
class GoldenStep:
    """One golden call of a sample.

    Attributes:
      function: function name.
      arguments: golden argument dict.
      depends_on: indices of earlier golden steps whose responses this step needs.
    """

    function: str
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    depends_on: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class EpisodeInput:
    """A whole rollout against one sample (input of the `paper` and `episode` families)."""

    calls: tuple[PredictedCall, ...]
    steps: tuple[GoldenStep, ...]


@dataclasses.dataclass(frozen=True)
class TurnInput:
    """One assistant turn (input of the `turn` family).

    Attributes:
      calls: the model's calls in this turn (unparseable ones included, `format_ok=False`).
      steps: all golden steps of the sample (indices below refer to this tuple).
      turn: indices of the golden calls of this turn.
      later: indices of the golden calls of later turns.
      done: indices of golden steps already done before this turn (the golden history).
      optional: indices in `turn` the turn may skip (the evaluator's optional free lookups): such a
        call is matched only by a predicted call of its name and counts in |G| only when matched.
    """

    calls: tuple[PredictedCall, ...]
    steps: tuple[GoldenStep, ...]
    turn: tuple[int, ...]
    later: tuple[int, ...] = ()
    done: frozenset[int] = frozenset()
    optional: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class RewardWeights:
    """Weights of the graduated reward (defaults of docs/design.md, "Rewards").

    Attributes:
      atomic: weight of R_atomic in the `graduated` mode (paper: 0.5).
      orchestration: weight of R_orch in the `graduated` mode (paper: 0.5).
      ast: (name, keys·types, values) weights of the AST score of `paper`/`episode` (paper:
        0.33/0.33/0.34, summing to exactly 1.0 in float32 and float64).
      turn: (format, name, keys F1, values) weights of s(p, g) of `turn` (0.1/0.2/0.3/0.4).
    """

    atomic: float = 0.5
    orchestration: float = 0.5
    ast: tuple[float, float, float] = (0.33, 0.33, 0.34)
    turn: tuple[float, float, float, float] = (0.1, 0.2, 0.3, 0.4)


FAMILIES = ("paper", "episode", "turn")
MODES = ("graduated", "atomic", "orchestration", "binary")
# Settings of the `paper` family (docs/paper_reward_differences.md): "ours" is the official formula
# with documented, named fixes; "official" reproduces the authors' `compute_score` exactly.
PAPER_COMPAT = ("ours", "official")

# Parse-error reasons of a tool-call block whose JSON parsed (so the official scorer keeps it in its
# list of calls, where it scores 0): a JSON value that is not an object, or an object without a
# string name.  Every other unparseable block is dropped by the official scorer.
OFFICIAL_COUNTED_REASONS = frozenset({"not_an_object", "missing_name"})

# Limits on a call's arguments (see `argument_problem`).
MAX_ARGUMENT_DEPTH = 64  # nesting of lists/dicts inside the arguments dict (which is depth 1)
MAX_ARGUMENT_NODES = 20_000  # values (containers and scalars) in the arguments
MAX_ARGUMENT_CHARS = 200_000  # characters over all strings and keys
MAX_INT_BITS = 14_000  # |int| < 2**14000 (about 4,200 digits: Python's int <-> str limit is 4,300)


def check_paper_compat(paper_compat: str) -> None:
    """ValueError unless `paper_compat` is one of `PAPER_COMPAT`."""
    if paper_compat not in PAPER_COMPAT:
        raise ValueError(f"unknown paper_compat {paper_compat!r}; expected one of {', '.join(PAPER_COMPAT)}")


def argument_problem(arguments: Any) -> str:
    """"" when a call's arguments are within the limits, else "too_deep" or "too_large".

    Iterative (no recursion), linear in the size of the arguments, never raises.  Flat dicts of
    short scalars (the common case) take the fast path.
    """
    if not isinstance(arguments, Mapping):
        return ""
    if len(arguments) < 64:  # fast path: a small dict of short strings and ordinary scalars
        for v in arguments.values():
            t = type(v)
            if not (
                (t is str and len(v) < 4096) or t is float or t is bool or v is None or (t is int and -(1 << 62) < v < 1 << 62)
            ):
                break
        else:
            if all(type(k) is str and len(k) < 4096 for k in arguments):
                return ""
    chars, nodes = 0, 1  # nodes: values pushed so far (containers and scalars)
    stack: list[tuple[Any, int]] = [(arguments, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, bool) or value is None or isinstance(value, float):
            pass
        elif isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                return "too_large"
        elif isinstance(value, (Mapping, list, tuple)):
            if depth > MAX_ARGUMENT_DEPTH:
                return "too_deep"
            nodes += len(value)
            if nodes > MAX_ARGUMENT_NODES:
                return "too_large"
            if isinstance(value, Mapping):
                for k, v in value.items():
                    chars += len(k) if isinstance(k, str) else 0
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in value)
        if chars > MAX_ARGUMENT_CHARS:
            return "too_large"
    return ""


def checked_call(call: PredictedCall) -> PredictedCall:
    """The call, or an unparseable placeholder with the reason when its arguments break a limit."""
    if not call.format_ok:
        return call
    problem = argument_problem(call.arguments)
    return PredictedCall.unparseable(problem) if problem else call


def validate_depends_on(steps: "tuple[GoldenStep, ...] | list[GoldenStep]", sample: int | None = None) -> None:
    """The one validation of `GoldenStep.depends_on`, used by the encoder, the references and
    `score_*`: every dependency must be an int index of an EARLIER step of the same sample.

    Raises:
      ValueError naming the sample index (when given), the step and the offending dependency
      (self-dependency, forward dependency, out of range, or not an int).
    """
    where = f"sample {sample}: " if sample is not None else ""
    n = len(steps)
    for j, step in enumerate(steps):
        for d in step.depends_on:
            if isinstance(d, bool) or not isinstance(d, int):
                problem = f"is not a step index ({type(d).__name__})"
            elif d == j:
                problem = "is the step itself"
            elif not 0 <= d < n:
                problem = f"is out of range (the sample has {n} steps)"
            elif d > j:
                problem = "is a later step (dependencies must come first)"
            else:
                continue
            raise ValueError(f"{where}golden step {j} ({step.function!r}) depends on {d!r}, which {problem}")


def semantic_success(executed: bool, response: Any) -> bool:
    """Whether an executed call's response counts as a success (see the module docstring)."""
    if not executed:
        return False
    if isinstance(response, dict):
        return bool(response) and "error" not in response and response.get("status", True) is not False
    if isinstance(response, list):
        return len(response) > 0
    return False
