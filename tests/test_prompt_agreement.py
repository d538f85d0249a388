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


class _ScriptedPolicy(Policy):
    """A Policy whose `generate` answers from a script (no model): round 0 of each scored turn says some
    prose, then a variant (a golden free lookup; an unparseable block and the lookup; a lookup with a
    wrong argument, answered with an error), round 1 the turn's required calls. It records every
    distinct prompt by (turn, round)."""

    def __init__(self, base: Policy, tasks):
        super().__init__(None, base.tokenizer, base.model_config, name=base.name)
        self.tasks = tasks
        self.first = {}
        self.prompts = {}
        self.rounds = {}

    def start(self, tool_view):
        self.first = {tuple(turn_prompt_ids(self, t, tool_view, RENDER)): i for i, t in enumerate(self.tasks)}
        self.prompts, self.rounds = {}, {}

    def _task(self, prompt):
        hits = [i for first, i in self.first.items() if tuple(prompt[:len(first)]) == first]
        assert len(hits) == 1, "every prompt continues exactly one scored turn"
        return hits[0]

    def _text(self, index, round_):
        import json

        task = self.tasks[index]
        def block(name, arguments):
            return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"
        if round_ == 0:
            free = task.optional[0]
            variant = index % 3
            if variant == 0:
                return "Let me look that up first.\n" + block(free.function, free.arguments)
            if variant == 1:
                return "<tool_call>\n{not json at all\n</tool_call>\n" + block(free.function, free.arguments)
            wrong = {k: (v + " nowhere" if isinstance(v, str) else v) for k, v in free.arguments.items()}
            return "Searching.\n" + block(free.function, wrong)
        return "Now the search.\n" + "\n".join(block(c.function, c.arguments) for c in task.required)

    def generate(self, prompts, key, settings, group_size=1):
        import numpy as np

        from toolrl.policy.runtime import Generation

        rows, seen = [], {}
        for prompt in prompts:
            index = self._task(prompt)
            if index not in seen:
                seen[index] = self.rounds.get(index, 0)
                self.prompts[(index, seen[index])] = list(prompt)
            text = self._text(index, seen[index])
            rows.append(self.chat.encode(text) + [self.chat.end_id])
        for index in seen:
            self.rounds[index] = self.rounds.get(index, 0) + 1
        return Generation(rows, [np.zeros(len(r), np.float32) for r in rows], np.ones(len(rows), bool), 0.0)


def test_later_rounds_are_the_same_tokens_in_rollout_and_evaluation(policy, matcher):
    """After prose, an unparseable block or a call answered with an error, the next round's prompt is
    the same tokens in a turn-mode rollout and in the evaluator: both continue the policy's own tokens."""
    import jax

    from toolrl.policy.runtime import SamplingSettings
    from toolrl.rl.rollout import rollout_turns

    samples = load_samples("bfcl_training", max_samples=80, max_distractors=1)
    pairs = [(s, t) for s in samples for t in build_turn_tasks(s) if t.optional and t.required and t.complete][:6]
    assert len(pairs) == 6
    tasks = [t for _, t in pairs]
    scripted = _ScriptedPolicy(policy, tasks)
    settings = SamplingSettings(max_new_tokens=256, pad_multiple=8)
    scripted.start("compact")
    batch = rollout_turns(pairs, 1, scripted, matcher, jax.random.key(0), settings, max_rounds=3,
                          max_seq_len=20_000, tool_view="compact", render=RENDER)
    training = dict(scripted.prompts)
    scripted.start("compact")
    eval_policy = scripted.as_eval_policy(tool_view="compact", max_new_tokens=256, batch_size=4, pad_multiple=8)
    results = run_protocol(tasks, eval_policy, matcher, max_rounds=3, render=RENDER)
    evaluation = dict(scripted.prompts)
    assert set(training) == set(evaluation) == {(i, r) for i in range(6) for r in (0, 1)}
    for key in training:
        assert training[key] == evaluation[key], key
    assert eval_policy.stats.continued == 6
    # the prose and the unparseable block are in the round-1 prompt, as the policy wrote them
    second = scripted.chat.decode(evaluation[(1, 1)])
    assert "{not json at all" in second and "Let me look that up first." in scripted.chat.decode(evaluation[(0, 1)])
    assert [r.rounds for r in results] == [2] * 6 and batch.n_turns.tolist() == [2] * 6
