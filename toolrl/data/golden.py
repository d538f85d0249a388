"""The ONE golden-sample type, and every source converted into it once.

Training (SFT targets, episode and turn rollouts, rewards) and evaluation read the same
:class:`GoldenSample`: the user query, the candidate tools in one order, and the golden calls cut into
assistant turns by the one turn rule (:mod:`toolrl.data.turns`, contiguous dependency segmentation).
Sources:

* the authors' trace files (``eval_100``, ``bfcl_training``, or any file of that layout);
* the original ComplexFuncBench JSONL (``*.jsonl``; it gives its turns);
* a split of the synthesized ``toolrl_traces`` TFDS dataset (``synthetic:SPLIT``).

Tools are listed in first-seen order of the steps' candidate tools (the benchmark's order), then any
golden function not among them; ``max_distractors`` (candidates no golden call uses) is applied here,
so a prompt shows the same tools in training and in evaluation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from toolrl.data import paths
from toolrl.data.complexfuncbench import load_benchmark_jsonl
from toolrl.data.provenance import dataset_exists
from toolrl.data.schemas import load_tool_schemas
from toolrl.data.traces import TraceSample, TraceStep, load_trace_file
from toolrl.data.turns import default_typed_dependencies, infer_dependencies, segment_steps
from toolrl.rewards.types import GoldenStep

# The six location-lookup functions of the benchmark (names as in booking_api.json). They turn a place
# name into an id or coordinates; the benchmark treats them as optional ("free"): a model may or may not
# call them, a matched call is consumed and answered, and a turn made only of them merges into the next.
FREE_FUNCTIONS: frozenset[str] = frozenset({
    "Search_Hotel_Destination",
    "Search_Attraction_Location",
    "Search_Car_Location",
    "Search_Flight_Location",
    "Location_to_Lat_Long",
    "Taxi_Search_Location",
})

SYNTHETIC_PREFIX = "synthetic:"
SPLITS = {"eval_100": paths.EVAL_100, "bfcl_training": paths.BFCL_TRAINING}


@dataclasses.dataclass(frozen=True)
class GoldenCall:
    """One golden call of a sample, with its recorded response.

    Attributes:
      index: position of the call in the sample (flat order over its turns); unique within the sample.
      function: function name.
      arguments: golden arguments.
      response: the real recorded response, ``""`` when the benchmark lost it.
      depends_on: positions of the earlier calls the source declares this one needs (eval_100 declares
        none; the turn rule also uses value provenance, see :mod:`toolrl.data.turns`).
    """

    index: int
    function: str
    arguments: dict[str, Any]
    response: Any = ""
    depends_on: tuple[int, ...] = ()

    @property
    def has_response(self) -> bool:
        return not (self.response == "" or self.response is None)

    @property
    def is_free(self) -> bool:
        return self.function in FREE_FUNCTIONS

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.function, "arguments": self.arguments}


@dataclasses.dataclass(frozen=True)
class GoldenTurn:
    """The calls of one golden assistant turn (issued together, answered together)."""

    calls: tuple[GoldenCall, ...]

    @property
    def only_free(self) -> bool:
        return all(call.is_free for call in self.calls)


@dataclasses.dataclass(frozen=True)
class GoldenSample:
    """A task with its golden solution, as training and evaluation both see it.

    Attributes:
      sample_id: e.g. ``Car-Rental-70``, ``workflow_12#1``.
      domain: ``Car-Rental``, ``Hotels``, ``Flights``, ``Attraction``, ``Cross``, or ``synthetic``.
      query: the user query.
      tools: the candidate tool schemas (raw JSON dicts) shown to the policy, in prompt order.
      turns: golden assistant turns with calls, in order (the one turn rule).
      source: where the sample came from (file name or ``synthetic:SPLIT``).
    """

    sample_id: str
    domain: str
    query: str
    tools: tuple[dict[str, Any], ...]
    turns: tuple[GoldenTurn, ...]
    source: str = ""

    @property
    def calls(self) -> list[GoldenCall]:
        return [call for turn in self.turns for call in turn.calls]

    @property
    def turn_indices(self) -> tuple[tuple[int, ...], ...]:
        """Per turn, the flat positions of its calls."""
        return tuple(tuple(call.index for call in turn.calls) for turn in self.turns)

    def reward_steps(self) -> tuple[Any, ...]:
        """The golden calls as the reward's :class:`toolrl.rewards.types.GoldenStep` (declared deps)."""
        return tuple(GoldenStep(c.function, dict(c.arguments), tuple(c.depends_on)) for c in self.calls)


# ----------------------------------------------------------------------------- converters


def _prompt_tools(candidates: Iterable[str], golden: Iterable[str], schemas: dict[str, Any],
                  max_distractors: int) -> tuple[dict[str, Any], ...]:
    """Candidate tools in first-seen order (golden functions missing from them appended); at most
    ``max_distractors`` tools that no golden call uses (-1 = all). Unknown names cannot be shown."""
    golden = list(dict.fromkeys(golden))
    names = list(dict.fromkeys(list(candidates) + golden))
    kept, distractors = [], 0
    for name in names:
        if name not in golden:
            if 0 <= max_distractors <= distractors:
                continue
            distractors += 1
        if name in schemas:
            kept.append(schemas[name].raw)
    return tuple(kept)


def from_trace_sample(sample: TraceSample, schemas: dict[str, Any], typed: Any,
                      max_distractors: int = -1) -> GoldenSample:
    """A trace-file sample cut into turns by the one turn rule."""
    turns = segment_steps(infer_dependencies(sample, typed))
    calls = [GoldenCall(p, s.function, dict(s.arguments), s.response, tuple(s.depends_on))
             for p, s in enumerate(sample.steps)]
    candidates = [name for step in sample.steps for name in step.candidate_tools]
    tools = _prompt_tools(candidates, [s.function for s in sample.steps], schemas, max_distractors)
    return GoldenSample(sample.sample_id, sample.domain, sample.query, tools,
                        tuple(GoldenTurn(tuple(calls[p] for p in turn)) for turn in turns), sample.source)


def from_synth_trace(trace: Any, schemas: dict[str, Any], typed: Any, max_distractors: int = -1,
                     source: str = "synthetic") -> GoldenSample:
    """A synthesized trace (:class:`toolrl.synth.types.Trace`); its calls in flat order are re-cut by the
    one turn rule so synthesized and benchmark samples are segmented alike."""
    steps = tuple(TraceStep(p, c.name, dict(c.arguments), tuple(d), tuple(trace.candidate_tools), c.response, True)
                  for p, (c, d) in enumerate(zip(trace.calls, trace.depends_on)))
    sample_id = trace.trace_id or trace.workflow_id
    as_trace = TraceSample(sample_id, trace.query, trace.workflow_id, tuple(c.name for c in trace.calls), steps, source)
    golden = from_trace_sample(as_trace, schemas, typed, max_distractors)
    return dataclasses.replace(golden, domain=trace.domain or "synthetic")


def from_benchmark_sample(sample: Any, max_distractors: int = -1) -> GoldenSample:
    """The benchmark JSONL gives its turns; calls are numbered in conversation order."""
    turns, counter = [], 0
    for turn in sample.turns:
        calls = []
        for call in turn.calls:
            calls.append(GoldenCall(counter, call.function, dict(call.arguments), call.response))
            counter += 1
        turns.append(GoldenTurn(tuple(calls)))
    golden = {c.function for t in turns for c in t.calls}
    tools, distractors = [], 0
    for tool in sample.functions:
        if tool.get("name") not in golden:
            if 0 <= max_distractors <= distractors:
                continue
            distractors += 1
        tools.append(tool)
    return GoldenSample(sample.sample_id, sample.domain, sample.query, tuple(tools), tuple(turns), "jsonl")


# ----------------------------------------------------------------------------- loading


def load_samples(source: str = "eval_100", data_dir: str | os.PathLike | None = None,
                 max_samples: int | None = None, max_distractors: int = -1,
                 synth_dir: str | os.PathLike | None = None) -> list[GoldenSample]:
    """Golden samples from any source.

    Args:
      source: ``eval_100``, ``bfcl_training``, a bundled file name, ``synthetic:SPLIT`` (the TFDS
        dataset in ``synth_dir``), a ``.jsonl`` path (the original ComplexFuncBench), or a trace-file path.
      data_dir: the benchmark data directory (tool schemas, dependency-graph sources).
      max_samples: keep only the first N samples (None or 0: all).
      max_distractors: candidate tools no golden call uses, kept per prompt (-1 = all).
    """
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples={max_samples} must be >= 0 (0 = all)")
    limit = max_samples or None
    if source.endswith(".jsonl"):
        out = []
        for sample in load_benchmark_jsonl(Path(source)):
            out.append(from_benchmark_sample(sample, max_distractors))
            if limit is not None and len(out) >= limit:
                break
        return out
    schemas = load_tool_schemas(paths.data_file(paths.TOOL_SCHEMAS, data_dir))
    typed = default_typed_dependencies(str(data_dir) if data_dir else None)
    if source.startswith(SYNTHETIC_PREFIX):
        # Local: tfds_builder imports tensorflow_datasets (about 3 s), needed for synthetic sources only.
        from toolrl.synth.tfds_builder import load_golden_traces

        split = source[len(SYNTHETIC_PREFIX):]
        if synth_dir and not dataset_exists(synth_dir):  # TFDS would build one from the default cache
            raise FileNotFoundError(
                f"no synthesized dataset in {synth_dir}; build it with `python -m toolrl.synth "
                f"--config=configs/synth.py --config.output_dir={synth_dir}` (the study's: "
                f"`python -m experiments.study_data`)")
        try:
            traces = load_golden_traces(split, synth_dir or None)
        except Exception as err:  # TFDS raises several types for a missing dataset or split
            raise FileNotFoundError(
                f"cannot read split {split!r} of the synthesized dataset in {synth_dir or 'the default TFDS dir'} "
                f"({type(err).__name__}: {err}); build it with `python -m toolrl.synth --config=configs/synth.py`"
            ) from err
        return [from_synth_trace(t, schemas, typed, max_distractors, source) for t in traces[:limit]]

    if source in SPLITS:
        path = paths.data_file(SPLITS[source], data_dir)
    elif Path(source).is_file():
        path = Path(source)
    else:
        try:
            path = paths.data_file(source, data_dir)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"unknown sample source {source!r}: not one of {sorted(SPLITS)}, not 'synthetic:SPLIT', "
                f"and not a file") from None
    return [from_trace_sample(t, schemas, typed, max_distractors) for t in load_trace_file(path)[:limit]]


def select_ids(samples: Sequence[GoldenSample], sample_ids: str) -> list[GoldenSample]:
    """The samples named in a comma-separated id list, in the list's order ("" = all); an unknown id is
    an error naming it."""
    wanted = [i.strip() for i in sample_ids.split(",") if i.strip()]
    if not wanted:
        return list(samples)
    by_id = {s.sample_id: s for s in samples}
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise ValueError(f"sample ids not found: {', '.join(missing)}")
    return [by_id[i] for i in wanted]


def filter_by_calls(samples: Sequence[GoldenSample], max_calls: int) -> list[GoldenSample]:
    """Samples with at most ``max_calls`` golden calls (0 = keep all)."""
    return [s for s in samples if not max_calls or len(s.calls) <= max_calls]
