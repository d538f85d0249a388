"""The study's power calculations against simulation (independent truth: draw the experiment, run the test)."""

import json

import numpy as np
import pytest
from scipy import stats

from experiments.study.power import (binomial_sd_points, mcnemar_power, mdd_between_arms, mdd_gain_over_start,
                                     mdd_mcnemar)


def test_one_sample_t_mdd_gives_80_percent_power_in_simulation():
    d = mdd_gain_over_start(sd=2.0, seeds=5)
    assert 3.2 < d < 3.5  # 1.68 standard deviations for 5 seeds (Cohen's tables)
    rng = np.random.default_rng(0)
    gains = rng.normal(d, 2.0, size=(20000, 5))
    rejected = stats.ttest_1samp(gains, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.80, abs=0.015)


def test_two_sample_t_mdd_gives_80_percent_power_in_simulation():
    d = mdd_between_arms(sd=1.5, seeds_a=5, seeds_b=5)
    assert 2.9 < d < 3.15  # ~2.02 standard deviations for 5 + 5 seeds
    rng = np.random.default_rng(1)
    a = rng.normal(d, 1.5, size=(20000, 5))
    b = rng.normal(0.0, 1.5, size=(20000, 5))
    rejected = stats.ttest_ind(a, b, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.80, abs=0.015)
    assert mdd_between_arms(1.5, 10, 10) < d  # more seeds, smaller detectable difference


def test_mcnemar_power_matches_simulation_of_the_exact_test():
    n, start, gain, loss = 60, 0.1, 0.12, 0.2
    power = mcnemar_power(n, start, gain, loss)
    rng = np.random.default_rng(2)
    q_b, q_c = (1 - start) * gain, start * loss
    draws = rng.multinomial(n, [q_b, q_c, 1 - q_b - q_c], size=4000)
    rejected = [b + c > 0 and stats.binomtest(int(b), int(b + c), 0.5).pvalue <= 0.05 for b, c, _ in draws]
    assert power == pytest.approx(np.mean(rejected), abs=0.025)


def test_mcnemar_mdd_shrinks_with_turns_and_is_reached():
    small, large = mdd_mcnemar(48, 0.05), mdd_mcnemar(184, 0.05)
    assert large < small
    gain = (large / 100) / 0.95
    assert mcnemar_power(184, 0.05, gain) >= 0.8
    assert mdd_mcnemar(5, 0.5, loss=0.9) == float("inf")  # five turns cannot show anything


def test_binomial_sd_by_hand():
    assert binomial_sd_points(0.1, 100) == pytest.approx(3.0)


def test_the_design_goes_into_the_summary_and_the_report(tmp_path):
    """design.json (written before the runs) is carried into summary.json as ``design`` with the keys the
    study issue asks for, and the report lists each comparison's detectable difference."""
    from experiments import sweep
    from experiments.study.power import DESIGN_FILE, design_record, design_table

    table = design_table([3.0], {"graduated": 5, "binary": 5}, {"novel_test": (184, 0.03)})
    design = design_record(table, 184, 90, 100, 3.0)
    mdd = design["min_detectable_difference_points"]
    assert mdd["graduated - start (seed level, SD 3)"] == table["seed_level"]["sd=3"]["graduated - start"]
    assert mdd["one run - start (turn level, novel_test)"] == table["turn_level"]["novel_test"]["mdd_points"]
    results = tmp_path / "s"
    results.mkdir()
    (results / DESIGN_FILE).write_text(json.dumps(design))
    summary, text = sweep.write_summary(results)
    assert summary["runs"] == []  # design.json is not a run
    assert summary["design"]["heldout_novel_turns"] == 184 and summary["design"]["seeds"] == {"graduated": 5, "binary": 5}
    assert json.loads((results / "summary.json").read_text())["design"] == design
    assert f"| binary - graduated (seed level, SD 3) | {mdd['binary - graduated (seed level, SD 3)']:.1f} |" in text
