"""One synthesis run: a config (configs/synth.py) in, the ``toolrl_traces`` TFDS dataset and its
``synthesis.json`` record out. The CLI (``python -m toolrl.synth``) and the natural data's builder
(:mod:`toolrl.data.natural`, which the main job calls on first use) both run it.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any, Callable

import ml_collections
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from toolrl.data.paths import REPO_ROOT
from toolrl.synth import build

SYNTH_CONFIG = REPO_ROOT / "configs" / "synth.py"


def default_config() -> ml_collections.ConfigDict:
    """configs/synth.py's settings (the file the CLI reads by default), loaded from the repository."""
    spec = importlib.util.spec_from_file_location("toolrl_synth_config", SYNTH_CONFIG)
    if spec is None or spec.loader is None or not SYNTH_CONFIG.is_file():
        raise FileNotFoundError(f"no synthesis config at {SYNTH_CONFIG}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def synthesize_dataset(config: Any, log: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Synthesizes ``config.n_traces`` traces and writes the dataset to ``config.output_dir``.

    Raises (nothing written) on contradictory settings and on a synthesis with no trace, so TFDS never
    caches an empty dataset; a complexity or domain that falls short of its share is logged. Returns the
    output directory."""
    # Local: tfds_builder imports tensorflow_datasets (about 3 s), which importers of this module that do not
    # synthesize (toolrl.data.natural finding its data) do not need.
    from toolrl.synth.tfds_builder import (SPLITS_OF_CONFIG, TracesConfig, build_dataset, default_tfds_dir,
                                           load_trace_dataset)

    build.validate_config(config)
    out = Path(config.output_dir) if config.output_dir else default_tfds_dir()
    data_dir = config.data_dir or None
    cache_path = config.cache_path or None
    start = time.perf_counter()
    pool = build.load_pool(data_dir, cache_path)
    log(f"pool: {len(pool.entries)} cached calls over {len(pool.by_function)} tools "
        f"({time.perf_counter() - start:.1f}s)")
    renderer = build.make_renderer(config, str(out))
    mixes = build.default_mixes(config.n_traces, tuple(config.complexities), config.n_distractors,
                                config.template_share, tuple(config.get("domains", ())), config.get("bind", "all"),
                                None if config.get("max_position", -1) < 0 else config.max_position)
    with Progress(TextColumn("synthesizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not progress) as bar:
        task = bar.add_task("traces", total=sum(m.count for m in mixes))
        traces = build.synthesize(pool, mixes, seed=config.seed, renderer=renderer,
                                  progress=lambda k: bar.advance(task, k))
    warnings = build.require_traces(traces, mixes)  # raises before anything is written when empty
    for line in warnings:
        log(f"warning: {line}")
    writer_stats = renderer.stats() if hasattr(renderer, "stats") else {}
    if writer_stats:
        log("queries: " + ", ".join(f"{k} {v}" for k, v in writer_stats.items()))
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
    log(f"wrote {out}/toolrl_traces in {time.perf_counter() - start:.1f}s; "
        f"{len(traces)} synthesized traces over {len({t.workflow_id for t in traces})} workflows")
    for name in names:
        sizes = []
        for split in SPLITS_OF_CONFIG[name]:
            try:
                sizes.append(f"{split} {len(load_trace_dataset(split, out, name))}")
            except (KeyError, ValueError):
                sizes.append(f"{split} 0")
        log(f"  toolrl_traces/{name}: " + ", ".join(sizes))
    return out
