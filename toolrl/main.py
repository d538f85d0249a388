"""Entry point: ``python -m toolrl.main --config=configs/grpo.py [--config.field=value ...]``.

Dispatches on ``config.mode``:
  * ``grpo``: SFT warm start (sft.num_steps > 0), then GRPO; ends with a table of what it learned;
  * ``sft``: SFT only;
  * ``eval``: evaluate a run (``eval.checkpoint``, else ``workdir``) with that run's own saved model and
    prompt settings, or the configured model when neither holds a run;
  * ``check``: print the fit report of the budgets and stop (last line ``fit: K/N tasks (P%)``);
  * ``plan``: compile the update and the sampler for the configured model and mesh with abstract weights
    on simulated devices of ``plan.device`` and print memory, FLOPs and time (``toolrl.plan``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/grpo.py", "Training configuration file.")


def build_mesh(config: Any):
    """The (data, fsdp, tensor) mesh over all devices (all hosts) from config.mesh."""
    import jax

    from toolrl.models.sharding import make_mesh
    from toolrl.rl.config import validate_for_devices

    data, fsdp, tensor = validate_for_devices(config, jax.device_count())
    return make_mesh(data, fsdp, tensor)


def build_environment(config: Any):
    from toolrl.env.booking import BookingEnvironment
    from toolrl.eval.evaluator import response_view

    return BookingEnvironment.from_default(data_dir=config.data.data_dir or None, view=response_view(config))


def prepare(config: Any, mesh: Any = None, check: bool = True):
    """(policy, environment, fitted training data) for a config."""
    from toolrl.policy.runtime import Policy
    from toolrl.rl.trainer import load_training_samples, prepare_data

    policy = Policy.from_config(config, mesh)
    env = build_environment(config)
    data = prepare_data(config, policy, load_training_samples(config), env.render, check=check)
    return policy, env, data


def train(config: Any, reward_fn: Any = None, stop_after: int | None = None):
    """Builds everything from a validated config and runs the trainer. Returns its RunInfo."""
    from toolrl.rl.trainer import Trainer
    from toolrl.rl.workdir import open_workdir

    import jax

    mesh = build_mesh(config)
    # One process owns the workdir (on a multi-host slice every host would lock the others out).
    owner = (open_workdir(config.workdir, config, allow_changes=config.train.allow_config_change)
             if jax.process_index() == 0 else contextlib.nullcontext())
    with owner:
        try:
            from toolrl.compilation_cache import enable_compilation_cache

            # Inside the opened workdir (a refused run's fresh workdir is removed whole), before the first
            # jit: a rerun or a resume of the same shapes skips compiling.
            enable_compilation_cache(config)
            from toolrl.rl.progress import StepRecords

            StepRecords(0).line(f"{config.mode}: loading {config.model.preset or config.model.path} and the tasks "
                                f"(the first step compiles the update)")
            policy, env, data = prepare(config, mesh)
            for report in (data.rl_fit, data.sft_fit):
                logging.info(report.describe())
            evaluation = train_evaluation = None
            if config.eval.every:
                from toolrl.eval.evaluator import Evaluation

                with _ids_of("eval.sample_ids"):
                    evaluation = Evaluation(config)
                if config.eval.get("train_turns", 0):
                    train_evaluation = Evaluation(config, samples=data.samples(), max_turns=config.eval.train_turns)
            trainer = Trainer(config, policy, env, data, mesh, reward_fn=reward_fn, evaluation=evaluation,
                              train_evaluation=train_evaluation)
            # Under the mesh, each block pins its activations to the batch sharding (decoder.constrain_batch),
            # so FSDP gathers weights rather than whole batches.
            with jax.set_mesh(mesh):
                info = trainer.run(progress=config.train.progress, stop_after=stop_after)
        except BaseException:
            # Refused before anything was saved (nothing fits, a config or data error, a first step that
            # failed): a fresh workdir is left as if never opened, so the corrected command can use it.
            if hasattr(owner, "discard") and not _has_checkpoint(Path(config.workdir)):
                owner.discard()
            raise
    info.fit = data.rl_fit if config.mode == "grpo" else data.sft_fit
    return info


@contextlib.contextmanager
def _ids_of(field: str):
    """An unknown sample id (`select_ids`) in `field` is the user's mistake: ConfigError naming the field."""
    from toolrl.rl.config import ConfigError

    try:
        yield
    except ValueError as err:
        if str(err).startswith("sample ids not found"):
            raise ConfigError(f"{field}: {err}") from err
        raise


def _has_checkpoint(workdir: Path) -> bool:
    """Whether the run saved any checkpoint (finished or in progress) in `workdir`."""
    directory = workdir / "checkpoints"
    return directory.is_dir() and any(p.name[:1].isdigit() for p in directory.iterdir())


def check(config: Any) -> str:
    """mode == "check": the fit report of the GRPO tasks and the SFT episodes, then the fit line."""
    _, _, data = prepare(config, None, check=False)
    report = data.rl_fit if config.mode != "sft" and config.train.num_steps else data.sft_fit
    print(data.rl_fit.describe())
    print(data.sft_fit.describe())
    print(report.line())
    return report.line()


def evaluate(config: Any):
    """mode == "eval": a run's own model and settings (eval.* from this command), or the configured model."""
    import jax

    from toolrl.compilation_cache import enable_compilation_cache
    from toolrl.eval.evaluator import run_evaluation
    from toolrl.policy.runtime import Policy

    run = Path(config.eval.checkpoint or config.workdir)
    # Before the first jit: the next evaluation of the same prompt widths (another checkpoint of the run,
    # or every run of a study sharing compile.cache_dir) reads the programs instead of compiling them.
    enable_compilation_cache(config if str(config.compile.cache_dir) else str((run / "xla_cache").absolute()))
    mesh = build_mesh(config)
    if (run / "config.json").is_file():
        # The command's model.attention_query_chunk (> 0) replaces the run's: memory, not numbers.
        chunk = config.model.get("attention_query_chunk") or None
        policy, run_config = Policy.from_run(run, mesh, attention_query_chunk=chunk)
        run_config.unlock()
        run_config.eval = config.eval  # what to evaluate comes from this command; prompts from the run
        run_config.wandb = config.wandb  # and where its record goes
        config = run_config
    else:
        if config.eval.checkpoint:
            raise FileNotFoundError(f"eval.checkpoint={config.eval.checkpoint!r} is not a toolrl run directory "
                                    "(no config.json)")
        policy = Policy.from_config(config, mesh)
    output = config.eval.output_dir or str(run / "eval")
    with _ids_of("eval.sample_ids"):
        with jax.set_mesh(mesh):
            report = run_evaluation(config, policy, output, bar=True)
    report.print()
    print(f"results: {output}/eval_results.json")
    if jax.process_index() == 0:
        from toolrl.rl.metrics import log_evaluation

        where = log_evaluation(report, config, output, step=_latest_step(run))
        if where != "disabled":
            print(f"wandb: {where}")
    return report


def _latest_step(run: Path) -> int:
    """The step of a run's latest checkpoint (the one `Policy.from_run` loads); 0 without checkpoints."""
    directory = run / "checkpoints"
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
    return max(steps, default=0)


def summary_table(info: Any, minutes: float) -> str:
    """What the run learned: held-out accuracy and reward at the start and the end, fit, time, where."""
    lines = ["", "| what | start | end |", "|---|---|---|"]
    evals = getattr(info, "evaluations", [])
    if evals:
        first, last = evals[0], evals[-1]
        for prefix, name in (("eval_train", "its own training tasks"), ("eval", "held-out")):
            if f"{prefix}/turn_accuracy" not in first or f"{prefix}/turn_accuracy" not in last:
                continue
            turns = first.get(f"{prefix}/turns", 0)
            right = [round(e[f"{prefix}/turn_accuracy"] * e.get(f"{prefix}/turns", 0)) for e in (first, last)]
            lines.append(f"| turn accuracy, {name} ({turns} turns) | "
                         f"{100 * first[f'{prefix}/turn_accuracy']:.1f}% ({right[0]}/{turns}, step {first['step']}) | "
                         f"{100 * last[f'{prefix}/turn_accuracy']:.1f}% ({right[1]}/{turns}, step {last['step']}) |")
            lines.append(f"| call accuracy, {name} | {100 * first[f'{prefix}/call_accuracy']:.1f}% | "
                         f"{100 * last[f'{prefix}/call_accuracy']:.1f}% |")
    if info.rewards:
        k = max(1, len(info.rewards) // 3)
        lines.append(f"| mean train reward (first / last {k} steps) | {sum(info.rewards[:k]) / k:.3f} | "
                     f"{sum(info.rewards[-k:]) / k:.3f} |")
    fit = getattr(info, "fit", None)
    if fit is not None:
        lines.append(f"| {fit.line()} | | |")
    lines.append(f"| wall time | {minutes:.1f} min | |")
    lines += ["", f"checkpoints: {info.checkpoints}", f"metrics:     {info.metrics}",
              f"evaluations: {info.workdir / 'eval'}", f"wandb:       {info.wandb}"]
    return "\n".join(lines)


_STARTED = False  # set once flags are parsed: errors after that are not about the command line


def main(argv: list[str]) -> None:
    del argv
    global _STARTED
    _STARTED = True
    from toolrl.rl.config import validate

    config = _CONFIG.value
    if config.mode == "plan":  # before jax starts (validate asks for devices): the plan sets up its own
        from toolrl.plan import run_plan

        run_plan(config)  # validates for the planned mesh
        return
    validate(config)
    from toolrl.rl.workdir import check_local_path

    if config.mode in ("grpo", "sft"):
        from toolrl.rl.metrics import sweep_workdir

        config.workdir = sweep_workdir(config.workdir)  # inside `wandb agent`: one workdir per sweep run
    check_local_path(config.workdir)  # every process refuses a gs:// workdir, not only the one that opens it
    import jax

    if config.distributed:  # before any device is asked for (toolrl.distributed)
        from toolrl.distributed import initialize

        initialize()
    if config.mode == "check":
        check(config)
        return
    if config.mode == "eval":
        evaluate(config)
        return
    from toolrl.rl.trainer import TrainingInterrupted

    started = time.perf_counter()
    try:
        info = train(config)
    except TrainingInterrupted as stopped:  # SIGTERM / SIGINT: saved (or not), one line, 128 + signal
        print(f"toolrl.main: {stopped}", file=sys.stderr)
        sys.exit(128 + stopped.signum)
    minutes = (time.perf_counter() - started) / 60
    sft_steps = config.sft.num_steps if config.mode in ("grpo", "sft") else 0
    grpo_steps = max(0, info.final_step - sft_steps)
    print(f"\nfinished step {info.final_step} (SFT {min(info.final_step, sft_steps)}, GRPO {grpo_steps}) "
          f"in {minutes:.1f} min")
    print(summary_table(info, minutes))
    if jax.process_index() == 0:
        write_summary(info, minutes, config)


def write_summary(info: Any, minutes: float, config: Any) -> Path:
    """``<workdir>/summary.json``: what the end table says, as a file (experiments/main_job.py reads it)."""
    import json

    fit = getattr(info, "fit", None)
    record = {"final_step": info.final_step, "sft_steps": int(config.sft.num_steps),
              "grpo_steps": int(config.train.num_steps), "minutes": minutes,
              "evaluations": info.evaluations, "rewards": list(info.rewards),
              "fit": fit.to_json() if fit is not None else None}
    path = Path(info.workdir) / "summary.json"
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    return path


def run() -> None:
    """Runs `main` under absl; a user's mistake (config, budgets, workdir, files) is one line and exit 2
    (`--verbose` shows the traceback)."""
    from toolrl.cli import run_cli
    from toolrl.env.cache import CacheError
    from toolrl.rl.config import ConfigError
    from toolrl.cli import UserError
    from toolrl.rl.trainer import NonFiniteError, storage_problem
    from toolrl.rl.workdir import WorkdirError

    class StorageError(UserError):
        """No space, a read-only file system, or no permission: the user's to fix, one line."""

    os.environ.setdefault("WANDB_SILENT", "true")
    logging.set_verbosity(logging.WARNING)

    def parse_and_run(argv: list[str]) -> None:
        from toolrl.__main__ import check_config_file

        check_config_file(argv)  # a missing config file: one line, not absl's OSError traceback
        try:
            app.run(main, argv=[sys.argv[0], *argv])
        except OSError as err:  # EROFS / ENOSPC / EDQUOT are OSError, not the PermissionError run_cli knows
            if storage_problem(err) is None or isinstance(err, (PermissionError, FileNotFoundError)):
                raise
            from toolrl.cli import one_line

            raise StorageError(one_line(err)) from err
        except (AttributeError, KeyError) as err:
            if _STARTED:
                raise
            # The config flag could not apply an override: a field that does not exist.
            overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
            raise ConfigError(f"unknown config field ({err}); overrides given: {', '.join(overrides) or 'none'}; "
                              "every field is listed in toolrl/rl/config.py") from err

    run_cli(parse_and_run, prog="toolrl.main", user_errors=(ConfigError, WorkdirError, CacheError,
                                                                  NonFiniteError))


if __name__ == "__main__":
    run()
