"""``python -m toolrl.synth --config=configs/synth.py``: synthesize traces and write the TFDS dataset.

Refuses (one line on stderr, exit 2; ``--verbose`` for the traceback) contradictory settings and a
synthesis that produced no trace (e.g. ``--config.complexities=(1000,)``): nothing is written, so
TFDS never caches an empty dataset. A complexity that falls short of its share is reported.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from absl import app
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/synth.py", "synthesis config (configs/synth.py)")


def main(argv: list[str]) -> None:
    del argv
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from toolrl.synth import build
    from toolrl.synth.tfds_builder import (SPLITS_OF_CONFIG, TracesConfig, build_dataset, default_tfds_dir,
                                           load_trace_dataset)

    config = _CONFIG.value
    build.validate_config(config)
    out = Path(config.output_dir) if config.output_dir else default_tfds_dir()
    data_dir = config.data_dir or None
    cache_path = config.cache_path or None
    start = time.perf_counter()
    pool = build.load_pool(data_dir, cache_path)
    print(f"pool: {len(pool.entries)} cached calls over {len(pool.by_function)} tools "
          f"({time.perf_counter() - start:.1f}s)")
    renderer = build.make_renderer(config, str(out))
    mixes = build.default_mixes(config.n_traces, tuple(config.complexities), config.n_distractors,
                                config.template_share, tuple(config.get("domains", ())), config.get("bind", "all"),
                                None if config.get("max_position", -1) < 0 else config.max_position)
    with Progress(TextColumn("synthesizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("traces", total=sum(m.count for m in mixes))
        traces = build.synthesize(pool, mixes, seed=config.seed, renderer=renderer,
                                  progress=lambda k: bar.advance(task, k))
    warnings = build.require_traces(traces, mixes)  # raises before anything is written when empty
    for line in warnings:
        print(f"warning: {line}")
    writer_stats = renderer.stats() if hasattr(renderer, "stats") else {}
    if writer_stats:
        print("queries: " + ", ".join(f"{k} {v}" for k, v in writer_stats.items()))
    if config.get("split", "workflows") == "entries":
        splits = build.split_by_entries(traces, config.heldout_fraction, config.validation_share, config.seed)
    else:
        splits = build.split_by_workflow(traces, config.test_fraction, config.validation_fraction, config.seed)
    # The traces are made here (with a progress bar) and handed to the builder, which only writes them.
    build_dataset(out, "synthetic", splits=splits)
    names = ["synthetic"] + (["bfcl_training", "eval_100"] if config.include_authors else [])
    if config.include_authors:
        build_dataset(out, TracesConfig(name="bfcl_training", data_dir=data_dir) if data_dir else "bfcl_training")
        build_dataset(out, TracesConfig(name="eval_100", data_dir=data_dir) if data_dir else "eval_100")
    build.write_synthesis_record(out, config, traces, splits, warnings, writer_stats)
    print(f"\nwrote {out}/toolrl_traces in {time.perf_counter() - start:.1f}s; "
          f"{len(traces)} synthesized traces over {len({t.workflow_id for t in traces})} workflows")
    for name in names:
        sizes = []
        for split in SPLITS_OF_CONFIG[name]:
            try:
                sizes.append(f"{split} {len(load_trace_dataset(split, out, name))}")
            except (KeyError, ValueError):
                sizes.append(f"{split} 0")
        print(f"  toolrl_traces/{name}: " + ", ".join(sizes))


def cli(argv: list[str]) -> None:
    app.run(main, argv=[sys.argv[0], *argv])


if __name__ == "__main__":
    from toolrl.cli import run_cli

    run_cli(cli, prog="python -m toolrl.synth")
