"""The study's comparisons, each with its estimate, its interval and the difference it could detect.

The comparisons are those of the design (experiments/results/natural/design.md, "Analysis"): each arm
against the SFT start, and each other arm against the baseline arm (graduated). They are made on every
held-out source where the start's accuracy is known and at least one GRPO run was evaluated at its end.
The metric is turn accuracy, and every number is in accuracy points (0-100).

* **arm − start**: for each seed, the end minus the start (the start is greedy, so it is one fixed
  number). The estimate is the mean of these gains, with a one-sample Student-t interval. These are
  the numbers of summary ``vs_sft``, in points.
* **arm − baseline**: the difference of the two arms' seed means, with a **pooled two-sample** t
  interval (equal variances, df = n_arm + n_baseline − 2, as scipy.stats.ttest_ind computes it).
  Summary ``vs_baseline`` is a different analysis, kept beside it: there the arms are paired by seed,
  and it is a one-sample t over the per-seed differences, using only the seeds both arms have.

Each row also carries:

* the minimum detectable difference (MDD) planned in design.json, at the planning seed SD;
* the MDD at the seed SD observed here and the seeds present (:mod:`experiments.study.power`; None
  below 2 seeds on a side, or when the seeds do not spread);
* the turns gained and lost (exact McNemar, summed over seeds as a stratified test), when the runs
  carry per-turn verdicts;
* a reading: ``detected: +x (interval excludes 0)``, ``not detected; would detect ≥ m`` (m is the
  observed MDD, or the planned one where the observed is undefined), or ``too few seeds (n < 2)``.

These are pure functions of numbers. :func:`experiments.study.stats.summarize` gathers the per-seed
values from the result files and stores the rows in summary.json under ``comparisons``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from scipy import stats as scipy_stats

from experiments.study import power
from experiments.study.files import finite

METRIC = "turn_accuracy"
START = "start"
TOO_FEW = "too few seeds (n < 2)"


def _points(values: Sequence[Any]) -> list[float]:
    """Accuracies (0-1) as points; None / NaN left out."""
    return [100 * float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _sd(xs: Sequence[float], mean: float) -> float:
    """Sample standard deviation (n - 1), in plain Python (as stats.t_interval computes it)."""
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def _critical(df: int, confidence: float) -> float:
    return float(scipy_stats.t.ppf((1 + confidence) / 2, df))


def one_sample(gains: Sequence[Any], confidence: float = 0.95) -> dict[str, Any]:
    """The mean of per-seed gains (accuracies, 0-1) in points, with its one-sample t interval:
    {estimate, half_width, sd, n}. The half width and SD are None below 2 seeds; every value is None
    without seeds."""
    xs = _points(gains)
    n = len(xs)
    if n == 0:
        return {"estimate": None, "half_width": None, "sd": None, "n": 0}
    mean = sum(xs) / n
    if n < 2:
        return {"estimate": mean, "half_width": None, "sd": None, "n": n}
    sd = _sd(xs, mean)
    return {"estimate": mean, "half_width": _critical(n - 1, confidence) * sd / math.sqrt(n), "sd": sd, "n": n}


def two_sample(ends: Sequence[Any], reference: Sequence[Any], confidence: float = 0.95) -> dict[str, Any]:
    """The difference of seed means (points) between ``ends`` and ``reference`` (accuracies, 0-1), with
    the pooled two-sample t interval: {estimate, half_width, sd (pooled), n, n_reference}. The half width
    and SD are None unless each side has at least 2 seeds."""
    a, b = _points(ends), _points(reference)
    na, nb = len(a), len(b)
    out: dict[str, Any] = {"estimate": None, "half_width": None, "sd": None, "n": na, "n_reference": nb}
    if na == 0 or nb == 0:
        return out
    mean_a, mean_b = sum(a) / na, sum(b) / nb
    out["estimate"] = mean_a - mean_b
    if min(na, nb) < 2:
        return out
    df = na + nb - 2
    pooled = math.sqrt(((na - 1) * _sd(a, mean_a) ** 2 + (nb - 1) * _sd(b, mean_b) ** 2) / df)
    out["sd"] = pooled
    out["half_width"] = _critical(df, confidence) * pooled * math.sqrt(1 / na + 1 / nb)
    return out


def planned_mdd(design: Mapping[str, Any] | None, arm: str, reference: str) -> float | None:
    """The seed-level MDD that design.json planned for ``arm - reference`` (the key
    "<arm> - <reference> (seed level, SD <s>)", at its planning SD); None when it planned none."""
    if not design:
        return None
    prefix = f"{arm} - {reference} (seed level"
    planned = design.get("min_detectable_difference_points", {})
    return next((value for name, value in planned.items() if name.startswith(prefix)), None)


def observed_mdd(sd: float | None, n: int, n_reference: int | None, alpha: float, power_: float) -> float | None:
    """The MDD (points) at the observed seed SD and seed counts: a one-sample t test on ``n`` gains when
    ``n_reference`` is None (against the start), else a pooled two-sample t test. None below 2 seeds on
    a side or without spread (SD 0)."""
    if sd is None or sd <= 0 or n < 2 or (n_reference is not None and n_reference < 2):
        return None
    if n_reference is None:
        return power.mdd_gain_over_start(sd, n, alpha, power_)
    return power.mdd_between_arms(sd, n, n_reference, alpha, power_)


def seed_flips(records: Sequence[Mapping[str, Any]], pooled: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The turns gained and lost over an arm's seeds: {gained, lost, p, seeds}. With several seeds these
    are the pooled counts and p (stats.pooled_flips); with one seed, that seed's. None without verdicts."""
    if not records:
        return None
    record = pooled if len(records) > 1 else records[0]
    if not record:
        return None
    return {"gained": record["gained"], "lost": record["lost"], "p": record["p"], "seeds": len(records)}


def reading(row: Mapping[str, Any]) -> str:
    """One line per row: detected (the interval excludes 0), not detected with the difference the
    comparison would detect (observed MDD, else planned), or too few seeds."""
    sides = [row["n"]] + ([row["n_reference"]] if row["reference"] != START else [])
    if min(sides) < 2 or row["half_width_points"] is None:
        return TOO_FEW
    low, high = row["interval_points"]
    if low > 0 or high < 0:
        return f"detected: {row['estimate_points']:+.1f} (interval excludes 0)"
    mdd = row["mdd_observed_points"] if row["mdd_observed_points"] is not None else row["mdd_planned_points"]
    return "not detected" if mdd is None else f"not detected; would detect ≥ {mdd:.1f}"


def _row(arm: str, reference: str, stat: Mapping[str, Any], design: Mapping[str, Any] | None,
         flips: Mapping[str, Any] | None, alpha: float, power_: float) -> dict[str, Any]:
    n_reference = stat.get("n_reference", 1)  # the start: one run
    half = stat["half_width"]
    interval = None if half is None else [stat["estimate"] - half, stat["estimate"] + half]
    row = {"comparison": f"{arm} - {reference}", "arm": arm, "reference": reference,
           "analysis": "one-sample t on per-seed gains" if reference == START else "pooled two-sample t",
           "n": stat["n"], "n_reference": n_reference,
           "estimate_points": stat["estimate"], "half_width_points": half, "interval_points": interval,
           "seed_sd_points": stat["sd"],
           "mdd_planned_points": planned_mdd(design, arm, reference),
           "mdd_observed_points": observed_mdd(stat["sd"], stat["n"], None if reference == START else n_reference,
                                               alpha, power_),
           "flips": dict(flips) if flips else None}
    row["reading"] = reading(row)
    return row


def alpha_and_power(design: Mapping[str, Any] | None) -> tuple[float, float]:
    """(alpha, power) of the design, else the defaults of :mod:`experiments.study.power`."""
    return (design or {}).get("alpha", power.ALPHA), (design or {}).get("power", power.POWER)


def source_comparisons(arms: Sequence[str], gains: Mapping[str, Sequence[Any]], ends: Mapping[str, Sequence[Any]],
                       flips_vs_start: Mapping[str, Any], flips_vs_baseline: Mapping[str, Any],
                       baseline: str, design: Mapping[str, Any] | None = None,
                       confidence: float = 0.95) -> list[dict[str, Any]]:
    """The rows of one source: ``arm - start`` for every arm, then ``arm - baseline`` for every other arm
    (when the baseline is among ``arms``).

    ``gains[arm]``: per seed, end minus start (accuracy, 0-1); ``ends[arm]``: per seed, the end accuracy;
    ``flips_vs_start`` / ``flips_vs_baseline``: per arm, :func:`seed_flips`' record or None. Arms with
    no values get rows with n = 0 (the design's comparisons not yet run)."""
    alpha, power_ = alpha_and_power(design)
    rows = [_row(arm, START, one_sample(gains.get(arm, []), confidence), design, flips_vs_start.get(arm), alpha, power_)
            for arm in arms]
    if baseline in arms:
        rows += [_row(arm, baseline, two_sample(ends.get(arm, []), ends.get(baseline, []), confidence), design,
                      flips_vs_baseline.get(arm), alpha, power_) for arm in arms if arm != baseline]
    return finite(rows)


def without_seeds(arm: str, gains: Mapping[Any, Any], excluded: Sequence[Any], flips: Mapping[str, Any] | None,
                  design: Mapping[str, Any] | None = None, confidence: float = 0.95) -> dict[str, Any]:
    """``arm - start`` again without the ``excluded`` seeds (a sensitivity row: the design names seeds
    its pilots already ran, ``pilot_seeds``). ``gains``: {seed: end minus start (0-1)}; ``flips``:
    :func:`seed_flips` of the kept seeds. No MDD was planned for this row (``mdd_planned_points`` None);
    the one at the observed SD and the kept seeds is given."""
    alpha, power_ = alpha_and_power(design)
    kept = [g for seed, g in gains.items() if seed not in excluded]
    row = _row(arm, START, one_sample(kept, confidence), None, flips, alpha, power_)
    row["comparison"] = f"{arm} - start, without seed {', '.join(str(s) for s in excluded)}"
    row["excluded_seeds"] = list(excluded)
    return finite(row)
