"""ComplexFuncBench as the benchmark itself scores it: the ``benchmark`` game (formerly the ``official`` protocol).

``eval.game="turn"`` (the default, :mod:`toolrl.eval.protocol`) teacher-forces every scored turn and
matches calls by our own rules; training's turn game is the same registration (:mod:`toolrl.games`).
``eval.game="benchmark"`` (old name ``official``) runs
each sample the way the benchmark's runner does (THUDM/ComplexFuncBench ``runner/*_runner.py``,
``runner/base_runner.py``, ``utils/compare_method.py``, ``print_results.py``), so that its numbers
can stand beside published ComplexFuncBench results. This module is our own code written from
reading those files; every rule below names what it reproduces. The run of a sample lives here; the
comparison of one call with one golden call (the format check, ``compare_single_call``, leftover
pairing) in :mod:`toolrl.eval.official_rules`; the scripted golden policy in
:mod:`toolrl.eval.official_policies`.

The run of one sample (free-running: the policy follows its own trajectory)
---------------------------------------------------------------------------
State: the golden turns of the sample (``chain``: every golden assistant turn, lookup-only turns
included), the *current golden calls* (``golden``, initially the first turn) and ``turn_id``.
*Advancing* adds the next golden turn to ``golden`` (``turn_id += 1``). If the current golden calls
are "only free" (every name one of the six location lookups, or **any** of them a ``Search_Hotels``
call with ``search_type == "hotel"``) the run advances once at the start and after every step.

Each step the policy answers (request ``turn`` = the index of this answer in the sample, ``round`` =
0; the messages are its own conversation so far):

* **no tool call** -> the final answer; the sample ends (see *the end* below);
* tool calls while ``golden`` is empty -> ``func_hallucination``: the sample fails;
* a ``<tool_call>`` block that does not parse -> ``decode_error``: the sample fails;
* a call naming a function not in the sample's tool list: the GPT runner ends the sample
  (``decode_error``), the Claude and Mistral runners too (``name_error``); the Qwen / Llama / GLM
  runners go on (the call is then a format error). ``OfficialRules.unlisted_name_error`` selects the
  rule (:data:`RUNNER_RULES`: per runner family; our default, the open-model runners, goes on);
* otherwise the calls are compared with ``golden`` (below). A step with no correct call (and no
  format error) ends the sample (``no_correct_call``). Else the policy is shown, per call: the
  golden response of a correct call, ``{"error": ...}`` for a format error, and the benchmark's text
  :data:`UNEXPECTED_CALL_RESPONSE` for any other call; the correct calls leave ``golden``, the run
  advances once if there was any correct call (**so the next turn opens even when calls of this one
  are still missing: they carry over**), lookups called anywhere leave ``golden``, and the run
  advances again if what is left is only free.

Comparing one step (``compare_turn_prediction``)
------------------------------------------------
1. Lookups already called leave ``golden`` (if that empties it, upstream raises
   ``NotImplementedError``; we end the sample as ``scorer_raises``).
2. Pairing: each predicted call, in order, takes the first unpaired golden call equal to it (plain
   Python equality of name and arguments: ``1 == 1.0``, ``"8.56" != 8.56``); failing that, if it is
   one of the sample's free lookups (any turn: **free lookups anywhere in the sample**, compared as
   JSON text), it is paired with that lookup, marked called, and answered with its golden response
   (only while some golden call is still unpaired: the check sits inside the loop over them).
   Predicted and golden calls left over are paired one to one by the Hungarian assignment on a
   similarity; a predicted call left without a partner (**an extra call**) is not compared at all.
3. Each pair: the format check against the sample's tool list (unknown function, missing required
   or unknown parameter, a value of the wrong JSON type for ``string`` / ``number`` (bool passes, as
   in Python) / ``boolean`` / ``array``: ``"8.56"`` for a number or ``5`` for a string is a format
   error; it is not a correct call but does not end the sample); then ``compare_single_call``:

   a. rule-based: same name, same keys, every value plainly equal, ``categories_filter`` as a set
      of comma-separated, stripped items;
   b. the value checker: a different name (``func_error``), a parameter of
      ``exact_match_values.json`` missing (``param_missing``) or not plainly equal
      (``value_error``; ``categories_filter`` as a set) -> wrong;
   c. response-based: upstream calls the live API with both calls and compares the responses.
      Offline the response cache is the stand-in: when it holds both responses and they are equal,
      the call is correct. It cannot decide when either is missing, nor when the two calls have the
      same cache key (the key's canonicalisation, e.g. surrounding whitespace, hides the difference);
   d. the LLM judge (upstream: GPT-4o). Off by default (:mod:`toolrl.eval.judge`).

   A call that passes (b) but is not settled by (c) is **undecided** unless the judge accepts it,
   or the cache showed different responses and the judge rejects it. An undecided call is counted
   as such (``undecided_calls``), never as right or wrong; the run continues on the branch where
   it is not correct (what the benchmark gives if the live API and the judge both say no), and its
   sample is reported as undecided (the metrics' ``undecided_*`` counts say how much is at stake).

The end (``return_result``)
---------------------------
An error ends a sample as failed, with ``success_turn`` = the lowest index of a golden turn holding
a call still in ``golden`` (all turns when none). A final answer first drops from ``golden`` the
``Search_Hotels`` calls with ``search_type == "hotel"`` and five of the lookups (upstream's list
omits ``Location_to_Lat_Long``; it also removes while iterating, which skips the element after each
removed one: both reproduced), then succeeds when ``golden`` is empty and every golden turn was
opened, else fails as ``stop_early``. Which errors of the last step count at the final answer
differs between upstream's runners (and not along the same lines as the unlisted-name rule above):
the Qwen / Llama / GLM and Claude runners ignore them (our default, the open-model runners), the GPT
/ Mistral runners fail the sample when the last tool step had a wrong paired call
(``final_answer_keeps_errors=True``).

Replaying a recorded run: the runners return ``func_hallucination``, ``decode_error`` and
``name_error`` before appending the offending message, so a result file's ``gen_convs`` ends early
and only its ``message`` records the outcome; the replay ends the sample there with that error
(:func:`recorded_error_text`).

Metrics (``print_results.py``): Success Rate = successful samples / samples; Call Accuracy = correct
calls / golden calls (every correct call of every step counts, free lookups included, a repeated
lookup each time); the turn count (computed upstream but not printed) = success turns / golden
turns, lookup-only turns included.

What we cannot reproduce offline, and do instead
------------------------------------------------
* Leftover pairing: upstream pairs by cosine similarity of BGE-large embeddings of the calls' JSON;
  we pair by :func:`call_similarity` (same name first, then the token overlap of the JSON). Only
  a wrong or non-exact call's partner can differ, so only which error is named, and rarely whether
  a non-exact call is compared with its true counterpart.
* The live API and GPT-4o: the cache and an optional judge, with the undecided count above.
* ``PolicyRequest.turn`` is the index of the policy's answer within the sample (it is the scored
  turn in the ``turn`` protocol); ``max_steps`` bounds a sample (upstream has no bound):
  ``2 * golden turns + max_rounds`` answers, then ``step_limit``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

# Re-exported so that the protocol's names stay importable from here (toolrl.eval, score.py, the tests).
from toolrl.eval.official_policies import FINAL_ANSWER, OfficialGoldenPolicy, official_golden_policy  # noqa: F401
from toolrl.eval.official_rules import (  # noqa: F401
    CATEGORIES_FILTER, RUNNER_RULES, OfficialRules, Verdict, call_similarity, error_type, exact_parameters,
    filter_items, format_error, free_key, is_hotel_search_free, only_free, pair_leftovers, rule_based, same_call,
    value_check)
from toolrl.eval.protocol import MISSING_RESPONSE_TEXT, Progress, drive_batched, render_response
from toolrl.eval.types import FREE_FUNCTIONS, EvalSample, GoldenCall, Policy, PolicyRequest
from toolrl.rewards.parse import parse_tool_calls
from toolrl.rewards.types import PredictedCall

# What the benchmark's runner answers a call that is neither correct nor a format error.
UNEXPECTED_CALL_RESPONSE = {
    "api_status": True,
    "content": "There is a problem with your api call, please double-check for possible problems.",
}
# The lookups that the end of a sample drops from the golden calls left (upstream's list: five of the six).
DROPPED_AT_END = frozenset(FREE_FUNCTIONS - {"Location_to_Lat_Long"})

# Why a sample ended.
OUTCOMES = ("success", "stop_early", "no_correct_call", "func_hallucination", "decode_error", "scorer_raises",
            "step_limit", "final_with_errors", "name_error")
# Errors the benchmark's runners return before appending the offending message to ``gen_convs``.
ENDS_BEFORE_RECORDED = frozenset({"func_hallucination", "decode_error", "name_error"})
_RECORDED = "\x00recorded-error:"


def recorded_error_text(error: str) -> str:
    """A replay's stand-in for a message the benchmark did not record: the sample ends with ``error``."""
    if error not in ENDS_BEFORE_RECORDED:
        raise ValueError(f"{error!r} is not an error recorded without its message ({sorted(ENDS_BEFORE_RECORDED)})")
    return _RECORDED + error


def recorded_error(text: str) -> str | None:
    """The error of a :func:`recorded_error_text` stand-in (None for any other text)."""
    return text[len(_RECORDED):] if text.startswith(_RECORDED) else None


# What went wrong with single calls (counted per call; the first four are upstream's error types).
CALL_ERRORS = ("func_error", "param_missing", "value_error", "param_hallucination", "format_error", "unpaired_call",
               "undecided")


# ----------------------------------------------------------------------------- one sample


@dataclasses.dataclass
class SampleResult:
    """The benchmark's verdict on one sample, and what happened on the way.

    Attributes:
      success: the sample succeeded (decided: no undecided call on its way).
      outcome: one of :data:`OUTCOMES`.
      turns, success_turns: golden turns (lookup-only ones included) and the benchmark's success turns.
      calls, correct_calls: golden calls and upstream's correct-call count.
      undecided_calls: calls only the live API or the judge could decide (see the module docstring).
      call_errors: one :data:`CALL_ERRORS` kind per wrong, unpaired or undecided call.
      complete: no response the benchmark data lost was shown to the policy.
      steps: how many times the policy was asked; ``model_turns`` of them made tool calls.
      conversation: the run in the benchmark's ``gen_convs`` format.
      texts: the raw policy outputs.
    """

    sample_id: str
    domain: str
    success: bool
    outcome: str
    turns: int
    success_turns: int
    calls: int
    correct_calls: int
    undecided_calls: int
    call_errors: list[str]
    complete: bool
    steps: int
    model_turns: int
    conversation: list[dict[str, Any]]
    texts: list[str]

    @property
    def undecided(self) -> bool:
        return self.undecided_calls > 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def count_dict(self) -> dict[str, int]:
        """The benchmark's ``count_dict`` of this sample."""
        return {"success_turn_num": self.success_turns, "total_turn_num": self.turns,
                "correct_call_num": self.correct_calls, "total_call_num": self.calls,
                "real_turn_num": self.model_turns}

    def to_benchmark_record(self) -> dict[str, Any]:
        """One line of the benchmark's own result file (``evaluation.py``; ``resp_eval`` not computed). The
        message is what the run gave (for a sample with undecided calls: on the branch where they were
        rejected); ``undecided_calls`` is our addition."""
        message: Any = "Success." if self.outcome == "success" else {
            "error_type": self.outcome, "content": f"{self.outcome} (toolrl official protocol)"}
        return {"id": self.sample_id, "gen_convs": self.conversation, "message": message,
                "count_dict": self.count_dict(), "resp_eval": None, "undecided_calls": self.undecided_calls}


class SampleRun:
    """The benchmark runner's state for one sample, stepped by :meth:`step` (see the module docstring)."""

    def __init__(self, sample: EvalSample, rules: OfficialRules, *, max_steps: int,
                 render: Callable[[Any], str] = render_response):
        self.sample = sample
        self.rules = rules
        self.render = render
        self.max_steps = max_steps
        self.chain: list[tuple[GoldenCall, ...]] = [turn.calls for turn in sample.turns]
        self.free: dict[str, GoldenCall] = {}
        for call in sample.calls:
            if call.is_free:
                self.free.setdefault(free_key(call.function, call.arguments), call)
        self.called: set[str] = set()
        self.turn_id = 0
        self.golden: list[GoldenCall] = list(self.chain[0]) if self.chain else []
        if self.chain and only_free(self.golden):
            self._advance()
        self.correct = 0
        self.undecided = 0
        self.call_errors: list[str] = []
        self.last_errors: list[str | None] = []
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": sample.query}]
        self.conversation: list[dict[str, Any]] = [{"role": "user", "content": sample.query}]
        self.texts: list[str] = []
        self.shown_missing = False
        self.done = False
        self.outcome = ""
        self.success_turns = 0

    # -- upstream's bookkeeping

    def _advance(self) -> None:
        self.turn_id += 1
        if self.turn_id < len(self.chain):
            self.golden.extend(self.chain[self.turn_id])

    def _remove_first(self, name: str, arguments: Any) -> bool:
        for index, call in enumerate(self.golden):
            if same_call(name, arguments, call):
                del self.golden[index]
                return True
        return False

    def _success_turn(self) -> int:
        hit = [index for index, turn in enumerate(self.chain)
               for left in self.golden if any(same_call(left.function, left.arguments, c) for c in turn)]
        return min(hit) if hit else len(self.chain)

    def _finish(self, error: str | None) -> None:
        """``return_result``: ``error`` ends the sample as failed; None is the final-answer path."""
        if error is None:
            index = 0
            while index < len(self.golden):  # upstream removes while iterating: the next element is skipped
                call = self.golden[index]
                if is_hotel_search_free(call.function, call.arguments):
                    self._remove_first(call.function, call.arguments)
                if call.function in DROPPED_AT_END:
                    self._remove_first(call.function, call.arguments)
                index += 1
            if self.turn_id < len(self.chain) or self.golden:
                error = "stop_early"
        self.done = True
        if error is None:
            self.outcome, self.success_turns = "success", len(self.chain)
        else:
            self.outcome, self.success_turns = error, self._success_turn()

    def _pairs(self, calls: Sequence[PredictedCall]) -> list[tuple[int, GoldenCall]]:
        """``mapping_call``: exact pairs, free lookups, then leftovers by :func:`pair_leftovers`."""
        pairs: list[tuple[int, GoldenCall]] = []
        taken: set[int] = set()
        rest: list[int] = []
        for p, call in enumerate(calls):
            found = False
            for g, golden in enumerate(self.golden):
                if g in taken:
                    continue
                if same_call(call.name, call.arguments, golden):
                    pairs.append((p, golden))
                    taken.add(g)
                    found = True
                    break
                key = free_key(call.name, call.arguments)
                if key in self.free:
                    pairs.append((p, self.free[key]))
                    self.called.add(key)
                    found = True
                    break
            if not found:
                rest.append(p)
        left = [g for g in range(len(self.golden)) if g not in taken]
        for i, j in pair_leftovers([calls[p] for p in rest], [self.golden[g] for g in left]):
            pairs.append((rest[i], self.golden[left[j]]))
        return pairs

    def _drop_called_lookups(self) -> None:
        for key in self.called:
            golden = self.free[key]
            self._remove_first(golden.function, golden.arguments)

    # -- one step

    def request(self) -> PolicyRequest:
        return PolicyRequest(self.sample.sample_id, len(self.texts), 0, tuple(self.messages), self.sample.tools)

    def step(self, text: str) -> None:
        """Consume the policy's next answer."""
        self.texts.append(text)
        recorded = recorded_error(text)
        if recorded is not None:  # a replayed run that the benchmark ended here (the message is not recorded)
            self._finish(recorded)
            return
        parsed = parse_tool_calls(text)
        if not parsed.calls and not parsed.errors:
            self.conversation.append({"role": "assistant", "content": text})
            keep = self.rules.final_answer_keeps_errors and bool(self.last_errors)
            self._finish("final_with_errors" if keep else None)
            return
        if not self.golden:
            self._finish("func_hallucination")
            return
        if parsed.errors:
            self._finish("decode_error")
            return
        calls = [PredictedCall(c.name, dict(c.arguments)) for c in parsed.calls]
        listed = {t.get("name") for t in self.sample.tools}
        if self.rules.unlisted_name_error and any(c.name not in listed for c in calls):
            self._finish(self.rules.unlisted_name_error)
            return
        history = list(self.messages)
        self.messages.append({"role": "assistant", "content": "", "tool_calls": [c.as_dict() for c in calls]})
        self.conversation.append({"role": "assistant", "function_call": [c.as_dict() for c in calls]})
        # compare_turn_prediction
        self.golden = [g for g in self.golden if free_key(g.function, g.arguments) not in self.called]
        if not self.golden:
            self._finish("scorer_raises")
            return
        context = {"functions": self.sample.tools, "history": history}
        answers: dict[int, Any] = {}
        matched: list[GoldenCall] = []
        formats: dict[int, dict[str, str]] = {}
        errors: list[str | None] = []
        paired: set[int] = set()
        for p, golden in self._pairs(calls):
            paired.add(p)
            problem = format_error(calls[p].name, calls[p].arguments, self.sample.tools)
            if problem:
                formats[p] = {"error": problem}
                self.call_errors.append("format_error")
                continue
            verdict = self.rules.compare(calls[p], golden, context)
            if verdict.correct:
                answers[p] = golden
                matched.append(golden)
                continue
            errors.append(verdict.error)
            if verdict.status == "undecided":
                self.undecided += 1
                self.call_errors.append("undecided")
            else:
                self.call_errors.append(verdict.error or "value_error")
        self.call_errors.extend("unpaired_call" for p in range(len(calls)) if p not in paired)
        self.last_errors = errors
        if not answers and not formats:
            self._finish("no_correct_call" if errors else None)
            return
        self.correct += len(answers)
        observations = []
        for p, call in enumerate(calls):
            if p in answers:
                golden = answers[p]
                observation = golden.response if golden.has_response else ""
                content = self.render(golden.response) if golden.has_response else MISSING_RESPONSE_TEXT
                self.shown_missing |= not golden.has_response
            else:
                observation = formats.get(p, UNEXPECTED_CALL_RESPONSE)
                content = self.render(observation)
            observations.append(observation)
            self.messages.append({"role": "tool", "name": call.name, "content": content})
        self.conversation.append({"role": "observation", "content": observations})
        # process_matches
        for golden in matched:
            self._remove_first(golden.function, golden.arguments)
        if matched:
            self._advance()
        self._drop_called_lookups()
        if only_free(self.golden):
            self._advance()
        if len(self.texts) >= self.max_steps:
            self._finish("step_limit")

    def result(self) -> SampleResult:
        return SampleResult(
            sample_id=self.sample.sample_id, domain=self.sample.domain,
            success=self.outcome == "success" and not self.undecided, outcome=self.outcome,
            turns=len(self.chain), success_turns=self.success_turns, calls=sum(len(t) for t in self.chain),
            correct_calls=self.correct, undecided_calls=self.undecided, call_errors=list(self.call_errors),
            complete=not self.shown_missing, steps=len(self.texts),
            model_turns=sum(1 for m in self.conversation if "function_call" in m),
            conversation=self.conversation, texts=list(self.texts))


def max_steps_for(sample: EvalSample, max_rounds: int = 3) -> int:
    """The bound on a sample's answers (upstream has none): 2 x golden turns + ``max_rounds``."""
    return 2 * len(sample.turns) + max_rounds


def run_official(samples: Sequence[EvalSample], policy: Policy, rules: OfficialRules, *, max_rounds: int = 3,
                 batch_size: int = 64, render: Callable[[Any], str] = render_response,
                 progress: Progress | None = None) -> list[SampleResult]:
    """Run every sample free-running, as the benchmark does, batching the policy across samples
    (``progress``: see `toolrl.eval.protocol.drive_batched`)."""
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    runs = [SampleRun(sample, rules, max_steps=max_steps_for(sample, max_rounds), render=render) for sample in samples]
    drive_batched(runs, policy, batch_size, lambda run, text: run.step(text), progress)
    return [run.result() for run in runs]
