"""Object-store workdirs (gs://, s3://) are refused in one line and never become a local `gs:` directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolrl.rl.config import base_config
from toolrl.rl.workdir import WorkdirError, check_local_path, load_run_config, open_workdir

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("url", ["gs://bucket/run", "s3://bucket/a/b", "gs:/bucket/run", "hdfs://nn/x"])
def test_open_workdir_refuses_urls_without_creating_anything(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    config = base_config()
    config.workdir = url
    with pytest.raises(WorkdirError, match=r"object-store URL .*mount"):
        open_workdir(url, config)
    with pytest.raises(WorkdirError, match="object-store URL"):
        load_run_config(url)
    assert list(tmp_path.iterdir()) == []  # no gs:, s3: or hdfs: directory


@pytest.mark.parametrize("path", ["artifacts/runs/x", "/mnt/gcs/run", "./a:b", "runs/gs:/x"])
def test_local_paths_pass(path):
    assert check_local_path(path) == Path(path)


def test_error_is_one_line_naming_the_field():
    with pytest.raises(WorkdirError) as err:
        check_local_path("gs://bucket/run")
    text = str(err.value)
    assert "\n" not in text and "--config.workdir='gs://bucket/run'" in text and "flock" in text


def test_cli_refuses_gs_workdir_in_one_line(tmp_path):
    """The whole entry point: exit 2, one line on stderr, nothing created in the working directory."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-m", "toolrl.main", f"--config={REPO / 'configs' / 'tiny.py'}",
         "--config.workdir=gs://bucket/run"],
        cwd=tmp_path, env=dict(env, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu"), capture_output=True, text=True,
        timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "object-store URL" in lines[0], out.stderr[-2000:]
    assert not (tmp_path / "gs:").exists()
