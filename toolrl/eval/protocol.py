"""The ComplexFuncBench protocol: which turns are scored, what the policy sees, how a turn is judged.

Scored turns. The golden turns of a sample are grouped: a golden turn made only of free calls
(:data:`toolrl.eval.types.FREE_FUNCTIONS`, the six location lookups) merges into the next golden turn;
each resulting group is one *scored turn*. Its golden calls are:
  * required: the non-free calls of the group;
  * optional: its free calls (those of the merged free-only turns and those of the last turn).
A group at the end of a sample made only of free calls has nothing to merge into: its calls are
required (otherwise the turn would be vacuous).

History (teacher forcing). The policy sees the user query and every golden turn before the group,
each as an assistant message with the golden calls followed by their golden responses. The prompt of
a scored turn therefore never depends on what the policy did in earlier turns, and predictions can be
produced by any other system for the same (sample_id, turn) keys.

Rounds inside a scored turn. The policy answers; its calls are matched one to one against the golden
calls not yet consumed. If it made only free calls (e.g. the location lookups that the required calls
need), and required calls remain, it gets another round: its calls are appended to the history, a
matched call answered with the golden response and an unmatched one with an error message, and the
golden calls left unmatched carry over to that next round. The turn ends after a round with a
non-free call, with no call, or after ``max_rounds``. The turn's prediction is the union of its rounds.

Verdict. A scored turn is right when every required golden call is matched, every predicted call is
matched (to a required or an optional golden call) and every tool-call block parsed. Unmatched
optional calls cost nothing. Errors (:data:`toolrl.eval.match.ERROR_KINDS`) name what is left over.

Missing responses. A scored turn whose history (golden responses of earlier turns, and of the free
calls of the group that a round may show) holds a response the benchmark lost is *incomplete*: it is
scored, but reported in its own bucket, never mixed into the complete one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from toolrl.eval.match import CallMatcher, diagnose, maximum_matching
from toolrl.eval.types import FREE_FUNCTIONS, EvalSample, GoldenCall, GoldenTurn, Policy, PolicyRequest
from toolrl.rewards.parse import parse_tool_calls
from toolrl.rewards.types import PredictedCall

MISSING_RESPONSE_TEXT = json.dumps({"status": False, "message": "response not recorded in the benchmark data"})


def no_match_response(call: PredictedCall) -> dict[str, Any]:
    """What an unmatched call is answered with inside a scored turn."""
    return {"status": False, "error": "no_match",
            "message": f"{call.name} with these arguments is not a call this task needs"}


@dataclasses.dataclass(frozen=True)
class TurnTask:
    """One scored turn of a sample.

    Attributes:
      sample_id, domain: of the sample.
      turn: scored-turn index within the sample (0, 1, ...).
      history: golden turns before the group (shown to the policy with their responses).
      subturns: the golden turns of the group (merged free-only turns, then the turn itself).
      required, optional: golden calls that must / may be made (see the module docstring).
      complete: no response the policy may be shown is missing.
    """

    sample_id: str
    domain: str
    turn: int
    query: str
    tools: tuple[dict[str, Any], ...]
    history: tuple[GoldenTurn, ...]
    subturns: tuple[GoldenTurn, ...]
    required: tuple[GoldenCall, ...]
    optional: tuple[GoldenCall, ...]
    complete: bool

    @property
    def golden(self) -> tuple[GoldenCall, ...]:
        return self.required + self.optional


def build_turn_tasks(sample: EvalSample) -> list[TurnTask]:
    """The scored turns of a sample (free-only golden turns merge into the next)."""
    tasks: list[TurnTask] = []
    pending: list[GoldenTurn] = []
    history_end = 0  # golden turns [0, history_end) form the history of the next group
    for position, turn in enumerate(sample.turns):
        if not turn.calls:
            continue
        pending.append(turn)
        is_last = position == len(sample.turns) - 1
        if turn.only_free and not is_last:
            continue
        calls = [call for sub in pending for call in sub.calls]
        required = tuple(c for c in calls if not c.is_free)
        optional = tuple(c for c in calls if c.is_free)
        if not required:  # a trailing group of free calls only: nothing to merge into
            required, optional = optional, ()
        history = sample.turns[:history_end]
        shown = [c for t in history for c in t.calls] + list(optional)
        tasks.append(TurnTask(sample.sample_id, sample.domain, len(tasks), sample.query, sample.tools,
                              tuple(history), tuple(pending), required, optional,
                              all(c.has_response for c in shown)))
        pending = []
        history_end = position + 1
    return tasks


def render_response(response: Any) -> str:
    """Default rendering of a response for the prompt (compact JSON)."""
    return json.dumps(response, ensure_ascii=False, separators=(",", ":"))


def _assistant(calls: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": [dict(c) for c in calls]}


def tool_message(call: GoldenCall, render: Callable[[Any], str] = render_response) -> dict[str, Any]:
    """A golden call's recorded response as a tool message (a lost response says so)."""
    text = render(call.response) if call.has_response else MISSING_RESPONSE_TEXT
    return {"role": "tool", "name": call.function, "content": text}


def turn_messages(turns: Iterable[GoldenTurn], render: Callable[[Any], str] = render_response) -> list[dict[str, Any]]:
    """Golden turns as messages: each an assistant message with its calls, then one tool message per call.

    The golden history of a scored turn and the SFT episode are both built from this."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        messages.append(_assistant(call.as_dict() for call in turn.calls))
        messages.extend(tool_message(call, render) for call in turn.calls)
    return messages


def history_messages(task: TurnTask, render: Callable[[Any], str] = render_response) -> list[dict[str, Any]]:
    """User query, then each golden history turn: assistant calls and one tool message per call."""
    return [{"role": "user", "content": task.query}] + turn_messages(task.history, render)


@dataclasses.dataclass
class TurnResult:
    """The verdict on one scored turn.

    Attributes:
      correct: the turn is right (see the module docstring).
      required, required_correct: golden required calls and how many were matched.
      optional, optional_matched: same for the optional (free) calls.
      predicted: every predicted call (name, arguments) over the rounds; ``format_errors`` counts the
        blocks that did not parse.
      errors: error kind per leftover call (see :data:`toolrl.eval.match.ERROR_KINDS`).
      rounds: how many times the policy was asked.
      texts: the raw policy outputs, one per round.
    """

    sample_id: str
    domain: str
    turn: int
    complete: bool
    correct: bool
    required: int
    required_correct: int
    optional: int
    optional_matched: int
    predicted: list[dict[str, Any]]
    format_errors: int
    errors: list[str]
    rounds: int
    texts: list[str]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TurnState:
    """Mutable progress of one scored turn across rounds (the evaluator and turn-mode rollouts run it)."""

    task: TurnTask
    messages: list[dict[str, Any]]
    remaining: list[GoldenCall]
    matched: list[tuple[PredictedCall, GoldenCall]] = dataclasses.field(default_factory=list)
    unmatched: list[PredictedCall] = dataclasses.field(default_factory=list)
    predicted: list[PredictedCall] = dataclasses.field(default_factory=list)
    format_errors: int = 0
    texts: list[str] = dataclasses.field(default_factory=list)
    done: bool = False

    def request(self) -> PolicyRequest:
        return PolicyRequest(self.task.sample_id, self.task.turn, len(self.texts), tuple(self.messages), self.task.tools)

    def step(self, text: str, matcher: CallMatcher, max_rounds: int, render: Callable[[Any], str]) -> None:
        """Consume one round of policy output."""
        self.texts.append(text)
        parsed = parse_tool_calls(text)
        self.format_errors += len(parsed.errors)
        calls = [PredictedCall(call.name, dict(call.arguments)) for call in parsed.calls]
        self.predicted.extend(calls)
        pairs = maximum_matching(len(calls), len(self.remaining), lambda i, j: matcher.matches(calls[i], self.remaining[j]))
        answered = []
        for i, call in enumerate(calls):
            if i in pairs:
                golden = self.remaining[pairs[i]]
                self.matched.append((call, golden))
                answered.append(golden.response if golden.has_response else None)
            else:
                self.unmatched.append(call)
                answered.append(no_match_response(call))
        consumed = {id(self.remaining[j]) for j in pairs.values()}
        self.remaining = [g for g in self.remaining if id(g) not in consumed]
        required_left = any(id(g) in {id(r) for r in self.task.required} for g in self.remaining)
        only_free = bool(calls) and all(c.name in FREE_FUNCTIONS for c in calls)
        if not (only_free and required_left) or len(self.texts) >= max_rounds:
            self.done = True
            return
        # Another round: show this round's calls with their answers.
        self.messages.append(_assistant(c.as_dict() for c in calls))
        for call, response in zip(calls, answered):
            content = MISSING_RESPONSE_TEXT if response is None else render(response)
            self.messages.append({"role": "tool", "name": call.name, "content": content})

    def result(self) -> TurnResult:
        required_ids = {id(c) for c in self.task.required}
        left_required = [g for g in self.remaining if id(g) in required_ids]
        pairs, extra, missing = diagnose(self.unmatched, left_required)
        errors = [kind for _, _, kind in pairs] + ["hallucinated_call"] * len(extra) + ["stopped_early"] * len(missing)
        errors += ["format_error"] * self.format_errors
        matched_required = sum(1 for _, g in self.matched if id(g) in required_ids)
        return TurnResult(
            sample_id=self.task.sample_id, domain=self.task.domain, turn=self.task.turn,
            complete=self.task.complete,
            correct=not left_required and not self.unmatched and self.format_errors == 0,
            required=len(self.task.required), required_correct=matched_required,
            optional=len(self.task.optional), optional_matched=len(self.matched) - matched_required,
            predicted=[c.as_dict() for c in self.predicted], format_errors=self.format_errors,
            errors=errors, rounds=len(self.texts), texts=list(self.texts),
        )


def run_protocol(tasks: Sequence[TurnTask], policy: Policy, matcher: CallMatcher, *, max_rounds: int = 3,
                 batch_size: int = 64, render: Callable[[Any], str] = render_response,
                 progress: Progress | None = None) -> list[TurnResult]:
    """Ask the policy every scored turn (batched, round by round) and judge each turn (``progress``: see
    `drive_batched`)."""
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    states = [TurnState(task, history_messages(task, render), list(task.golden)) for task in tasks]
    drive_batched(states, policy, batch_size, lambda state, text: state.step(text, matcher, max_rounds, render),
                  progress)
    return [state.result() for state in states]


def request_size(request: Any) -> int:
    """A request's length in characters (its messages and tool schemas as JSON): a stand-in for its prompt's
    token count, to sort requests by without tokenizing them."""
    messages = getattr(request, "messages", ())
    tools = getattr(request, "tools", ())
    return len(json.dumps(list(messages), default=str)) + len(json.dumps(list(tools or ()), default=str))


# progress(finished runs, all runs, requests answered so far): called after every policy call.
Progress = Callable[[int, int, int], None]


def drive_batched(runs: Sequence[Any], policy: Policy, batch_size: int, step: Callable[[Any, str], None],
                  progress: Progress | None = None) -> None:
    """Asks the policy for every unfinished run (``run.done`` false; ``run.request()``), ``batch_size``
    requests per call, and hands each answer to ``step(run, text)`` (a non-string answer as ""), until
    every run is done; ``progress`` hears after every call how many runs are done (an evaluation takes
    minutes to hours on a CPU). Shared by the turn protocol and the official runner.

    Each round's requests go out shortest first (by the policy's own ``request_size``, prompt tokens,
    when it has one; else by characters, `request_size`): a call is padded to its longest prompt, and
    in run order the study's novel test turns padded to 1.95x the prompt tokens of calls sorted by
    tokens (benchmarks/results/eval_padding.json). The order changes which requests share a call, not
    what any request asks."""
    size = getattr(policy, "request_size", request_size)
    asked = 0
    while True:
        active = [(run, run.request()) for run in runs if not run.done]
        if not active:
            break
        active.sort(key=lambda pair: size(pair[1]))  # stable: ties keep the runs' order
        for start in range(0, len(active), batch_size):
            chunk, requests = zip(*active[start:start + batch_size])
            texts = policy(list(requests))
            if len(texts) != len(chunk):
                raise ValueError(f"policy returned {len(texts)} texts for {len(chunk)} requests")
            for run, text in zip(chunk, texts):
                step(run, text if isinstance(text, str) else "")
            asked += len(chunk)
            if progress is not None:
                progress(sum(1 for run in runs if run.done), len(runs), asked)
