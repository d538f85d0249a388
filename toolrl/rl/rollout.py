"""Rollouts: the policy talks to an environment; the result is token rows plus reward inputs.

The rollouts of the two trainable games (`toolrl.games`: `episode`, `turn`; the registry calls these
functions). Both pose the evaluator's task with the evaluator's prompts (`Policy.prompt_ids` over the
messages `toolrl.eval.protocol` builds):

* **episode**: a row starts from the user query; each turn the active rows go through one
  `Policy.generate` call, the calls are parsed, executed against the cached environment, and their
  responses (the view policy) come back as the chat format's environment segment. A row ends when it
  answers without a call, when a turn is cut by `max_new_tokens` (truncated), when the next turn would
  not fit `max_seq_len` (truncated), or after `max_turns` turns.
* **turn**: a row is one scored turn of the benchmark protocol (`toolrl.eval.protocol.TurnTask`): the
  golden history before it, then the evaluator's rounds (`TurnState`: a round of only free lookups
  gets the golden responses and another round, up to `max_rounds`).

Token bookkeeping: a row is a list of token ids with a parallel list of flags, 1 for tokens the policy
generated (trained on) and 0 for prompt / environment tokens (masked out of the loss), and a parallel
list of the sampler's log-probs (log softmax(logits / T) of each generated token at the sampling
temperature T; 0 at prompt / environment tokens), which the update may take as the old policy's
(`grpo.old_logprobs = "sampler"`). Generated tokens are kept exactly as sampled.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Sequence

import jax
import numpy as np

from toolrl.data.golden import GoldenCall, GoldenSample
from toolrl.eval.protocol import TurnState, TurnTask, history_messages, render_response, turn_messages
from toolrl.policy.runtime import Policy, SamplingSettings
from toolrl.rewards.parse import ParseError
from toolrl.rewards.types import EpisodeInput, PredictedCall, TurnInput

FINAL_ANSWER = "Done."  # the SFT target after the last golden turn: teaches the policy to stop.


@dataclasses.dataclass
class Row:
    """One rollout as it grows."""

    ids: list[int]
    flags: list[int]
    logprobs: list[float] = dataclasses.field(default_factory=list)  # parallel to ids (0 where flags are 0)
    calls: list[PredictedCall] = dataclasses.field(default_factory=list)
    texts: list[str] = dataclasses.field(default_factory=list)
    turns: int = 0
    done: bool = False
    truncated: bool = False  # a turn was cut by max_new_tokens, or the next turn did not fit max_seq_len


@dataclasses.dataclass
class RolloutBatch:
    """B rollouts (B = prompts · G; rows i·G .. i·G+G-1 share prompt i).

    Attributes:
      rows: per row, (ids, flags) — flags 1 on the policy's tokens.
      inputs: per row, the reward input (EpisodeInput or TurnInput).
      texts: per row, the decoded assistant turns.
      n_turns: [B] assistant turns (rounds) taken.
      truncated: [B] bool, the row was cut by a token budget.
      generated_tokens: tokens sampled over the batch.
      generate_seconds: time inside `Policy.generate`.
      logprobs: per row, float32 [len(ids)] aligned with the row's ids: the sampler's log-prob of each
        generated token (at the sampling temperature), 0 at prompt / environment tokens; None when the
        rows did not come from the sampler.
    """

    rows: list[tuple[list[int], list[int]]]
    inputs: list[Any]
    texts: list[list[str]]
    n_turns: np.ndarray
    truncated: np.ndarray
    generated_tokens: int
    generate_seconds: float
    logprobs: list[np.ndarray] | None = None


def turn_fits(start: int, max_new_tokens: int, max_seq_len: int) -> bool:
    """The rollout's length rule: an assistant turn that would start after `start` tokens is generated
    only when its whole budget fits, start + max_new_tokens <= max_seq_len (rows never exceed
    max_seq_len); otherwise the row ends, truncated. The fit report applies the same rule to the
    golden trajectory's turn starts."""
    return start + max_new_tokens <= max_seq_len


def _assistant_turn(policy: Policy, rows: Sequence[Row], turn: int, key: jax.Array, settings: SamplingSettings,
                    group_size: int, max_seq_len: int) -> tuple[list[tuple[int, str, bool]], float, int]:
    """One assistant turn for every row still going: rows whose next turn would not fit `max_seq_len`
    end truncated, the rest generate in one call (the first turn's groups share their prefill) and
    get their tokens appended.

    Returns:
      ([(row index, decoded text, finished with the end token)], seconds generating, tokens generated);
      an empty list when no row is left.
    """
    for row in rows:
        if not row.done and not turn_fits(len(row.ids), settings.max_new_tokens, max_seq_len):
            row.done, row.truncated = True, True
    active = [i for i, r in enumerate(rows) if not r.done]
    if not active:
        return [], 0.0, 0
    # Only the first turn has groups of identical prompts.
    shared = group_size if turn == 0 and len(active) == len(rows) else 1
    out = policy.generate([rows[i].ids for i in active], jax.random.fold_in(key, turn), settings, group_size=shared)
    turns = []
    for j, i in enumerate(active):
        text = policy.chat.decode(out.tokens[j])
        _append_policy_tokens(rows[i], out.tokens[j], text, out.logprobs[j])
        turns.append((i, text, bool(out.finished[j])))
    return turns, out.seconds, out.generated


def _append_policy_tokens(row: Row, ids: list[int], text: str, logprobs: Sequence[float]) -> None:
    if len(logprobs) != len(ids):
        raise ValueError(f"{len(logprobs)} sampler log-probs for {len(ids)} generated tokens")
    row.ids += ids
    row.flags += [1] * len(ids)
    row.logprobs += [float(x) for x in logprobs]
    row.texts.append(text)
    row.turns += 1


def _append_env(policy: Policy, row: Row, tool_messages: list[dict[str, Any]], max_new_tokens: int,
                max_seq_len: int) -> None:
    """Appends the environment segment, or ends the row (truncated) when the turn after it would not
    fit (`turn_fits`): rows never exceed max_seq_len."""
    env = policy.chat.env_ids(tool_messages)
    if not turn_fits(len(row.ids) + len(env), max_new_tokens, max_seq_len):
        row.done, row.truncated = True, True
        return
    row.ids += env
    row.flags += [0] * len(env)
    row.logprobs += [0.0] * len(env)


def _execute(env: Any, policy: Policy, text: str) -> tuple[list[PredictedCall], list[dict[str, Any]]]:
    """Parses one assistant message and executes its calls; returns reward calls and tool messages."""
    calls, messages = [], []
    for block in policy.chat.parse(text).blocks:
        if isinstance(block, ParseError):
            calls.append(PredictedCall.unparseable(reason=block.reason))
            response = {"status": False, "error": "invalid_call", "message": f"unparseable tool call ({block.reason})"}
            messages.append({"role": "tool", "name": "", "content": env.render(response)})
            continue
        result = env.execute_detailed({"name": block.name, "arguments": block.arguments})
        calls.append(PredictedCall(block.name, dict(block.arguments), executed=True, response=result.response))
        messages.append({"role": "tool", "name": block.name, "content": env.render(result.response)})
    return calls, messages


def rollout_episodes(samples: Sequence[GoldenSample], group_size: int, policy: Policy, env: Any, key: jax.Array,
                     settings: SamplingSettings, *, max_turns: int, max_seq_len: int, tool_view: str) -> RolloutBatch:
    """G multi-turn rollouts per sample against the cached environment (the episode game)."""
    rows: list[Row] = []
    for sample in samples:
        ids = policy.prompt_ids([{"role": "user", "content": sample.query}], sample.tools, tool_view)
        rows += [Row(list(ids), [0] * len(ids), [0.0] * len(ids)) for _ in range(group_size)]
    generated, seconds = 0, 0.0
    for turn in range(max_turns):
        turns, dt, n = _assistant_turn(policy, rows, turn, key, settings, group_size, max_seq_len)
        if not turns:
            break
        generated, seconds = generated + n, seconds + dt
        for i, text, finished in turns:
            row = rows[i]
            calls, messages = _execute(env, policy, text)
            row.calls += calls
            if not finished:
                row.done, row.truncated = True, True
            elif not calls or turn == max_turns - 1:
                row.done = True
            else:
                _append_env(policy, row, messages, settings.max_new_tokens, max_seq_len)
    inputs = []
    for s, sample in enumerate(samples):
        steps = sample.reward_steps()
        inputs += [EpisodeInput(calls=tuple(rows[s * group_size + g].calls), steps=steps) for g in range(group_size)]
    return _batch(rows, inputs, generated, seconds)


def turn_reward_input(sample: GoldenSample, task: TurnTask, calls: Sequence[PredictedCall]) -> TurnInput:
    """The `turn` family's input for one scored turn: its golden calls, the later ones, the history.

    A scored turn may merge free lookups into the turn that needs them (the protocol answers them
    between rounds): their calls count as done for the dependencies of the turn's other calls. The
    turn's free lookups are optional for the evaluator (skipping them costs nothing), so they are
    optional for the reward too: in |G| only when the policy made them."""
    turn = tuple(c.index for c in task.golden)
    history = frozenset(c.index for t in task.history for c in t.calls)
    answered = frozenset(c.index for sub in task.subturns[:-1] for c in sub.calls)
    later = tuple(c.index for c in sample.calls if c.index not in history and c.index not in turn)
    return TurnInput(calls=tuple(calls), steps=sample.reward_steps(), turn=turn, later=later, done=history | answered,
                     optional=tuple(c.index for c in task.optional))


def turn_prompt_ids(policy: Policy, task: TurnTask, tool_view: str,
                    render: Callable[[Any], str] = render_response) -> list[int]:
    """The prompt of a scored turn: the golden history before it, as the evaluator shows it."""
    return policy.prompt_ids(history_messages(task, render), task.tools, tool_view)


def rollout_turns(tasks: Sequence[tuple[GoldenSample, TurnTask]], group_size: int, policy: Policy, matcher: Any,
                  key: jax.Array, settings: SamplingSettings, *, max_rounds: int, max_seq_len: int, tool_view: str,
                  render: Callable[[Any], str] = render_response) -> RolloutBatch:
    """G rollouts of one scored turn each (the turn game): the evaluator's rounds, on the policy's own tokens."""
    rows: list[Row] = []
    states: list[TurnState] = []
    for sample, task in tasks:
        ids = turn_prompt_ids(policy, task, tool_view, render)
        for _ in range(group_size):
            rows.append(Row(list(ids), [0] * len(ids), [0.0] * len(ids)))
            states.append(TurnState(task, history_messages(task, render), list(task.golden)))
    generated, seconds = 0, 0.0
    for round_ in range(max_rounds):
        turns, dt, n = _assistant_turn(policy, rows, round_, key, settings, group_size, max_seq_len)
        if not turns:
            break
        generated, seconds = generated + n, seconds + dt
        for i, text, finished in turns:
            row, state = rows[i], states[i]
            row.calls += [PredictedCall.unparseable(reason=b.reason) if isinstance(b, ParseError)
                          else PredictedCall(b.name, dict(b.arguments)) for b in policy.chat.parse(text).blocks]
            shown = len(state.messages)
            state.step(policy.readable(text), matcher, max_rounds, render)  # parsed as the evaluator parses
            if not finished:
                row.done, row.truncated = True, True
            elif state.done:
                row.done = True
            else:  # another round: the tool messages the protocol appended after this round's calls
                _append_env(policy, row, [m for m in state.messages[shown:] if m["role"] == "tool"],
                            settings.max_new_tokens, max_seq_len)
    inputs = [turn_reward_input(sample, task, rows[t * group_size + g].calls)
              for t, (sample, task) in enumerate(tasks) for g in range(group_size)]
    return _batch(rows, inputs, generated, seconds)


def _batch(rows: Sequence[Row], inputs: list[Any], generated: int, seconds: float) -> RolloutBatch:
    return RolloutBatch([(r.ids, r.flags) for r in rows], inputs, [r.texts for r in rows],
                        np.asarray([r.turns for r in rows], np.int32), np.asarray([r.truncated for r in rows]),
                        generated, seconds, [np.asarray(r.logprobs, np.float32) for r in rows])


# ----------------------------------------------------------------------------- golden trajectories


def golden_episode(sample: GoldenSample, policy: Policy, tool_view: str,
                   render: Callable[[Any], str] = render_response) -> tuple[list[int], list[int]]:
    """The SFT example of a sample: prompt, every golden turn with its responses, a final answer.

    Its assistant parts are exactly the tokens the evaluator's prompts show for the same turns.

    Returns:
      (ids, flags): flags are 1 on the golden assistant tokens (what SFT trains on).
    """
    chat = policy.chat
    ids = policy.prompt_ids([{"role": "user", "content": sample.query}], sample.tools, tool_view)
    flags = [0] * len(ids)
    for turn in sample.turns:
        messages = turn_messages([turn], render)
        assistant = chat.assistant_ids(messages[0])
        env = chat.env_ids(messages[1:])
        ids += assistant + env
        flags += [1] * len(assistant) + [0] * len(env)
    final = chat.final_ids(FINAL_ANSWER)
    return ids + final, flags + [1] * len(final)


@dataclasses.dataclass(frozen=True)
class TrajectoryBudget:
    """Token counts of a golden trajectory, for the fit report.

    Attributes:
      turns: assistant turns (episode) or rounds (turn mode) the golden solution needs.
      longest_turn: tokens of its longest assistant turn (incl. the end token).
      total: tokens of the whole trajectory (prompt + turns + environment).
      hidden_values: argument values the view of earlier responses cuts away (`hidden_values`).
      last_start: tokens before its last assistant turn (turn starts only grow: the one the rollout's
        length rule `turn_fits` is most likely to stop).
    """

    turns: int
    longest_turn: int
    total: int
    hidden_values: int = 0
    last_start: int = 0


def _value_strings(arguments: Any, path: str = "") -> list[tuple[str, str]]:
    """(leaf path, value) of the argument values a call could only have copied from somewhere: strings of
    3+ characters and integers of 4+ digits (ids), anywhere in the arguments."""
    if isinstance(arguments, dict):
        return [v for k, x in arguments.items() for v in _value_strings(x, f"{path}.{k}" if path else k)]
    if isinstance(arguments, list):
        return [v for i, x in enumerate(arguments) for v in _value_strings(x, f"{path}[{i}]")]
    if isinstance(arguments, str):
        return [(path, arguments)] if len(arguments.strip()) >= 3 else []
    if isinstance(arguments, int) and not isinstance(arguments, bool) and abs(arguments) >= 1000:
        return [(path, str(arguments))]
    return []


def hidden_values(calls: Sequence[GoldenCall], earlier_responses: Sequence[Any], shown_text: str,
                  render: Callable[[Any], str], query: str = "") -> int:
    """How many argument values of ``calls`` come from an earlier response that the prompt's view of
    those responses cuts away: present in a full response, absent from every rendered one and from
    ``shown_text`` (the query and the tool list), and not stated by ``query`` in a form people write
    (a date in words, "2 pm": :func:`toolrl.synth.surface.stated`). A task with such a value cannot be
    solved from what the policy is shown (the view, ``data.response_*``, not the policy, decides it)."""
    if not earlier_responses:
        return 0
    from toolrl.synth.surface import stated

    full = " ".join(json.dumps(r, ensure_ascii=False) for r in earlier_responses)
    shown = shown_text + " " + " ".join(render(r) for r in earlier_responses)
    return sum(1 for call in calls for path, value in _value_strings(call.arguments)
               if value in full and value not in shown and json.dumps(value)[1:-1] not in shown
               and not (query and stated(path, value, query)))


def _shown_text(query: str, tools: Sequence[Any]) -> str:
    return query + " " + json.dumps(list(tools), ensure_ascii=False)


def episode_budget(sample: GoldenSample, policy: Policy, tool_view: str, render: Callable[[Any], str],
                   with_final: bool) -> TrajectoryBudget:
    """What the golden episode of `sample` needs (with the final answer turn for SFT)."""
    chat = policy.chat
    total = len(policy.prompt_ids([{"role": "user", "content": sample.query}], sample.tools, tool_view))
    longest = hidden = start = 0
    shown, responses = _shown_text(sample.query, sample.tools), []
    for turn in sample.turns:
        messages = turn_messages([turn], render)
        a = len(chat.assistant_ids(messages[0]))
        start = total
        longest = max(longest, a)
        total += a + len(chat.env_ids(messages[1:]))
        hidden += hidden_values(turn.calls, responses, shown, render, sample.query)
        responses += [call.response for call in turn.calls if call.has_response]
    if with_final:
        total += len(chat.final_ids(FINAL_ANSWER))
    return TrajectoryBudget(len(sample.turns), longest, total, hidden, start)


def turn_budget(task: TurnTask, policy: Policy, tool_view: str, render: Callable[[Any], str]) -> TrajectoryBudget:
    """What the golden solution of one scored turn needs: its subturns as rounds after the history."""
    chat = policy.chat
    total = len(policy.prompt_ids(history_messages(task, render), task.tools, tool_view))
    longest = hidden = start = 0
    shown = _shown_text(task.query, task.tools)
    responses = [call.response for turn in task.history for call in turn.calls if call.has_response]
    for k, sub in enumerate(task.subturns):
        messages = turn_messages([sub], render)
        a = len(chat.assistant_ids(messages[0]))
        start = total
        longest = max(longest, a)
        total += a + (len(chat.env_ids(messages[1:])) if k < len(task.subturns) - 1 else 0)
        hidden += hidden_values([c for c in sub.calls if c in task.required], responses, shown, render, task.query)
        responses += [call.response for call in sub.calls if call.has_response]
    return TrajectoryBudget(len(task.subturns), longest, total, hidden, start)
