"""Progress a log file can show: step lines when stdout is not a terminal, none on a terminal."""

import io
import subprocess
import sys
from pathlib import Path

from toolrl.rl.progress import StepRecords


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_step_lines_only_when_not_a_terminal():
    log = io.StringIO()
    records = StepRecords(total=4, start=0, stream=log)
    records.line("loading")
    records.step(1, "sft", " nll 0.9 ")
    records.step(2, "grpo", "reward 0.5")
    lines = log.getvalue().splitlines()
    assert lines[0] == "loading"
    assert lines[1].startswith("step 1/4 [sft] nll 0.9 | ") and "eta" in lines[1]
    assert lines[2].startswith("step 2/4 [grpo] reward 0.5 | ")
    terminal = _Terminal()
    StepRecords(total=4, stream=terminal).step(1, "sft", "x")
    assert terminal.getvalue() == ""


def test_a_training_run_writes_one_record_per_step_to_a_file(tmp_path, compile_flags):
    log = tmp_path / "log"
    with log.open("w") as out:
        run = subprocess.run([sys.executable, "-m", "toolrl.main", "--config=configs/tiny.py",
                              f"--config.workdir={tmp_path / 'run'}", "--config.wandb.mode=disabled",
                              "--config.eval.every=0", *compile_flags], stdout=out, stderr=subprocess.PIPE, text=True, timeout=600,
                             cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr[-2000:]
    text = log.read_text()
    steps = [line for line in text.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == [f"{k}/6" for k in range(1, 7)]  # 2 SFT + 4 GRPO steps
    assert text.splitlines()[0].startswith("grpo: loading tiny")


def test_a_missing_config_file_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "toolrl.main", f"--config={tmp_path / 'nope.py'}"],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "does not exist" in run.stderr
