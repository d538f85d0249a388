"""Scoring a predictions file: nothing is scored silently wrong (empty file, unknown ids, repeated
records, unreadable lines)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolrl.eval.protocol import build_turn_tasks
from toolrl.eval.score import PredictionFormatError, main as score_main, read_predictions
from toolrl.data.golden import load_samples as load_eval_samples

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def samples(data_dir):
    return load_eval_samples("eval_100", data_dir)


def golden_lines(samples, n=5):
    lines = []
    for task in [t for s in samples[:n] for t in build_turn_tasks(s)]:
        for round_, sub in enumerate(task.subturns):
            lines.append({"sample_id": task.sample_id, "turn": task.turn, "round": round_,
                          "calls": [c.as_dict() for c in sub.calls]})
    return lines


def write(path: Path, lines) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def score(path, cache_path, *extra):
    return score_main(["--predictions", str(path), "--max-samples", "5", "--cache", str(cache_path), *extra])


def test_empty_file_is_an_error(tmp_path, cache_path):
    for text in ("", "\n  \n"):
        path = tmp_path / "pred.jsonl"
        path.write_text(text)
        with pytest.raises(PredictionFormatError, match=r"pred.jsonl.*no prediction records"):
            score(path, cache_path)


def test_repeated_records_are_an_error_naming_the_line(tmp_path, cache_path, samples):
    lines = golden_lines(samples)
    path = write(tmp_path / "pred.jsonl", lines + lines)  # the same file appended twice
    with pytest.raises(PredictionFormatError) as info:
        score(path, cache_path)
    message = str(info.value)
    assert f"pred.jsonl:{len(lines) + 1}:" in message and "repeats the record of line 1" in message


def test_unknown_ids_are_reported_and_none_matching_is_an_error(tmp_path, cache_path, samples, capsys):
    lines = golden_lines(samples)
    stray = [{"sample_id": "Nowhere-1", "turn": 0, "text": ""}, {"sample_id": lines[0]["sample_id"], "turn": 99, "text": ""}]
    path = write(tmp_path / "pred.jsonl", lines + stray)
    assert score(path, cache_path, "--out", str(tmp_path / "out")) == 0
    err = capsys.readouterr().err
    assert "2 of" in err and "match no scored turn" in err and "Nowhere-1" in err
    result = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert result["metrics"]["all"]["overall"]["turn_accuracy"] == 1.0
    only_stray = write(tmp_path / "stray.jsonl", stray)
    with pytest.raises(PredictionFormatError, match=r"none of the 2 predictions.*Nowhere-1"):
        score(only_stray, cache_path)


def test_too_deep_huge_and_non_utf8_lines_name_the_line(tmp_path):
    good = json.dumps({"sample_id": "A-1", "turn": 0, "text": ""})
    deep = json.dumps({"sample_id": "A-1", "turn": 1, "calls": [{"name": "F", "arguments": {"a": "X"}}]}).replace(
        '"X"', "[" * 200 + "]" * 200)
    deeper = '{"sample_id": "A-1", "turn": 1, "text": ' + "[" * 100_000 + "]" * 100_000 + "}"
    huge = '{"sample_id": "A-1", "turn": 1, "calls": [{"name": "F", "arguments": {"a": ' + "9" * 5000 + "}}]}"
    for bad, problem in ((deep, "nested"), (deeper, "nested"), (huge, "digits")):
        path = write(tmp_path / "p.jsonl", [good, bad])
        with pytest.raises(PredictionFormatError, match=rf"p.jsonl:2: .*{problem}"):
            read_predictions(path)
    path = tmp_path / "p.jsonl"
    path.write_bytes(good.encode() + b"\n" + b'{"sample_id": "A-\xff", "turn": 0, "text": ""}\n')
    with pytest.raises(PredictionFormatError, match=r"p.jsonl:2: not UTF-8"):
        read_predictions(path)


def test_cli_prints_one_line(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_text("")
    result = subprocess.run([sys.executable, "-m", "toolrl.eval.score", "--predictions", str(path),
                             "--no-response-equivalence"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("python -m toolrl.eval.score: error: ") and result.stderr.count("\n") == 1
    assert "no prediction records" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "toolrl.eval.score", "--predictions", str(tmp_path / "none.jsonl"),
                              "--no-response-equivalence", "--verbose"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "Traceback" in missing.stderr and "none.jsonl" in missing.stderr.splitlines()[-1]


def test_partial_predictions_are_refused_unless_asked(tmp_path, samples, cache_path, capsys):
    """A predictions file for a few turns of the split would score the rest as "no call": refused with
    its coverage in one line, scored with --allow-partial (coverage reported and recorded)."""
    from toolrl.cli import UserError

    path = write(tmp_path / "p.jsonl", golden_lines(samples)[:1])
    with pytest.raises(UserError, match=r"cover 1 of \d+ scored turns .* --allow-partial"):
        score(path, cache_path)
    assert score(path, cache_path, "--allow-partial", "--out", str(tmp_path / "out")) == 0
    assert "coverage: predictions for 1 of" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert record["settings"]["coverage"]["covered"] == 1
