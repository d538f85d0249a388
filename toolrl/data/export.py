"""Export a config's tasks as JSONL, exactly as its trainer or evaluator sees them (for TRL, HF datasets).

    python -m toolrl.data.export --config=configs/grpo.py --split=train --out=train.jsonl
    python -m toolrl.data.export --config=configs/study.py --split=test --out=test.jsonl

Which samples each split is:

* ``train``: the trainer's samples, :func:`toolrl.rl.trainer.load_training_samples` (every source of
  ``data.train_file``, minus ``data.decontaminate``, then ``data.sample_ids``,
  ``data.max_steps_per_sample`` and ``data.max_samples``). The fit filter that needs the tokenizer
  (``data.drop_unfit``) is not applied: a run may drop a few more.
* ``validation`` / ``test``: when a source of ``data.train_file`` is synthetic (``synthetic:SPLIT``), the
  synthesized split of the same name (``synthetic:validation`` / ``synthetic:test``, from ``data.synth_dir``);
  otherwise ``eval.source`` for both. The evaluator's own selection
  (:class:`toolrl.eval.evaluator.Evaluation`) is applied with ``eval.max_samples`` and ``eval.max_turns``;
  ``eval.sample_ids`` only when the split is ``eval.source`` itself (the ids name its samples). Samples of
  which the evaluator scores no turn (``eval.max_turns``) are left out.

One JSON object per line: ``sample_id``, ``query``, ``domain``, ``workflow_id``, ``source``, ``split``,
``tools`` (the candidate tool schemas in prompt order, ``data.max_distractors`` applied), ``calls``
(``[{index, name, arguments, response, depends_on}]`` in flat order; ``response`` is ``""`` where the
benchmark lost it), ``turns`` (per golden assistant turn, the indices of its calls), and for validation /
test ``scored_turns`` (``[{turn, required, optional, complete}]``, call indices, the turns the evaluator
scores). A dataset that does not exist (e.g. a synthesized split never built) is one line on stderr naming
the command that builds it, and exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from toolrl.cli import UserError, run_cli
from toolrl.data.golden import SYNTHETIC_PREFIX, GoldenSample
from toolrl.data.paths import toolrl_home
from toolrl.eval.evaluator import Evaluation
from toolrl.rl.config import ConfigError, validate
from toolrl.rl.trainer import load_training_samples

SPLITS = ("train", "validation", "test")


# ----------------------------------------------------------------------------- which samples


def train_sources(config: ml_collections.ConfigDict) -> list[str]:
    return [s.strip() for s in config.data.train_file.split(",") if s.strip()]


def eval_source(config: ml_collections.ConfigDict, split: str) -> str:
    """The source a validation/test export reads (see the module docstring)."""
    if split not in ("validation", "test"):
        raise UserError(f"--split={split!r}: expected one of {', '.join(SPLITS)}")
    if any(s.startswith(SYNTHETIC_PREFIX) for s in train_sources(config)):
        return SYNTHETIC_PREFIX + split
    return config.eval.source


def build_command(synth_dir: str) -> str:
    """The command that writes the synthesized dataset a config reads from ``synth_dir``."""
    study = (toolrl_home() / "study").resolve()
    if synth_dir and Path(synth_dir).expanduser().resolve().parent == study:  # the study's data (any version)
        return "python -m experiments.study_data"
    command = "python -m toolrl.synth --config=configs/synth.py"
    return command + (f" --config.output_dir={synth_dir}" if synth_dir else "")


def require_synthetic(sources: Iterable[str], synth_dir: str) -> None:
    """Raises UserError naming the build command when a synthetic source's split is not on disk.

    Checked before loading because opening a missing TFDS dataset builds it (a full synthesis run).
    """
    # Local: tensorflow_datasets (about 3 s to import) only for synthetic sources.
    import tensorflow_datasets as tfds

    from toolrl.synth.tfds_builder import DATASET_NAME, default_tfds_dir  # local: imports tensorflow_datasets

    for source in sources:
        if not source.startswith(SYNTHETIC_PREFIX):
            continue
        split = source[len(SYNTHETIC_PREFIX):]
        where = synth_dir or str(default_tfds_dir())
        verbosity = logging.get_verbosity()
        logging.set_verbosity(logging.ERROR)  # TFDS warns about the missing folder: the error says it once
        try:
            builder = tfds.builder(f"{DATASET_NAME}/synthetic", data_dir=where, file_format="array_record")
            present = builder.is_prepared() and split in builder.info.splits
        finally:
            logging.set_verbosity(verbosity)
        if not present:
            raise UserError(f"the synthesized split {split!r} does not exist in {where}; "
                            f"build it with `{build_command(synth_dir)}`")


def training_samples(config: ml_collections.ConfigDict) -> list[GoldenSample]:
    d = config.data
    require_synthetic(train_sources(config) + ([d.decontaminate] if d.decontaminate else []), d.synth_dir)
    try:
        return load_training_samples(config)
    except ValueError as err:  # no samples left, an unknown data.sample_ids id
        raise UserError(str(err)) from err


def evaluation_samples(config: ml_collections.ConfigDict, split: str) -> list[tuple[GoldenSample, list[Any]]]:
    """(sample, its scored turns) as :class:`toolrl.eval.evaluator.Evaluation` selects them for ``split``."""
    source = eval_source(config, split)
    require_synthetic([source], config.data.synth_dir)
    view = ml_collections.ConfigDict(config.to_dict())
    view.eval.source = source
    if source != config.eval.source:
        view.eval.sample_ids = ""  # ids name samples of eval.source, not of this split
    view.eval.response_equivalence = False  # no response cache or judge: they score, they do not select
    view.eval.judge.enabled = False
    try:
        evaluation = Evaluation(view)
    except ValueError as err:  # no scored turn, an unknown eval.sample_ids id
        raise UserError(str(err)) from err
    tasks: dict[str, list[Any]] = {}
    for task in evaluation.tasks:
        tasks.setdefault(task.sample_id, []).append(task)
    return [(sample, tasks[sample.sample_id]) for sample in evaluation.samples if sample.sample_id in tasks]


# ----------------------------------------------------------------------------- records


class WorkflowIds:
    """The workflow id of a sample: the trace's own for synthesized samples (read once per split), the
    workflow part of ``workflow_N#k`` for the authors' files, the sample id for benchmark JSONL."""

    def __init__(self, synth_dir: str):
        self.synth_dir = synth_dir
        self._by_split: dict[str, dict[str, str]] = {}

    def __call__(self, sample: GoldenSample) -> str:
        if sample.source.startswith(SYNTHETIC_PREFIX):
            split = sample.source[len(SYNTHETIC_PREFIX):]
            if split not in self._by_split:
                from toolrl.synth.tfds_builder import load_golden_traces  # local: imports tensorflow_datasets

                self._by_split[split] = {t.trace_id or t.workflow_id: t.workflow_id
                                         for t in load_golden_traces(split, self.synth_dir or None)}
            return self._by_split[split].get(sample.sample_id, sample.sample_id)
        return sample.sample_id.partition("#")[0]


def sample_record(sample: GoldenSample, split: str, workflow_id: str,
                  scored: list[Any] | None = None) -> dict[str, Any]:
    """One sample as a JSON object (see the module docstring)."""
    record = {
        "sample_id": sample.sample_id,
        "query": sample.query,
        "domain": sample.domain,
        "workflow_id": workflow_id,
        "source": sample.source,
        "split": split,
        "tools": list(sample.tools),
        "calls": [{"index": c.index, "name": c.function, "arguments": c.arguments, "response": c.response,
                   "depends_on": list(c.depends_on)} for c in sample.calls],
        "turns": [list(turn) for turn in sample.turn_indices],
    }
    if scored is not None:
        record["scored_turns"] = [{"turn": t.turn, "required": [c.index for c in t.required],
                                   "optional": [c.index for c in t.optional], "complete": t.complete}
                                  for t in scored]
    return record


def export_records(config: ml_collections.ConfigDict, split: str) -> list[dict[str, Any]]:
    """The records of ``split`` for ``config``, in the order the trainer / evaluator holds them."""
    if split not in SPLITS:
        raise UserError(f"--split={split!r}: expected one of {', '.join(SPLITS)}")
    workflow_id = WorkflowIds(config.data.synth_dir)
    if split == "train":
        return [sample_record(s, split, workflow_id(s)) for s in training_samples(config)]
    return [sample_record(s, split, workflow_id(s), tasks) for s, tasks in evaluation_samples(config, split)]


def write_jsonl(records: Iterable[dict[str, Any]], out: str | os.PathLike) -> int:
    """Writes one object per line (atomically: a temporary file renamed); ``-`` is stdout. Returns the count."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    if str(out) == "-":
        sys.stdout.writelines(lines)
        return len(lines)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(lines)


# ----------------------------------------------------------------------------- command line


def run() -> None:
    config_flag = config_flags.DEFINE_config_file("config", "configs/grpo.py", "Training configuration file.")
    split_flag = flags.DEFINE_enum(
        "split", "train", list(SPLITS),
        "train: the trainer's samples (data.*). validation/test: the synthesized split of that name when "
        "data.train_file has a synthetic source, else eval.source; the evaluator's selection (eval.*) applied.")
    out_flag = flags.DEFINE_string("out", None, "Output JSONL file ('-' = stdout).", required=True)
    started = False

    def main(argv: list[str]) -> None:
        nonlocal started
        del argv
        started = True
        config = config_flag.value
        validate(config)
        count = write_jsonl(export_records(config, split_flag.value), out_flag.value)
        if out_flag.value != "-":
            print(f"{count} {split_flag.value} samples -> {out_flag.value}")

    def parse_and_run(argv: list[str]) -> None:
        try:
            app.run(main, argv=[sys.argv[0], *argv])
        except (AttributeError, KeyError) as err:
            if started:
                raise
            overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
            raise ConfigError(f"unknown config field ({err}); overrides given: "
                              f"{', '.join(overrides) or 'none'}") from err

    logging.set_verbosity(logging.WARNING)
    run_cli(parse_and_run, prog="toolrl.data.export", user_errors=(ConfigError,))


if __name__ == "__main__":
    run()
