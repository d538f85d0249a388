"""Data classes shared by the reward reference, the encoder and the kernels.

The reward sees a rollout as plain data: what the model called (in order), what the environment
answered, and the golden steps of the sample.  Nothing here knows about text or tokens; see
`toolrl.rewards.parse` for text -> calls.

Conventions
- A *predicted call* that could not be parsed (malformed `<tool_call>` block) is still a call of the
  rollout: it keeps its position, has `format_ok=False`, never matches a golden step and scores 0.
  This way "the model emitted garbage" costs reward instead of silently vanishing.
- Semantic success of a response (DESIGN.md, "Graduated reward"): the call was executed and the
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
    """One tool call of the model, in rollout order.

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

    @staticmethod
    def unparseable() -> "PredictedCall":
        """A placeholder for a malformed tool-call block (keeps its position in the rollout)."""
        return PredictedCall(name="", arguments={}, executed=False, response=None, format_ok=False)


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
    """

    calls: tuple[PredictedCall, ...]
    steps: tuple[GoldenStep, ...]
    turn: tuple[int, ...]
    later: tuple[int, ...] = ()
    done: frozenset[int] = frozenset()


@dataclasses.dataclass(frozen=True)
class RewardWeights:
    """Weights of the graduated reward (DESIGN.md defaults).

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


def semantic_success(executed: bool, response: Any) -> bool:
    """Whether an executed call's response counts as a success (see the module docstring)."""
    if not executed:
        return False
    if isinstance(response, dict):
        return bool(response) and "error" not in response and response.get("status", True) is not False
    if isinstance(response, list):
        return len(response) > 0
    return False
