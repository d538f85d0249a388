"""The natural study on one GPU (experiments/gpu_study.sh): its run_ablation command and its expected wall time.

    python -m experiments.study.gpu_estimate [--steps=16] [--lr=3e-5] [--eval_batch=32] [--pad_multiple=256]
    python -m experiments.study.gpu_estimate --argv [...]   # the run_ablation flags, one per line

`DESIGN` is the CPU study's command (experiments/results/natural/design.md); tests/test_gpu_study.py checks
it against that command block, so the GPU study cannot drift from it. The GPU command is the same with its
own study name and three overrides that change shapes and speed only (`gpu_overrides`).

The estimate counts what the study runner's own plan (experiments/study/plan.py) runs, with held-out sizes
from design.json, and prices it as one GPU spends its time on a 135M model: starting processes, compiling
each padded shape once (the persistent cache is shared by every run of the study), and little else: a
compiled step took ~1 s in the pilot. Costs are measured by the GPU pilot (experiments/results/gpu_pilot,
one H200) where it measured them and assumed where it did not; every row names which. toolrl.plan's
FLOP / MFU time is not used: at this size a step is bound by latency and compilation, not by FLOPs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import statistics
from pathlib import Path
from typing import Any, Sequence

from experiments.study.plan import RunSpec, StudySettings, default_commands, eval_sources_after, plan

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "experiments" / "results"
PILOT = RESULTS / "gpu_pilot"
PILOT_CAP_S = 490  # gpu_pilot/README.md: the wall-clock cap its training process ran under


@dataclasses.dataclass(frozen=True)
class Design:
    """One study's run_ablation settings (its flags, and the --config overrides after ``--``)."""

    config_file: str
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    arm_seeds: tuple[tuple[str, int], ...]  # (arm, n): that arm runs the first n seeds only (--arm_seeds)
    sft_steps: int
    grpo_steps: int
    lr_variant: str  # "" = the config's learning rate; else a configs/grpo.py variant added to every arm
    zero_shot: bool
    eval_sources: tuple[str, ...]
    overrides: tuple[str, ...]


# The CPU command of design.md, with the pilots' choice: 16 GRPO steps at the config's learning rate (1e-5).
DESIGN = Design(
    config_file="configs/study.py", arms=("graduated", "binary", "atomic", "orchestration"),
    seeds=(0, 1, 2, 3, 4), arm_seeds=(("atomic", 3), ("orchestration", 3)), sft_steps=200, grpo_steps=16,
    lr_variant="", zero_shot=False,
    eval_sources=("synthetic:test", "eval_100", "eval_100@benchmark"),
    overrides=("--config.eval.heldout=novel", "--config.eval.max_turns=0", "--config.eval.complete_only=True",
               "--config.eval.batch_size=8", "--config.compile.cache_dir=runs/studies/xla_cache"))
# Evaluated for the pilots only (design.md, "Held-out sets"); the GPU study takes the pilots' choice.
PILOT_ONLY_SOURCES = ("synthetic:validation",)


@dataclasses.dataclass(frozen=True)
class Gpu:
    """What the GPU study sets otherwise than the CPU command (gpu_study.sh says why)."""

    study: str = "natural_gpu"
    steps: int = DESIGN.grpo_steps
    lr_variant: str = DESIGN.lr_variant
    eval_batch: int = 32
    pad_multiple: int = 256
    cache_dir: str = ""  # "" = runs/studies/<study>/jax_cache, the directory the runner names too


def lr_variant(lr: str) -> str:
    """"3e-5" or "lr3e-5" -> "lr3e-5"; "" -> "" (the config's learning rate)."""
    lr = lr.strip()
    return "" if not lr else lr if lr.startswith("lr") else f"lr{lr}"


def arms(design: Design, gpu: Gpu) -> list[str]:
    return [f"{a}+{gpu.lr_variant}" if gpu.lr_variant else a for a in design.arms]


def gpu_overrides(design: Design, gpu: Gpu) -> list[str]:
    """The design's overrides with the GPU's eval batch and cache directory, and the prompt-width bucket."""
    cache = gpu.cache_dir or f"runs/studies/{gpu.study}/jax_cache"
    new = {"eval.batch_size": gpu.eval_batch, "compile.cache_dir": cache, "rollout.pad_multiple": gpu.pad_multiple}
    out = [o for o in design.overrides if o.partition("=")[0][len("--config."):] not in new]
    return out + [f"--config.{k}={v}" for k, v in new.items()]


def arm_seeds_flag(design: Design, gpu: Gpu) -> str:
    """--arm_seeds's value for the GPU's arm names (atomic:3 or atomic+lr3e-5:3)."""
    return ",".join(f"{a}+{gpu.lr_variant}:{n}" if gpu.lr_variant else f"{a}:{n}" for a, n in design.arm_seeds)


def ablation_argv(design: Design, gpu: Gpu) -> list[str]:
    """The flags of ``python -m experiments.run_ablation`` for the GPU study (overrides as --override=...)."""
    return [f"--study={gpu.study}", f"--config_file={design.config_file}", f"--arms={','.join(arms(design, gpu))}",
            f"--seeds={','.join(map(str, design.seeds))}", f"--arm_seeds={arm_seeds_flag(design, gpu)}",
            f"--sft_steps={design.sft_steps}",
            f"--grpo_steps={gpu.steps}", f"--zero_shot={design.zero_shot}",
            f"--eval_sources={','.join(design.eval_sources)}",
            # The report's baseline is graduated at the study's learning rate (its arm name).
            f"--baseline_arm={arms(design, gpu)[0].replace('+', ',')}",
            *[f"--override={o}" for o in gpu_overrides(design, gpu)]]


def settings(design: Design, gpu: Gpu) -> StudySettings:
    """The runner's settings for these flags (as experiments/run_ablation.py builds them)."""
    return StudySettings(study=gpu.study, arms=tuple(a.replace("+", ",") for a in arms(design, gpu)),
                         seeds=design.seeds, config_file=design.config_file, sft_steps=design.sft_steps,
                         arm_seeds=tuple((f"{a},{gpu.lr_variant}" if gpu.lr_variant else a, n) for a, n in design.arm_seeds),
                         grpo_steps=gpu.steps, eval_sources=design.eval_sources,
                         overrides=tuple(gpu_overrides(design, gpu)), zero_shot=design.zero_shot)


# ----------------------------------------------------------------------------- costs


@dataclasses.dataclass(frozen=True)
class Cost:
    """Seconds (or a ratio) and where the figure comes from: "measured: <file> <field> ..." or "assumed: ..."."""

    value: float
    source: str


@dataclasses.dataclass(frozen=True)
class Row:
    item: str
    count: int
    each: Cost

    @property
    def total(self) -> int:
        return round(self.count * self.each.value)


def pilot_costs(pilot: Path = PILOT) -> dict[str, Cost]:
    """What the GPU pilot measured (one H200; its README says how): warm and compiling parts of a step."""
    steps = [r for r in map(json.loads, (pilot / "metrics.jsonl").read_text().splitlines()) if r.get("phase") == "grpo"]
    policy = json.loads((pilot / "eval_step_000000.json").read_text())["settings"]
    stats, n = policy["policy_stats"], len(steps)
    gen, upd = [r["time/generate_s"] for r in steps], [r["time/update_s"] for r in steps]
    m = "measured: gpu_pilot/"
    return {
        "generate": Cost(min(gen), f"{m}metrics.jsonl time/generate_s, the fastest of {n} steps (all shapes compiled)"),
        "update": Cost(min(upd), f"{m}metrics.jsonl time/update_s, the fastest of {n} steps (32 rows)"),
        "reward": Cost(statistics.median(r["time/reward_s"] for r in steps), f"{m}metrics.jsonl time/reward_s, median"),
        "compile_generate": Cost(stats["seconds"] / stats["batches"],
                                 f"{m}eval_step_000000.json policy_stats seconds / batches (each compiled a width)"),
        "compile_update": Cost(min(u for u in upd if u > 10 * min(upd)),
                               f"{m}metrics.jsonl time/update_s, the fastest step that compiled"),
        "requests_per_turn": Cost(stats["requests"] / policy["turns"],
                                  f"{m}eval_step_000000.json policy_stats requests / turns"),
        # The process reached its cap during step 10, after the start's evaluation and 9 steps: what is left
        # of the cap bounds its start (imports, data, the model, the first traces).
        "start": Cost(PILOT_CAP_S - sum(r["time/step_s"] for r in steps) - stats["seconds"],
                      f"{m}README.md {PILOT_CAP_S} s cap - sum of time/step_s - the start evaluation's seconds (a bound)"),
        "cold_step": Cost(statistics.mean(r["time/step_s"] for r in steps),
                          f"{m}metrics.jsonl time/step_s, mean (no cache: every step compiled)"),
    }


ASSUMED_EVAL_PROMPT = Cost(4096, "assumed: held-out prompts up to 2 x max_seq_len (no eval cap; not measured)")


def heldout_units(results: Path = RESULTS) -> dict[str, Cost]:
    """Scored units per evaluation of each source: turns (the turn game) or the benchmark's turns."""
    design = json.loads((results / "natural" / "design.json").read_text())
    novel = json.loads((results / "natural" / "data_report.json").read_text())["novel"]
    sft = json.loads((results / "natural" / "sft.json").read_text())["eval"]
    bench = next(v["end"]["turns"] for k, v in sft.items() if k.startswith("eval_100@"))
    d = "measured: natural/design.json"
    return {"synthetic:test": Cost(design["heldout_novel_turns"], f"{d} heldout_novel_turns"),
            "synthetic:validation": Cost(novel["synthetic:validation"]["novel"], "measured: natural/data_report.json novel"),
            "eval_100": Cost(design["eval_100_turns"], f"{d} eval_100_turns"),
            "eval_100@benchmark": Cost(bench, f"measured: natural/sft.json eval_100@ end turns ({design['eval_100_samples']} samples)")}


def program_counts(config: Any, gpu: Gpu) -> dict[str, int]:
    """Distinct compiled programs the buckets allow (each compiles once for the whole study)."""
    from toolrl.rl.update import bucket, row_buckets  # the trainer's own ladders (imports jax)

    r = config.rollout
    pad = gpu.pad_multiple
    widths = math.ceil((r.max_seq_len - r.max_new_tokens) / pad)  # rollout prompts fit max_seq_len
    rows = r.prompts_per_step * r.group_size
    ladder = {min(bucket(n, pad), -(-r.max_seq_len // 8) * 8) for n in range(1, r.max_seq_len + 1)}
    # Update rows: the plain layout's row buckets, and the packed layout's ladder of live rows (unit 1 here).
    update_rows = set(row_buckets(rows, config.grpo.micro_batches)) | {bucket(n, 1) for n in range(1, rows + 1)}
    return {"eval": math.ceil(ASSUMED_EVAL_PROMPT.value / pad),  # rows are always eval.batch_size
            "rollout": widths * rows + widths,  # a round's live rows (1..rows); the first round's group prefill
            # GRPO (rows x widths; the loss-position ladder, K in multiples of 16, can add more) and SFT (1 row)
            "update": len(ladder) * len(update_rows) + len(ladder)}


def estimate(design: Design, gpu: Gpu, config: Any, costs: dict[str, Cost], units: dict[str, Cost]) -> list[Row]:
    """The table's rows: what the plan runs, priced."""
    s = settings(design, gpu)
    specs = plan(s)
    processes = sum(len(default_commands(spec, s)) for spec in specs)
    runs = sum(spec.kind == "grpo" for spec in specs)
    programs = program_counts(config, gpu)
    step = costs["generate"].value + costs["update"].value + costs["reward"].value
    rows = [Row("process starts (jax, data, model, held-out set)", processes, costs["start"]),
            Row(f"compile generation programs ({programs['eval']} eval + {programs['rollout']} rollout)",
                programs["eval"] + programs["rollout"], costs["compile_generate"]),
            Row("compile update programs (GRPO and SFT)", programs["update"], costs["compile_update"]),
            Row("SFT steps (one row each)", design.sft_steps if any(x.kind == "sft" for x in specs) else 0,
                Cost(costs["update"].value, costs["update"].source + ", an upper bound")),
            Row(f"GRPO steps ({runs} runs x {gpu.steps})", runs * gpu.steps,
                Cost(step, "measured: gpu_pilot/metrics.jsonl fastest time/generate_s + fastest "
                                 "time/update_s + median time/reward_s (32 rollouts a step; the study's are 8)"))]
    e = config.eval
    for source in design.eval_sources:
        n = sum(source in eval_sources_after(spec, s) or (spec.kind == "grpo" and source == design.eval_sources[0])
                for spec in specs)
        requests = units[source].value * costs["requests_per_turn"].value
        calls = math.ceil(requests / gpu.eval_batch) + e.max_rounds - 1  # each round's last chunk
        rows.append(Row(f"eval {source}: {n} x {calls} calls of {gpu.eval_batch} rows", n * calls,
                        Cost(costs["generate"].value, costs["generate"].source + "; one call of up to 32 rows")))
    return rows


def grpo_runs(design: Design, gpu: Gpu) -> int:
    return sum(spec.kind == "grpo" for spec in plan(settings(design, gpu)))


def fmt_time(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def render(rows: Sequence[Row], design: Design, gpu: Gpu, costs: dict[str, Cost], units: dict[str, Cost]) -> str:
    total = sum(r.total for r in rows)
    notes = {src: i + 1 for i, src in enumerate(dict.fromkeys(r.each.source for r in rows))}
    sizes = ", ".join(f"{s} {units[s].value:.0f}" for s in design.eval_sources)
    out = [f"GPU study {gpu.study}: {len(plan(settings(design, gpu)))} runs, arms {','.join(arms(design, gpu))}, "
           f"seeds {','.join(map(str, design.seeds))}, {gpu.steps} GRPO steps, held-out units: {sizes}",
           f"{'item':<58} {'count':>6} {'each s':>8} {'total s':>8}  from"]
    out += [f"{r.item:<58} {r.count:>6} {r.each.value:>8.2f} {r.total:>8}  [{notes[r.each.source]}]" for r in rows]
    out.append(f"{'total':<58} {'':>6} {'':>8} {total:>8}  = {fmt_time(total)}")
    out += [f"  [{i}] {src}" for src, i in notes.items()]
    cold = costs["cold_step"]
    out += [f"  Held-out sizes: {'; '.join(units[s].source for s in design.eval_sources)}.",
            f"  Compiled programs are counted at the buckets' bound; eval widths: {ASSUMED_EVAL_PROMPT.source}.",
            f"  Rates are one H200's (the pilot; an H100 computes alike with 70% of its memory bandwidth).",
            f"  Without a cache every step compiled: {cold.value:.1f} s a step ({cold.source}),"
            f" {fmt_time(cold.value * gpu.steps * grpo_runs(design, gpu))} for the GRPO steps alone."]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", default=Gpu.study)
    p.add_argument("--steps", type=int, default=DESIGN.grpo_steps, help="GRPO steps per run")
    p.add_argument("--lr", default=DESIGN.lr_variant, help="'' = the config's; e.g. 3e-5 (variant lr3e-5)")
    p.add_argument("--eval_batch", type=int, default=Gpu.eval_batch)
    p.add_argument("--pad_multiple", type=int, default=Gpu.pad_multiple)
    p.add_argument("--cache_dir", default="")
    p.add_argument("--argv", action="store_true", help="print the run_ablation flags only, one per line")
    a = p.parse_args(argv)
    if a.study == "natural":
        p.error("--study=natural is the CPU study's; the GPU study needs its own name")
    gpu = Gpu(a.study, a.steps, lr_variant(a.lr), a.eval_batch, a.pad_multiple, a.cache_dir)
    if a.argv:  # fast (no jax): gpu_study.sh reads it before every mode; the estimate checks the variant
        print("\n".join(ablation_argv(DESIGN, gpu)))
        return
    from configs import grpo, study  # imports jax

    if gpu.lr_variant and gpu.lr_variant not in grpo.VARIANTS:
        p.error(f"--lr={a.lr}: no config variant {gpu.lr_variant!r} (configs/grpo.py VARIANTS)")
    costs, units = pilot_costs(), heldout_units()
    config = study.get_config(arms(DESIGN, gpu)[0].replace("+", ","))
    print(render(estimate(DESIGN, gpu, config, costs, units), DESIGN, gpu, costs, units))
    print("command: python -m experiments.run_ablation " + shlex.join(ablation_argv(DESIGN, gpu)))


if __name__ == "__main__":
    main()
