"""Loader for the Booking tool schemas (``booking_api.json``: JSONL, one BFCL-style schema a line)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from toolrl.data import paths
from toolrl.data.validation import DataFormatError, RecordReader, iter_jsonl

PARAMETER_TYPES = ("string", "number", "integer", "boolean", "array", "dict", "object")


@dataclasses.dataclass(frozen=True)
class ParameterSchema:
    name: str
    type: str
    description: str
    items: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class ToolSchema:
    """One tool: its parameters, which are required, and the raw schema (for prompts)."""

    name: str
    description: str
    parameters: dict[str, ParameterSchema]
    required: tuple[str, ...]
    raw: dict[str, Any]

    @property
    def free_text_description(self) -> str:
        return self.description.split("Tool description:")[-1].strip()


def load_tool_schemas(path: str | os.PathLike | None = None) -> dict[str, ToolSchema]:
    """Parse and validate the tool schemas; returns them by name, in file order."""
    path = Path(path) if path else paths.data_file(paths.TOOL_SCHEMAS)
    tools: dict[str, ToolSchema] = {}
    for line_number, record in iter_jsonl(path):
        reader = RecordReader(path, f"line {line_number}", record)
        name = reader.get("name", str)
        reader.record = f"line {line_number} ({name})"
        params = reader.child("parameters")
        properties = params.get("properties", dict)
        parsed = {}
        for param_name, spec in properties.items():
            spec_reader = params.child(f"properties.{param_name}", spec) if isinstance(spec, dict) else None
            if spec_reader is None:
                raise params.fail(f"properties.{param_name}", "expected an object")
            param_type = spec_reader.get("type", str)
            if param_type not in PARAMETER_TYPES:
                raise spec_reader.fail("type", f"unknown type {param_type!r}; known: {PARAMETER_TYPES}")
            parsed[param_name] = ParameterSchema(
                name=param_name,
                type=param_type,
                description=spec_reader.get("description", str, default=""),
                items=spec_reader.get("items", dict, default=None),
            )
        required = params.get("required", list, default=[])
        for item in required:
            if item not in parsed:
                raise params.fail("required", f"required parameter {item!r} is not among the properties")
        if name in tools:
            raise DataFormatError(path, reader.record, "name", f"duplicate tool name {name!r}")
        tools[name] = ToolSchema(
            name=name,
            description=reader.get("description", str, default=""),
            parameters=parsed,
            required=tuple(required),
            raw=record,
        )
    if not tools:
        raise DataFormatError(path, None, None, "no tool schemas found")
    return tools
