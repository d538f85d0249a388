"""toolrl.cli.run_cli: user errors are one line on stderr and exit 2; bugs keep their traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toolrl.cli import UserError, one_line

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys
    from toolrl.cli import UserError, run_cli

    class Custom(RuntimeError):
        pass

    def main(argv):
        kind = argv[0]
        if kind == "user":
            raise UserError("bad --flag value 3")
        if kind == "missing":
            open("/nonexistent/file.json")
        if kind == "custom":
            raise Custom("custom user error")
        if kind == "bug":
            raise RuntimeError("a real bug")
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "args":
            print(argv)
        return int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else None

    run_cli(main, prog="tool", user_errors=(Custom,))
""")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind, message", [
    ("user", "tool: error: bad --flag value 3"),
    ("missing", "tool: error: No such file or directory: /nonexistent/file.json"),
    ("custom", "tool: error: custom user error"),
])
def test_user_errors_are_one_line_and_exit_2(kind, message):
    result = run(kind)
    assert result.returncode == 2
    assert result.stderr == message + "\n"
    verbose = run(kind, "--verbose")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr and verbose.stderr.endswith(message + "\n")


def test_bugs_keep_the_traceback_and_interrupts_exit_130():
    bug = run("bug")
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "a real bug" in bug.stderr
    interrupted = run("interrupt")
    assert interrupted.returncode == 130 and interrupted.stderr == "tool: interrupted\n"


def test_exit_code_and_arguments_pass_through():
    result = run("args", "--verbose", "3")
    assert result.returncode == 3 and result.stdout.strip() == "['args', '3']"
    assert run("args").returncode == 0


def test_one_line_joins_multi_line_messages():
    assert one_line(UserError("invalid config:\n  a=1 bad\n  b=2 bad")) == "invalid config: a=1 bad; b=2 bad"
    assert one_line(ValueError("")) == "ValueError"
