"""Where toolrl finds the benchmark data and keeps its generated artifacts.

The benchmark files are read in place, never copied. Resolution order for the data directory:
an explicit argument (a config field), then ``$TOOLRL_DATA_DIR``, then
``<repository root>/../shared/data/complexfuncbench``.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "TOOLRL_DATA_DIR"
HOME_ENV = "TOOLRL_HOME"

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "complexfuncbench"

EVAL_100 = "eval_100.json"
BFCL_TRAINING = "bfcl_training_3_per_workflow.json"
TOOL_SCHEMAS = "booking_api.json"
WORKFLOW_TEMPLATES = "workflow_templates.json"
EXACT_MATCH_VALUES = "exact_match_values.json"
TOOL_INFO = "tool_info.json"
TRACE_FILES = (EVAL_100, BFCL_TRAINING)


def default_data_dir(override: str | os.PathLike | None = None) -> Path:
    """The ComplexFuncBench data directory: ``override``, else ``$TOOLRL_DATA_DIR``, else the bundled one."""
    if override:
        path = Path(override).expanduser()
    elif os.environ.get(DATA_DIR_ENV):
        path = Path(os.environ[DATA_DIR_ENV]).expanduser()
    else:
        path = BUNDLED_DATA_DIR
    if not path.is_dir():
        raise FileNotFoundError(
            f"ComplexFuncBench data directory {path} does not exist; pass a data_dir, set "
            f"${DATA_DIR_ENV}, or place the data at {BUNDLED_DATA_DIR}"
        )
    return path


def data_file(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of one benchmark file, with a clear error when it is missing."""
    path = default_data_dir(data_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {name!r} not found in {path.parent}")
    return path


def toolrl_home() -> Path:
    """Directory for generated artifacts shared across runs (default cache, converted models)."""
    home = Path(os.environ.get(HOME_ENV, Path.home() / ".cache" / "toolrl")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
