"""What a finished run leaves: one small result file, built from the run's own files.

Heavy artefacts go to ``<runs_dir>/<study>/<run>/`` (git-ignored: ``work/`` is the trainer's workdir,
``<step>.log`` the subprocess output, ``eval/<source>/eval_results.json``). What is kept is one small
JSON per finished run, ``<results_dir>/<study>/<run>.json`` (schema: :func:`collect_result`), written
last and atomically by the executor: a restarted study skips finished runs and redoes the others.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from toolrl import games

from experiments.study.files import dotted, finite, read_json, read_metrics, read_result, resolve, write_json_atomic
from experiments.study.plan import EVAL_METRICS, SCHEMA, SUMMARY_FILE, RunSpec, StudySettings, config_arg


def _mean(values: Iterable[Any]) -> float | None:
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(xs) / len(xs) if xs else None


def train_summary(metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a result keeps of a training log: step counts, reward, degenerate groups, SFT loss."""
    grpo = [r for r in metrics if r.get("phase") == "grpo"]
    sft = [r for r in metrics if r.get("phase") == "sft" and r.get("sft/nll") is not None]
    rewards = [r["reward/mean"] for r in grpo if r.get("reward/mean") is not None]
    return {
        "grpo_steps": len(grpo),
        "sft_steps": len(sft),
        "reward_mean": _mean(rewards),
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
        "degenerate_fraction": _mean(r.get("grpo/degenerate_fraction") for r in grpo),
        "sft_nll_first": sft[0]["sft/nll"] if sft else None,
        "sft_nll_last": sft[-1]["sft/nll"] if sft else None,
        "step_seconds_mean": _mean(r.get("time/step_s") for r in metrics if r.get("phase") in ("sft", "grpo")),
    }


def learning_curves(metrics: Sequence[Mapping[str, Any]]) -> dict[str, list[list[Any]]]:
    """Per-step curves of a run (small; kept in its result file so plots need no run directory):
    ``train``: [step, reward/mean, grpo/degenerate_fraction] per GRPO step; ``eval``: [step,
    turn_accuracy, call_accuracy, success_rate] per evaluation during training (a resumed step: the last)."""
    train: dict[int, list[Any]] = {}
    evals: dict[int, list[Any]] = {}
    for r in metrics:
        step = int(r.get("step", 0))
        if r.get("phase") == "grpo" and r.get("reward/mean") is not None:
            train[step] = [step, r.get("reward/mean"), r.get("grpo/degenerate_fraction")]
        if r.get("eval/turn_accuracy", "absent") != "absent":
            evals[step] = [step] + [r.get(f"eval/{m}") for m in EVAL_METRICS]
    return {"train": [train[k] for k in sorted(train)], "eval": [evals[k] for k in sorted(evals)]}


def reward_rise(train_curve: Sequence[Sequence[Any]]) -> float | None:
    """Mean training reward of a run's second half of GRPO steps minus its first half (the middle
    step of an odd count left out); None under 2 steps. ``train_curve``: rows [step, reward, ...] as
    :func:`learning_curves` keeps them. A noisy but unit-free trend: each step draws new prompts."""
    rewards = [row[1] for row in train_curve if row[1] is not None]
    half = len(rewards) // 2
    if half == 0:
        return None
    return _mean(rewards[-half:]) - _mean(rewards[:half])


def domain_counts(bucket: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """{domain: {"right": turns right, "turns": turns scored}} of one bucket of an evaluator report's
    metrics (its per-domain entries beside ``overall``), domains with no turn left out."""
    out = {}
    for domain, entry in sorted(bucket.items()):
        if domain != "overall" and isinstance(entry, Mapping) and entry.get("turns"):
            out[domain] = {"right": int(entry.get("turns_correct") or 0), "turns": int(entry["turns"])}
    return out


def report_overall(report: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics kept of an evaluator report (eval_results.json / eval/step_*.json): the complete-
    history bucket when it has turns (as the trainer logs it), else all turns; ``by_domain`` holds
    that bucket's turns right and scored per domain (:func:`domain_counts`)."""
    metrics = report.get("metrics", {})
    complete = (metrics.get("complete") or {}).get("overall") or {}
    bucket = (metrics.get("complete") if complete.get("turns") else metrics.get("all")) or {}
    overall = bucket.get("overall") or {}
    free = overall.get("free_calls") or 0
    out = {k: overall.get(k) for k in (*EVAL_METRICS, "turns")}
    out["free_call_match_rate"] = overall.get("free_calls_matched", 0) / free if free else None
    out["errors"] = {k: v for k, v in (overall.get("errors") or {}).items() if v}
    by_domain = domain_counts(bucket)
    if by_domain:
        out["by_domain"] = by_domain
    # Per-turn verdicts, so two evaluations of the same turns can be compared turn by turn (McNemar).
    turns = [t for t in report.get("turns") or [] if t.get("complete") or overall is not complete]
    if turns and len(turns) == overall.get("turns"):
        out["verdicts"] = "".join("1" if t.get("correct") else "0" for t in turns)
        ids = "|".join(f"{t.get('sample_id')}#{t.get('turn')}" for t in turns)
        out["turn_ids"] = hashlib.sha1(ids.encode()).hexdigest()[:12]
    return out


def training_evals(metrics: Sequence[Mapping[str, Any]], workdir: Path) -> tuple[dict | None, dict | None]:
    """(start, end) of the evaluations logged during training (metrics.jsonl ``eval/*`` records),
    completed from the step's report (``workdir/eval/step_XXXXXX.json``) when it is there."""
    records = [r for r in metrics if r.get("eval/turn_accuracy", "absent") != "absent"]
    if not records:
        return None, None

    def entry(record: Mapping[str, Any]) -> dict[str, Any]:
        step = int(record.get("step", 0))
        out: dict[str, Any] = {"step": step}
        try:
            out |= report_overall(read_json(workdir / "eval" / f"step_{step:06d}.json"))
        except (OSError, ValueError):
            pass
        out |= {k: record.get(f"eval/{k}") for k in (*EVAL_METRICS, "turns")}
        return out

    starts = [r for r in records if r.get("phase") == "start" or int(r.get("step", 0)) == 0]
    last = max(records, key=lambda r: int(r.get("step", 0)))  # the last of equal steps (a resume redoes steps)
    last = [r for r in records if int(r.get("step", 0)) == int(last.get("step", 0))][-1]
    return (entry(starts[0]) if starts else None), entry(last)


FIT_RE = re.compile(r"fit: (\d+)/(\d+) tasks \((\d+)%\)")


def parse_fit(log_text: str) -> dict[str, Any] | None:
    """The last ``fit: K/N tasks (P%)`` line a training printed."""
    found = FIT_RE.findall(log_text)
    if not found:
        return None
    k, n, _ = found[-1]
    return {"fit": int(k), "total": int(n), "share": int(k) / int(n) if int(n) else None}


KEY_FIELDS = (
    "model.preset", "model.path", "model.dtype", "model.init_checkpoint", "data.train_file", "data.tool_view",
    "data.max_distractors", "data.max_steps_per_sample", "reward.family", "reward.mode", "reward.paper_compat",
    "rollout.game", "rollout.group_size", "rollout.prompts_per_step", "rollout.max_turns",
    "rollout.max_new_tokens", "rollout.max_seq_len", "grpo.beta", "grpo.aggregation", "grpo.scale_by_std",
    "optim.learning_rate", "sft.num_steps", "sft.learning_rate", "train.num_steps", "eval.source",
    "eval.max_turns", "eval.max_new_tokens", "eval.max_rounds", "eval.every",
)


ATTEMPTS_FILE = "attempts.jsonl"


def record_attempt(run_dir: Path, step: str, seconds: float, returncode: int) -> None:
    """Appends one finished or failed subprocess of a run to ``<run_dir>/attempts.jsonl``: a run
    killed and resumed (the trainer restarts from its last checkpoint) then reports all the compute it
    took, not only its last attempt's."""
    with open(run_dir / ATTEMPTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "seconds": round(seconds, 3), "rc": returncode,
                            "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")


def attempt_seconds(run_dir: Path, seconds: Mapping[str, float]) -> tuple[dict[str, float], dict[str, int]]:
    """({step: seconds summed over its attempts}, {step: attempts}) from the run's ledger, for the
    steps of ``seconds`` (this attempt's, used as they are where the ledger lacks a step)."""
    spent = {step: 0.0 for step in seconds}
    count = {step: 0 for step in seconds}
    for row in read_metrics(run_dir / ATTEMPTS_FILE):  # JSON lines, a torn last line skipped
        if row.get("step") in spent:
            spent[row["step"]] += float(row.get("seconds") or 0.0)
            count[row["step"]] += 1
    for step, s in seconds.items():
        if count[step] == 0:
            spent[step], count[step] = float(s), 1
    return spent, count


def collect_evals(run_dir: Path, work: Path, metrics: Sequence[Mapping[str, Any]], run_config: Any,
                  slugs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{source: {start, end}}: the evaluations during training (the config's ``eval.source``), then each
    evaluation after it (``<run_dir>/eval/<slug>/eval_results.json``; another protocol is its own source)."""
    evals: dict[str, dict[str, Any]] = {}
    start, end = training_evals(metrics, work)
    if end is not None:
        evals[dotted(run_config, "eval.source") or "default"] = {"start": start, "end": end}
    for slug in slugs:
        report = read_json(run_dir / "eval" / slug / "eval_results.json")
        source = dotted(report, "settings.source") or slug
        if games.get(report.get("protocol", games.DEFAULT_EVAL_GAME)).name != games.DEFAULT_EVAL_GAME:
            source = f"{source}@{report['protocol']}"  # another game than the default is its own source
        evals.setdefault(source, {"start": None, "end": None})["end"] = report_overall(report)
    return evals


# What a result file's evaluation entry gained after the first studies were run, each added to older
# files by :func:`add_missing_details` from the runs' own files: field -> the fields it comes with.
DETAILS = {"verdicts": ("verdicts", "turn_ids"), "by_domain": ("by_domain",)}


def add_missing_details(settings: StudySettings) -> list[str]:
    """Adds the evaluation details kept since (:data:`DETAILS`: per-turn verdicts with their turn ids,
    per-domain counts) to the finished result files written before, from the runs' own files under
    ``runs_dir``; every other number stays as written, and an evaluation whose recomputed accuracy or
    turn count differs from the file is left alone. Returns the names of the files changed."""
    changed = []
    for path in sorted(settings.results_path().glob("*.json")):
        result = read_result(path)
        if not result or result.get("schema") != SCHEMA:
            continue
        kind = result.get("kind")
        spec = RunSpec(kind, result.get("arm", "") if kind == "grpo" else "", result.get("seed"))
        run_dir, work = resolve(settings.run_dir(spec)), resolve(settings.workdir(spec))
        if not run_dir.is_dir():
            continue
        try:
            run_config = read_json(work / "config.json")
        except (OSError, ValueError):
            run_config = None
        slugs = [p.parent.name for p in sorted((run_dir / "eval").glob("*/eval_results.json"))]
        fresh = collect_evals(run_dir, work, read_metrics(work / "metrics.jsonl"), run_config, slugs)
        updated = False
        for source, entries in (result.get("eval") or {}).items():
            for when, entry in entries.items():
                new = (fresh.get(source) or {}).get(when)
                if not entry or not new:
                    continue
                if new.get("turns") != entry.get("turns") or new.get("turn_accuracy") != entry.get("turn_accuracy"):
                    continue
                for field, fields in DETAILS.items():
                    if field not in entry and field in new:
                        entry.update({f: new[f] for f in fields})
                        updated = True
        if updated:
            write_json_atomic(path, result)
            changed.append(result.get("name", path.stem))
    return changed


def collect_result(spec: RunSpec, settings: StudySettings, argvs: Mapping[str, list[str]],
                   seconds: Mapping[str, float]) -> dict[str, Any]:
    """The small result of a finished run (``<results_dir>/<study>/<run>.json``)::

        schema, study, name, kind ("zero_shot" | "sft" | "grpo"), arm, seed, status ("done"), finished (UTC),
        config: {arg (--config=...), resolved (the run's config.json, under runs_dir), overrides
                 (the --config.* flags of its training command), key (selected resolved fields)},
        steps: last step logged,
        eval: {<source>: {start: M | null, end: M | null}} with M = {step?, turn_accuracy,
               call_accuracy, success_rate, turns, free_call_match_rate?, errors?, verdicts?,
               turn_ids?, by_domain?: {domain: {right, turns}}},
        train: {grpo_steps, sft_steps, reward_mean, reward_first, reward_last, degenerate_fraction,
                sft_nll_first, sft_nll_last, step_seconds_mean},
        curves: {train: [[step, reward_mean, degenerate_fraction]], eval: [[step, turn, call, success]]},
        fit: {fit, total, share} | null,
        wall_seconds: {<step>: s, ..., total: s}  (every attempt of each step, ``attempts.jsonl``),
        attempts: how many times each step was started
    """
    run_dir, work = resolve(settings.run_dir(spec)), resolve(settings.workdir(spec))
    metrics = read_metrics(work / "metrics.jsonl")
    spent, attempts = attempt_seconds(run_dir, seconds)
    try:
        run_config = read_json(work / "config.json")
    except (OSError, ValueError):
        run_config = None
    evals = collect_evals(run_dir, work, metrics, run_config,
                          [step[len("eval-"):] for step in argvs if step.startswith("eval-")])
    try:
        fit = parse_fit((run_dir / "train.log").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        fit = None
    train_argv = argvs.get("train", [])
    curves = learning_curves(metrics)
    if spec.kind == "grpo" and not any(row[0] == 0 for row in curves["eval"]):
        # The run did not evaluate its start (eval.at_start=False): it is the SFT run's checkpoint.
        sft = read_result(resolve(settings.result_file(RunSpec("sft", seed=settings.sft_seed))))
        source = dotted(run_config, "eval.source")
        start_metrics = dotted(sft, f"eval.{source}.end") if sft and source else None
        if start_metrics and curves["eval"]:
            curves["eval"].insert(0, [0] + [start_metrics.get(m) for m in EVAL_METRICS])
            curves["eval_start"] = "the SFT run's evaluation"
    return finite({
        "schema": SCHEMA, "study": settings.study, "name": spec.name, "kind": spec.kind,
        "arm": spec.arm or spec.kind, "seed": spec.seed, "status": "done",
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {
            "arg": config_arg(settings, spec.arm)[len("--config="):],
            "resolved": str(settings.workdir(spec) / "config.json") if run_config is not None else None,
            "overrides": [a for a in train_argv if a.startswith("--config.")]
            or [a for a in next(iter(argvs.values()), []) if a.startswith("--config.")],
            "key": {k: dotted(run_config, k) for k in KEY_FIELDS} if run_config is not None else None,
        },
        "steps": max((int(r.get("step", 0)) for r in metrics), default=0),
        "eval": evals,
        "train": train_summary(metrics),
        "curves": curves,
        "fit": fit,
        "wall_seconds": dict(spent) | {"total": sum(spent.values())},
        "attempts": attempts,
    })


def load_results(results_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every finished run's result file in ``<results_dir>/<study>`` (sorted by name)."""
    out = []
    for path in sorted(resolve(results_path).glob("*.json")):
        if path.name == SUMMARY_FILE:
            continue
        data = read_result(path)
        if data is not None:
            out.append(data)
    return out
