"""Registry and host batch API: names, errors, weights, overflow handling, turns."""

import numpy as np
import pytest

from toolrl.data.paths import default_data_dir
from toolrl.data.traces import load_trace_file
from toolrl.rewards import (
    EncodeConfig,
    EpisodeInput,
    ErrorCode,
    GoldenStep,
    PredictedCall,
    RewardWeights,
    TurnInput,
    get_reward,
    registered_families,
    score_episodes,
    score_turns,
)
from toolrl.rewards import reference
from toolrl.rewards.corruptions import CORRUPTIONS, golden_episode


def test_unknown_names_list_the_registered_ones():
    assert registered_families() == ("episode", "paper", "turn")
    with pytest.raises(ValueError, match="registered: episode, paper, turn"):
        get_reward("nope", "graduated")
    with pytest.raises(ValueError, match="available: graduated, atomic, orchestration, binary"):
        get_reward("paper", "nope")
    with pytest.raises(ValueError, match="call score_turns"):
        score_episodes("turn", "graduated", [])


def test_reward_object_reference_and_kernel_agree():
    ep = EpisodeInput((PredictedCall("A", {"x": 1}, response={"ok": 1}),), (GoldenStep("A", {"x": 2}),))
    r = get_reward("episode", "graduated")
    # AST 0.66, semantic 1 -> value 0.83; orch 1 -> 0.5*0.83 + 0.5 = 0.915.
    assert r.reference(ep).reward == pytest.approx(0.915)
    assert float(r.kernel(r.encode([ep]))["reward"][0]) == pytest.approx(0.915, abs=1e-6)


def test_weights_are_configurable():
    ep = EpisodeInput((PredictedCall("A", {"x": 1}, response={"ok": 1}),), (GoldenStep("A", {"x": 2}),))
    w = RewardWeights(atomic=1.0, orchestration=0.0)
    out = score_episodes("episode", "graduated", [ep], weights=w)
    assert out.reward[0] == pytest.approx(0.83, abs=1e-6)
    t = TurnInput((PredictedCall("A", {"x": 1}),), (GoldenStep("A", {"x": 2}),), turn=(0,))
    out = score_turns("turn", "atomic", [t], weights=RewardWeights(turn=(0.25, 0.25, 0.25, 0.25)))
    assert out.reward[0] == pytest.approx(0.75, abs=1e-6)  # format + name + keys, no value


def test_score_episodes_on_real_samples_with_overflow_rescored_by_reference():
    samples = load_trace_file(default_data_dir() / "bfcl_training_3_per_workflow.json")[:30]
    eps = []
    for s in samples:
        g = golden_episode(s.steps)
        eps += [g] + [fn(g, 0) for fn in CORRUPTIONS.values() if fn(g, 0) is not None]
    # A small config forces overflow on many rows: they must still be exact.
    config = EncodeConfig(max_calls=4, max_steps=4, vocab_words=1)
    for family in ("paper", "episode"):
        for mode in ("graduated", "binary"):
            out = score_episodes(family, mode, eps, config)
            want = np.array([reference.REFERENCES[family](e, mode).reward for e in eps])
            assert out.overflow.any() and out.reward.shape == (len(eps),)
            np.testing.assert_allclose(out.reward, want, atol=1e-6)
            assert out.error_codes.shape == (len(eps), 4)
    out = score_episodes("episode", "graduated", eps, config, overflow="report")
    assert out.overflow.any()
    with pytest.raises(ValueError, match="exceed"):
        score_episodes("episode", "graduated", eps, config, overflow="raise")


def test_score_turns_levels_and_codes():
    steps = (GoldenStep("S", {"c": "Paris"}), GoldenStep("H", {"id": 1}, depends_on=(0,)))
    turns = [
        TurnInput((PredictedCall("S", {"c": "paris"}),), steps, turn=(0,), later=(1,)),
        TurnInput((PredictedCall("H", {"id": 1}),), steps, turn=(0,), later=(1,)),
        TurnInput((PredictedCall("H", {"id": 1.0}),), steps, turn=(1,), done=frozenset({0})),
    ]
    out = score_turns("turn", "graduated", turns)
    # Turn 1 right; turn 2 premature H: s = 0.1 with S -> atomic 0.1, F1 0, orch 0 -> 0.05.
    np.testing.assert_allclose(out.reward, [1.0, 0.05, 1.0], atol=1e-6)
    assert out.error_codes[:, 0].tolist() == [ErrorCode.OK, ErrorCode.PREMATURE, ErrorCode.OK]
    assert set(out.levels) == {"atomic", "orchestration", "frontier_f1", "premature", "format", "name", "structure", "values", "semantic"}
    assert out.levels["premature"].tolist() == [0.0, 1.0, 0.0]
