"""The `episode` property on every real sample of both trace files, and where `paper` lacks it.

Golden rollout: the golden calls, executed, with their recorded responses; a response the
benchmark lost ("", 293 in eval_100.json) is replaced by a success stand-in
(`corruptions.MISSING_RESPONSE_STANDIN`): the benchmark made that call and it succeeded, only its
recording is missing.  Every corruption is applied at every call position where it applies.

`swapped_dependent_calls` needs a `depends_on` edge: eval_100.json records none, so that corruption
runs on the 101 synthesized samples (234 edges) only; the test asserts it ran on many samples.
"""

import functools

import numpy as np
import pytest

from toolrl.data.paths import default_data_dir
from toolrl.data.traces import load_trace_file
from toolrl.rewards import reference, reference_common
from toolrl.rewards.corruptions import CORRUPTIONS, golden_episode
from toolrl.rewards.encode import EncodeConfig, encode_episodes
from toolrl.rewards.kernels import make_kernel

FILES = ("eval_100.json", "bfcl_training_3_per_workflow.json")


@functools.lru_cache(maxsize=None)
def samples(name):
    return load_trace_file(default_data_dir() / name)


def corrupted(ep):
    """(corruption name, position, episode) for every applicable corruption and position."""
    for cname, fn in CORRUPTIONS.items():
        for i in range(len(ep.calls)):
            bad = fn(ep, i)
            if bad is not None:
                yield cname, i, bad


@pytest.mark.parametrize("name", FILES)
def test_episode_golden_scores_one_and_every_corruption_less(name):
    applied = {c: 0 for c in CORRUPTIONS}
    batch, golden_rows = [], []
    for sample in samples(name):
        golden = golden_episode(sample.steps)
        assert reference.episode_reward(golden).reward == 1.0, sample.sample_id
        assert reference.episode_reward(golden, "binary").reward == 1.0
        golden_rows.append(len(batch))
        batch.append(golden)
        for cname, i, bad in corrupted(golden):
            score = reference.episode_reward(bad).reward
            assert score < 1.0, (sample.sample_id, cname, i, score)
            applied[cname] += 1
            batch.append(bad)
    for cname, n in applied.items():
        if cname == "swapped_dependent_calls" and name == "eval_100.json":
            assert n == 0  # no depends_on edges recorded in that file
        else:
            assert n >= 100, (cname, n)

    # The kernel agrees on all of them, golden rollouts exactly 1.
    enc = encode_episodes(batch, EncodeConfig())
    assert not enc["overflow"].any()
    got = np.asarray(make_kernel("episode", "graduated")(enc)["reward"])
    want = np.array([reference.episode_reward(e).reward for e in batch])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.all(got[golden_rows] == 1.0)


def test_paper_lacks_the_property_on_real_samples():
    """`paper`: perfect rollouts below 1 when a function repeats; dropping or repeating a call can
    leave the reward unchanged or raise it."""
    below_one, drop_not_less, repeat_not_less, total = 0, 0, 0, 0
    for name in FILES:
        for sample in samples(name):
            total += 1
            golden = golden_episode(sample.steps)
            base = reference.paper_reward(golden).reward
            names = [s.function for s in sample.steps]
            repeats = len(set(names)) < len(names)
            if base < 1.0:
                below_one += 1
                assert repeats  # only repeated functions break the golden score
            # Repeated functions with different arguments always push the perfect rollout below 1.
            if any(
                a.function == b.function and not reference_common.values_check(b.arguments, a.arguments)
                for k, a in enumerate(sample.steps)
                for b in sample.steps[k + 1 :]
            ):
                assert base < 1.0
            if any(reference.paper_reward(CORRUPTIONS["dropped_call"](golden, i)).reward >= base for i in range(len(golden.calls))):
                drop_not_less += 1
            if any(reference.paper_reward(CORRUPTIONS["repeated_call"](golden, i)).reward >= base for i in range(len(golden.calls))):
                repeat_not_less += 1
    # Measured on the bundled files (201 samples): most samples repeat a function.
    assert below_one >= 50, below_one
    assert drop_not_less >= 50, drop_not_less
    assert repeat_not_less >= 50, repeat_not_less


def test_paper_repeat_of_a_good_call_raises_reward_on_a_real_sample():
    """A concrete case: one wrong-value call, then repeating a good call raises `paper` but lowers
    `episode`."""
    sample = samples("bfcl_training_3_per_workflow.json")[0]
    golden = golden_episode(sample.steps)
    bad = CORRUPTIONS["wrong_value"](golden, len(golden.calls) - 1)
    rep = CORRUPTIONS["repeated_call"](bad, 0)
    assert reference.paper_reward(rep).reward > reference.paper_reward(bad).reward
    assert reference.episode_reward(rep).reward < reference.episode_reward(bad).reward


@pytest.mark.parametrize("compat", ("ours", "official"))
def test_paper_kernel_matches_reference_on_real_samples_in_both_settings(compat):
    """Kernel == reference for `paper` on every real golden rollout and its corruptions; golden
    rollouts: below 1 only with a repeated function, or (official only) a list-of-object value."""
    from toolrl.rewards.registry import score_episodes

    batch, golden_rows, samples_of_row = [], [], []
    for name in FILES:
        for sample in samples(name):
            golden = golden_episode(sample.steps)
            golden_rows.append(len(batch))
            samples_of_row.append(sample)
            batch.append(golden)
            batch += [bad for _, _, bad in corrupted(golden)]
    out = score_episodes("paper", "graduated", batch, paper_compat=compat)
    want = np.array([reference.paper_reward(e, paper_compat=compat).reward for e in batch])
    np.testing.assert_allclose(out.reward, want, atol=1e-6)
    for row, sample in zip(golden_rows, samples_of_row):
        names = [s.function for s in sample.steps]
        has_legs = any(isinstance(v, list) and v and isinstance(v[0], dict) for s in sample.steps for v in s.arguments.values())
        if out.reward[row] < 1.0:
            assert len(set(names)) < len(names) or (compat == "official" and has_legs), sample.sample_id
        elif compat == "official":
            assert not has_legs
