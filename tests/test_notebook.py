"""notebooks/ablations.ipynb is what notebooks/make_ablations_notebook.py builds now, and its code cells
compile. Nothing is executed (executing the notebook reads every study's result files and plots them:
`jupyter nbconvert --to notebook --execute --inplace notebooks/ablations.ipynb`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("nbformat")  # the generator's one dependency (pyproject's dev extra)

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "notebooks" / "make_ablations_notebook.py"
NOTEBOOK = REPO / "notebooks" / "ablations.ipynb"


def _generated_cells() -> list[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location("make_ablations_notebook", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines CELLS; writes nothing (main() is not called)
    return [(cell.cell_type, cell.source) for cell in module.CELLS]


def _committed_cells() -> list[tuple[str, str]]:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return [(cell["cell_type"], "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"])
            for cell in cells]


def _python(source: str) -> str:
    """A code cell's source without its IPython magic and shell lines (% and !)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def test_committed_notebook_is_the_generators():
    generated, committed = _generated_cells(), _committed_cells()
    assert len(committed) == len(generated), "rerun python notebooks/make_ablations_notebook.py, then execute it"
    for i, (want, got) in enumerate(zip(generated, committed)):
        assert got == want, (f"cell {i} differs from the generator's: rerun python notebooks/make_ablations_notebook.py, "
                             "then execute the notebook")


def test_code_cells_compile():
    code = [(i, source) for i, (kind, source) in enumerate(_committed_cells()) if kind == "code"]
    assert code
    for i, source in code:
        compile(_python(source), f"notebooks/ablations.ipynb cell {i}", "exec")
