"""experiments/gpu_study.sh on a CPU: its estimate adds up, and its command is design.md's CPU command with
its own study name and only the GPU's shape and speed settings changed (no GPU, nothing run)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.study import gpu_estimate as G

REPO = Path(__file__).resolve().parents[1]
DESIGN_MD = REPO / "experiments" / "results" / "natural" / "design.md"
# What the GPU command may set otherwise than the CPU one (gpu_study.sh says why for each).
GPU_FIELDS = {"eval.batch_size", "compile.cache_dir", "rollout.pad_multiple"}


def gpu_study(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "experiments/gpu_study.sh", mode], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PY": sys.executable})


@pytest.fixture(scope="module")
def estimate() -> subprocess.CompletedProcess:
    return gpu_study("estimate")


@pytest.fixture(scope="module")
def dry_run() -> subprocess.CompletedProcess:
    return gpu_study("dry_run")


def parse(argv: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """run_ablation argv -> ({flag: value}, {config field: value}), overrides after ``--`` or as --override=."""
    flags, overrides = {}, []
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    for arg in argv[:len(argv) - len(rest) - bool(rest)]:
        name, _, value = arg.lstrip("-").partition("=")
        if name == "override":
            overrides.append(value)
        else:
            flags[name] = value
    fields = dict(o[len("--config."):].split("=", 1) for o in overrides + rest)
    return flags, fields


def design_command() -> list[str]:
    """The natural study's command in design.md's command block (comments dropped, lines joined)."""
    block = re.search(r"```bash\n(.*?)```", DESIGN_MD.read_text(), re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    found = [c[3:] for c in commands if c[:3] == ["python", "-m", "experiments.run_ablation"] and "--study=natural" in c
             and "--report" not in c]
    assert len(found) == 1, f"one natural study command in design.md's block, found {len(found)}"
    return found[0]


def test_estimate_total_is_the_sum_of_its_rows(estimate):
    assert estimate.returncode == 0, estimate.stderr
    rows = re.findall(r"^(.+?)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+\[(\d+)\]$", estimate.stdout, re.M)
    total = re.search(r"^total\s+(\d+)\s+= ", estimate.stdout, re.M)
    assert rows and total, estimate.stdout
    assert sum(int(r[3]) for r in rows) == int(total.group(1))
    for item, count, each, row_total, _ in rows:
        assert abs(int(count) * float(each) - int(row_total)) <= 0.005 * int(count) + 0.5, item
    by_item = {r[0].strip(): int(r[1]) for r in rows}
    runs = G.grpo_runs(G.DESIGN, G.Gpu())
    assert runs == 16  # graduated and binary 5 seeds each, atomic and orchestration 3 (--arm_seeds)
    assert by_item[f"GRPO steps ({runs} runs x {G.DESIGN.grpo_steps})"] == runs * G.DESIGN.grpo_steps
    assert by_item["SFT steps (one row each)"] == G.DESIGN.sft_steps
    # Every row's rate is labelled: measured (a gpu_pilot file and field) or assumed.
    notes = dict(re.findall(r"^  \[(\d+)\] (.+)$", estimate.stdout, re.M))
    assert {r[4] for r in rows} <= set(notes)
    assert all(n.startswith("measured: gpu_pilot/") or n.startswith("assumed:") for n in notes.values())


def test_dry_run_is_the_designs_command_under_its_own_name(dry_run):
    assert dry_run.returncode == 0, dry_run.stderr
    shown = next(l for l in dry_run.stdout.splitlines() if l.startswith("$ "))
    gpu_flags, gpu_fields = parse(shlex.split(shown)[4:])
    cpu_flags, cpu_fields = parse(design_command())

    assert gpu_flags["study"] != "natural" and cpu_flags["study"] == "natural"
    for flag in ("config_file", "seeds", "arm_seeds", "sft_steps", "zero_shot"):
        assert gpu_flags[flag] == cpu_flags[flag], flag
    # Arms: the design's arms at its learning rate (a variant joined with '+', or none).
    cpu_arms = [a.split("+") for a in cpu_flags["arms"].split(",")]
    assert [a[0] for a in cpu_arms] == list(G.DESIGN.arms)
    assert {"+".join(a[1:]) for a in cpu_arms} == {G.DESIGN.lr_variant}
    assert gpu_flags["arms"] == cpu_flags["arms"]
    # Sources: the design's, less the split evaluated for the pilots only.
    cpu_sources = [s for s in cpu_flags["eval_sources"].split(",") if s not in G.PILOT_ONLY_SOURCES]
    assert gpu_flags["eval_sources"].split(",") == cpu_sources
    # Steps: the design's number, or the config's when the command leaves it out (a placeholder: not chosen).
    steps = cpu_flags.get("grpo_steps")
    if steps is None:
        steps = re.search(r"config\.train\.num_steps = (\d+)", (REPO / "configs" / "study.py").read_text()).group(1)
    if steps.isdigit():
        assert gpu_flags["grpo_steps"] == steps
    # Evaluation and every other override as the design's; only the GPU's fields differ.
    assert {k: v for k, v in gpu_fields.items() if k not in GPU_FIELDS} == \
           {k: v for k, v in cpu_fields.items() if k not in GPU_FIELDS}
    assert {k for k in GPU_FIELDS if gpu_fields.get(k) != cpu_fields.get(k)} == GPU_FIELDS
    assert int(gpu_fields["eval.batch_size"]) >= int(cpu_fields["eval.batch_size"])

    # run_ablation's own plan: the SFT start, graduated and binary x 5 seeds, atomic and orchestration x 3.
    runs = re.findall(r"^(\S+) \[(todo|done)\] -> (\S+)$", dry_run.stdout, re.M)
    assert len(runs) == 17 and all(f"/{gpu_flags['study']}/" in path for _, _, path in runs)


def test_learning_rate_and_steps_are_settable():
    gpu = G.Gpu(steps=16, lr_variant=G.lr_variant("3e-5"))
    flags, fields = parse(G.ablation_argv(G.DESIGN, gpu))
    assert flags["arms"] == "graduated+lr3e-5,binary+lr3e-5,atomic+lr3e-5,orchestration+lr3e-5"
    assert flags["baseline_arm"] == "graduated,lr3e-5" and flags["grpo_steps"] == "16"
    assert fields["compile.cache_dir"] == "runs/studies/natural_gpu/jax_cache"
    assert G.lr_variant("") == "" and G.lr_variant("lr3e-5") == "lr3e-5"
