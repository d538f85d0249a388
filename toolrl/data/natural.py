"""The decontaminated natural-query training data (docs/design.md, "Synthesis"), built once per machine.

One dataset serves the main job (configs/grpo.py) and the study (configs/study.py):

1. a response cache from bfcl_training with every key an eval_100 golden call makes left out, so
   synthesis cannot produce an eval_100 call (:func:`toolrl.env.cache.build_cache` with ``exclude``);
2. ``toolrl_traces`` synthesized from that cache with configs/synth.py's settings (queries a person would
   write, every domain, only ids / tokens / coordinates bound to responses);
3. a provenance stamp (:mod:`toolrl.data.provenance`) naming the cache's sha256, the exclusion and the
   synthesis settings, which every run reading the data checks.

``python -m experiments.study_data`` builds it and writes the study's contamination report; a config with
``data.build_missing`` builds it on first use instead of refusing (the main job, so that its two set-up
commands stay two). About a minute on a 2-core CPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from toolrl.data import paths
from toolrl.data.provenance import dataset_exists, file_sha256, read_stamp, write_stamp
from toolrl.env.cache import Source, build_cache
from toolrl.synth.run import default_config, synthesize_dataset

# The stamp the natural data carries; bump it whenever synthesis or its settings change what is built.
NATURAL_STAMP = "study:natural-v6"
N_TRACES = 2000


def study_dir() -> Path:
    """Where the decontaminated cache and the traces live: $TOOLRL_HOME/study."""
    return paths.toolrl_home() / "study"


def natural_dir() -> Path:
    """The TFDS directory of the natural data (``data.synth_dir`` of the main job and the study)."""
    return study_dir() / "tfds_natural"


def decontaminated_cache() -> Path:
    return study_dir() / "cache_no_eval100.sqlite"


def is_current(synth_dir: str | Path) -> bool:
    """Whether ``synth_dir`` holds the natural data under the current stamp."""
    stamp = read_stamp(synth_dir) if dataset_exists(synth_dir) else None
    return stamp is not None and stamp.get("id") == NATURAL_STAMP


def build_natural_data(synth_dir: str | Path | None = None, n_traces: int = N_TRACES, rebuild: bool = False,
                       data_dir: str | None = None, builder: str = "toolrl.data.natural",
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Builds what is missing (the cache, then the traces) and returns the dataset's stamp.

    A dataset already there under the current stamp is kept (``rebuild`` forces both steps); one with no
    stamp or an older one is deleted first, never reused."""
    synth_dir = Path(synth_dir) if synth_dir else natural_dir()
    cache_path = decontaminated_cache()
    if rebuild:
        cache_path.unlink(missing_ok=True)
        shutil.rmtree(synth_dir, ignore_errors=True)
    if not cache_path.exists():
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        summary = build_cache(cache_path, [Source("traces", paths.data_file(paths.BFCL_TRAINING, data_dir))],
                              exclude=[Source("traces", paths.data_file(paths.EVAL_100, data_dir))])
        log(f"built {cache_path}\n{summary.format()}")
    if not is_current(synth_dir):
        shutil.rmtree(synth_dir, ignore_errors=True)  # unstamped or another stamp: never reused
        settings = default_config()
        settings.cache_path = str(cache_path)
        settings.output_dir = str(synth_dir)
        settings.n_traces = n_traces
        settings.data_dir = data_dir or ""
        synthesize_dataset(settings, log=log)
        write_stamp(synth_dir, NATURAL_STAMP, builder=builder, cache=cache_path.name,
                    cache_sha256=file_sha256(cache_path), cache_sources=[paths.BFCL_TRAINING],
                    excluded=[paths.EVAL_100], writer=settings.writer, bind=settings.bind,
                    domains=list(settings.domains), seed=settings.seed, n_traces=n_traces)
    stamp = read_stamp(synth_dir)
    assert stamp is not None
    return stamp
