"""The study's numbers from its result files alone: intervals over seeds, paired differences, flips.

Aggregation: mean and a two-sided Student-t interval over seeds per arm (:func:`t_interval`), paired
differences (per run: end minus its SFT start; per seed: arm minus the baseline arm), and per-turn
verdict flips with exact McNemar tests (per seed, and pooled over seeds); and the design's comparisons,
each with its estimate, interval and detectable difference (:mod:`experiments.study.comparisons`).
Pure functions of the loaded result dicts: no file is read or written here.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from scipy import stats as scipy_stats

from experiments.study import comparisons as compare
from experiments.study.collect import reward_rise
from experiments.study.files import dotted, finite
from experiments.study.plan import ARMS, BASELINE_ARM, EVAL_METRICS


def t_critical(df: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value t_{(1+confidence)/2, df}."""
    return float(scipy_stats.t.ppf((1 + confidence) / 2, df))


def t_interval(values: Sequence[Any], confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half width, n) of the t-interval mean ± t · s / sqrt(n); half width NaN when n < 2.
    None / NaN values are left out."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(xs) / n
    if n < 2:
        return mean, float("nan"), n
    # The sample standard deviation in plain Python on purpose: scipy.stats.tstd / sem (and numpy)
    # sum the squares in another order and differ from it in the last bits, which would rewrite the
    # committed summary.json files of finished studies (tests/test_study_stats.py pins them).
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, t_critical(n - 1, confidence) * sd / math.sqrt(n), n


def _stat(values: Sequence[Any], confidence: float) -> dict[str, Any]:
    mean, half, n = t_interval(values, confidence)
    return finite({"mean": mean, "half_width": half, "n": n})


def _ordered(arms: set[str], baseline: str) -> list[str]:
    known = [baseline, *[a for a in ARMS if a != baseline]]
    return [a for a in known if a in arms] + sorted(arms - set(known))


def arm_order(results: Sequence[Mapping[str, Any]], baseline: str = BASELINE_ARM) -> list[str]:
    """GRPO arms present: the baseline first, then ARMS order, then the rest by name."""
    return _ordered({r["arm"] for r in results if r.get("kind") == "grpo"}, baseline)


def eval_sources(results: Sequence[Mapping[str, Any]]) -> list[str]:
    found: list[str] = []
    for r in results:
        for source in r.get("eval", {}):
            if source not in found:
                found.append(source)
    return sorted(found, key=lambda s: (s != "eval_100", s))


def end_value(result: Mapping[str, Any], source: str, metric: str) -> Any:
    return dotted(result, f"eval.{source}.end.{metric}") if source in result.get("eval", {}) else None


def turn_flips(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """(gained, lost): turns wrong in ``before`` and right in ``after``, and the reverse. None unless
    both evaluations carry per-turn verdicts of the same turns (``verdicts``, ``turn_ids``)."""
    if not before or not after or not before.get("verdicts") or before.get("turn_ids") != after.get("turn_ids"):
        return None
    a, b = before["verdicts"], after.get("verdicts") or ""
    if len(a) != len(b):
        return None
    return sum(x == "0" and y == "1" for x, y in zip(a, b)), sum(x == "1" and y == "0" for x, y in zip(a, b))


def mcnemar_exact_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: under no change, each of the g + l discordant turns is a gain
    with probability 1/2, so p = min(1, 2 · P(Binomial(g + l, 1/2) <= min(g, l))), scipy's exact
    binomial test."""
    if gained + lost == 0:  # no discordant turn: no evidence either way (binomtest needs n >= 1)
        return 1.0
    return float(scipy_stats.binomtest(gained, gained + lost, 0.5).pvalue)


def start_entry(result: Mapping[str, Any], source: str, sft: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A GRPO run's start on ``source``: its own step-0 evaluation when logged, else the SFT run's end."""
    own = dotted(result, f"eval.{source}.start")
    if own:
        return own
    return dotted(sft, f"eval.{source}.end") if sft is not None and source in sft.get("eval", {}) else None


def _gain(result: Mapping[str, Any], source: str, metric: str, sft: Mapping[str, Any] | None) -> float | None:
    """A GRPO run's end minus its start on ``source`` (its own step-0 evaluation, else the SFT run's end);
    None when either is missing."""
    start = dotted(result, f"eval.{source}.start.{metric}")
    if start is None and sft is not None:
        start = end_value(sft, source, metric)
    after = end_value(result, source, metric)
    return None if start is None or after is None else after - start


def _flip_record(seed: Any, flips: tuple[int, int]) -> dict[str, Any]:
    return {"seed": seed, "gained": flips[0], "lost": flips[1], "p": mcnemar_exact_p(*flips)}


POOLED_SEED = "all"


def pooled_flips(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One test over all seeds of a comparison: the per-seed gains and losses summed, with the exact
    McNemar p of the sums (seed ``"all"``). Under no difference every discordant turn of every seed
    is a gain with probability 1/2, independently across seeds (separate runs), so the summed gains
    are Binomial(total discordant, 1/2) whichever seed they came from: the stratified sign test. None
    below two seeds, where it would only repeat the seed's row."""
    if len(records) < 2:
        return None
    gained, lost = sum(r["gained"] for r in records), sum(r["lost"] for r in records)
    return _flip_record(POOLED_SEED, (gained, lost))


# Report rows of the single runs, and the result kinds that fill them: a study that starts from another
# study's SFT run reports its own evaluation of that start ("start") as the SFT start.
SINGLE_KINDS = {"zero_shot": ("zero_shot",), "sft": ("sft", "start")}


def wilson_interval(right: int, total: int, confidence: float = 0.95) -> list[float] | None:
    """The Wilson score interval [low, high] of the proportion right / total; None without trials."""
    if not total:
        return None
    interval = scipy_stats.binomtest(right, total).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(interval.low), float(interval.high)]


def domain_stats(runs: Sequence[Mapping[str, Any]], source: str, confidence: float = 0.95) -> dict[str, Any]:
    """{domain: {accuracy: {mean, half_width, n}, turns, right?, wilson?}}: each domain's end-of-run turn
    accuracy over the ``runs`` (seeds) whose evaluation on ``source`` kept per-domain counts (``by_domain``);
    ``turns`` is the domain's turn count, or None when the runs scored different counts (then their means
    do not compare). A single run (the start) also gets its count ``right`` and the Wilson interval of
    right / turns: over several seeds the interval is the t interval of the seed accuracies, since a Wilson
    interval of the pooled counts would count the same turns once per seed as if independent."""
    counts = [found for r in runs if (found := dotted(r, f"eval.{source}.end.by_domain"))]
    out = {}
    for domain in sorted({d for c in counts for d in c}):
        cells = [c[domain] for c in counts if domain in c]
        sizes = {cell["turns"] for cell in cells}
        out[domain] = {"accuracy": _stat([cell["right"] / cell["turns"] for cell in cells], confidence),
                       "turns": sizes.pop() if len(sizes) == 1 else None}
        if len(cells) == 1:
            out[domain] |= {"right": cells[0]["right"],
                            "wilson": wilson_interval(cells[0]["right"], cells[0]["turns"], confidence)}
    return out


def summarize(results: Sequence[Mapping[str, Any]], baseline: str = BASELINE_ARM,
              confidence: float = 0.95, design: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The study's numbers from its result files alone.

    Returns::

        {confidence, baseline_arm, runs: [names], arms: [...],
         sources: {<source>: {
             end: {<row>: {<metric>: {mean, half_width, n}}}        rows: zero_shot, sft, each arm
             vs_sft: {<arm>: {<metric>: {...}}}                     per run: end - its SFT start
             vs_baseline: {<arm>: {<metric>: {...}}}                per seed: arm end - baseline end
             flips_vs_sft: {<arm>: [{seed, gained, lost, p}]}       per run, turn by turn (exact McNemar p)
             flips_vs_baseline: {<arm>: [{seed, gained, lost, p}]}  per seed, arm end vs baseline end
             flips_pooled: {flips_vs_sft | flips_vs_baseline: {<arm>: {seed: "all", gained, lost, p}}}
                                                                    summed over seeds (stratified exact test)
             by_domain?: {<row>: {<domain>: {accuracy: {...}, turns, right?, wilson?}}}  per domain
         }},
         train: {<row>: {reward_mean, degenerate_fraction, steps, wall_seconds: {mean, half_width, n}},
                 fit: ...},
         compute: {wall_hours, by_row: {<row>: hours}, files}: the runs' wall_seconds.total summed
         comparisons: {metric, confidence, alpha, power, planning_seed_sd_points,
                       sources: {<source>: [row]},     experiments/study/comparisons.py, in points
                       without_pilot_seeds?: {<source>: [row]}},  arm - start without design["pilot_seeds"]
         design: design.json's record, when given}

    The SFT start of a GRPO run is its own step-0 evaluation when logged, else the SFT run's.
    ``comparisons`` covers the design's arms (``design["seeds"]``) and the arms present, on each source
    where the start is known and some GRPO run has an end: arm - start (the one-sample interval of
    ``vs_sft``) and arm - baseline as a pooled two-sample t interval of the seed means, not the
    seed-paired ``vs_baseline``.
    """
    by_arm: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        if r.get("kind") == "grpo":
            by_arm.setdefault(r["arm"], []).append(r)
    singles = {kind: next((r for r in results if r.get("kind") in SINGLE_KINDS[kind]), None) for kind in SINGLE_KINDS}
    arms = arm_order(results, baseline)
    rows = [k for k in ("zero_shot", "sft") if singles[k] is not None] + arms
    members = {k: [singles[k]] for k in ("zero_shot", "sft") if singles[k] is not None} | {a: by_arm[a] for a in arms}
    compared = _ordered(set(arms) | set((design or {}).get("seeds", {})), baseline)
    sources: dict[str, Any] = {}
    comparisons: dict[str, list[dict[str, Any]]] = {}
    sensitivity: dict[str, list[dict[str, Any]]] = {}
    for source in eval_sources(results):
        end = {row: {m: _stat([end_value(r, source, m) for r in members[row]], confidence) for m in EVAL_METRICS}
               for row in rows}
        sft = singles["sft"]
        vs_sft, vs_base = {}, {}
        flips_sft: dict[str, list[dict[str, Any]]] = {}
        flips_base: dict[str, list[dict[str, Any]]] = {}
        for arm in arms:
            diffs: dict[str, list[float]] = {m: [] for m in EVAL_METRICS}
            for r in by_arm[arm]:
                for m in EVAL_METRICS:
                    if (g := _gain(r, source, m, sft)) is not None:
                        diffs[m].append(g)
            vs_sft[arm] = {m: _stat(diffs[m], confidence) for m in EVAL_METRICS}
            flips = [(r["seed"], turn_flips(start_entry(r, source, sft), dotted(r, f"eval.{source}.end")))
                     for r in by_arm[arm]]
            flips_sft[arm] = [_flip_record(seed, f) for seed, f in flips if f is not None]
            if arm != baseline and baseline in by_arm:
                base = {r["seed"]: r for r in by_arm[baseline]}
                paired: dict[str, list[float]] = {m: [] for m in EVAL_METRICS}
                for r in by_arm[arm]:
                    if r["seed"] in base:
                        for m in EVAL_METRICS:
                            a, b = end_value(r, source, m), end_value(base[r["seed"]], source, m)
                            if a is not None and b is not None:
                                paired[m].append(a - b)
                vs_base[arm] = {m: _stat(paired[m], confidence) for m in EVAL_METRICS}
                flips = [(r["seed"], turn_flips(dotted(base[r["seed"]], f"eval.{source}.end"),
                                                dotted(r, f"eval.{source}.end")))
                         for r in by_arm[arm] if r["seed"] in base]
                flips_base[arm] = [_flip_record(seed, f) for seed, f in flips if f is not None]
        pooled = {kind: {arm: p for arm, rows in flips.items() if (p := pooled_flips(rows))}
                  for kind, flips in (("flips_vs_sft", flips_sft), ("flips_vs_baseline", flips_base))}
        sources[source] = {"end": end, "vs_sft": vs_sft, "vs_baseline": vs_base,
                           "flips_vs_sft": flips_sft, "flips_vs_baseline": flips_base, "flips_pooled": pooled}
        domains = {row: found for row in rows if (found := domain_stats(members[row], source, confidence))}
        if domains:
            sources[source]["by_domain"] = domains
        found = _source_comparisons(source, by_arm, sft, compared, baseline, sources[source], design, confidence)
        if found:
            comparisons[source] = found
            rows_without = _without_pilot_seeds(source, by_arm, sft, sources[source], design, confidence)
            if rows_without:
                sensitivity[source] = rows_without
    train = {}
    for row in rows:
        runs = members[row]
        train[row] = {
            "reward_mean": _stat([dotted(r, "train.reward_mean") for r in runs], confidence),
            "reward_rise": _stat([reward_rise(dotted(r, "curves.train") or []) for r in runs], confidence),
            "degenerate_fraction": _stat([dotted(r, "train.degenerate_fraction") for r in runs], confidence),
            "steps": _stat([r.get("steps") for r in runs], confidence),
            "wall_seconds": _stat([dotted(r, "wall_seconds.total") for r in runs], confidence),
            "fit": _stat([dotted(r, "fit.share") for r in runs], confidence),
            "seeds": sorted(r["seed"] for r in runs if r.get("seed") is not None),
        }
    # Compute as the files record it (training plus every evaluation of each run), not as estimated.
    walls = {row: sum(dotted(r, "wall_seconds.total") or 0.0 for r in members[row]) / 3600 for row in rows}
    compute = {"wall_hours": sum(walls.values()), "by_row": walls, "files": len(results)}
    alpha, power_ = compare.alpha_and_power(design)
    summary = {"confidence": confidence, "baseline_arm": baseline, "runs": sorted(r["name"] for r in results),
               "arms": arms, "sources": sources, "train": train, "compute": compute,
               "comparisons": {"metric": compare.METRIC, "confidence": confidence,
                               "alpha": alpha, "power": power_,
                               "planning_seed_sd_points": (design or {}).get("planning_seed_sd_points"),
                               "sources": comparisons}}
    if sensitivity:
        summary["comparisons"]["without_pilot_seeds"] = sensitivity
    if design is not None:
        summary["design"] = dict(design)
    return summary


def _source_comparisons(source: str, by_arm: Mapping[str, Sequence[Mapping[str, Any]]], sft: Mapping[str, Any] | None,
                        arms: Sequence[str], baseline: str, numbers: Mapping[str, Any],
                        design: Mapping[str, Any] | None, confidence: float) -> list[dict[str, Any]]:
    """The comparisons of one source (experiments.study.comparisons); [] when the start's accuracy is
    unknown there or no GRPO run has an end on it."""
    metric = compare.METRIC
    ends = {arm: [v for r in by_arm.get(arm, []) if (v := end_value(r, source, metric)) is not None] for arm in arms}
    gains = {arm: [g for r in by_arm.get(arm, []) if (g := _gain(r, source, metric, sft)) is not None] for arm in arms}
    start_known = any(gains.values()) or (sft is not None and end_value(sft, source, metric) is not None)
    if not start_known or not any(ends.values()):
        return []
    pooled = numbers["flips_pooled"]
    flips = {kind: {arm: compare.seed_flips(numbers[kind].get(arm, []), pooled[kind].get(arm)) for arm in arms}
             for kind in ("flips_vs_sft", "flips_vs_baseline")}
    return compare.source_comparisons(arms, gains, ends, flips["flips_vs_sft"], flips["flips_vs_baseline"],
                                      baseline, design, confidence)


def _without_pilot_seeds(source: str, by_arm: Mapping[str, Sequence[Mapping[str, Any]]], sft: Mapping[str, Any] | None,
                         numbers: Mapping[str, Any], design: Mapping[str, Any] | None,
                         confidence: float) -> list[dict[str, Any]]:
    """``arm - start`` without the seeds the design's pilots already ran (``design["pilot_seeds"]``:
    {arm: [seed]}), for each such arm with a run of one of those seeds here; [] otherwise."""
    rows = []
    for arm, excluded in ((design or {}).get("pilot_seeds") or {}).items():
        runs = by_arm.get(arm, [])
        if not any(r["seed"] in excluded for r in runs):
            continue
        gains = {r["seed"]: g for r in runs if (g := _gain(r, source, compare.METRIC, sft)) is not None}
        records = [f for f in numbers["flips_vs_sft"].get(arm, []) if f["seed"] not in excluded]
        flips = compare.seed_flips(records, pooled_flips(records))
        rows.append(compare.without_seeds(arm, gains, excluded, flips, design, confidence))
    return rows
