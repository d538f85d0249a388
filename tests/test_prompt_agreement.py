"""Training and evaluation pose ONE task: the same turns, and the same prompt tokens for the same turn.

For SmolLM2's tokenizer (Hermes/ChatML) and two tool-aware templates (Qwen2.5-style, Llama-3.1-style,
built offline in `fixtures_chat.py`): the evaluator's request for a scored turn, the turn-mode
rollout's prompt for that turn, and the prefix of the SFT episode before that turn are the same
tokens. On all 201 real samples, SFT targets, turn-mode tasks and evaluated turns are the same turns.
"""

from __future__ import annotations

import pytest

from toolrl.data.golden import load_samples
from toolrl.env.booking import ViewPolicy
from toolrl.eval.protocol import build_turn_tasks, run_protocol
from toolrl.models.config import ModelConfig
from toolrl.policy.runtime import Policy
from toolrl.rl.rollout import golden_episode, turn_prompt_ids

import fixtures_chat

RENDER = ViewPolicy(max_list_items=2, max_chars=300).render


def _smollm2():
    from transformers import AutoTokenizer

    from toolrl.models.bundled import ensure_smollm2

    return AutoTokenizer.from_pretrained(ensure_smollm2()), ModelConfig.smollm2_135m()


def _qwen():
    return fixtures_chat.qwen_style_tokenizer(), ModelConfig.tiny(eos_token_ids=(), pad_token_id=None)


def _llama():
    tok = fixtures_chat.llama_style_tokenizer()
    return tok, ModelConfig.tiny(eos_token_ids=fixtures_chat.llama_eos_ids(tok), pad_token_id=None)


@pytest.fixture(scope="module", params=["smollm2", "qwen_style", "llama_style"])
def policy(request):
    tokenizer, config = {"smollm2": _smollm2, "qwen_style": _qwen, "llama_style": _llama}[request.param]()
    # The model plays no part in prompts; a Policy without one renders the same tokens.
    return Policy(None, tokenizer, config, name=request.param)


@pytest.fixture(scope="module")
def samples(data_dir):
    return load_samples("bfcl_training", data_dir, max_samples=12, max_distractors=1)


class _Recorder:
    """An evaluator policy that records the token ids of each request and answers with nothing."""

    def __init__(self, policy, tool_view):
        self.eval_policy = policy.as_eval_policy(tool_view=tool_view, max_new_tokens=8)
        self.prompts = {}

    def __call__(self, requests):
        for r in requests:
            self.prompts[(r.sample_id, r.turn, r.round)] = self.eval_policy.prompt_ids(r)
        return [""] * len(requests)


@pytest.mark.parametrize("tool_view", ["compact", "full"])
def test_training_and_evaluation_prompts_are_the_same_tokens(policy, samples, matcher, tool_view):
    recorder = _Recorder(policy, tool_view)
    tasks = [t for s in samples for t in build_turn_tasks(s)]
    run_protocol(tasks, recorder, matcher, max_rounds=1, render=RENDER)
    checked = 0
    for sample in samples:
        episode, _ = golden_episode(sample, policy, tool_view, RENDER)
        for task in build_turn_tasks(sample):
            evaluation = recorder.prompts[(task.sample_id, task.turn, 0)]
            assert turn_prompt_ids(policy, task, tool_view, RENDER) == evaluation
            # The SFT episode shows the same tokens before this turn's golden calls.
            assert episode[:len(evaluation)] == evaluation
            checked += 1
    assert checked == len(tasks) >= 15


@pytest.fixture(scope="module")
def matcher(data_dir):
    from toolrl.eval.evaluator import make_matcher

    return make_matcher(data_dir)


def test_sft_targets_turn_tasks_and_evaluated_turns_are_the_same_turns(data_dir):
    """All 201 real samples: scored turns partition the golden turns the SFT episode is made of."""
    from toolrl.eval.protocol import turn_messages

    n = 0
    for source in ("eval_100", "bfcl_training"):
        for sample in load_samples(source, data_dir):
            tasks = build_turn_tasks(sample)
            # Scored turns (evaluated and trained in turn mode) cover the golden turns in order, once.
            covered = [sub for task in tasks for sub in task.subturns]
            assert covered == [t for t in sample.turns if t.calls]
            for task in tasks:
                assert task.history == sample.turns[:sample.turns.index(task.subturns[0])]
            # The SFT episode's assistant messages are those golden turns.
            messages = turn_messages(sample.turns, RENDER)
            assistant = [m for m in messages if m["role"] == "assistant"]
            assert [[c["name"] for c in m["tool_calls"]] for m in assistant] == \
                [[c.function for c in t.calls] for t in sample.turns]
            n += 1
    assert n == 201
