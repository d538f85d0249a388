"""What the benchmarks share: XLA's memory analysis of a compiled program, the note on a loaded
machine, and the result file. Imported by name (``from bench_common import ...``): a benchmark runs as
``python benchmarks/<name>.py``, which puts this folder first on ``sys.path``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

# A 1-minute load average at or above this share of the cores means another job shared the CPU.
BUSY_LOAD_PER_CPU = 0.5


def xla_memory(compiled: Any, fields: Sequence[str] = ("argument", "output", "alias", "temp")) -> dict[str, int]:
    """XLA's memory analysis of a compiled program, bytes (``<field>_size_in_bytes``), with ``peak`` =
    argument + output - alias + temp (the CPU backend's own peak leaves the temporaries out)."""
    m = compiled.memory_analysis()
    out = {name: int(getattr(m, f"{name}_size_in_bytes", 0) or 0) for name in fields}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def load_note(before: float, after: float, cpus: int, variants: str = "the two variants") -> str | None:
    """A sentence when another job shared the CPU (either load average over BUSY_LOAD_PER_CPU x cores);
    ``variants``: what was timed alternately, so the load slowed them alike."""
    if max(before, after) < BUSY_LOAD_PER_CPU * cpus:
        return None
    return (f"measured on a loaded machine (1-minute load average {before:.1f} before, {after:.1f} after, on "
            f"{cpus} cores): the times are slower than idle, {variants} alike (they alternate)")


def write_record(record: Mapping[str, Any], out: str | Path) -> None:
    """Prints the record's load note (stderr), writes the record as JSON to ``out`` and says where and
    how to re-run it (``record["command"]``)."""
    if record.get("load_note"):
        print(record["load_note"], file=sys.stderr)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}; re-run: {record['command']}")
