"""The study package (experiments/study/): the split kept every number, and the old module path works.

The committed long36 study is the fixture: its summary.json and report.md were written by the
single-module runner, so rebuilding them byte for byte from its result files shows that the
statistics (scipy's exact binomial test for McNemar, scipy's t quantile) give the numbers they gave.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from experiments import study, sweep
from experiments.study import collect, execute, files, plan, plot, report, stats

REPO = Path(__file__).resolve().parents[1]
COMMITTED_STUDY = REPO / "experiments" / "results" / "long36"


def as_written(data) -> str:
    """The bytes write_json_atomic gives a summary (the committed file was written that way)."""
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def test_committed_study_summary_and_report_are_rebuilt_byte_for_byte():
    results = collect.load_results(COMMITTED_STUDY)
    assert len(results) == 13
    summary = stats.summarize(results)
    assert as_written(summary) == (COMMITTED_STUDY / "summary.json").read_text(encoding="utf-8")
    assert report.markdown_report(summary, "long36") == (COMMITTED_STUDY / "report.md").read_text(encoding="utf-8")


def test_committed_flip_p_values_are_the_exact_binomial_sums():
    """Every McNemar p of the committed study equals min(1, 2 · Σ_{i ≤ min(g, l)} C(n, i) / 2^n) exactly."""
    summary = stats.summarize(collect.load_results(COMMITTED_STUDY))
    records = [record for source in summary["sources"].values()
               for kind in ("flips_vs_sft", "flips_vs_baseline") for rows in source[kind].values() for record in rows]
    records += [record for source in summary["sources"].values()
                for pooled in source["flips_pooled"].values() for record in pooled.values()]
    assert records and any(r["gained"] + r["lost"] > 0 for r in records)
    for r in records:
        n, k = r["gained"] + r["lost"], min(r["gained"], r["lost"])
        exact = 1.0 if n == 0 else min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
        assert r["p"] == exact, r


def test_mcnemar_p_is_the_exact_binomial_test_everywhere():
    # scipy's binomtest can differ from the exact rational value in the last bits for larger n.
    for n in range(0, 60):
        for gained in range(n + 1):
            lost, k = n - gained, min(gained, n - gained)
            exact = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
            assert stats.mcnemar_exact_p(gained, lost) == pytest.approx(exact, rel=1e-12, abs=1e-300)


def test_t_interval_is_scipys_t_interval():
    values = [0.125, 0.5, 0.375, None, float("nan"), 0.25]
    mean, half, n = stats.t_interval(values, 0.9)
    xs = [0.125, 0.5, 0.375, 0.25]
    low, high = scipy_stats.t.interval(0.9, len(xs) - 1, loc=sum(xs) / 4, scale=scipy_stats.sem(xs))
    assert n == 4 and mean == pytest.approx((low + high) / 2, rel=1e-14)
    assert half == pytest.approx((high - low) / 2, rel=1e-12)
    assert math.isnan(stats.t_interval([0.3])[1]) and stats.t_interval([])[2] == 0


def _public_names(module) -> list[str]:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    names += [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
              if isinstance(t, ast.Name)]
    return [name for name in names if not name.startswith("_")]


@pytest.mark.parametrize("module", [plan, files, collect, execute, stats, report, plot], ids=lambda m: m.__name__)
def test_the_old_module_path_reexports_every_public_name(module):
    missing = [name for name in _public_names(module) if getattr(sweep, name, None) is not getattr(module, name)]
    assert not missing, f"experiments/sweep.py does not re-export {missing} of {module.__name__}"


def test_modules_import_one_way():
    """files <- plan <- collect <- stats <- plot <- report <- execute: no module imports a later one."""
    order = ["files", "plan", "collect", "stats", "plot", "report", "execute"]
    package = Path(study.__file__).parent
    for position, name in enumerate(order):
        tree = ast.parse((package / f"{name}.py").read_text(encoding="utf-8"))
        # Module-level imports only: files.py names plan's types under TYPE_CHECKING, which runs nothing.
        imported = {node.module.rsplit(".", 1)[-1] for node in tree.body
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments.study.")}
        later = imported & set(order[position + 1:])
        assert not later, f"experiments/study/{name}.py imports the later module(s) {sorted(later)}"
