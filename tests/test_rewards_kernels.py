"""Kernel == reference on random episodes and turns (hypothesis), plus encoder properties.

Small alphabets of names, keys and values make name matches, repeated functions, equal-after-
normalisation strings, int/float agreement and list-of-object values frequent.  Each hypothesis
example is a batch of episodes pushed through one jitted call, so a few hundred examples cover
thousands of episodes cheaply.
"""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolrl.rewards import reference, reference_common
from toolrl.rewards.encode import EncodeConfig, canonical_value, encode_episodes, encode_turns, value_hash
from toolrl.rewards.kernels import format_ok_from_tokens_jit, make_kernel
from toolrl.rewards.types import MODES, EpisodeInput, GoldenStep, PredictedCall, TurnInput

CONFIG = EncodeConfig(max_calls=6, max_steps=5, vocab_words=2)
MAX_KEYS = 3
NAMES = ["A", "B", "C"]
KEYS = ["x", "y", "z"]
VALUES = [
    1, 1.0, 2, 2.5, -0.0, 0, True, False, None, "a", "A", "a-b", "ab", "b", "",
    [1, 2], [1.0, 2], [2, 1], [], [{"id": "A.X"}], [{"id": "ax"}], [{"id": "a"}, {"id": "b"}],
    {"k": "a"}, {"k": "A"}, {"k": 1}, "it's", 'it"s', [{}], ["a", 1], [[1]], [[1.0]],
]  # fmt: skip
RESPONSES = [
    {"status": True, "data": 1}, {"data": [1]}, {"error": "x"}, {"status": False}, {"status": 0}, {}, [], [1],
    "", "boom", 0, 2.5, False, None,
]  # fmt: skip
UNPARSEABLE_REASONS = ["invalid_json", "not_an_object", "missing_name", "too_deep", "unclosed_block"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
BATCH = 24

args_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=MAX_KEYS)


@st.composite
def steps_st(draw):
    n = draw(st.integers(0, CONFIG.max_steps))
    steps = []
    for j in range(n):
        deps = draw(st.sets(st.integers(0, j - 1), max_size=2)) if j else set()
        steps.append(GoldenStep(draw(st.sampled_from(NAMES)), draw(args_st), tuple(sorted(deps))))
    return tuple(steps)


@st.composite
def call_st(draw, steps):
    kind = draw(st.integers(0, 9))
    if kind == 9:
        return PredictedCall.unparseable(draw(st.sampled_from(UNPARSEABLE_REASONS)))
    if steps and kind < 6:  # a (possibly mutated) copy of a golden call
        base = draw(st.sampled_from(steps))
        name, args = base.function, dict(base.arguments)
        if args and draw(st.booleans()):
            del args[draw(st.sampled_from(sorted(args)))]
        if draw(st.booleans()):
            args[draw(st.sampled_from(KEYS))] = draw(st.sampled_from(VALUES))
    else:
        name, args = draw(st.sampled_from(NAMES)), draw(args_st)
    executed = draw(st.integers(0, 4)) > 0
    return PredictedCall(name, args, executed=executed, response=draw(st.sampled_from(RESPONSES)))


@st.composite
def episode_st(draw):
    steps = draw(steps_st())
    calls = draw(st.lists(call_st(steps), max_size=CONFIG.max_calls))
    return EpisodeInput(tuple(calls), steps)


@st.composite
def turn_st(draw):
    steps = draw(steps_st())
    # Each golden step is done, in this turn, an optional call of this turn, in a later turn, or
    # outside all of them.
    where = [draw(st.integers(0, 4)) for _ in steps]
    calls = draw(st.lists(call_st(steps), max_size=CONFIG.max_calls))
    return TurnInput(
        calls=tuple(calls),
        steps=steps,
        turn=tuple(j for j, w in enumerate(where) if w in (1, 4)),
        later=tuple(j for j, w in enumerate(where) if w == 2),
        done=frozenset(j for j, w in enumerate(where) if w == 0),
        optional=tuple(j for j, w in enumerate(where) if w == 4),
    )


def _pad(items, empty):
    """Pads to BATCH items so every example reuses one compiled kernel (jit specialises on B)."""
    return list(items) + [empty] * (BATCH - len(items))


def _check(family, items, encoded, paper_compat="ours"):
    ref_fn = reference.REFERENCES[family]
    for mode in MODES:
        out = make_kernel(family, mode, paper_compat=paper_compat)(encoded)
        reward = np.asarray(out["reward"])
        for b, item in enumerate(items):
            ref = ref_fn(item, mode, paper_compat=paper_compat)
            assert abs(reward[b] - ref.reward) <= 1e-6, (mode, item, reward[b], ref)
            if mode == "graduated":
                assert set(out["levels"]) == set(ref.levels)
                for name, v in ref.levels.items():
                    assert abs(np.asarray(out["levels"][name])[b] - v) <= 1e-6, (name, item)
                codes = np.asarray(out["error_codes"])[b]
                n = len(item.calls)
                assert tuple(codes[:n]) == ref.error_codes, (item, codes, ref.error_codes)
                assert np.all(codes[n:] == -1)
                assert set(out["calls"]) == set(ref.call_levels)
                for name, v in ref.call_levels.items():
                    got = np.asarray(out["calls"][name])[b]
                    np.testing.assert_allclose(got[:n], v, atol=1e-6, err_msg=f"{name} {item}")
                    assert np.all(got[n:] == 0.0)


@SETTINGS
@given(st.lists(episode_st(), min_size=1, max_size=BATCH))
def test_paper_kernel_matches_reference(episodes):
    episodes = _pad(episodes, EpisodeInput((), ()))
    enc = encode_episodes(episodes, CONFIG)
    assert not enc["overflow"].any()
    _check("paper", episodes, enc)


@SETTINGS
@given(st.lists(episode_st(), min_size=1, max_size=BATCH))
def test_paper_official_kernel_matches_reference(episodes):
    episodes = _pad(episodes, EpisodeInput((), ()))
    enc = encode_episodes(episodes, CONFIG)
    assert not enc["overflow"].any()
    _check("paper", episodes, enc, paper_compat="official")


@SETTINGS
@given(st.lists(episode_st(), min_size=1, max_size=BATCH))
def test_episode_kernel_matches_reference(episodes):
    episodes = _pad(episodes, EpisodeInput((), ()))
    enc = encode_episodes(episodes, CONFIG)
    assert not enc["overflow"].any()
    _check("episode", episodes, enc)


@SETTINGS
@given(st.lists(turn_st(), min_size=1, max_size=BATCH))
def test_turn_kernel_matches_reference(turns):
    turns = _pad(turns, TurnInput((), (), ()))
    enc = encode_turns(turns, CONFIG)
    assert not enc["overflow"].any()
    _check("turn", turns, enc)


# ----------------------------------------------------------------------------- encoder


json_st = st.recursive(
    st.sampled_from(VALUES[:15]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=2),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(json_st, json_st)
def test_value_hash_equality_is_values_equal(a, b):
    assert (value_hash(a) == value_hash(b)) == reference_common.values_equal(a, b)
    assert (canonical_value(a) == canonical_value(b)) == reference_common.values_equal(a, b)


def test_hash_is_stable_across_processes():
    values = ["New York", 2.5, [{"fromId": "BOS.AIRPORT"}], None, True]
    code = "from toolrl.rewards.encode import value_hash; print([value_hash(v) for v in %r])" % (values,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([value_hash(v) for v in values])


def test_overflow_is_counted_not_silent():
    steps = (GoldenStep("A", {f"k{i}": i for i in range(40)}),)  # 40 keys > 32 bits (W = 1)
    calls = tuple(PredictedCall("A", {}) for _ in range(8))  # 8 calls > C = 6
    config = EncodeConfig(max_calls=6, max_steps=5, vocab_words=1)
    enc = encode_episodes([EpisodeInput(calls, steps), EpisodeInput(calls[:1], steps[:0])], config)
    assert enc["overflow"].tolist() == [2 + 8, 0]
    with pytest.raises(ValueError, match="sample 0: golden step 0 .* out of range"):
        encode_episodes([EpisodeInput((), (GoldenStep("A", {}, depends_on=(3,)),))], CONFIG)


def test_shapes_and_dtypes():
    enc = encode_turns([TurnInput((PredictedCall("A", {"x": 1}),), (GoldenStep("A", {"x": 1}),), (0,))], CONFIG)
    assert enc["call_val_bits"].shape == (1, 6, 2) and enc["call_val_bits"].dtype == np.uint32
    assert enc["call_name"].shape == (1, 6) and enc["call_name"].dtype == np.int32
    assert enc["step_deps"].shape == (1, 5, 5) and enc["turn_mask"].shape == (1, 5)
    out = make_kernel("turn", "graduated")(enc)
    assert out["reward"].shape == (1,) and out["error_codes"].shape == (1, 6) and float(out["reward"][0]) == 1.0


# ----------------------------------------------------------------------------- format from tokens


def _format_ok_python(ids, mask, o, c):
    depth = 0
    for t, m in zip(ids, mask):
        if not m:
            continue
        depth += int(t == o) - int(t == c)
        if depth not in (0, 1):
            return False
    return depth == 0


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.integers(0, 3), min_size=8, max_size=8), min_size=1, max_size=8), st.integers(0, 8))
def test_format_ok_from_tokens(rows, valid_len):
    ids = np.array(rows, np.int32)
    mask = np.arange(8)[None, :] < valid_len
    mask = np.broadcast_to(mask, ids.shape)
    got = np.asarray(format_ok_from_tokens_jit(ids, mask, open_id=1, close_id=2))
    want = [_format_ok_python(r, m, 1, 2) for r, m in zip(ids, mask)]
    assert got.tolist() == want
