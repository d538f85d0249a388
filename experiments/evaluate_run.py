"""Evaluate one training run's final checkpoint (or the untrained model) on ComplexFuncBench turns.

    python -m experiments.evaluate_run --workdir=runs/ablation/graduated/seed0/work \
        --out=runs/ablation/graduated/seed0/eval.json [--max_turns=16 --max_new_tokens=96 ...]

``--workdir=""`` evaluates the pretrained model as it is (the zero-shot baseline). The model comes
from ``--preset`` (the training preset); the parameters of the run's latest orbax checkpoint
replace its weights (only the model part of the saved (model, optimizer) state is used, so the
optimizer needs no rebuilding).

Which turns: the scored turns of eval_100 whose golden history is complete (DESIGN.md, Evaluation),
of which a FIXED subset of ``--max_turns`` is kept: round-robin over the domains in file order, so
every run of a sweep sees the same turns and the domains stay balanced (0 = all complete turns).
With ``--synth_dir`` (a built ``toolrl_traces`` TFDS directory) the held-out ``test`` split of the
synthesized traces (workflows never seen in training) is evaluated the same way.

Output: one JSON file with, per split, the report of the complete bucket (overall and per domain,
error breakdown, every turn's verdict and raw text) and the policy's generation counters. The
metrics also go to the run's W&B run (``eval/<split>/...``) when ``--wandb`` is set.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "", "Training run workdir whose latest checkpoint is evaluated; '' = untrained model.")
flags.DEFINE_string("out", "", "Where the evaluation JSON goes.")
flags.DEFINE_string("preset", "smollm2_135m", "Model preset (as the training config's model.preset).")
flags.DEFINE_string("model_path", "", "HF directory instead of the preset.")
flags.DEFINE_string("tool_view", "compact", "How tools are shown: the training run's data.tool_view, or 'hermes'.")
flags.DEFINE_integer("max_turns", 16, "Fixed subset size of complete eval_100 turns (0 = all complete turns).")
flags.DEFINE_integer("max_new_tokens", 96, "Greedy generation budget per request.")
flags.DEFINE_integer("batch_size", 8, "Requests per generation batch.")
flags.DEFINE_integer("max_rounds", 2, "Protocol rounds per scored turn (free location lookups first).")
flags.DEFINE_integer("view_max_chars", 300, "Golden responses in prompts: max JSON chars (training's data.response_max_chars).")
flags.DEFINE_integer("view_max_items", 2, "Golden responses in prompts: max list items (data.response_max_list_items).")
flags.DEFINE_string("synth_dir", "", "TFDS dir of the synthesized traces; its 'test' split is evaluated when present.")
flags.DEFINE_integer("synth_max_turns", 16, "Fixed subset size of synthesized test turns.")
flags.DEFINE_string("data_dir", "", "Benchmark data directory ('' = default).")
flags.DEFINE_bool("wandb", True, "Log the metrics to the run's W&B run (offline unless logged in).")
flags.DEFINE_string("wandb_project", "toolrl", "W&B project.")
flags.DEFINE_string("run_name", "", "Name of the W&B run / results entry.")


def select_turns(tasks: Sequence[Any], max_turns: int) -> list[Any]:
    """Complete-history turns, a fixed round-robin over domains (file order within a domain)."""
    complete = [t for t in tasks if t.complete]
    if max_turns <= 0 or max_turns >= len(complete):
        return complete
    by_domain: dict[str, list[Any]] = defaultdict(list)
    for task in complete:
        by_domain[task.domain].append(task)
    picked: list[Any] = []
    queues = [list(v) for _, v in sorted(by_domain.items())]
    while len(picked) < max_turns and any(queues):
        for queue in queues:
            if queue and len(picked) < max_turns:
                picked.append(queue.pop(0))
    order = {id(t): i for i, t in enumerate(complete)}
    return sorted(picked, key=lambda t: order[id(t)])


def synth_eval_samples(synth_dir: str, data_dir: str | None) -> list[Any]:
    """EvalSamples of the held-out synthesized test split (turns as the synthesizer grouped them)."""
    from toolrl.data import paths
    from toolrl.data.schemas import load_tool_schemas
    from toolrl.eval.types import EvalSample, GoldenCall, GoldenTurn
    from toolrl.synth.tfds_builder import load_golden_traces

    schemas = load_tool_schemas(paths.data_file(paths.TOOL_SCHEMAS, data_dir))
    samples = []
    for n, trace in enumerate(load_golden_traces("test", synth_dir)):
        index, turns = 0, []
        for turn in trace.turns:
            calls = []
            for call in turn:
                calls.append(GoldenCall(index, call.name, dict(call.arguments), call.response))
                index += 1
            turns.append(GoldenTurn(tuple(calls)))
        tools = tuple(schemas[name].raw for name in trace.candidate_tools if name in schemas)
        samples.append(EvalSample(trace.trace_id or f"synth-{n}", trace.domain or "synthetic", trace.query, tools,
                                  tuple(turns), "synthetic/test"))
    return samples


def restore_model_params(model: Any, workdir: str | os.PathLike) -> dict[str, Any]:
    """Loads the model parameters of ``workdir``'s latest checkpoint into ``model``; returns its meta."""
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from flax import nnx

    directory = Path(workdir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(read_only=True)
    manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"no finished checkpoint under {directory}")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                             meta=ocp.args.JsonRestore()))
    saved = restored["state"]["0"]  # the trainer saves nnx.state((model, optimizer)): "0" is the model
    updated = []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        node = saved
        for part in path:
            node = node[str(part)]
        value = node["value"] if isinstance(node, dict) else node
        if tuple(value.shape) != tuple(var.get_value().shape):
            raise ValueError(f"checkpoint {path} has shape {value.shape}, model expects {var.get_value().shape}")
        updated.append((path, var.replace(jnp.asarray(value, var.get_value().dtype))))
    nnx.update(model, nnx.from_flat_state(updated))
    manager.close()
    return dict(restored["meta"]) | {"checkpoint_step": int(step)}


def split_summary(report: Any, policy_stats: dict[str, Any], turns: int, seconds: float) -> dict[str, Any]:
    """The JSON kept per split: complete-bucket metrics overall / per domain, verdicts, counters."""
    complete = report.metrics["complete"]
    return {
        "overall": report.overall("complete").to_json(),
        "by_domain": {d: m.to_json() for d, m in complete.items()},
        "turns": [r.to_json() for r in report.results],
        "n_turns": turns,
        "policy": policy_stats,
        "seconds": seconds,
    }


def main(argv: list[str]) -> None:
    del argv
    from toolrl.env.booking import ViewPolicy
    from toolrl.env.cache import open_default_cache
    from toolrl.eval import build_turn_tasks, load_eval_samples, make_matcher
    from toolrl.eval.model_policy import make_model_policy
    from toolrl.eval.protocol import run_protocol
    from toolrl.eval.report import EvalReport
    from toolrl.rl.policy_model import load_policy

    started = time.perf_counter()
    data_dir = FLAGS.data_dir or None
    model, tokenizer, model_config = load_policy(FLAGS.preset, FLAGS.model_path, "float32", None, 0)
    meta = restore_model_params(model, FLAGS.workdir) if FLAGS.workdir else {"checkpoint_step": 0}
    loaded = time.perf_counter()
    policy = make_model_policy(model, tokenizer, None, tool_view=FLAGS.tool_view, model_config=model_config,
                               batch_size=FLAGS.batch_size, max_new_tokens=FLAGS.max_new_tokens)
    view = ViewPolicy(max_list_items=FLAGS.view_max_items or None, max_chars=FLAGS.view_max_chars or None)
    matcher = make_matcher(data_dir, open_default_cache(data_dir).lookup)

    splits: dict[str, list[Any]] = {}
    samples = load_eval_samples("eval_100", data_dir)
    splits["eval_100"] = select_turns([t for s in samples for t in build_turn_tasks(s)], FLAGS.max_turns)
    if FLAGS.synth_dir and Path(FLAGS.synth_dir).exists():
        synth = synth_eval_samples(FLAGS.synth_dir, data_dir)
        splits["synth_test"] = select_turns([t for s in synth for t in build_turn_tasks(s)], FLAGS.synth_max_turns)

    out: dict[str, Any] = {"workdir": FLAGS.workdir, "meta": meta, "settings": {
        k: getattr(FLAGS, k) for k in ("preset", "tool_view", "max_turns", "max_new_tokens", "batch_size",
                                       "max_rounds", "view_max_chars", "view_max_items", "synth_dir",
                                       "synth_max_turns")}, "splits": {}}
    for name, tasks in splits.items():
        t0 = time.perf_counter()
        before = policy.stats.to_json()
        results = run_protocol(tasks, policy, matcher, max_rounds=FLAGS.max_rounds, batch_size=len(tasks),
                               render=view.render)
        report = EvalReport.from_results(results, {"split": name})
        stats = {k: v - before[k] for k, v in policy.stats.to_json().items()}
        out["splits"][name] = split_summary(report, stats, len(tasks), time.perf_counter() - t0)
    out["seconds"] = {"load": loaded - started, "total": time.perf_counter() - started}

    path = Path(FLAGS.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    os.replace(tmp, path)
    for name, split in out["splits"].items():
        o = split["overall"]
        print(f"{name}: turns {o['turns']} turn_acc {o['turn_accuracy']} call_acc {o['call_accuracy']} "
              f"success {o['success_rate']} errors {{{', '.join(f'{k}: {v}' for k, v in o['errors'].items() if v)}}}")
    if FLAGS.wandb:
        log_to_wandb(out, FLAGS.workdir or str(path.parent), FLAGS.run_name or path.parent.name, FLAGS.wandb_project)


def log_to_wandb(out: dict[str, Any], workdir: str, name: str, project: str) -> None:
    """eval/<split>/<metric> into the training run's W&B run (resumed by its id) at its last step."""
    from toolrl.rl.metrics import WandbRun

    run = WandbRun(workdir, {"eval": out["settings"]}, project, name=name, mode="auto")
    scalars: dict[str, Any] = {}
    for split, summary in out["splits"].items():
        for key in ("turn_accuracy", "call_accuracy", "success_rate", "turns"):
            value = summary["overall"].get(key)
            if value is not None:
                scalars[f"eval/{split}/{key}"] = value
        for kind, count in summary["overall"]["errors"].items():
            scalars[f"eval/{split}/errors/{kind}"] = count
    step = int(out["meta"].get("checkpoint_step", 0))
    if run.run is not None:
        step = max(step, int(getattr(run.run, "step", 0) or 0))
    run.log(step, scalars)
    run.finish()


if __name__ == "__main__":
    from absl import logging

    os.environ.setdefault("WANDB_SILENT", "true")
    logging.set_verbosity(logging.WARNING)
    app.run(main)
