"""No source file of toolrl/ or experiments/ over 500 lines: a module that long does several jobs."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def oversized_files() -> dict[str, int]:
    """{repo-relative path: line count} of the Python files of toolrl/ and experiments/ over MAX_LINES."""
    found = {}
    for package in ("toolrl", "experiments"):
        for path in sorted((REPO / package).rglob("*.py")):
            with open(path, encoding="utf-8") as f:
                lines = sum(1 for _ in f)
            if lines > MAX_LINES:
                found[str(path.relative_to(REPO))] = lines
    return found


def test_no_source_file_over_500_lines():
    found = oversized_files()
    assert not found, "over 500 lines: " + ", ".join(f"{path} ({n})" for path, n in found.items())
