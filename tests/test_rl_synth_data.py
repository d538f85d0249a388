"""Training on the synthesized dataset: golden samples load from a toolrl_traces split, and every golden
rollout of them replays against the environment (all hits) and scores exactly 1 under `episode`."""

import pytest

from toolrl.data.workflows import load_workflow_templates
from toolrl.rewards.registry import score_episodes
from toolrl.rewards.types import EpisodeInput, PredictedCall
from toolrl.data.golden import load_samples
from toolrl.synth.build import Mix, split_by_workflow, synthesize
from toolrl.synth.pool import build_pool
from toolrl.synth.sampler import SynthKnobs
from toolrl.synth.tfds_builder import build_dataset


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory, response_cache, all_samples, tool_schemas, data_dir):
    pool = build_pool(response_cache, all_samples, load_workflow_templates(data_dir / "workflow_templates.json"),
                      tool_schemas)
    traces = synthesize(pool, [Mix(SynthKnobs(n_calls=3, n_distractors=2), 12)], seed=3)
    out = tmp_path_factory.mktemp("tfds")
    build_dataset(out, config="synthetic", splits=split_by_workflow(traces, 0.25, 0.0, seed=0))
    return out


def test_tasks_from_the_synthesized_split(synth_dir, booking_env):
    tasks = load_samples("synthetic:train", synth_dir=str(synth_dir), max_distractors=1)
    assert tasks
    episodes = []
    for task in tasks:
        steps = task.reward_steps()
        assert len(steps) == 3 and task.domain != ""
        used = {s.function for s in steps}
        assert len([t for t in task.tools if t["name"] not in used]) <= 1
        calls = []
        for step in steps:
            result = booking_env.execute_detailed({"name": step.function, "arguments": step.arguments})
            assert result.hit
            calls.append(PredictedCall(step.function, step.arguments, True, result.response))
        episodes.append(EpisodeInput(tuple(calls), steps))
    assert score_episodes("episode", "graduated", episodes).reward.tolist() == [1.0] * len(episodes)


def test_unknown_split_is_a_clear_error(synth_dir):
    with pytest.raises(FileNotFoundError, match="split 'nope'.*python -m toolrl.synth"):
        load_samples("synthetic:nope", synth_dir=str(synth_dir))
