"""What a study design can detect: minimum detectable differences (MDD) before any run is made.

Two analyses, matching the two ways the study reads its results (experiments/study/stats.py):

* **Seed level** (Student t over seeds). A GRPO run's held-out accuracy varies from seed to seed with
  standard deviation ``sd`` (training noise plus the held-out set's own binomial noise; a pilot gives it).
  - *Gain over the start*: each seed's end minus the one (greedy, deterministic) SFT start, a one-sample
    t test on ``n`` gains: :func:`mdd_gain_over_start`.
  - *Arm against arm*: two independent groups of seeds, a two-sample t test: :func:`mdd_between_arms`.
  Power comes from the noncentral t distribution (scipy), exact for normal seed means.
* **Turn level** (exact McNemar on paired verdicts of one run against its start, or two runs on the same
  turns). With ``n`` turns, a run that turns a share ``gain`` of the start's wrong turns right and
  ``loss`` of its right turns wrong has discordant pairs b ~ Bin(n, q_b), c ~ Bin(n, q_c);
  :func:`mcnemar_power` sums the exact test's rejections over that joint distribution, and
  :func:`mdd_mcnemar` searches the smallest accuracy difference it detects.

All differences are in accuracy points (0-100). Pure functions; no file is read.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats
from scipy.special import gammaln, xlogy

ALPHA = 0.05
POWER = 0.8


def _t_power(delta_over_se: float, df: int, alpha: float) -> float:
    """Power of a two-sided t test whose true standardised effect is ``delta_over_se``."""
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    power = scipy_stats.nct.sf(critical, df, delta_over_se) + scipy_stats.nct.cdf(-critical, df, delta_over_se)
    return 1.0 if math.isnan(power) else float(power)  # nct's tails overflow far past any power of interest


def _solve(power_at: callable, power: float, upper: float) -> float:
    """The effect at which ``power_at`` (increasing in the effect) reaches ``power``."""
    return float(optimize.brentq(lambda d: power_at(d) - power, 1e-9, upper))


def mdd_gain_over_start(sd: float, seeds: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest mean gain (points) over a fixed start that a one-sample t test on ``seeds`` per-seed
    gains detects, when gains vary with standard deviation ``sd`` (points)."""
    if seeds < 2 or sd <= 0:
        raise ValueError(f"need seeds >= 2 and sd > 0, got seeds={seeds}, sd={sd}")
    se = sd / math.sqrt(seeds)
    return _solve(lambda d: _t_power(d / se, seeds - 1, alpha), power, 20 * se)


def mdd_between_arms(sd: float, seeds_a: int, seeds_b: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest difference (points) between two arms' mean accuracies that a pooled two-sample t test on
    ``seeds_a`` and ``seeds_b`` seeds detects, seed standard deviation ``sd`` in both arms."""
    if min(seeds_a, seeds_b) < 2 or sd <= 0:
        raise ValueError(f"need >= 2 seeds per arm and sd > 0, got {seeds_a}, {seeds_b}, sd={sd}")
    se = sd * math.sqrt(1 / seeds_a + 1 / seeds_b)
    return _solve(lambda d: _t_power(d / se, seeds_a + seeds_b - 2, alpha), power, 20 * se)


def _mcnemar_rejects(n: int, alpha: float) -> np.ndarray:
    """[n+1, n+1] bool: whether the exact two-sided McNemar test rejects at (b, c), b + c <= n."""
    rejects = np.zeros((n + 1, n + 1), bool)
    for total in range(1, n + 1):
        b = np.arange(total + 1)
        # two-sided exact binomial p-value of b successes in `total` at 1/2 (scipy's binomtest rule:
        # the summed probability of outcomes no more likely than the observed one)
        pmf = scipy_stats.binom.pmf(np.arange(total + 1), total, 0.5)
        p = np.array([pmf[pmf <= pmf[k] * (1 + 1e-7)].sum() for k in b])
        rejects[b, total - b] = np.minimum(p, 1.0) <= alpha
    return rejects


def mcnemar_power(n: int, start_accuracy: float, gain: float, loss: float = 0.0, alpha: float = ALPHA) -> float:
    """Power of the exact McNemar test on ``n`` paired turns when the start is right on a share
    ``start_accuracy`` and the run turns a share ``gain`` of the start's wrong turns right and ``loss``
    of its right turns wrong (accuracy difference = (1 - start) * gain - start * loss)."""
    q_b = (1 - start_accuracy) * gain
    q_c = start_accuracy * loss
    q_same = 1 - q_b - q_c
    if min(q_b, q_c, q_same) < 0:
        raise ValueError("shares must be in [0, 1]")
    rejects = _mcnemar_rejects(n, alpha)
    b, c = np.nonzero(rejects)
    log_multinomial = gammaln(n + 1) - gammaln(b + 1) - gammaln(c + 1) - gammaln(n - b - c + 1)
    # xlogy: a share of 0 contributes 0 * log 0 = 0 (only outcomes with no such pair have mass)
    terms = log_multinomial + xlogy(b, q_b) + xlogy(c, q_c) + xlogy(n - b - c, q_same)
    return float(np.exp(terms).sum())


def mdd_mcnemar(n: int, start_accuracy: float, loss: float = 0.0, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest accuracy difference (points) the exact McNemar test on ``n`` turns detects at ``power``,
    the run losing a share ``loss`` of the start's right turns; ``inf`` when no gain reaches it."""
    def power_at(diff_points: float) -> float:
        gain = (diff_points / 100 + start_accuracy * loss) / (1 - start_accuracy)
        return mcnemar_power(n, start_accuracy, min(gain, 1.0), loss, alpha)

    top = 100 * (1 - start_accuracy) - 100 * start_accuracy * loss
    if power_at(top) < power:
        return math.inf
    lo, hi = 0.0, top
    for _ in range(30):  # bisection: the exact test's power is a step function, brentq would stall
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power_at(mid) >= power else (mid, hi)
    return hi


def binomial_sd_points(accuracy: float, turns: int) -> float:
    """Standard deviation (points) of an accuracy measured on ``turns`` independent turns: the part of
    the seed-to-seed spread the held-out set alone contributes."""
    return 100 * math.sqrt(accuracy * (1 - accuracy) / turns)


def design_table(sds: list[float], seeds: dict[str, int], turns: dict[str, tuple[int, float]],
                 alpha: float = ALPHA, power: float = POWER) -> dict:
    """The minimum detectable differences of a design: per planning seed SD, the gain of each arm over
    the start and each arm against the graduated arm (seed level); per held-out set (turns, start
    accuracy), the paired turn-level McNemar MDD of one run against its start."""
    out: dict = {"alpha": alpha, "power": power, "seeds": dict(seeds), "seed_level": {}, "turn_level": {}}
    for sd in sds:
        row = {f"{arm} - start": mdd_gain_over_start(sd, n, alpha, power) for arm, n in seeds.items()}
        row.update({f"{arm} - graduated": mdd_between_arms(sd, n, seeds["graduated"], alpha, power)
                    for arm, n in seeds.items() if arm != "graduated"})
        out["seed_level"][f"sd={sd:g}"] = {k: round(v, 2) for k, v in row.items()}
    for name, (n, start) in turns.items():
        out["turn_level"][name] = {"turns": n, "start_accuracy": start,
                                   "mdd_points": round(mdd_mcnemar(n, start, 0.0, alpha, power), 2),
                                   "mdd_points_if_20pct_of_right_turns_lost":
                                       round(mdd_mcnemar(n, start, 0.2, alpha, power), 2)}
    return out


DESIGN_FILE = "design.json"


def design_record(table: dict, heldout_novel_turns: int, eval_100_turns: int, eval_100_samples: int,
                  planning_sd: float, pilot_seeds: dict[str, list[int]] | None = None) -> dict:
    """The design a study's summary.json carries (``design``): its held-out sizes, seeds per arm, and the
    minimum detectable difference (points, at the table's alpha and power) of each comparison: seed level
    at the planning seed SD, turn level (McNemar, one run against the start) per held-out set; with
    ``pilot_seeds`` ({arm: [seed]}: runs the pilots already made with the study's own config), also
    those, which the report then leaves out in a sensitivity row."""
    seed_level = table["seed_level"][f"sd={planning_sd:g}"]
    mdd = {f"{name} (seed level, SD {planning_sd:g})": value for name, value in seed_level.items()}
    mdd.update({f"one run - start (turn level, {name})": row["mdd_points"] for name, row in table["turn_level"].items()})
    return {"heldout_novel_turns": heldout_novel_turns, "eval_100_turns": eval_100_turns,
            "eval_100_samples": eval_100_samples, "seeds": dict(table["seeds"]),
            "planning_seed_sd_points": planning_sd, "alpha": table["alpha"], "power": table["power"],
            "min_detectable_difference_points": mdd} | ({"pilot_seeds": pilot_seeds} if pilot_seeds else {})


def pilot_seeds(pilot_dir, arms) -> dict[str, list[int]]:
    """{arm: [seed]} of the pilots' GRPO result files in ``pilot_dir`` whose arm is one of the study's
    ``arms`` exactly (the study's own config: a variant such as ``graduated,lr3e-5`` is another config),
    so the main run of that arm and seed repeats the pilot's run."""
    from experiments.study.collect import load_results  # the study's result files (a tolerant read)

    out: dict[str, list[int]] = {}
    for result in load_results(pilot_dir):
        if result.get("kind") == "grpo" and result.get("arm") in arms:
            out.setdefault(result["arm"], []).append(result["seed"])
    return {arm: sorted(seeds) for arm, seeds in out.items()}


def main(argv: list[str]) -> None:
    """``python -m experiments.study.power [OUT_DIR]``: the natural study's power.json and design.json from
    its SFT start's evaluations (``sft.json``, written by the study runner)."""
    import json
    from pathlib import Path

    natural = Path(__file__).resolve().parents[1] / "results" / "natural"
    out_dir = Path(argv[0]) if argv else natural
    # eval_100 has 100 samples (the benchmark runner's unit); the first start's file counted them.
    samples_100 = json.loads((natural / "sft_start_eval_eval_100_official.json").read_text())["summary"]["samples"]
    ends = {source: entry["end"] for source, entry in json.loads((natural / "sft.json").read_text())["eval"].items()}
    test, turns_100 = ends["synthetic:test"], ends["eval_100"]
    test_turns, test_accuracy = test["turns"], test["turn_accuracy"]
    turns_100_n, accuracy_100 = turns_100["turns"], turns_100["turn_accuracy"]
    table = design_table([2.0, 3.0, 4.0], {"graduated": 5, "binary": 5, "atomic": 3, "orchestration": 3},
                         {"novel_test": (test_turns, round(test_accuracy, 4)),
                          "eval_100": (turns_100_n, round(accuracy_100, 4))})
    # SD 3: the middle of the planning range (design.md, "Power"); the runs' own SD replaces it in the report.
    design = design_record(table, test_turns, turns_100_n, samples_100, 3.0,
                           pilot_seeds(natural.parent / "natural_pilot", table["seeds"]))
    for name, data in (("power.json", table), (DESIGN_FILE, design)):
        (out_dir / name).write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(design, indent=2))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
