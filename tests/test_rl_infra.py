"""Config validation, data order, metrics truncation, and a rollout with a scripted policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolrl.rl.config import ConfigError, config_from_file, validate, validate_for_devices
from toolrl.rl.data import TaskStream, golden_turns, load_tasks
from toolrl.rl.metrics import MetricsLog, read_metrics

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["grpo.py", "sft.py", "tiny.py", "ablations/turn_mode.py", "ablations/dr_grpo.py",
                                  "ablations/kl_reference.py"])
def test_shipped_configs_validate(name):
    validate(config_from_file(REPO / "configs" / name))


@pytest.mark.parametrize("field,value,message", [
    ("rollout.group_size", 1, "group_size"),
    ("rollout.mode", "turn", "reward.family must be 'turn'"),
    ("reward.family", "turn", "needs an episode reward"),
    ("grpo.aggregation", "median", "grpo.aggregation"),
    ("grpo.epsilon_low", 1.5, "epsilon_low"),
    ("rollout.max_new_tokens", 4096, "max_seq_len"),
    ("mesh.fsdp", 3, "divide over mesh"),
])
def test_validate_rejects_with_field_names(field, value, message):
    config = config_from_file(REPO / "configs" / "tiny.py")
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate(config)


def test_validate_for_devices_resolves_mesh():
    config = config_from_file(REPO / "configs" / "tiny.py")
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 2, -1, 1
    config.sft.batch_size = 8
    assert validate_for_devices(config, 8) == (2, 4, 1)
    with pytest.raises(ConfigError, match="does not divide"):
        validate_for_devices(config, 3)


def test_golden_turns_groups_independent_steps():
    assert golden_turns([(), (), (0,), (1, 2), ()]) == ((0, 1, 4), (2,), (3,))


def test_task_stream_is_reproducible():
    tasks = load_tasks(max_samples=5)
    a, b = TaskStream(tasks, seed=3), TaskStream(tasks, seed=3)
    ids = [t.task_id for t in a.take(0, 12)]
    assert ids == [t.task_id for t in b.take(0, 12)]
    assert sorted(ids[:5]) == sorted(t.task_id for t in tasks)  # one epoch = a permutation
    assert [t.task_id for t in a.take(7, 5)] == ids[7:12]  # resuming at a position continues the order


def test_metrics_truncate_drops_later_and_torn_records(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in range(1, 6):
        log.write({"step": step, "x": np.float32(step)})
    log.close()
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write('{"step": 6, "x"')  # killed mid-write
    assert log.truncate_after(3) == 3
    assert [r["step"] for r in read_metrics(tmp_path / "m.jsonl")] == [1, 2, 3]


def test_episode_rollout_with_scripted_policy(booking_env):
    """A policy that always emits the golden turns: masks, environment segments and a perfect reward."""
    import jax

    from toolrl.rl import rewards
    from toolrl.rl.chat_format import ChatFormat
    from toolrl.rl.data import golden_turn_text
    from toolrl.rl.policy_model import CharTokenizer
    from toolrl.rl.rollout import rollout

    task = next(t for t in load_tasks(max_steps=3) if len(t.turns) == 2)
    fmt = ChatFormat(CharTokenizer(), end_id=2, pad_id=0)
    script = [fmt.assistant_ids(golden_turn_text(task, 0)), fmt.assistant_ids(golden_turn_text(task, 1)),
              fmt.assistant_ids("Done.")]
    calls = {"n": 0}

    def generate(tokens, mask, key):
        out = script[calls["n"]]
        calls["n"] += 1
        n = 400
        new = np.zeros((tokens.shape[0], n), np.int32)
        new[:, : len(out)] = out
        completion = np.zeros_like(new, bool)
        completion[:, : len(out)] = True
        return new, np.zeros(new.shape, np.float32), completion

    batch = rollout([task], 2, generate, booking_env, fmt, jax.random.PRNGKey(0), max_turns=3,
                    max_new_tokens=400, max_seq_len=8192, tool_view="signature")
    assert calls["n"] == 3 and list(batch.n_turns) == [3, 3]
    generated = batch.tokens[0][batch.loss_mask[0]].tolist()
    assert generated == [t for turn in script for t in turn]  # exactly the policy's tokens are trained
    text = fmt.decode(batch.tokens[0][batch.attention_mask[0] & ~batch.loss_mask[0]].tolist())
    assert "<tool_response>" in text  # environment responses are in the context, masked out
    scored = rewards.score("episode", "graduated", batch.inputs)
    np.testing.assert_allclose(scored.reward, [1.0, 1.0], atol=1e-6)
