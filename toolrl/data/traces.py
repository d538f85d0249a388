"""Loader for the authors' trace files (``eval_100.json``, ``bfcl_training_*_per_workflow.json``).

Each sample is a user query plus golden steps; each step holds the golden call, the steps it depends
on, and the real API response recorded for it (``""`` where the benchmark lost it).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from toolrl.data import paths
from toolrl.data.validation import DataFormatError, RecordReader, read_json

MISSING_RESPONSE = ""


@dataclasses.dataclass(frozen=True)
class TraceStep:
    """One golden call of a sample, with its real recorded response."""

    index: int
    function: str
    arguments: dict[str, Any]
    depends_on: tuple[int, ...]
    candidate_tools: tuple[str, ...]
    response: Any  # dict or list from the real API, or MISSING_RESPONSE
    success: bool

    @property
    def has_response(self) -> bool:
        return not (self.response == MISSING_RESPONSE or self.response is None)


@dataclasses.dataclass(frozen=True)
class TraceSample:
    """A query with its golden multi-step solution."""

    sample_id: str
    query: str
    workflow_id: str
    workflow_pattern: tuple[str, ...]
    steps: tuple[TraceStep, ...]
    source: str  # file name the sample came from

    @property
    def domain(self) -> str:
        """Benchmark domain for ids like ``Car-Rental-70``; ``synthetic`` for workflow ids."""
        head, _, tail = self.sample_id.rpartition("-")
        return head if head and tail.isdigit() else "synthetic"


def load_trace_file(path: str | os.PathLike) -> list[TraceSample]:
    """Parse and validate one trace file.

    Raises:
      DataFormatError: naming the file, the sample and the field that is wrong.
    """
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, list):
        raise DataFormatError(path, None, None, f"expected a list of samples, got {type(raw).__name__}")
    samples = []
    seen: dict[str, int] = {}
    for index, record in enumerate(raw):
        sample = _parse_sample(path, index, record)
        # Workflow ids repeat in the synthesized file (3 samples per workflow): suffix them apart.
        count = seen.get(sample.workflow_id, 0)
        seen[sample.workflow_id] = count + 1
        sample_id = sample.workflow_id if count == 0 else f"{sample.workflow_id}#{count}"
        samples.append(dataclasses.replace(sample, sample_id=sample_id))
    return samples


def load_trace_files(data_dir: str | os.PathLike | None = None) -> dict[str, list[TraceSample]]:
    """Both bundled trace files, keyed by file name."""
    return {name: load_trace_file(paths.data_file(name, data_dir)) for name in paths.TRACE_FILES}


def _parse_sample(path: Path, index: int, record: Any) -> TraceSample:
    reader = RecordReader(path, index, record)
    workflow_id = reader.get("workflow_id", str)
    reader.record = f"{index} ({workflow_id})"
    query = reader.get("query", str)
    pattern = reader.get("workflow_pattern", list)
    raw_steps = reader.get("steps", list)
    if not raw_steps:
        raise reader.fail("steps", "empty")
    steps = []
    for position, raw_step in enumerate(raw_steps):
        step = RecordReader(path, reader.record, raw_step, f"steps[{position}]")
        golden = step.child("ground_truth")
        execution = step.child("execution_result")
        depends_on = step.get("depends_on", list)
        for dep in depends_on:
            if not isinstance(dep, int) or isinstance(dep, bool) or not 0 <= dep < position:
                raise step.fail("depends_on", f"{dep!r} is not an earlier step index")
        steps.append(
            TraceStep(
                index=step.get("step", int),
                function=golden.get("function", str),
                arguments=golden.get("arguments", dict),
                depends_on=tuple(depends_on),
                candidate_tools=tuple(step.get("candidate_tools", list, default=[])),
                response=execution.get("execution_result", (dict, list, str), allow_none=True),
                success=execution.get("success", bool, default=True),
            )
        )
    return TraceSample(
        sample_id=workflow_id,
        query=query,
        workflow_id=workflow_id,
        workflow_pattern=tuple(pattern),
        steps=tuple(steps),
        source=path.name,
    )
