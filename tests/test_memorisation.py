"""The memorisation check (slow): SFT on a few training samples until their loss is low, then the
evaluator on those same samples with the run's own saved settings gets >= 90 % of their turns right.

It is the end-to-end proof that training and evaluation pose the same task (prompts, turns, chat
format, decoding): `python -m experiments.memorisation` runs the same thing and prints its numbers.
"""

import pytest


@pytest.mark.slow
def test_a_model_fine_tuned_on_samples_passes_them_through_the_evaluator(tmp_path):
    from experiments.memorisation import run

    result = run(samples=3, steps=75, learning_rate=1e-4, workdir=str(tmp_path / "memorisation"), batch_size=1)
    assert result["nll_last"] < 0.05, result
    # Under the salient response view only two fitting samples have two or more scored turns, so the
    # picker returns 2 of the 3 asked for (4 turns); fewer would make the check too weak to mean much.
    assert result["turns"] >= 4, result
    assert result["turn_accuracy"] >= 0.9, result
