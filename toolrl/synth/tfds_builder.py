"""The ``toolrl_traces`` TFDS dataset (array_record, no TensorFlow) and its grain readers.

Builder configs:
  ``synthetic`` (default): constrained-synthesis traces, splits ``train`` / ``validation`` / ``test``;
      validation and test hold the traces that call a reserved call (``split="entries"``, the default:
      :func:`toolrl.synth.build.split_by_entries`) or whole workflows (``split="workflows"``:
      :func:`toolrl.synth.build.split_by_workflow`);
  ``bfcl_training``: the authors' 101 synthesized samples, split ``train``;
  ``eval_100``: the 100 ComplexFuncBench evaluation samples, split ``test`` (responses the benchmark
      lost are ``""``).

Features (one example = one :class:`~toolrl.synth.types.Trace`): ``query``; ``candidate_tools``
(JSON list of tool names); ``turns`` (JSON: a list of turns, each a list of
``{name, arguments, response}`` with the real response); ``depends_on`` and ``bindings`` (JSON,
per flat call index); ``dependency_matrix`` (the ``[n_calls, n_calls]`` golden matrix flattened,
reshape with ``n_calls``); ``n_calls``, ``depth``, ``width``; ``workflow_id``, ``template_id``,
``domain``, ``source``, ``trace_id``. Strings are stored as ``tfds.features.Text`` and read back as
bytes by the TF-less data source; :func:`decode_example` turns a record back into Python values.

Reading::

    source = load_trace_dataset("train", data_dir)            # random access, len()
    for example in trace_pipeline("train", data_dir, seed=0):  # grain MapDataset, JSON decoded
        ...
    traces = load_golden_traces("test", data_dir)              # list[Trace]
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from toolrl.data import paths
from toolrl.data.schemas import load_tool_schemas
from toolrl.data.workflows import load_workflow_templates
from toolrl.synth import build
from toolrl.synth.pool import tool_domains
from toolrl.synth.types import Trace

DATASET_NAME = "toolrl_traces"
JSON_FIELDS = ("candidate_tools", "turns", "depends_on", "bindings")
TEXT_FIELDS = ("trace_id", "query", "workflow_id", "template_id", "domain", "source")
INT_FIELDS = ("n_calls", "depth", "width")
SPLITS_OF_CONFIG = {"synthetic": ("train", "validation", "test"), "bfcl_training": ("train",), "eval_100": ("test",)}


def default_tfds_dir() -> Path:
    return paths.toolrl_home() / "tfds"


@dataclasses.dataclass
class TracesConfig(tfds.core.BuilderConfig):
    """A config of ``toolrl_traces``; the synthesis fields matter only to ``synthetic``."""

    n_traces: int = 2000
    complexities: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    n_distractors: int = 3
    template_share: float = 0.3  # share of traces grown along workflow templates
    test_fraction: float = 0.15  # share of traces whose workflows are held out into test
    validation_fraction: float = 0.1
    seed: int = 0
    data_dir: str | None = None  # benchmark data (default: bundled)
    cache_path: str | None = None  # response cache (default: the user cache)


def encode_trace(trace: Trace) -> dict[str, Any]:
    """A trace as one TFDS example."""
    data = trace.to_json()
    example: dict[str, Any] = {name: data[name] for name in TEXT_FIELDS}
    for name in JSON_FIELDS:
        example[name] = json.dumps(data[name], ensure_ascii=False, separators=(",", ":"))
    for name in INT_FIELDS:
        example[name] = int(data[name])
    example["dependency_matrix"] = trace.dependency_matrix().reshape(-1)
    return example


def decode_example(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record back to Python: bytes -> str, JSON fields parsed, the matrix reshaped ``[n, n]``."""
    out: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        out[name] = _text(record[name])
    for name in JSON_FIELDS:
        out[name] = json.loads(_text(record[name]))
    for name in INT_FIELDS:
        out[name] = int(record[name])
    n = out["n_calls"]
    out["dependency_matrix"] = np.asarray(record["dependency_matrix"], dtype=np.int8).reshape(n, n)
    return out


def to_trace(record: Mapping[str, Any]) -> Trace:
    """A stored (or decoded) record as a :class:`Trace`."""
    decoded = record if isinstance(record.get("turns"), list) else decode_example(record)
    return Trace.from_json(decoded)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


class ToolrlTraces(tfds.core.GeneratorBasedBuilder):
    """Golden multi-step tool-call traces (see module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Constrained synthesis from the real-response cache; authors' samples."}
    BUILDER_CONFIGS = [
        TracesConfig(name="synthetic", description="Constrained-synthesis traces; test holds out workflows."),
        TracesConfig(name="bfcl_training", description="The authors' 101 synthesized samples."),
        TracesConfig(name="eval_100", description="The 100 ComplexFuncBench evaluation samples."),
    ]
    DEFAULT_CONFIG_NAME = "synthetic"

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS finds a builder's file through the `importlib_resources` backport, which is not
        # installed here (it comes with TF's extras); this file is where the builder lives.
        return epath.Path(__file__)

    def __init__(self, *, splits: Mapping[str, Sequence[Trace]] | None = None,
                 progress: Callable[[int], None] | None = None, **kwargs: Any):
        """``splits`` (split name -> traces) writes the given traces instead of generating them (tests,
        or traces made elsewhere); ``progress`` is called with 1 per synthesized trace."""
        kwargs.setdefault("file_format", "array_record")
        self._given_splits = splits
        self._progress = progress
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {name: tfds.features.Text() for name in TEXT_FIELDS + JSON_FIELDS}
        features.update({name: tfds.features.Scalar(dtype=np.int32) for name in INT_FIELDS})
        features["dependency_matrix"] = tfds.features.Tensor(shape=(None,), dtype=np.int8)
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict(features),
            homepage="https://github.com/zai-org/ComplexFuncBench",
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
        del dl_manager  # nothing to download: everything comes from local files
        splits = self._given_splits if self._given_splits is not None else self._make_splits()
        if not any(splits.values()):
            # An empty dataset would be written and then reused by every later build of this version.

            raise build.SynthConfigError(f"refusing to write an empty {DATASET_NAME}/{self.builder_config.name} dataset "
                                   f"(0 traces in splits {sorted(splits)}); for synthetic, lower complexities")
        # TFDS cannot write an empty split (a tiny dataset may have no validation trace): leave it out.
        return {name: self._generate_examples(traces) for name, traces in splits.items() if traces}

    def _generate_examples(self, traces: Sequence[Trace]):
        for index, trace in enumerate(traces):
            # Keys must be unique within a split; the index keeps duplicates of authors' ids apart.
            yield f"{index:07d}-{trace.trace_id}", encode_trace(trace)

    def _make_splits(self) -> dict[str, list[Trace]]:
        config: TracesConfig = self.builder_config
        if config.name == "bfcl_training":
            return {"train": build.authors_traces("bfcl_training", config.data_dir, self._domains())}
        if config.name == "eval_100":
            return {"test": build.authors_traces("eval_100", config.data_dir, self._domains())}
        pool = build.load_pool(config.data_dir, config.cache_path)
        mixes = build.default_mixes(config.n_traces, config.complexities, config.n_distractors, config.template_share)
        traces = build.synthesize(pool, mixes, seed=config.seed, progress=self._progress)
        for line in build.require_traces(traces, mixes):
            print(f"warning: {line}")
        return build.split_by_workflow(traces, config.test_fraction, config.validation_fraction, config.seed)

    def _domains(self) -> dict[str, str]:
        data_dir = self.builder_config.data_dir
        templates = load_workflow_templates(paths.data_file(paths.WORKFLOW_TEMPLATES, data_dir))
        return tool_domains(templates, load_tool_schemas(paths.data_file(paths.TOOL_SCHEMAS, data_dir)))


def build_dataset(data_dir: str | os.PathLike | None = None, config: str | TracesConfig = "synthetic",
                  splits: Mapping[str, Sequence[Trace]] | None = None,
                  progress: Callable[[int], None] | None = None) -> ToolrlTraces:
    """Write the dataset (once: an existing version is reused) and return its builder."""
    builder = ToolrlTraces(data_dir=str(data_dir or default_tfds_dir()), config=config, splits=splits,
                           progress=progress)
    builder.download_and_prepare()
    return builder


def load_trace_dataset(split: str, data_dir: str | os.PathLike | None = None, config: str = "synthetic") -> Any:
    """Random-access data source of one split (``len``, ``[i]``), read through array_record without TF."""
    return tfds.data_source(f"{DATASET_NAME}/{config}", split=split, data_dir=str(data_dir or default_tfds_dir()),
                            builder_kwargs={"file_format": "array_record"})


def trace_pipeline(split: str, data_dir: str | os.PathLike | None = None, config: str = "synthetic",
                   seed: int | None = None, as_trace: bool = False) -> Any:
    """A ``grain.MapDataset`` over a split whose elements are decoded dicts (or :class:`Trace` objects);
    shuffled with ``seed`` when one is given."""
    import grain  # local: grain imports jax, which reading the traces does not need

    dataset = grain.MapDataset.source(load_trace_dataset(split, data_dir, config))
    if seed is not None:
        dataset = dataset.shuffle(seed=seed)
    return dataset.map(to_trace if as_trace else decode_example)


def load_golden_traces(split: str, data_dir: str | os.PathLike | None = None, config: str = "synthetic") -> list[Trace]:
    """Every trace of a split as Python objects, in stored order."""
    source = load_trace_dataset(split, data_dir, config)
    return [to_trace(source[i]) for i in range(len(source))]
