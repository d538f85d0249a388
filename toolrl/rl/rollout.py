"""Rollouts: the policy talks to the environment; the result is token arrays plus reward inputs.

Episode mode: every row starts from its task's prompt; each turn, ALL rows of the batch (all groups)
go through one jitted `generate` call (rows already finished ride along and are ignored, so shapes
stay static); the generated text is parsed into tool calls, the calls are executed against the
environment, and their responses (through the environment's view policy) are appended as an
environment segment. A row ends when it answers without a call, when a turn is cut by the token
budget, when the context would overflow, or after `max_turns` turns.

Turn mode: each task is cut at a golden turn k (the same k for the whole group); the prompt holds the
golden history of turns < k with their real responses, and the policy generates turn k once.

Token bookkeeping: a row is a list of token ids with a parallel list of flags, 1 for tokens the
policy generated (trained on) and 0 for prompt / environment tokens (masked out of the loss).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np

from toolrl.rewards.parse import ParseError, parse_tool_calls
from toolrl.rewards.types import EpisodeInput, PredictedCall, TurnInput
from toolrl.rl.chat_format import ChatFormat
from toolrl.rl.data import Task, golden_turn_text, system_prompt
from toolrl.rl.generate import bucket

# generate(tokens [B, P] int32, mask [B, P] bool, key) -> (new [B, N], logprobs [B, N], completion [B, N])
GenerateFn = Callable[[np.ndarray, np.ndarray, jax.Array], tuple[Any, Any, Any]]

FINAL_ANSWER = "Done."  # the SFT target after the last golden turn: teaches the policy to stop.


@dataclasses.dataclass
class RolloutBatch:
    """B rollouts (B = tasks · G), right-padded to a common length L.

    Attributes:
      tokens: [B, L] int32.
      attention_mask: [B, L] bool, real tokens.
      loss_mask: [B, L] bool, tokens the policy generated.
      inputs: per row, the reward input (EpisodeInput or TurnInput).
      texts: per row, the decoded assistant turns.
      n_turns: [B] assistant turns taken.
      truncated: [B] bool, the row was cut by a token budget.
      generated_tokens: total tokens sampled (incl. rows riding along? no: only active rows).
    """

    tokens: np.ndarray
    attention_mask: np.ndarray
    loss_mask: np.ndarray
    inputs: list[Any]
    texts: list[list[str]]
    n_turns: np.ndarray
    truncated: np.ndarray
    generated_tokens: int


@dataclasses.dataclass
class _Row:
    ids: list[int]
    flags: list[int]
    calls: list[PredictedCall] = dataclasses.field(default_factory=list)
    texts: list[str] = dataclasses.field(default_factory=list)
    done: bool = False
    truncated: bool = False


def _left_pad(rows: Sequence[list[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.full((len(rows), length), pad_id, np.int32)
    mask = np.zeros((len(rows), length), bool)
    for i, ids in enumerate(rows):
        ids = ids[-length:]
        tokens[i, length - len(ids):] = ids
        mask[i, length - len(ids):] = True
    return tokens, mask


def pack(rows: Sequence[tuple[list[int], list[int]]], pad_id: int, multiple: int = 32,
         max_len: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pads (ids, flags) rows to a bucketed common length.

    Returns:
      tokens [B, L] int32, attention_mask [B, L] bool, loss_mask [B, L] bool.
    """
    longest = max(len(ids) for ids, _ in rows)
    length = bucket(longest, multiple) if max_len is None else max_len
    tokens = np.full((len(rows), length), pad_id, np.int32)
    attn = np.zeros((len(rows), length), bool)
    loss = np.zeros((len(rows), length), bool)
    for i, (ids, flags) in enumerate(rows):
        ids, flags = ids[:length], flags[:length]
        tokens[i, : len(ids)] = ids
        attn[i, : len(ids)] = True
        loss[i, : len(flags)] = np.asarray(flags, bool)
    return tokens, attn, loss


def _execute(env: Any, text: str) -> tuple[list[PredictedCall], list[str]]:
    """Parses one assistant message and executes its calls; returns reward calls and prompt texts."""
    parsed = parse_tool_calls(text)
    calls, shown = [], []
    for block in parsed.blocks:
        if isinstance(block, ParseError):
            calls.append(PredictedCall.unparseable())
            shown.append(env.render({"status": False, "error": "invalid_call", "message": f"unparseable tool call ({block.reason})"}))
            continue
        result = env.execute_detailed({"name": block.name, "arguments": block.arguments})
        calls.append(PredictedCall(block.name, dict(block.arguments), executed=True,
                                   response=result.response))
        shown.append(env.render(result.response))
    return calls, shown


def _history(task: Task, upto: int, env: Any) -> list[tuple[str, list[str]]]:
    """(assistant text, [tool response texts]) of golden turns < upto, responses through the view policy."""
    return [(golden_turn_text(task, t), [env.render(task.responses[i]) for i in task.turns[t]])
            for t in range(upto)]


def rollout(
    tasks: Sequence[Task],
    group_size: int,
    generate: GenerateFn,
    env: Any,
    fmt: ChatFormat,
    key: jax.Array,
    *,
    mode: str = "episode",
    max_turns: int = 3,
    max_new_tokens: int = 64,
    max_seq_len: int = 512,
    tool_view: str = "compact",
    turn_choice: Sequence[int] | None = None,
    multiple: int = 32,
) -> RolloutBatch:
    """Runs G rollouts per task (rows i·G .. i·G+G-1 belong to task i).

    Args:
      tasks: the prompts of this step.
      group_size: G.
      generate: the jitted sampler bound to the current parameters (see GenerateFn).
      env: a BookingEnvironment (execute_detailed, render).
      fmt: the chat format / tokenizer.
      key: PRNG key; split once per turn.
      mode: "episode" or "turn".
      max_turns, max_new_tokens, max_seq_len: budgets (see configs).
      tool_view: how tools appear in the system prompt.
      turn_choice: turn mode, the golden turn index per task (default: drawn from `key`).
      multiple: prompt lengths are bucketed to this multiple (one compile per bucket).
    """
    if mode == "turn":
        if turn_choice is None:
            draws = np.asarray(jax.random.uniform(jax.random.fold_in(key, 7), (len(tasks),)))
            turn_choice = [int(d * len(t.turns)) for d, t in zip(draws, tasks)]
        max_turns = 1
    rows: list[_Row] = []
    for ti, task in enumerate(tasks):
        history = _history(task, turn_choice[ti], env) if mode == "turn" else []
        ids = fmt.prompt_ids(system_prompt(task.tools, tool_view), task.query, history)
        for _ in range(group_size):
            rows.append(_Row(ids=list(ids), flags=[0] * len(ids)))
    generated = 0
    n_turns = np.zeros(len(rows), np.int32)
    for turn in range(max_turns):
        for row in rows:
            if not row.done and len(row.ids) + max_new_tokens > max_seq_len:
                row.done, row.truncated = True, True
        active = [i for i, r in enumerate(rows) if not r.done]
        if not active:
            break
        length = bucket(max(len(rows[i].ids) for i in active), multiple)
        tokens, mask = _left_pad([r.ids for r in rows], length, fmt.pad_id)
        new, _, completion = generate(tokens, mask, jax.random.fold_in(key, turn))
        new, completion = np.asarray(new), np.asarray(completion)
        for i in active:
            row = rows[i]
            out = new[i][completion[i]].tolist()
            generated += len(out)
            n_turns[i] += 1
            row.ids += out
            row.flags += [1] * len(out)
            text = fmt.decode(out)
            row.texts.append(text)
            calls, shown = _execute(env, text)
            row.calls += calls
            finished_turn = bool(out) and out[-1] == fmt.end_id
            if not finished_turn:
                row.done, row.truncated = True, True
            elif not calls or turn == max_turns - 1:
                row.done = True
            else:
                env_ids = fmt.env_ids(shown)
                row.ids += env_ids
                row.flags += [0] * len(env_ids)
    inputs: list[Any] = []
    for ti, task in enumerate(tasks):
        for g in range(group_size):
            row = rows[ti * group_size + g]
            if mode == "turn":
                k = turn_choice[ti]
                inputs.append(TurnInput(
                    calls=tuple(row.calls), steps=task.steps, turn=task.turns[k],
                    later=tuple(i for t in task.turns[k + 1:] for i in t),
                    done=frozenset(i for t in task.turns[:k] for i in t)))
            else:
                inputs.append(EpisodeInput(calls=tuple(row.calls), steps=task.steps))
    # Fixed width (max_seq_len): one compiled update for the whole run.
    tokens, attn, loss = pack([(r.ids[:max_seq_len], r.flags[:max_seq_len]) for r in rows], fmt.pad_id,
                              max_len=max_seq_len)
    return RolloutBatch(tokens, attn, loss, inputs, [r.texts for r in rows], n_turns,
                        np.asarray([r.truncated for r in rows]), generated)


def golden_episode(task: Task, env: Any, fmt: ChatFormat, tool_view: str = "compact",
                   max_seq_len: int = 512) -> tuple[list[int], list[int]]:
    """The SFT example of a task: prompt, every golden turn with its real responses, a final answer.

    Returns:
      (ids, flags): flags are 1 on the golden assistant tokens (what SFT trains on).
    """
    ids = fmt.prompt_ids(system_prompt(task.tools, tool_view), task.query)
    flags = [0] * len(ids)
    for t, turn in enumerate(task.turns):
        a = fmt.assistant_ids(golden_turn_text(task, t))
        e = fmt.env_ids([env.render(task.responses[i]) for i in turn])
        ids += a + e
        flags += [1] * len(a) + [0] * len(e)
    a = fmt.assistant_ids(FINAL_ANSWER)
    ids += a
    flags += [1] * len(a)
    return ids[:max_seq_len], flags[:max_seq_len]
