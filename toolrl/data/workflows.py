"""Loader for ``workflow_templates.json``: 107 workflow patterns mined from ComplexFuncBench."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from toolrl.data import paths
from toolrl.data.validation import DataFormatError, RecordReader, read_json


@dataclasses.dataclass(frozen=True)
class DependencyArg:
    """Argument ``parameter`` of a step takes the value at ``from_field`` in step ``from_step``'s response."""

    parameter: str
    from_step: int
    from_field: str
    value: Any


@dataclasses.dataclass(frozen=True)
class WorkflowStep:
    index: int
    function: str
    arguments: dict[str, Any]
    depends_on: tuple[int, ...]
    dependency_args: tuple[DependencyArg, ...]


@dataclasses.dataclass(frozen=True)
class WorkflowExample:
    entry_id: str
    query: str

    @property
    def domain(self) -> str:
        return self.entry_id.rpartition("-")[0]


@dataclasses.dataclass(frozen=True)
class WorkflowTemplate:
    workflow_id: str
    pattern: tuple[str, ...]
    frequency: int
    steps: tuple[WorkflowStep, ...]
    examples: tuple[WorkflowExample, ...]

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(sorted({example.domain for example in self.examples}))


def load_workflow_templates(path: str | os.PathLike | None = None) -> list[WorkflowTemplate]:
    """Parse and validate the workflow templates, in file order."""
    path = Path(path) if path else paths.data_file(paths.WORKFLOW_TEMPLATES)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataFormatError(path, None, None, f"expected an object, got {type(raw).__name__}")
    if "workflows" not in raw or not isinstance(raw["workflows"], list):
        raise DataFormatError(path, None, "workflows", "missing or not a list")
    templates = []
    for index, record in enumerate(raw["workflows"]):
        reader = RecordReader(path, index, record)
        workflow_id = reader.get("id", str)
        reader.record = f"{index} ({workflow_id})"
        pattern = tuple(reader.get("pattern", list))
        dependencies = reader.child("dependencies")
        steps = []
        for position in range(len(pattern)):
            step = dependencies.child(str(position), dependencies.value.get(str(position)))
            dep_args = []
            for parameter, link in step.get("dependency_args", dict, default={}).items():
                link_reader = step.child(f"dependency_args.{parameter}", link)
                dep_args.append(
                    DependencyArg(
                        parameter=parameter,
                        from_step=link_reader.get("from_step", int),
                        from_field=link_reader.get("from_field", str),
                        value=link_reader.value.get("value"),
                    )
                )
            function = step.get("function", str)
            if function != pattern[position]:
                raise step.fail("function", f"{function!r} differs from pattern[{position}] = {pattern[position]!r}")
            steps.append(
                WorkflowStep(
                    index=position,
                    function=function,
                    arguments=step.get("arguments", dict),
                    depends_on=tuple(step.get("depends_on", list, default=[])),
                    dependency_args=tuple(dep_args),
                )
            )
        examples = tuple(
            WorkflowExample(
                entry_id=RecordReader(path, reader.record, ex, f"examples[{i}]").get("entry_id", str),
                query=RecordReader(path, reader.record, ex, f"examples[{i}]").get("query", str),
            )
            for i, ex in enumerate(reader.get("examples", list, default=[]))
        )
        templates.append(
            WorkflowTemplate(
                workflow_id=workflow_id,
                pattern=pattern,
                frequency=reader.get("frequency", int, default=0),
                steps=tuple(steps),
                examples=examples,
            )
        )
    return templates
