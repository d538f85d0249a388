"""The design's comparisons (experiments/study/comparisons.py): each arm against the start and against
graduated, with its estimate, interval, detectable difference and reading, by hand and against scipy."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats as scipy_stats

from experiments import sweep
from experiments.study import comparisons, power, report, stats

T2 = scipy_stats.t.ppf(0.975, 2)  # 4.302653


def _result(arm, seed, end, start=None, source="eval_100", verdicts=None):
    """A finished run in the schema the collector writes (as tests/test_experiments.py's ``_result``):
    ``end`` / ``start`` are turn accuracies; ``verdicts`` = (start, end) per-turn strings on 4 turns."""
    def entry(accuracy, v):
        e = {"turn_accuracy": accuracy, "call_accuracy": accuracy}
        return e | ({"turns": len(v), "verdicts": v, "turn_ids": "t"} if v else {})

    before, after = verdicts or (None, None)
    kind = {"sft": "sft", "start": "start"}.get(arm, "grpo")
    return {"schema": sweep.SCHEMA, "name": arm if kind != "grpo" else f"{arm}_seed{seed}", "kind": kind, "arm": arm,
            "seed": seed, "status": "done", "steps": 4,
            "eval": {source: {"start": None if start is None else entry(start, before), "end": entry(end, after)}},
            "train": {"reward_mean": 0.5, "degenerate_fraction": 0.5}, "fit": None, "wall_seconds": {"total": 60.0}}


def _study():
    """SFT start 0.05; graduated 0.10, 0.20, 0.30; binary 0.20, 0.20, 0.50; orchestration 0.30, 0.31, 0.32;
    atomic one seed, 0.40."""
    return [_result("sft", 0, 0.05),
            *[_result("graduated", s, e) for s, e in enumerate((0.10, 0.20, 0.30))],
            *[_result("binary", s, e) for s, e in enumerate((0.20, 0.20, 0.50))],
            *[_result("orchestration", s, e) for s, e in enumerate((0.30, 0.31, 0.32))],
            _result("atomic", 0, 0.40)]


def _rows(summary, source="eval_100"):
    return {row["comparison"]: row for row in summary["comparisons"]["sources"][source]}


def test_arm_minus_start_is_the_one_sample_t_interval_of_the_gains():
    rows = _rows(stats.summarize(_study()))
    row = rows["graduated - start"]
    # gains 5, 15, 25 points: mean 15, s = 10, half = t_{0.975,2} * 10 / sqrt(3) = 24.84
    low, high = scipy_stats.t.interval(0.95, 2, loc=15.0, scale=10 / math.sqrt(3))
    assert (row["n"], row["n_reference"]) == (3, 1)
    assert row["estimate_points"] == pytest.approx(15.0)
    assert row["seed_sd_points"] == pytest.approx(10.0)
    assert row["half_width_points"] == pytest.approx(T2 * 10 / math.sqrt(3)) == pytest.approx(24.8414, abs=1e-4)
    assert row["interval_points"] == [pytest.approx(low), pytest.approx(high)]
    assert row["mdd_observed_points"] == pytest.approx(power.mdd_gain_over_start(10.0, 3))
    assert row["mdd_planned_points"] is None  # no design.json
    assert row["reading"] == f"not detected; would detect ≥ {power.mdd_gain_over_start(10.0, 3):.1f}"
    # the same numbers as the summary's vs_sft, in points
    vs_sft = stats.summarize(_study())["sources"]["eval_100"]["vs_sft"]["graduated"]["turn_accuracy"]
    assert row["half_width_points"] == pytest.approx(100 * vs_sft["half_width"])


def test_arm_minus_graduated_is_the_pooled_two_sample_interval():
    summary = stats.summarize(_study())
    row = _rows(summary)["binary - graduated"]
    binary, graduated = [20.0, 20.0, 50.0], [10.0, 20.0, 30.0]
    ci = scipy_stats.ttest_ind(binary, graduated, equal_var=True).confidence_interval(0.95)
    # means 30 and 20; variances 300 and 100 -> pooled SD sqrt(200); half = t_{0.975,4} sqrt(200) sqrt(2/3)
    assert (row["n"], row["n_reference"]) == (3, 3)
    assert row["estimate_points"] == pytest.approx(10.0)
    assert row["seed_sd_points"] == pytest.approx(math.sqrt(200))
    assert row["interval_points"] == [pytest.approx(ci.low), pytest.approx(ci.high)]
    assert row["half_width_points"] == pytest.approx(scipy_stats.t.ppf(0.975, 4) * math.sqrt(200) * math.sqrt(2 / 3))
    assert row["mdd_observed_points"] == pytest.approx(power.mdd_between_arms(math.sqrt(200), 3, 3))
    assert row["analysis"] == "pooled two-sample t"
    # vs_baseline stays the seed-paired analysis: differences +10, 0, +20 -> mean 10, s = 10
    paired = summary["sources"]["eval_100"]["vs_baseline"]["binary"]["turn_accuracy"]
    assert 100 * paired["mean"] == pytest.approx(10.0)
    assert 100 * paired["half_width"] == pytest.approx(T2 * 10 / math.sqrt(3))
    assert row["half_width_points"] != pytest.approx(100 * paired["half_width"])


def test_readings_detected_not_detected_and_too_few_seeds():
    rows = _rows(stats.summarize(_study()))
    # orchestration gains 25, 26, 27: interval 26 ± 2.48 excludes 0
    assert rows["orchestration - start"]["reading"] == "detected: +26.0 (interval excludes 0)"
    assert rows["orchestration - start"]["interval_points"][0] > 0
    assert rows["atomic - start"]["reading"] == comparisons.TOO_FEW == "too few seeds (n < 2)"
    assert rows["atomic - start"]["estimate_points"] == pytest.approx(35.0)
    assert rows["atomic - start"]["interval_points"] is None and rows["atomic - start"]["mdd_observed_points"] is None
    assert rows["atomic - graduated"]["reading"] == comparisons.TOO_FEW  # 1 vs 3 seeds
    assert rows["atomic - graduated"]["estimate_points"] == pytest.approx(20.0)
    # the order: every arm - start, then every other arm - graduated (ARMS order, baseline first)
    assert list(rows) == ["graduated - start", "atomic - start", "orchestration - start", "binary - start",
                          "atomic - graduated", "orchestration - graduated", "binary - graduated"]
    negative = comparisons.reading({"n": 3, "n_reference": 3, "reference": "graduated", "half_width_points": 1.0,
                                    "interval_points": [-5.0, -3.0], "estimate_points": -4.0,
                                    "mdd_observed_points": None, "mdd_planned_points": None})
    assert negative == "detected: -4.0 (interval excludes 0)"


def test_the_design_gives_planned_mdds_its_alpha_and_the_arms_not_yet_run():
    design = {"seeds": {"graduated": 5, "binary": 5, "atomic": 3, "orchestration": 3}, "planning_seed_sd_points": 3.0,
              "alpha": 0.1, "power": 0.9,
              "min_detectable_difference_points": {"graduated - start (seed level, SD 3)": 5.05,
                                                   "binary - graduated (seed level, SD 3)": 6.07,
                                                   "one run - start (turn level, eval_100)": 8.64}}
    results = [_result("sft", 0, 0.05), *[_result("graduated", s, e) for s, e in enumerate((0.10, 0.20, 0.30))]]
    summary = stats.summarize(results, design=design)
    assert summary["design"] == design
    c = summary["comparisons"]
    assert (c["alpha"], c["power"], c["planning_seed_sd_points"], c["metric"]) == (0.1, 0.9, 3.0, "turn_accuracy")
    rows = _rows(summary)
    assert rows["graduated - start"]["mdd_planned_points"] == 5.05
    observed = power.mdd_gain_over_start(10.0, 3, 0.1, 0.9)  # the design's alpha and power
    assert rows["graduated - start"]["mdd_observed_points"] == pytest.approx(observed)
    # binary is planned but has no run yet: its rows are there, with n = 0 and the planned MDD
    binary = rows["binary - graduated"]
    assert (binary["n"], binary["n_reference"], binary["estimate_points"]) == (0, 3, None)
    assert binary["mdd_planned_points"] == 6.07 and binary["reading"] == comparisons.TOO_FEW
    assert rows["atomic - start"]["mdd_planned_points"] is None and rows["atomic - start"]["n"] == 0
    # not detected and no observed MDD (no spread): the planned one is quoted
    flat = [_result("sft", 0, 0.05), *[_result("graduated", s, 0.05) for s in range(3)]]
    row = _rows(stats.summarize(flat, design=design))["graduated - start"]
    assert row["seed_sd_points"] == 0.0 and row["mdd_observed_points"] is None
    assert row["reading"] == "not detected; would detect ≥ 5.0"  # 5.05 at one decimal
    assert _rows(stats.summarize(flat))["graduated - start"]["reading"] == "not detected"


def test_a_source_without_a_start_or_without_runs_is_skipped():
    results = [_result("sft", 0, 0.05, source="eval_100"),
               *[_result("graduated", s, e, source="other") for s, e in enumerate((0.1, 0.2))]]
    # "other": no run logged its start and the SFT run has no evaluation there; eval_100: no GRPO run
    summary = stats.summarize(results)
    assert set(summary["sources"]) == {"eval_100", "other"}
    assert summary["comparisons"]["sources"] == {}
    assert "## Comparisons" not in report.markdown_report(summary)
    # a run's own step-0 evaluation is a start
    own = [_result("graduated", s, e, start=0.1, source="other") for s, e in enumerate((0.2, 0.3))]
    assert list(stats.summarize(own)["comparisons"]["sources"]) == ["other"]
    assert _rows(stats.summarize(own), "other")["graduated - start"]["estimate_points"] == pytest.approx(15.0)


def test_turns_gained_and_lost_summed_over_seeds():
    runs = [_result("start", 0, 0.25, verdicts=(None, "1000")),
            _result("graduated", 0, 0.75, start=0.0, verdicts=("0000", "1110")),
            _result("graduated", 1, 0.5, start=0.25, verdicts=("1000", "0110")),
            _result("atomic", 0, 0.25, verdicts=(None, "0100"))]
    summary = stats.summarize(runs)
    rows = _rows(summary)
    # graduated: seed 0 +3 -0, seed 1 +2 -1 -> +5 -1, p = 2 (1 + 6) / 64 (the pooled stratified test)
    assert rows["graduated - start"]["flips"] == {"gained": 5, "lost": 1, "p": pytest.approx(14 / 64), "seeds": 2}
    pooled = summary["sources"]["eval_100"]["flips_pooled"]["flips_vs_sft"]["graduated"]
    assert rows["graduated - start"]["flips"]["p"] == pooled["p"]
    # atomic, one seed against the start run's verdicts 1000: +1 -1
    assert rows["atomic - start"]["flips"] == {"gained": 1, "lost": 1, "p": 1.0, "seeds": 1}
    # atomic against graduated's seed 0 (1110 -> 0100): +0 -2
    assert rows["atomic - graduated"]["flips"] == {"gained": 0, "lost": 2, "p": 0.5, "seeds": 1}
    assert comparisons.seed_flips([], None) is None


def test_one_and_two_sample_helpers_by_hand():
    one = comparisons.one_sample([0.1, None, float("nan"), 0.3])
    assert (one["n"], one["estimate"]) == (2, pytest.approx(20.0))
    assert one["half_width"] == pytest.approx(100 * stats.t_interval([0.1, 0.3])[1])
    assert comparisons.one_sample([]) == {"estimate": None, "half_width": None, "sd": None, "n": 0}
    two = comparisons.two_sample([0.2, 0.4], [0.1])
    assert (two["estimate"], two["half_width"], two["n"], two["n_reference"]) == (pytest.approx(20.0), None, 2, 1)
    assert comparisons.two_sample([], [0.1])["estimate"] is None
    assert comparisons.observed_mdd(3.0, 5, None, 0.05, 0.8) == pytest.approx(power.mdd_gain_over_start(3.0, 5))
    assert comparisons.observed_mdd(3.0, 3, 5, 0.05, 0.8) == pytest.approx(power.mdd_between_arms(3.0, 3, 5))
    assert comparisons.observed_mdd(3.0, 1, None, 0.05, 0.8) is None
    assert comparisons.observed_mdd(3.0, 3, 1, 0.05, 0.8) is None
    assert comparisons.planned_mdd({"min_detectable_difference_points": {"atomic - start (seed level, SD 2)": 6.5}},
                                   "atomic", "start") == 6.5


def test_report_summary_file_and_readme_state_every_comparison(tmp_path):
    results = tmp_path / "s"
    for r in _study():
        sweep.write_json_atomic(results / f"{r['name']}.json", r)
    design = {"heldout_novel_turns": 184, "eval_100_turns": 90, "eval_100_samples": 100,
              "seeds": {"graduated": 3, "binary": 3}, "planning_seed_sd_points": 3.0, "alpha": 0.05, "power": 0.8,
              "min_detectable_difference_points": {"binary - graduated (seed level, SD 3)": 7.38}}
    (results / "design.json").write_text(json.dumps(design))
    summary, text = sweep.write_summary(results)
    assert json.loads((results / "summary.json").read_text()) == summary
    assert summary == json.loads(json.dumps(stats.summarize(sweep.load_results(results), design=design)))
    assert text.index("## Design") < text.index("## Comparisons") < text.index("## eval_100: end of run")
    assert "| comparison | seeds | estimate | 95 % interval | seed SD | MDD planned (SD 3) |" in text
    ci = scipy_stats.ttest_ind([20.0, 20.0, 50.0], [10.0, 20.0, 30.0]).confidence_interval(0.95)
    mdd = power.mdd_between_arms(math.sqrt(200), 3, 3)
    assert (f"| binary - graduated | 3 vs 3 | +10.0 | {ci.low:+.1f} to {ci.high:+.1f} | 14.1 | 7.4 | {mdd:.1f} | – | "
            f"not detected; would detect ≥ {mdd:.1f} |") in text
    assert "| orchestration - start | 3 | +26.0 |" in text and "| detected: +26.0 (interval excludes 0) |" in text
    tables = sweep.readme_tables(summary, sweep.load_results(results))
    assert tables.startswith("Turn accuracy, points; 95 % intervals: one-sample t")
    assert "| source | comparison | seeds | estimate |" in tables
    assert "| eval_100 | graduated - start | 3 | +15.0 | -9.8 to +39.8 | – |" in tables  # no seed SD here
    assert tables.index("| source | comparison") < tables.index("| run | seeds |")  # comparisons first


def test_without_the_pilot_seeds_drops_them_from_the_gains_and_flips(tmp_path):
    design = {"seeds": {"graduated": 3}, "alpha": 0.05, "power": 0.8, "pilot_seeds": {"graduated": [0]},
              "heldout_novel_turns": 4, "eval_100_turns": 4, "eval_100_samples": 4,
              "min_detectable_difference_points": {"graduated - start (seed level, SD 3)": 5.0}}
    summary = stats.summarize(_study(), design=design)
    (row,) = summary["comparisons"]["without_pilot_seeds"]["eval_100"]
    # gains without seed 0: 15, 25 points -> mean 20, s = 7.07, half = t_{0.975,1} * 7.07 / sqrt(2)
    assert row["comparison"] == "graduated - start, without seed 0" and row["excluded_seeds"] == [0]
    assert row["n"] == 2 and row["estimate_points"] == pytest.approx(20.0)
    assert row["half_width_points"] == pytest.approx(scipy_stats.t.ppf(0.975, 1) * math.sqrt(50) / math.sqrt(2))
    assert row["mdd_planned_points"] is None  # not planned
    assert row["seed_sd_points"] == pytest.approx(math.sqrt(50))
    # at 2 seeds the MDD's root finder is flat: equal to 1e-3 (the planned rows' tests use n >= 3)
    assert row["mdd_observed_points"] == pytest.approx(power.mdd_gain_over_start(math.sqrt(50), 2), rel=1e-3)
    assert _rows(summary)["graduated - start"]["n"] == 3  # the planned row keeps every seed
    flips = stats.summarize([_result("start", 0, 0.25, verdicts=(None, "1000")),
                             _result("graduated", 0, 0.75, start=0.0, verdicts=("0000", "1110")),
                             _result("graduated", 1, 0.5, start=0.25, verdicts=("1000", "0110")),
                             _result("graduated", 2, 0.25, start=0.25, verdicts=("1000", "0100"))], design=design)
    (row,) = flips["comparisons"]["without_pilot_seeds"]["eval_100"]
    assert row["flips"] == {"gained": 3, "lost": 2, "p": 1.0, "seeds": 2}  # seeds 1 (+2 -1) and 2 (+1 -1)
    assert "without_pilot_seeds" not in stats.summarize(_study())["comparisons"]  # no design, no row
    assert "### Without the seeds the pilots already ran" in report.markdown_report(summary)


def test_pilot_seeds_are_the_pilots_runs_of_the_studys_own_arms(tmp_path):
    for name, arm, seed in (("graduated_seed0", "graduated", 0), ("graduated+lr3e-5_seed0", "graduated,lr3e-5", 0)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name, "status": "done", "kind": "grpo", "arm": arm,
                                                           "seed": seed}))
    (tmp_path / "sft_start.json").write_text(json.dumps({"name": "sft_start", "status": "done", "kind": "sft_start",
                                                         "arm": "sft_start", "seed": None}))
    (tmp_path / "binary_seed1.json").write_text("{\"name\": \"binary_seed1\", \"kind\"")  # torn: not a finished run
    assert power.pilot_seeds(tmp_path, {"graduated": 5, "binary": 5}) == {"graduated": [0]}
