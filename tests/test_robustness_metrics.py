"""MetricsLog.truncate_after on resume: no record beyond the restored step, no step twice."""

from __future__ import annotations

import json

from toolrl.rl.metrics import MetricsLog, read_metrics


def _write(path, steps, torn=False):
    lines = [json.dumps({"step": s, "value": i}) for i, s in enumerate(steps)]
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"step": 9, "val'
    path.write_text(text)


def test_duplicates_at_or_below_the_restored_step_are_removed(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, [1, 2, 1, 2, 3])  # an earlier resume that did not truncate, then step 3
    log = MetricsLog(path)
    dropped = log.truncate_after(3)
    records = read_metrics(path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert [r["value"] for r in records] == [2, 3, 4]  # the last record of each step, order kept
    assert dropped == 2


def test_beyond_the_step_and_torn_lines_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, [1, 2, 3, 4, 5], torn=True)
    assert MetricsLog(path).truncate_after(3) == 3
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_records_without_a_step_are_kept(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"event": "note"}\n{"step": 1}\n')
    MetricsLog(path).truncate_after(5)
    assert read_metrics(path) == [{"event": "note"}, {"step": 1}]
