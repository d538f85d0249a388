"""No source file of toolrl/ or experiments/ over 500 lines: a module that long does several jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

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


# The offenders are named in the reason as they are now (each is due to be split by its owner, the
# trainer among them); strict=False so that the test passes silently once the last one is split.
@pytest.mark.xfail(strict=False, reason="over 500 lines: " + (", ".join(oversized_files()) or "none"))
def test_no_source_file_over_500_lines():
    found = oversized_files()
    assert not found, "over 500 lines: " + ", ".join(f"{path} ({n})" for path, n in found.items())
